# -*- coding: utf-8 -*-
# Copyright: (c) 2026, xmpp.ejabberd contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Fake peers for the distribution client tests.

Small threaded TCP servers bound to 127.0.0.1 on a free port.  Each accepted
connection runs ``handler(sock, server)`` in its own thread.  They stand in for
the PEER (a broken EPMD, a hung node, a node that lies in the handshake), never
for the client under test, which always runs for real against them.

The server side of the version 6 handshake is written here from the protocol
description (notes/erlang-distribution.md); it is checked against the real
client and, for the parts that a real node exercises too, the same outcome is
asserted against real nodes in the integration tests.

Usage::

    with FakeServer(stall) as peer:
        erldist.connect('x@127.0.0.1', 'c', dist_port=peer.port, timeout=1)

``peer.accepted`` counts connections, ``peer.received`` holds the bytes each
connection sent (one entry per connection), ``peer.errors`` the exceptions of
handler threads (a test may assert it is empty).
"""

from __future__ import absolute_import, division, print_function

import hashlib
import os
import socket
import struct
import threading
import time
import zlib

# Only to read the client's requests and to write plain replies; hostile replies
# are written byte by byte by the tests.
from ansible_collections.xmpp.ejabberd.plugins.module_utils import etf

# Handshake / distribution constants, as in the protocol description.
TAG_NAME = ord('N')
TAG_REPLY = ord('r')
TAG_ACK = ord('a')
PASS_THROUGH = 112
VERSION = 131
# What an OTP 25 node offers (published, hidden-aware, every mandatory flag).
NODE_FLAGS = 0x1070F94 | 0x1 | 0x2000000 | (1 << 34)


class PeerClosed(Exception):
    """The client went away (or the server is stopping)."""


def digest(cookie, challenge):
    return hashlib.md5(cookie.encode('latin-1') + str(challenge).encode('ascii')).digest()


class FakeServer(object):
    """A stoppable threaded TCP server on 127.0.0.1 (or ``host``), port 0 (or ``port``)."""

    def __init__(self, handler, backlog=16, host='127.0.0.1', port=0):
        self.handler = handler
        self.accepted = 0
        self.received = []
        self.errors = []
        self.info = {}  # free-form facts a handler records (client name, flags, ...)
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self.lock = threading.Lock()  # for handlers that share server.info
        self._socks = []
        self._threads = []
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind((host, port))
        self._listener.listen(backlog)
        self._listener.settimeout(0.05)
        self.port = self._listener.getsockname()[1]
        self._acceptor = threading.Thread(target=self._accept_loop, daemon=True,
                                          name='fakepeer-accept-%d' % self.port)

    # -- lifecycle
    def start(self):
        self._acceptor.start()
        return self

    def stop(self):
        self._stopping.set()
        self._acceptor.join(5)
        try:
            self._listener.close()
        except OSError:
            pass
        with self._lock:
            socks, threads = list(self._socks), list(self._threads)
        for sock in socks:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            try:
                sock.close()
            except OSError:
                pass
        for thread in threads:
            thread.join(5)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    @property
    def stopping(self):
        return self._stopping.is_set()

    def sleep(self, seconds):
        """Sleep, but wake up (and raise PeerClosed) when the server stops."""
        if self._stopping.wait(seconds):
            raise PeerClosed('server stopping')

    # -- internals
    def _accept_loop(self):
        while not self._stopping.is_set():
            try:
                sock, _addr = self._listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            with self._lock:
                self.accepted += 1
                index = len(self.received)
                self.received.append(bytearray())
                self._socks.append(sock)
                thread = threading.Thread(target=self._run, args=(sock, index), daemon=True)
                self._threads.append(thread)
            thread.start()

    def _run(self, sock, index):
        link = Link(sock, self, self.received[index])
        try:
            self.handler(link, self)
        except PeerClosed:
            pass
        except Exception as exc:  # pylint: disable=broad-except
            if not self.stopping:
                self.errors.append(exc)
        finally:
            if not link.keep_open:
                link.close()


class Link(object):
    """One accepted connection, with helpers that respect the server's stop."""

    def __init__(self, sock, server, record):
        self.sock = sock
        self.server = server
        self.record = record
        self.keep_open = False
        sock.settimeout(0.05)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def reset(self):
        """Close with an RST instead of a FIN (SO_LINGER 0)."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack('ii', 1, 0))
        self.close()

    def recv_exact(self, count):
        data = bytearray()
        while len(data) < count:
            if self.server.stopping:
                raise PeerClosed('server stopping')
            try:
                chunk = self.sock.recv(count - len(data))
            except socket.timeout:
                continue
            except OSError:
                raise PeerClosed('client connection failed')
            if not chunk:
                raise PeerClosed('client closed')
            data += chunk
            self.record += chunk
        return bytes(data)

    def drain(self):
        """Read and record everything until the client closes or the server stops."""
        while True:
            self.recv_exact(1)

    def send(self, data):
        """All of ``data``, however slowly the client reads (sendall's timeout would
        count for the whole of it), until the server stops."""
        view = memoryview(data)
        while view:
            if self.server.stopping:
                raise PeerClosed('server stopping')
            try:
                view = view[self.sock.send(view):]
            except socket.timeout:
                continue
            except OSError:
                raise PeerClosed('client connection failed while sending')

    # -- handshake framing (2-byte length)
    def recv_hs(self):
        length = struct.unpack('>H', self.recv_exact(2))[0]
        return self.recv_exact(length)

    def send_hs(self, payload):
        self.send(struct.pack('>H', len(payload)) + payload)

    # -- after the handshake (4-byte length)
    def recv_packet(self, answer_ticks=True):
        while True:
            length = struct.unpack('>I', self.recv_exact(4))[0]
            if length == 0:
                if answer_ticks:
                    continue
                return b''
            return self.recv_exact(length)

    def send_packet(self, payload):
        self.send(struct.pack('>I', len(payload)) + payload)


# --------------------------------------------------------------------------- handlers

def record_only(link, server):
    """Accept and read everything; answer nothing (a port that records traffic)."""
    link.drain()


def stall(link, server):
    """Accept, read what comes, never answer: a hung node."""
    link.drain()


def close_at_once(link, server):
    """Accept and close straight away."""
    link.close()


def trickle(data, interval=0.5):
    """Send ``data`` one byte every ``interval`` seconds after reading the client's first
    message: a peer slow enough that each recv gets something, but the whole never arrives."""
    def handler(link, server):
        link.recv_hs()
        for byte in data:
            link.send(bytes([byte]))
            server.sleep(interval)
        link.drain()
    return handler


def answer_raw(data, then='close'):
    """Read the client's first handshake message, send ``data`` as is, then close or stall."""
    def handler(link, server):
        link.recv_hs()
        link.send(data)
        if then == 'stall':
            link.drain()
        elif then == 'reset':
            link.reset()
    return handler


