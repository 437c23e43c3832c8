# -*- coding: utf-8 -*-
# Copyright: (c) 2026, xmpp.ejabberd contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A small synchronous client of the Erlang distribution protocol (stdlib only).

It looks a node up in EPMD (or goes straight to a fixed port), shakes hands as a
hidden node (version 6, the OTP 23+ handshake), proves the cookie in both
directions and runs RPCs through the node's ``rex`` server.  With a TLS context
(:func:`tls_context`) it speaks OTP's TLS distribution (``inet_tls_dist``): TLS
right after the TCP connect, the node's certificate verified against the CA and
its name, a client certificate presented, the handshake framed with 4-byte
lengths inside TLS (EPMD stays plain TCP).  Every blocking
step, decoding included, runs against one deadline; every read is bounded, and
so is the memory one message may take.  Whatever a peer sends, the public calls
raise nothing but :class:`DistError`, whose ``reason`` is one of :data:`REASONS`.

The client presents itself under one of :data:`NAME_SLOTS` names per host
(:func:`own_name`): a node keeps every name that ever connected as an atom,
forever, so the set must stay small.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type  # pylint: disable=invalid-name

import contextlib
import errno
import functools
import hashlib
import hmac
import math
import os
import random
import socket
import struct
import sys
import threading
import time

from ansible_collections.xmpp.ejabberd.plugins.module_utils import etf
from ansible_collections.xmpp.ejabberd.plugins.module_utils.etf import Atom

REASONS = ('unreachable', 'epmd_unreachable', 'not_registered', 'not_allowed',
           'cookie_rejected', 'name_type_mismatch', 'timeout', 'protocol_error',
           'rpc_error', 'bad_parameter', 'tls_failed')

EPMD_DEFAULT_PORT = 4369

# Distribution flags (erts/emulator/beam/dist.h).
DFLAG_EXTENDED_REFERENCES = 0x4
DFLAG_FUN_TAGS = 0x10
DFLAG_NEW_FUN_TAGS = 0x80
DFLAG_EXTENDED_PIDS_PORTS = 0x100
DFLAG_EXPORT_PTR_TAG = 0x200
DFLAG_BIT_BINARIES = 0x400
DFLAG_NEW_FLOATS = 0x800
DFLAG_SMALL_ATOM_TAGS = 0x4000
DFLAG_UTF8_ATOMS = 0x10000
DFLAG_MAP_TAG = 0x20000
DFLAG_BIG_CREATION = 0x40000
DFLAG_HANDSHAKE_23 = 0x1000000
DFLAG_UNLINK_ID = 0x2000000
DFLAG_V4_NC = 1 << 34

# What OTP 25 makes mandatory, plus what OTP 26+ adds (UNLINK_ID, V4_NC).  No
# PUBLISHED (we are hidden), no atom cache and no fragments, so every message
# arrives as a plain pass-through packet.
CLIENT_FLAGS = (DFLAG_EXTENDED_REFERENCES | DFLAG_FUN_TAGS | DFLAG_NEW_FUN_TAGS
                | DFLAG_EXTENDED_PIDS_PORTS | DFLAG_EXPORT_PTR_TAG | DFLAG_BIT_BINARIES
                | DFLAG_NEW_FLOATS | DFLAG_SMALL_ATOM_TAGS | DFLAG_UTF8_ATOMS
                | DFLAG_MAP_TAG | DFLAG_BIG_CREATION | DFLAG_HANDSHAKE_23
                | DFLAG_UNLINK_ID | DFLAG_V4_NC)

PASS_THROUGH = 112
# Control message operations that deliver a message to a pid (SEND, SEND_TT,
# SEND_SENDER, SEND_SENDER_TT) and where the destination pid sits in each.
_SEND_OPS = {2: 2, 12: 2, 22: 2, 23: 2}
REG_SEND = 6

DEFAULT_TIMEOUT = 5.0
MAX_TIMEOUT = 86400.0
DEFAULT_MAX_PACKET = 64 * 1024 * 1024
# Memory one received message may take: its packet, and what it decodes to.
# 60 MB, so that with the interpreter's own overheads (allocator, frames) the
# process grows by at most 64 MB (measured in tests/integration/test_hostile_peers.py).
MAX_MESSAGE_BYTES = 60 * 1024 * 1024
# Of which the control message (an operation, pids, maybe a trace token) may take:
_CONTROL_BYTES = 1024 * 1024

# The client's own names: NAME_PREFIX + slot + '@' + host, slot < NAME_SLOTS.
# The leading '-' makes them sort before any usual node name: when two of our
# handshakes use one name at the same moment, the node then refuses the later
# one (status nok) instead of killing the earlier one (it does that when the
# incoming name sorts after its own, as in a simultaneous connect).
NAME_PREFIX = '-xmpp_ejabberd_'
NAME_SLOTS = 16
# Pause between two rounds over the names when every one was in use.
_BUSY_PAUSE = (0.02, 0.2)
_PEER_TEXT = 80  # characters of a peer's text quoted in a message
_JOIN_AT_MOST = 64 * 1024  # reads up to this size are joined from chunks
_HANDSHAKE_MAX = 0xFFFF    # no handshake message is longer (4-byte lengths inside TLS)

