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
    """A stoppable threaded TCP server on 127.0.0.1, port 0."""

    def __init__(self, handler, backlog=16):
        self.handler = handler
        self.accepted = 0
        self.received = []
        self.errors = []
        self.info = {}  # free-form facts a handler records (client name, flags, ...)
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._socks = []
        self._threads = []
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(('127.0.0.1', 0))
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
        try:
            self.sock.sendall(data)
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

    ``status``: the status string sent after the client's name.
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
        server.info.update(client_flags=flags, client_creation=creation,
                           client_name=hello[15:15 + name_len].decode('utf-8'))
        link.send_hs(b's' + self.status.encode('latin-1'))
        if self.status not in ('ok', 'ok_simultaneous'):
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