class Peer(object):
    """The server side of the version 6 handshake, with knobs to make it lie.

    ``status``: the status string sent after the client's name, or a function of
    the client's name giving it (None: close without a status).  What the client
    answers to a status other than ok goes to ``server.info['replies']``.
    ``name``: the node name sent in the challenge.
    ``challenge_tag``/``challenge_body``: override the challenge message.
    ``ack``: 'right', 'wrong' (a wrong digest), 'close' (close after the reply, as a
    node with another cookie does) or raw bytes to send as the ack message.
    ``after``: called as ``after(link, server, peer)`` once the handshake is done.
    """

    def __init__(self, name, cookie, status='ok', challenge_message=None, ack='right',
                 after=None, flags=NODE_FLAGS):
        self.name = name
        self.cookie = cookie
        self.status = status
        self.challenge_message = challenge_message
        self.ack = ack
        self.after = after
        self.flags = flags
        self.creation = 0x5eed0001

    def __call__(self, link, server):
        hello = link.recv_hs()
        if hello[:1] != b'N':
            raise AssertionError('client sent %r instead of send_name N' % hello[:8])
        flags, creation, name_len = struct.unpack('>QIH', hello[1:15])
        name = hello[15:15 + name_len].decode('utf-8')
        server.info.update(client_flags=flags, client_creation=creation, client_name=name)
        with server.lock:
            server.info.setdefault('client_names', []).append(name)
        status = self.status(name) if callable(self.status) else self.status
        server.info.setdefault('replies', [])
        if status is None:  # close without a status
            return
        link.send_hs(b's' + status.encode('latin-1'))
        if status not in ('ok', 'ok_simultaneous'):
            try:
                answer = link.recv_hs()  # the client's answer to 'alive' (strue/sfalse)
                with server.lock:
                    server.info['replies'].append(answer)
            except PeerClosed:
                return
            link.drain()  # a real node closes; staying open proves the client stops by itself
            return
        challenge = int.from_bytes(os.urandom(4), 'big')
        if self.challenge_message is not None:
            link.send_hs(self.challenge_message)
        else:
            own = self.name.encode('utf-8')
            link.send_hs(struct.pack('>BQIIH', TAG_NAME, self.flags, challenge, self.creation,
                                     len(own)) + own)
        reply = link.recv_hs()
        if reply[:1] != b'r' or len(reply) != 21:
            raise AssertionError('client sent a malformed challenge reply %r' % reply[:8])
        client_challenge = struct.unpack('>I', reply[1:5])[0]
        server.info['client_digest_ok'] = reply[5:] == digest(self.cookie, challenge)
        if self.ack == 'close' or not server.info['client_digest_ok']:
            link.close()
            return
        if self.ack == 'right':
            link.send_hs(b'a' + digest(self.cookie, client_challenge))
        elif self.ack == 'wrong':
            link.send_hs(b'a' + digest(self.cookie + 'x', client_challenge))
        else:
            link.send_hs(self.ack)
        server.info['handshake_done'] = True
        if self.after is not None:
            self.after(link, server, self)
        else:
            link.drain()