_RANDOM = random.SystemRandom()


class DistError(Exception):
    """The one error of this client: ``reason`` (see :data:`REASONS`) and a sentence;
    ``cause`` (see ``erldist_tls.TLS_CAUSES``) for ``tls_failed``."""

    def __init__(self, reason, message, cause=None):
        super(DistError, self).__init__(message)
        self.reason = reason
        self.message = message
        self.cause = cause

    def __str__(self):
        return self.message


def split_node(node):
    """``'name@host'`` -> ``('name', 'host')``; ``ValueError`` if it is not one."""
    name, sep, host = str(node).partition('@')
    if not sep or not name or not host or '@' in host:
        raise ValueError("node name %r must look like name@host" % (node,))
    return name, host


def is_long_name(node):
    """A host part with a dot (a FQDN or an IP address) means -name, else -sname."""
    host = split_node(node)[1]
    return '.' in host or ':' in host


def cookie_digest(cookie, challenge):
    """MD5 of the cookie followed by the decimal challenge, as dist_util does."""
    return hashlib.md5(cookie.encode('latin-1') + str(challenge).encode('ascii')).digest()


def peer_text(raw, limit=_PEER_TEXT):
    """Bytes or text a peer sent, quoted safely and briefly for a message."""
    if isinstance(raw, (bytes, bytearray, memoryview)):
        raw = bytes(raw[:limit + 1]).decode('utf-8', 'replace')
    text = str(raw)
    shown = repr(text[:limit])
    return shown + '...' if len(text) > limit else shown


# --------------------------------------------------------------------------- the boundary

def _unexpected(exc, where):
    """A DistError for an exception the client did not foresee (a bug, or a peer
    sending something nobody thought of): never a traceback for the caller."""
    try:
        detail = peer_text(str(exc), 200)
    except Exception:  # pylint: disable=broad-except
        detail = '(no text)'
    return DistError('protocol_error', 'unexpected %s while %s: %s; the peer sent something '
                     'this client cannot handle (please report it)'
                     % (type(exc).__name__, where, detail))


@contextlib.contextmanager
def only_dist_errors(where):
    """A boundary for code that works on what a node sent (the modules use it
    around their queries): any other exception leaving the block becomes a
    DistError, so a module still answers with a reason and a message."""
    try:
        yield
    except DistError:
        raise
    except Exception as exc:  # pylint: disable=broad-except
        raise _unexpected(exc, where)


def _public(where):
    """Decorator for the client's public calls: whatever happens inside, callers get
    a DistError or the result (defense in depth behind the checks at each step)."""
    def wrap(func):
        @functools.wraps(func)
        def call(*args, **kwargs):
            try:
                return func(*args, **kwargs)
            except DistError:
                raise
            except Exception as exc:  # pylint: disable=broad-except
                raise _unexpected(exc, where)
        return call
    return wrap


# --------------------------------------------------------------------------- parameters

def _bad(message):
    return DistError('bad_parameter', message)


def _shown(value):
    """A caller's argument in a message: briefly, whatever it is."""
    return etf.format_term(value, 40)


def check_timeout(timeout, option='timeout'):
    """A number of seconds: finite, above 0, at most MAX_TIMEOUT."""
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) \
            or not (math.isfinite(timeout) and 0 < timeout <= MAX_TIMEOUT):
        raise _bad('%s: %s is not a number of seconds above 0 and at most %d'
                   % (option, _shown(timeout), MAX_TIMEOUT))
    return float(timeout)


def _check_port(port, option):
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise _bad('%s: %s is not a TCP port (1-65535)' % (option, _shown(port)))
    return port


def _check_host(host, option):
    if not isinstance(host, str) or not host or '\0' in host or len(host) > 253:
        raise _bad('%s: %s is not a host name or IP address' % (option, _shown(host)))
    return host


def _check_node(node):
    if not isinstance(node, str):
        raise _bad('node: %s is not a node name (a string name@host)' % type(node).__name__)
    try:
        name, host = split_node(node)
    except ValueError:
        raise _bad('node: %s is not a node name; it must look like name@host'
                   % peer_text(node))
    if len(node) > 255 or '\0' in node or not _encodes(node):
        raise _bad('node: %s is not a node name (at most 255 characters of UTF-8, no NUL)'
                   % peer_text(node))
    return name, host


def _encodes(text):
    try:
        text.encode('utf-8')
        return True
    except UnicodeError:
        return False


def _check_cookie(cookie):
    """The cookie's type and characters; never quoted in the message."""
    if not isinstance(cookie, str) or not cookie:
        raise _bad('cookie: the cookie must be a non-empty string, not %s'
                   % ('an empty one' if cookie == '' else type(cookie).__name__))
    try:
        cookie.encode('latin-1')
    except UnicodeEncodeError:
        raise _bad('cookie: the cookie has characters outside Latin-1, which an Erlang '
                   'cookie cannot hold')
    return cookie


# --------------------------------------------------------------------------- sockets