# --------------------------------------------------------------------------- after the handshake

def after_first_packet(send):
    """After the handshake, wait for the client's first (non-tick) packet, then send the
    raw bytes ``send`` (a whole frame, length prefix included) and keep reading."""
    def after(link, server, peer):
        server.info['first_packet'] = link.recv_packet()
        link.send(send)
        link.drain()
    return after


def tick_forever(interval):
    """After the client's first packet, send a tick every ``interval`` seconds and never
    answer; count the ticks sent (``ticks_sent``) and the client's tick answers
    (``tick_answers``, zero-length packets) in ``server.info``."""
    def after(link, server, peer):
        server.info['first_packet'] = link.recv_packet()
        server.info['ticks_sent'] = 0
        server.info['tick_answers'] = 0
        pending = bytearray()
        while True:
            link.send_packet(b'')
            server.info['ticks_sent'] += 1
            end = time.monotonic() + interval
            while time.monotonic() < end:
                if server.stopping:
                    raise PeerClosed('server stopping')
                try:
                    chunk = link.sock.recv(4096)
                except socket.timeout:
                    continue
                except OSError:
                    raise PeerClosed('client connection failed')
                if not chunk:
                    raise PeerClosed('client closed')
                link.record += chunk
                pending += chunk
                while len(pending) >= 4:
                    length = struct.unpack('>I', bytes(pending[:4]))[0]
                    if len(pending) < 4 + length:
                        break
                    if length == 0:
                        server.info['tick_answers'] += 1
                    del pending[:4 + length]
    return after


# --------------------------------------------------------------------------- EPMD

def epmd_request(link):
    length = struct.unpack('>H', link.recv_exact(2))[0]
    return link.recv_exact(length)


def fake_epmd(port_please_answer, names_answer=None, names_then='close'):
    """An EPMD that answers PORT_PLEASE2 with ``port_please_answer`` (raw bytes, or None to
    close without answering) and NAMES with ``names_answer`` (raw bytes; None: close;
    'reset': close with an RST)."""
    def handler(link, server):
        request = epmd_request(link)
        if request[:1] == b'z':
            server.info['asked_for'] = request[1:].decode('utf-8', 'replace')
            if port_please_answer is not None:
                link.send(port_please_answer)
        elif request[:1] == b'n':
            server.info['names_asked'] = True
            if names_answer == 'reset':
                link.reset()
                return
            if names_answer is not None:
                link.send(names_answer)
            if names_then == 'stall':
                link.drain()
    return handler


def port2_resp(port, node_type=77, result=0):
    """A PORT2_RESP as epmd sends it (for result 0, a full record)."""
    if result:
        return bytes([119, result])
    name = b'fake'
    return (bytes([119, 0]) + struct.pack('>HBBHHH', port, node_type, 0, 6, 5, len(name)) + name
            + struct.pack('>H', 0))