class _Deadline(object):
    """One budget for a whole operation; every socket call gets what is left."""

    def __init__(self, seconds, what):
        self.end = time.monotonic() + seconds
        self.seconds = seconds
        self.what = what

    def left(self):
        remaining = self.end - time.monotonic()
        if remaining <= 0:
            raise DistError('timeout', '%s took longer than %.1f s; the peer accepted the '
                            'connection but stopped answering (an overloaded or hung node, '
                            'or something that is not an Erlang node on that port): '
                            'check the node, or raise timeout' % (self.what, self.seconds))
        return remaining


def _is_ip(address):
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            socket.inet_pton(family, address)
            return True
        except (OSError, ValueError):
            pass
    return False


def _resolve(address, port, deadline, what):
    """getaddrinfo, but bounded by the deadline (a resolver can hang for long)."""
    if _is_ip(address):  # no resolver involved: no thread needed
        return socket.getaddrinfo(address, port, 0, socket.SOCK_STREAM)
    answer = {}

    def lookup():
        try:
            answer['infos'] = socket.getaddrinfo(address, port, 0, socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError) as exc:
            answer['error'] = exc

    worker = threading.Thread(target=lookup, name='erldist-resolve')
    worker.daemon = True
    worker.start()
    worker.join(deadline.left())
    if worker.is_alive():
        raise DistError('timeout', 'resolving host %r for %s took longer than %.1f s: check DNS, '
                        'or set address to an IP address' % (address, what, deadline.seconds))
    if 'error' in answer:
        raise DistError('unreachable', 'cannot resolve host %r for %s (%s): fix the host part '
                        'of the node name or set address' % (address, what, answer['error']))
    return answer['infos']


# --------------------------------------------------------------------------- TLS

def _tls():
    """The TLS part of the client (erldist_tls.py), imported when TLS is used: a plain
    module run does not compile it (AnsiballZ runs modules from source)."""
    # pylint: disable-next=import-outside-toplevel
    from ansible_collections.xmpp.ejabberd.plugins.module_utils import erldist_tls
    return erldist_tls


def tls_context(certfile=None, keyfile=None, cafile=None):
    """An ``ssl.SSLContext`` for TLS distribution, for :func:`connect`'s ``tls``
    (see :func:`erldist_tls.tls_context`)."""
    return _tls().tls_context(certfile, keyfile, cafile)


def _is_ssl_error(exc):
    ssl = sys.modules.get('ssl')
    return ssl is not None and isinstance(exc, ssl.SSLError)