def names_resp(names, epmd_port=4369):
    text = ''.join('name %s at port %d\n' % (n, p) for n, p in names)
    return struct.pack('>I', epmd_port) + text.encode('utf-8')


# --------------------------------------------------------------------------- frames

def pass_through(control, message=b''):
    """A whole after-handshake frame: length, 112, control term bytes, message bytes."""
    body = bytes([PASS_THROUGH]) + control + message
    return struct.pack('>I', len(body)) + body


# --------------------------------------------------------------------------- a node that answers RPCs

def encoded(term):
    """A term's encoding without the version byte (to splice into a message)."""
    return etf.term_to_binary(term)[1:]


def reply_message(ref, reply, compressed=False):
    """The message ``{Ref, Reply}`` (version byte included); ``reply`` is a term's
    encoding without its version byte, so it may be anything, valid or not."""
    head = bytes([104, 2]) + encoded(ref)
    if compressed:
        return bytes([VERSION, 80]) + struct.pack('>I', len(head) + len(reply)) \
            + _zlib_joined(head, reply)
    return bytes([VERSION]) + head + reply


_DEFLATED = {}


def _zlib_joined(head, tail):
    """zlib data of ``head + tail``, with ``tail`` deflated once and kept: a full
    flush after ``head`` lets an independently deflated ``tail`` follow it (so a
    hostile reply of 65 MB is not compressed again for every request)."""
    key = (len(tail), zlib.crc32(tail))
    if key not in _DEFLATED:
        raw = zlib.compressobj(9, zlib.DEFLATED, -15)
        _DEFLATED[key] = raw.compress(tail) + raw.flush()
    start = zlib.compressobj(9)
    checksum = zlib.adler32(tail, zlib.adler32(head))
    return (start.compress(head) + start.flush(zlib.Z_FULL_FLUSH) + _DEFLATED[key]
            + struct.pack('>I', checksum))


def send_to(pid):
    """The control term of a SEND to ``pid``, version byte included."""
    return etf.term_to_binary((2, etf.Atom(''), pid))


def rpc_server(answer):
    """After the handshake, answer every rpc the client sends.

    ``answer(module, function, args, request)`` returns raw bytes to send as they
    are (whole frames), or a list of such frames, or None to send nothing;
    ``request`` holds ``pid`` and ``ref``.  The calls are recorded in
    ``server.info['calls']`` as (module, function, args).
    """
    def after(link, server, peer):
        calls = server.info.setdefault('calls', [])
        while True:
            packet = link.recv_packet()
            control, end = etf.decode_term(packet, 1)
            if control[0] != 6:  # not a REG_SEND (rex)
                continue
            gen_call = etf.binary_to_term(packet[end:])
            (pid, ref), (dummy, module, function, args, dummy2) = gen_call[1], gen_call[2]
            calls.append((str(module), str(function), args))
            frames = answer(str(module), str(function), args, {'pid': pid, 'ref': ref})
            for frame in [frames] if isinstance(frames, bytes) else frames or []:
                link.send(frame)
    return after


def answer_with(replies, default=None):
    """An ``answer`` for rpc_server: ``replies[(module, function)]`` is a reply
    term's encoding (bytes, no version byte) or a function of the request giving
    whole frames; other calls get ``default`` (an encoding), or no answer."""
    def answer(module, function, args, request):
        reply = replies.get((module, function), default)
        if reply is None:
            return None
        if callable(reply):
            return reply(request)
        return pass_through(send_to(request['pid']), reply_message(request['ref'], reply))
    return answer


# --------------------------------------------------------------------------- hostile replies