def peer_certificate(sock):
    """``{'subject', 'not_after', 'days_left', 'version'}`` of the node's certificate on a
    TLS connection (None on plain TCP)."""
    ssl = sys.modules.get('ssl')
    if ssl is None or not isinstance(sock, ssl.SSLSocket):
        return None
    cert = sock.getpeercert() or {}
    not_after = cert.get('notAfter')
    seconds = ssl.cert_time_to_seconds(not_after) if not_after else None
    subject = ', '.join('%s=%s' % pair for rdn in cert.get('subject', ()) for pair in rdn)
    return {'subject': subject, 'not_after': not_after, 'version': sock.version(),
            'days_left': None if seconds is None else int((seconds - time.time()) // 86400)}


def _connect(address, port, deadline, refused_reason, what):
    infos = _resolve(address, port, deadline, what)
    last = None
    for family, socktype, proto, dummy, sockaddr in infos:
        sock = socket.socket(family, socktype, proto)
        try:
            sock.settimeout(deadline.left())
            sock.connect(sockaddr)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return sock
        except socket.timeout:
            sock.close()
            raise DistError('timeout', 'connecting to %s at %s port %d timed out after %.1f s: '
                            'a firewall may drop the packets; check that the port is open '
                            'to this host' % (what, address, port, deadline.seconds))
        except (OSError, DistError) as exc:
            sock.close()
            if isinstance(exc, DistError):
                raise
            last = exc
    if last is not None and last.errno == errno.ECONNREFUSED:
        hint = ('is EPMD running there? In ERL_DIST_PORT mode there is no EPMD: set dist_port'
                if refused_reason == 'epmd_unreachable' else
                'is the node running, and is this its distribution port?')
        raise DistError(refused_reason, 'connection to %s at %s port %d was refused: %s'
                        % (what, address, port, hint))
    raise DistError(refused_reason, 'cannot connect to %s at %s port %d: %s; check the '
                    'address and the network path' % (what, address, port, last))


def _recv_some(sock, deadline, what, read):
    """One ``read()`` of the socket within the deadline: what it returned (bytes, or a
    count), or None when the socket's timeout came first and the deadline has time left."""
    sock.settimeout(deadline.left())
    try:
        got = read()
    except socket.timeout:
        deadline.left()  # raises when the deadline is over
        return None
    except OSError as exc:
        raise _broken(exc, what)
    if not got:
        raise EOFError(what)
    return got


def _recv_exact(sock, count, deadline, what):
    """Exactly ``count`` bytes.  A big read goes into one buffer made up front:
    joining its chunks at the end would take twice its size."""
    if count > _JOIN_AT_MOST:
        return _recv_into(sock, count, deadline, what)
    chunks = []
    while count:
        chunk = _recv_some(sock, deadline, what, lambda: sock.recv(count))
        if chunk is not None:
            chunks.append(chunk)
            count -= len(chunk)
    return chunks[0] if len(chunks) == 1 else b''.join(chunks)


def _recv_into(sock, count, deadline, what):
    buf = bytearray(count)
    view = memoryview(buf)
    got = 0
    while got < count:
        got += _recv_some(sock, deadline, what,
                          lambda: sock.recv_into(view[got:], min(count - got, 1 << 20))) or 0
    return buf


def _send_all(sock, data, deadline, what):
    sock.settimeout(deadline.left())
    try:
        sock.sendall(data)
    except socket.timeout:
        deadline.left()
        raise DistError('timeout', 'sending to %s timed out' % what)
    except OSError as exc:
        raise _broken(exc, what)


def _broken(exc, what):
    """The DistError of a connection that broke: over TLS, the alert says why (with TLS
    1.3 the node refuses our certificate only after the handshake, at our first read)."""
    if _is_ssl_error(exc):
        return _tls().ssl_error(exc, what)
    return DistError('unreachable', 'connection to %s failed: %s' % (what, exc))


# --------------------------------------------------------------------------- EPMD

@_public('asking EPMD for a port')
def epmd_port_please(host, name, epmd_port=EPMD_DEFAULT_PORT, timeout=DEFAULT_TIMEOUT):
    """Ask EPMD at ``host`` for node ``name``'s port (PORT_PLEASE2).

    Returns a dict with ``port``, ``node_type`` ('normal' or 'hidden'),
    ``protocol``, ``highest_version``, ``lowest_version``.
    """
    _check_host(host, 'host')
    _check_port(epmd_port, 'epmd_port')
    if not isinstance(name, str) or not name or len(name.encode('utf-8', 'replace')) > 255:
        raise _bad('name: %s is not the name part of a node name' % _shown(name))
    deadline = _Deadline(check_timeout(timeout), 'the EPMD lookup')
    return _epmd_port_please(host, name, epmd_port, deadline)


def _epmd_port_please(host, name, epmd_port, deadline):
    what = 'EPMD'
    sock = _connect(host, epmd_port, deadline, 'epmd_unreachable', what)
    try:
        raw = name.encode('utf-8')
        _send_all(sock, struct.pack('>HB', len(raw) + 1, 122) + raw, deadline, what)
        try:
            head = _recv_exact(sock, 2, deadline, what)
        except EOFError:
            raise DistError('protocol_error', 'EPMD at %s port %d closed the connection without '
                            'answering; is that port really EPMD?' % (host, epmd_port))
        if head[0] != 119:
            raise DistError('protocol_error', 'EPMD at %s port %d answered with byte %d instead '
                            'of PORT2_RESP: is that port really EPMD?' % (host, epmd_port, head[0]))
        if head[1] != 0:
            names = _names_hint(host, epmd_port, deadline)
            raise DistError('not_registered', 'no node named %r is registered with EPMD on %s%s: '
                            'is the node running, and is the name right?' % (name, host, names))
        try:
            body = _recv_exact(sock, 8, deadline, what)
        except EOFError:
            raise DistError('protocol_error', 'EPMD at %s sent a truncated PORT2_RESP' % host)
        port, node_type, protocol, high, low = struct.unpack('>HBBHH', body)
        if not port:
            raise DistError('protocol_error', 'EPMD at %s gave port 0 for %r' % (host, name))
        return {'port': port, 'node_type': 'hidden' if node_type == 72 else 'normal',
                'protocol': protocol, 'highest_version': high, 'lowest_version': low}
    finally:
        sock.close()


@_public('asking EPMD for its names')
def epmd_names(host, epmd_port=EPMD_DEFAULT_PORT, timeout=DEFAULT_TIMEOUT):
    """The names EPMD at ``host`` knows (NAMES_REQ), as ``{name: port}``."""
    _check_host(host, 'host')
    _check_port(epmd_port, 'epmd_port')
    deadline = _Deadline(check_timeout(timeout), 'the EPMD names request')
    return _epmd_names(host, epmd_port, deadline)


def _epmd_names(host, epmd_port, deadline):
    sock = _connect(host, epmd_port, deadline, 'epmd_unreachable', 'EPMD')
    try:
        _send_all(sock, struct.pack('>HB', 1, 110), deadline, 'EPMD')
        data = b''
        while len(data) < 65536:
            sock.settimeout(deadline.left())
            try:
                chunk = sock.recv(4096)
            except socket.timeout:
                deadline.left()
                continue
            except OSError as exc:
                raise DistError('epmd_unreachable', 'EPMD at %s dropped the NAMES request: %s'
                                % (host, exc))
            if not chunk:
                break
            data += chunk
    finally:
        sock.close()
    if len(data) < 4:
        raise DistError('protocol_error', 'EPMD at %s closed the NAMES request without an answer'
                        % host)
    return parse_epmd_names(data[4:])


def parse_epmd_names(raw):
    """``{name: port}`` from the lines of a NAMES answer (``name N at port P``).

    Strict ASCII: a line that is not exactly that, or a port out of range, is
    skipped (int() would take Unicode digits, and any number of them).
    """
    names = {}
    for line in raw.split(b'\n'):
        parts = line.split(b' ')
        if len(parts) != 5 or parts[0] != b'name' or not parts[1] \
                or parts[2:4] != [b'at', b'port']:
            continue
        port = parts[4].rstrip(b'\r')
        if 1 <= len(port) <= 5 and all(0x30 <= c <= 0x39 for c in port) \
                and 1 <= int(port) <= 65535:
            names[parts[1].decode('utf-8', 'replace')] = int(port)
    return names


def _names_hint(host, epmd_port, deadline):
    try:
        names = sorted(_epmd_names(host, epmd_port, deadline))
    except DistError:
        return ''
    shown = ', '.join(peer_text(n, 40) for n in names[:20])
    if len(names) > 20:
        shown += ' and %d more' % (len(names) - 20)
    return ' (registered there: %s)' % (shown or 'none')


# --------------------------------------------------------------------------- own names

class _Slots(object):
    """The names of this process: where the next round over them starts, and
    which it holds.

    A round starts one slot further each time (from a random first slot, so that
    other processes start elsewhere; never first with the name just closed, which
    the node may still see alive for a moment) and skips the slots this process
    holds on that node (open connections, handshakes under way): its threads
    never collide.
    """

    def __init__(self):
        self.lock = threading.Lock()
        self.held = set()
        self.next = _RANDOM.randrange(NAME_SLOTS)

    def round(self):
        with self.lock:
            first, self.next = self.next, (self.next + 1) % NAME_SLOTS
        return _ALL_SLOTS[first:] + _ALL_SLOTS[:first]

    def claim(self, node, slot):
        with self.lock:
            if (node, slot) in self.held:
                return False
            self.held.add((node, slot))
            return True

    def release(self, node, slot):
        with self.lock:
            self.held.discard((node, slot))


_ALL_SLOTS = list(range(NAME_SLOTS))
_SLOTS = _Slots()


def _new_slots():
    global _SLOTS  # pylint: disable=global-statement
    _SLOTS = _Slots()


if hasattr(os, 'register_at_fork'):
    os.register_at_fork(after_in_child=_new_slots)  # a fork starts elsewhere, holding none


def own_name(target_node, slot, local_address=None):
    """The client's hidden-node name in ``slot``, of the target's kind (long/short).

    The host part is this host's: the short host name, or for long names the
    FQDN, else the address the connection leaves from (``local_address``, or a
    function giving it), so that two hosts do not share names.  No DNS lookup:
    it could eat the timeout.
    """
    hostname = socket.gethostname()
    if not is_long_name(target_node):
        host = hostname.split('.')[0] or 'localhost'
    elif '.' in hostname:
        host = hostname
    else:
        host = local_address() if callable(local_address) else local_address
        if not (host and '.' in host and _is_ip(host)):
            host = '127.0.0.1'
    return '%s%d@%s' % (NAME_PREFIX, slot, host)


# --------------------------------------------------------------------------- the handshake

class _NameBusy(Exception):
    """The node has a connection or a handshake under the name we offered (it said
    alive or nok), or may have (it closed before any status): then ``error`` is
    what to raise if the peer turns out to close whatever the name."""

    def __init__(self, error=None):
        super(_NameBusy, self).__init__('name busy')
        self.error = error


class _Handshake(object):
    """One handshake as the connecting side, in the steps (and with the names) of
    dist_util:handshake_we_started/1; the state they share lives here."""

    def __init__(self, sock, node, cookie, own_node, deadline, header=2):
        self.sock = sock
        self.header = '>H' if header == 2 else '>I'   # inside TLS: 4-byte lengths
        self.node = node
        self.cookie = cookie
        self.own_node = own_node
        self.deadline = deadline
        self.creation = _RANDOM.randint(4, 0xFFFFFFFF)
        self.stage = 'send_name'
        self.peer_flags = None
        self.peer_challenge = None
        self.own_challenge = _RANDOM.getrandbits(32)

    def run(self):
        """All steps in order; returns self, or raises DistError or _NameBusy."""
        for step in (self.send_name, self.recv_status, self.recv_challenge,
                     self.send_challenge_reply, self.recv_challenge_ack):
            self.stage = step.__name__
            step()
        return self

    # -- framing (2-byte lengths during the handshake; 4-byte ones inside TLS)
    def _send(self, payload):
        _send_all(self.sock, struct.pack(self.header, len(payload)) + payload, self.deadline,
                  self.node)

    def _recv(self):
        try:
            size = struct.calcsize(self.header)
            length = struct.unpack(self.header, _recv_exact(self.sock, size, self.deadline,
                                                            self.node))[0]
            if length > _HANDSHAKE_MAX:
                raise DistError('protocol_error', '%s sent a handshake message of %d bytes'
                                % (self.node, length))
            if length == 0:
                raise DistError('protocol_error', '%s sent an empty handshake message' % self.node)
            return _recv_exact(self.sock, length, self.deadline, self.node)
        except EOFError:
            if self.stage == 'recv_status':
                raise _NameBusy(self._closed())
            raise self._closed()

    def _closed(self):
        if self.stage == 'recv_challenge_ack':
            return DistError('cookie_rejected', 'node %s closed the connection after our '
                             'challenge reply: it did not accept our cookie. Use the cookie of '
                             'the cluster (cookie, cookie_file or cookie_user)' % self.node)
        return DistError('protocol_error', 'node %s closed the connection during the handshake '
                         '(at %s); the port may belong to something else, or the node refused '
                         'us (see its log)%s' % (self.node, self.stage, '' if self.header != '>H' else
                                                 '; a node of TLS distribution (inet_tls) closes '
                                                 'on a client without TLS too: then set tls'))

    # -- the steps
    def send_name(self):
        own = self.own_node.encode('utf-8')
        self._send(struct.pack('>BQIH', ord('N'), CLIENT_FLAGS, self.creation, len(own)) + own)

    def recv_status(self):
        message = self._recv()
        if message[:1] != b's':
            raise DistError('protocol_error', '%s did not answer like an Erlang node (got %s); '
                            'is this the distribution port?' % (self.node, peer_text(message[:16])))
        status = message[1:]
        if status in (b'ok', b'ok_simultaneous'):
            return
        if status == b'alive':
            # Another connection uses this name.  'false' withdraws ours and leaves
            # it alone ('true' would kill it: it may be another process's).
            self._send(b'sfalse')
            raise _NameBusy()
        if status == b'nok':  # another handshake under this name is under way
            raise _NameBusy()
        if status == b'not_allowed':
            raise DistError('not_allowed', 'node %s answered not_allowed: it refuses this client '
                            '(net_kernel allow list, or a distribution flag it requires that we '
                            'do not offer; see the node log)' % self.node)
        raise DistError('protocol_error', 'node %s answered the status %s, which this client '
                        'does not know or ask for' % (self.node, peer_text(status)))

    def recv_challenge(self):
        message = self._recv()
        if message[:1] != b'N' or len(message) < 19:
            raise DistError('protocol_error', '%s sent no version 6 challenge; nodes older than '
                            'OTP 23 are not supported' % self.node)
        self.peer_flags, self.peer_challenge, dummy, name_len = struct.unpack(
            '>QIIH', message[1:19])
        peer_name = message[19:19 + name_len].decode('utf-8', 'replace')
        if peer_name != self.node:
            raise _wrong_peer(self.node, peer_name)

    def send_challenge_reply(self):
        self._send(struct.pack('>BI', ord('r'), self.own_challenge)
                   + cookie_digest(self.cookie, self.peer_challenge))

    def recv_challenge_ack(self):
        ack = self._recv()
        if len(ack) != 17 or ack[:1] != b'a':
            raise DistError('protocol_error', '%s sent a malformed challenge ack' % self.node)
        if not hmac.compare_digest(ack[1:], cookie_digest(self.cookie, self.own_challenge)):
            raise DistError('cookie_rejected', 'node %s could not prove it knows our cookie: it '
                            'runs with a different cookie (or is not the node it claims to be)'
                            % self.node)


def _wrong_peer(node, peer_name):
    try:
        mismatch = is_long_name(peer_name) != is_long_name(node)
    except ValueError:
        mismatch = False
    if mismatch:
        kind = 'long (-name)' if is_long_name(peer_name) else 'short (-sname)'
        return DistError('name_type_mismatch', 'asked for %s, but the node there is %s and uses '
                         '%s names: a cluster cannot mix long and short names; use the node\'s '
                         'real name' % (node, peer_text(peer_name), kind))
    return DistError('not_registered', 'asked for %s, but the node answering there is %s: fix '
                     'the node name, address or port' % (node, peer_text(peer_name)))


def _shake_hands(address, port, node, cookie, deadline, tls=None):
    """A handshake under the first free name; rounds over all of them, with a short
    pause in between, while time is left (a busy name is usually freed within
    milliseconds: our connections are short).  With TLS (an SSLContext), TLS first.
    Returns the socket, the finished handshake and the function that frees its name
    in this process."""
    answered = False   # the node has answered a status (so it is a node)
    silent_closes = 0  # closes before any status while it had not
    rounds = 0
    while True:
        try:
            slots = _SLOTS
            for slot in slots.round():
                if not slots.claim(node, slot):
                    continue  # ours already: a connection or a handshake of this process
                try:
                    sock = _connect(address, port, deadline, 'unreachable', 'node %s' % node)
                except BaseException:
                    slots.release(node, slot)
                    raise
                try:
                    if tls is not None:
                        sock = _tls().start_tls(sock, tls, split_node(node)[1], deadline, 'node %s' % node)
                    own_node = own_name(node, slot, lambda: sock.getsockname()[0])
                    shake = _Handshake(sock, node, cookie, own_node, deadline,
                                       header=2 if tls is None else 4).run()
                    return sock, shake, functools.partial(slots.release, node, slot)
                except _NameBusy as busy:
                    slots.release(node, slot)
                    sock.close()
                    # A node closes before the status when a handshake comes under a
                    # name while it asks another one 'alive' about it: busy, too.
                    # Something that only ever closes is no node (or refuses us).
                    if busy.error is None:
                        answered = True
                    elif not answered:
                        silent_closes += 1
                        if silent_closes >= 3:
                            raise busy.error
                except BaseException:
                    slots.release(node, slot)
                    sock.close()
                    raise
        except DistError as exc:
            if rounds and exc.reason == 'timeout':
                raise _all_names_busy(node)  # what kept us waiting
            raise
        rounds += 1
        pause = _RANDOM.uniform(*_BUSY_PAUSE)
        if deadline.end - time.monotonic() <= pause:
            raise _all_names_busy(node)
        time.sleep(pause)


def _all_names_busy(node):
    return DistError('protocol_error', 'node %s already has connections under every one of our '
                     '%d names (%s0..%d@...): as many connections from this host at once, or '
                     'old ones the node has not dropped yet; retry, or run fewer at once'
                     % (node, NAME_SLOTS, NAME_PREFIX, NAME_SLOTS - 1))


# --------------------------------------------------------------------------- connection

class Connection(object):
    """One distribution connection to a node, as a hidden node.

    Use :func:`connect` to make one.  Supports ``with``.  ``timeout`` is the
    default of every call on it.
    """

    def __init__(self, sock, node, own_node, creation, peer_flags, address, port, via_epmd,
                 timeout=DEFAULT_TIMEOUT, max_packet=DEFAULT_MAX_PACKET, release=None):
        # pylint: disable=too-many-arguments,too-many-positional-arguments
        self.sock = sock
        # The node's certificate, over TLS distribution (None on plain TCP).
        self.tls = peer_certificate(sock)
        self._release = release  # frees our name for this process's next connections
        self.node = node
        self.own_node = own_node
        self.creation = creation
        self.peer_flags = peer_flags
        self.address = address
        self.port = port
        self.via_epmd = via_epmd
        self.timeout = timeout
        self.max_packet = max_packet
        self.pid = etf.Pid(own_node, 1, 0, creation)
        self._ref_counter = _RANDOM.getrandbits(32)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        if self.sock is not None:
            try:
                self.sock.close()
            except OSError:
                pass
            finally:
                self.sock = None
                if self._release is not None:
                    self._release()

    def __del__(self):
        self.close()  # collected unclosed: the socket goes, and the name is free again

    def _deadline(self, timeout, what):
        return _Deadline(self.timeout if timeout is None else check_timeout(timeout), what)

    def _new_ref(self):
        self._ref_counter = (self._ref_counter + 1) & 0xFFFFFFFF
        return etf.Reference(self.own_node, self.creation,
                             [self._ref_counter, _RANDOM.getrandbits(32), _RANDOM.getrandbits(32)])

    def _send_packet(self, payload, deadline):
        if self.sock is None:
            raise DistError('unreachable', 'the connection to %s is closed' % self.node)
        _send_all(self.sock, struct.pack('>I', len(payload)) + payload, deadline, self.node)

    def _recv_packet(self, deadline):
        """The next non-tick packet; ticks are answered on the way."""
        if self.sock is None:
            raise DistError('unreachable', 'the connection to %s is closed' % self.node)
        while True:
            try:
                length = struct.unpack('>I', _recv_exact(self.sock, 4, deadline, self.node))[0]
                if length == 0:
                    self._send_packet(b'', deadline)
                    continue
                if length > min(self.max_packet, MAX_MESSAGE_BYTES):
                    self.close()  # the stream is out of step now
                    raise DistError('protocol_error', '%s sent a %d-byte packet, more than the '
                                    '%d allowed' % (self.node, length,
                                                    min(self.max_packet, MAX_MESSAGE_BYTES)))
                return _recv_exact(self.sock, length, deadline, self.node)
            except EOFError:
                self.close()
                raise DistError('unreachable', 'node %s closed the connection (it stopped, or '
                                'dropped us)' % self.node)

    @_public('sending a message')
    def send_reg(self, name, message, timeout=None):
        """Send ``message`` to the process registered as ``name`` on the node."""
        self._send_reg(name, message, self._deadline(timeout, 'sending to %s on %s'
                                                     % (name, self.node)))

    def _send_reg(self, name, message, deadline):
        try:
            payload = (bytes([PASS_THROUGH]) + etf.term_to_binary((REG_SEND, self.pid, Atom(''),
                                                                   Atom(name)))
                       + etf.term_to_binary(message))
        except etf.TermError as exc:
            raise _bad('cannot send that to %s: %s' % (self.node, exc))
        self._send_packet(payload, deadline)

    @_public('waiting for a message')
    def receive(self, timeout=None, match=None):
        """The next message sent to our pid for which ``match(msg)`` is true.

        Only one message is held at a time: one that is not the awaited one is
        dropped before the next is read.
        """
        return self._receive(self._deadline(timeout, 'waiting for an answer from %s'
                                            % self.node), match)

    def _receive(self, deadline, match):
        while True:
            message = self._next_message(deadline)
            if message is not _NOT_OURS and (match is None or match(message)):
                return message
            message = None  # free it before the next one is decoded

    def _next_message(self, deadline):
        """The message of the next packet if it is sent to our pid, else _NOT_OURS.
        The packet and the message together take at most MAX_MESSAGE_BYTES."""
        packet = memoryview(self._recv_packet(deadline))
        if packet[0] != PASS_THROUGH:
            self.close()
            raise DistError('protocol_error', '%s sent a packet of type %d; only pass-through '
                            'packets were negotiated' % (self.node, packet[0]))
        budget = MAX_MESSAGE_BYTES - len(packet) - _CONTROL_BYTES
        try:
            control, end = etf.decode_term(packet, 1, max_bytes=_CONTROL_BYTES,
                                           deadline=deadline.end)
            op = control[0] if isinstance(control, tuple) and control else None
            if isinstance(op, bool) or not isinstance(op, int):
                raise etf.TermError('control message %s has no operation code'
                                    % etf.format_term(control, 80))
            if op not in _SEND_OPS:
                return _NOT_OURS  # a signal (link, monitor...), not a message
            to = control[_SEND_OPS[op]] if len(control) > _SEND_OPS[op] else None
            if not isinstance(to, etf.Pid):
                raise etf.TermError('control message %s names no destination pid'
                                    % etf.format_term(control, 80))
            if to != self.pid:
                return _NOT_OURS  # for another process (a stray reply): not even decoded
            return etf.binary_to_term(packet[end:], max_bytes=budget, deadline=deadline.end)
        except etf.TermTimeout:
            self.close()  # the rest of this packet is lost: the stream is out of step
            raise DistError('timeout', 'decoding what %s sent took longer than the %.1f s '
                            'allowed for %s: a huge or pathological term'
                            % (self.node, deadline.seconds, deadline.what))
        except etf.TermError as exc:
            self.close()
            raise DistError('protocol_error', '%s sent a malformed term: %s' % (self.node, exc))

    @_public('running an RPC')
    def rpc(self, module, function, args=(), timeout=None, secret=False):
        """``rpc:call(Node, module, function, args)`` through ``rex``, within
        ``timeout`` (default: the connection's) for sending and answer together.

        Returns the result; a remote exception or a ``badrpc`` raises
        :class:`DistError` with reason ``rpc_error``.  ``secret=True``: the
        arguments carry a secret, so no error message renders anything the
        node sent back (it may echo them).
        """
        if not isinstance(module, str) or not isinstance(function, str) \
                or not isinstance(args, (list, tuple)):
            raise _bad('rpc: module and function must be strings and args a list')
        what = '%s:%s/%d' % (module, function, len(args))
        try:
            reply = self._rpc(module, function, args,
                              self._deadline(timeout, 'the call %s on %s' % (what, self.node)))
        except Exception as exc:  # pylint: disable=broad-except
            if not secret:
                raise
            reason = exc.reason if isinstance(exc, DistError) else 'protocol_error'
            raise DistError(reason, '%s on %s failed (%s); the details are not shown, as the '
                            'call carries a secret' % (what, self.node, reason))
        if isinstance(reply, tuple) and len(reply) == 2 and reply[0] == Atom('badrpc'):
            detail = ('the answer is not shown, as the call carries a secret' if secret
                      else etf.format_term(reply[1]))
            raise DistError('rpc_error', '%s failed on %s: %s' % (what, self.node, detail))
        return reply

    def _rpc(self, module, function, args, deadline):
        ref = self._new_ref()
        self._send_reg('rex', (Atom('$gen_call'), (self.pid, ref),
                               (Atom('call'), Atom(module), Atom(function), list(args),
                                Atom('user'))), deadline)
        return self._receive(deadline, lambda m: isinstance(m, tuple) and len(m) == 2
                             and m[0] == ref)[1]


_NOT_OURS = object()


@_public('connecting')
def connect(node, cookie, address=None, dist_port=None, epmd_port=EPMD_DEFAULT_PORT,
            timeout=DEFAULT_TIMEOUT, max_packet=DEFAULT_MAX_PACKET, tls=None):
    """Connect and shake hands with ``node``; returns a :class:`Connection`.

    ``address`` is the TCP address to use (default: the node's host part);
    ``dist_port`` skips EPMD (ERL_DIST_PORT mode).  ``timeout`` bounds the whole
    connect, and is the connection's default for later calls.  ``tls`` (from
    :func:`tls_context`) speaks TLS distribution.  Bad arguments raise DistError
    ``bad_parameter`` (the cookie is never quoted).
    """
    name, host = _check_node(node)
    _check_cookie(cookie)
    timeout = check_timeout(timeout)
    address = _check_host(address, 'address') if address else host
    _check_port(epmd_port, 'epmd_port')
    if dist_port is not None:
        _check_port(dist_port, 'dist_port')
    if isinstance(max_packet, bool) or not isinstance(max_packet, int) or max_packet < 1:
        raise _bad('max_packet: %s is not a number of bytes' % _shown(max_packet))

    deadline = _Deadline(timeout, 'connecting to %s' % node)
    via_epmd = dist_port is None
    if via_epmd:
        lookup = _Deadline(deadline.left(), 'the EPMD lookup for %s' % node)
        dist_port = _epmd_port_please(address, name, epmd_port, lookup)['port']
    if tls is not None and not isinstance(tls, getattr(sys.modules.get('ssl'), 'SSLContext', ())):
        raise _bad('tls: %s is not a TLS context (erldist.tls_context)' % _shown(tls))
    sock, shake, release = _shake_hands(address, dist_port, node, cookie, deadline, tls)
    return Connection(sock, node, shake.own_node, shake.creation, shake.peer_flags,
                      address=address, port=dist_port, via_epmd=via_epmd, timeout=timeout,
                      max_packet=max_packet, release=release)