def _big(value):
    """LARGE_BIG_EXT of a non-negative integer (no version byte)."""
    raw = value.to_bytes((value.bit_length() + 7) // 8 or 1, 'little')
    return bytes([111]) + struct.pack('>I', len(raw)) + b'\0' + raw


def nested_lists(levels, inner=b'j'):
    """``[[[...inner...]]]``, ``levels`` deep (no version byte)."""
    return (bytes([108]) + struct.pack('>I', 1)) * levels + inner + b'j' * levels


def long_strings(count, length):
    """A list of ``count`` STRING_EXT of ``length`` bytes each (no version byte)."""
    return (bytes([108]) + struct.pack('>I', count)
            + (bytes([107]) + struct.pack('>H', length) + b's' * length) * count + b'j')


def list_tail_chain(levels, per_level):
    """One proper list written as ``levels`` LIST_EXT segments, each the tail of
    the one before, ``per_level`` small integers each (no version byte)."""
    return (bytes([108]) + struct.pack('>I', per_level) + bytes([97, 7]) * per_level) * levels \
        + b'j'


def _reply(body, compressed=False, ref=None):
    """An answer for rpc_server: the frame of ``{Ref, body}`` (``ref``: another ref)."""
    def frames(request):
        return pass_through(send_to(request['pid']),
                            reply_message(ref or request['ref'], body, compressed))
    return frames


def _stream(count, body, compressed=False):
    """``count`` replies with a wrong reference, then silence."""
    def frames(request):
        other = etf.Reference(request['ref'].node, request['ref'].creation, [1, 2, 3])
        return [_reply(body, compressed, other)(request)] * count
    return frames


def _to_other_pid(body):
    """The right reference, sent to another pid."""
    def frames(request):
        pid = request['pid']
        other = etf.Pid(pid.node, pid.id + 1, pid.serial, pid.creation)
        return pass_through(send_to(other), reply_message(request['ref'], body))
    return frames


def _deep_control(request):
    """A SEND whose control term is a list nested 330 deep (it has no operation code)."""
    return pass_through(bytes([VERSION]) + nested_lists(330), reply_message(request['ref'], b'j'))


def _huge_control(request):
    """A SEND_TT whose trace token is a list of 20 million small integers."""
    token = bytes([108]) + struct.pack('>I', 20000000) + b'a\x01' * 20000000 + b'j'
    control = (bytes([VERSION, 104, 4]) + encoded(12) + encoded(etf.Atom(''))
               + encoded(request['pid']) + token)
    return pass_through(control, reply_message(request['ref'], b'j'))


def _small_tuples(count):
    """A list of ``count`` empty tuples: 2 bytes each on the wire, a Python object each."""
    return bytes([108]) + struct.pack('>I', count) + b'h\0' * count + b'j'


# Hostile answers to one rpc, by name: functions of the request giving frames.
# Each is what a broken or malicious node could send; the client must end every
# call with a DistError, within its timeout, in bounded memory.
HOSTILE_REPLIES = {
    # 1,000 strings of 65,535 chars: 65.5 MB inflated from about 64 KB
    'long_strings_compressed': _reply(long_strings(1000, 65535), compressed=True),
    # 12 of those with a wrong reference: each must be dropped before the next
    'wrong_ref_stream': _stream(12, long_strings(1000, 65535), compressed=True),
    # wrong-reference replies that fit the budget (about 20 MB each), 8 in a row
    'wrong_ref_stream_fitting': _stream(8, long_strings(1200, 1000), compressed=True),
    # one list in 500 tail segments of 1,000 elements: quadratic if concatenated
    'list_tail_chain': _reply(list_tail_chain(500, 1000), compressed=True),
    # 460 strings of 65,535 chars: 30 MB inflated, and each string 0.5 MB more decoded
    'long_strings_half': _reply(long_strings(460, 65535), compressed=True),
    # a 29 MB binary: packet and copy together just fit the client's 60 MB budget
    'binary_filling_the_budget': _reply(bytes([109]) + struct.pack('>I', 29 << 20)
                                        + b'b' * (29 << 20)),
    # 800,000 empty tuples: slow to decode, within the memory budget
    'many_small_tuples': _reply(_small_tuples(800000)),
    'badrpc_deep': _reply(bytes([104, 2, 119, 6]) + b'badrpc' + nested_lists(330)),
    'badrpc_bigint': _reply(bytes([104, 2, 119, 6]) + b'badrpc' + _big(1 << 20000)),
    'error_bigint': _reply(bytes([104, 2, 119, 5]) + b'error' + _big(1 << 20000)),
    'nodes_with_bigint': _reply(bytes([108, 0, 0, 0, 2]) + encoded(etf.Atom('a@b'))
                                + _big(1 << 20000) + b'j'),
    'integer_for_a_list': _reply(bytes([98]) + struct.pack('>i', 42)),
    'control_deep': _deep_control,
    'control_huge': _huge_control,
    'reply_to_another_pid': _to_other_pid(encoded([])),
}
