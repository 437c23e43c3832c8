# Copyright: xmpp.ejabberd contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The bundled distribution client (plugins/module_utils/erldist.py) for real.

First half: real Erlang nodes started by tests/helpers/erlnode.py, in epmd mode
(short names, private epmd) and in fixed-port mode (long names, no epmd); what
the client gets is compared with what the node itself reports through erl_call.
Every failure reason that a real node (or a real absence of one) can produce is
provoked for real.

Second half: fake PEERS (tests/helpers/fakepeer.py) for what a healthy node never
does: stalling, trickling, garbage at every stage, lies in the handshake, huge
lengths, malformed terms.  The client must end with the right DistError reason,
within its timeout, and never with another exception.
"""

from __future__ import annotations

import json
import os
import signal
import struct
import threading
import time
import tracemalloc

import pytest

from ansible_collections.xmpp.ejabberd.plugins.module_utils import erldist, etf
from ansible_collections.xmpp.ejabberd.plugins.module_utils.etf import Atom
from ansible_collections.xmpp.ejabberd.tests.helpers import fakepeer as fp
from ansible_collections.xmpp.ejabberd.tests.helpers.common import wait_until
from ansible_collections.xmpp.ejabberd.tests.helpers.erlnode import epmd_names, free_port

# Slack allowed past a timeout (thread scheduling on a shared 2-core machine).
SLACK = 1.0


# --------------------------------------------------------------------------- helpers

def node_list(node, expr):
    """A list of node names as the node itself prints them (expr yields atoms)."""
    return json.loads(node.eval('[atom_to_list(N) || N <- %s]' % expr))


def node_release(node):
    return json.loads(node.eval('erlang:system_info(otp_release)'))


def connect(node, cookie=None, **kwargs):
    """Connect to an ErlNode the way its mode requires."""
    kwargs.setdefault('timeout', 5.0)
    if node.fixed_port:
        kwargs.setdefault('dist_port', node.port)
        kwargs.setdefault('address', node.address)
    else:
        kwargs.setdefault('epmd_port', node.epmd_port)
    return erldist.connect(node.node, node.cookie if cookie is None else cookie, **kwargs)


def bounded(func, limit):
    """Run ``func`` in a thread; fail (instead of hanging the suite) after ``limit`` s.

    Returns ``(result, exception, elapsed)``.
    """
    box = {}

    def run():
        started = time.monotonic()
        try:
            box['result'] = func()
        except BaseException as exc:  # pylint: disable=broad-exception-caught
            box['exc'] = exc
        box['elapsed'] = time.monotonic() - started

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(limit)
    if thread.is_alive():
        pytest.fail('the client hung: no result after %.1f s' % limit)
    return box.get('result'), box.get('exc'), box['elapsed']


def expect_reason(reason, func, limit=10.0):
    """``func`` must raise DistError(reason) -- no other exception, no hang."""
    _result, exc, elapsed = bounded(func, limit)
    assert exc is not None, 'expected DistError(%s), but the call succeeded' % reason
    assert isinstance(exc, erldist.DistError), 'expected DistError(%s), got %r' % (reason, exc)
    assert exc.reason == reason, 'expected reason %s, got %s: %s' % (reason, exc.reason, exc)
    assert exc.reason in erldist.REASONS
    assert str(exc), 'the error has no message'
    return exc, elapsed


@pytest.fixture(params=['epmd_node', 'fixed_port_node'])
def any_node(request):
    """Each test runs against a short-name epmd node and a long-name fixed-port node."""
    return request.getfixturevalue(request.param)


# --------------------------------------------------------------------------- real nodes: facts

def test_epmd_mode_facts_match_the_node(epmd_node):
    assert not epmd_node.longnames and epmd_node.epmd_port not in (None, 4369)
    with connect(epmd_node) as conn:
        assert conn.via_epmd is True
        assert conn.port == epmd_names(epmd_node.epmd_port)[epmd_node.name] == epmd_node.port
        release = conn.rpc('erlang', 'system_info', [Atom('otp_release')])
        assert etf.as_text(release) == node_release(epmd_node)
        assert conn.rpc('erlang', 'node', []) == Atom(epmd_node.node)
        assert [str(n) for n in conn.rpc('erlang', 'nodes', [])] == node_list(epmd_node, 'nodes()')
        # a short-name node gets a short-name client
        assert '.' not in conn.own_node.split('@')[1]


def test_fixed_port_mode_never_asks_epmd(fixed_port_node):
    assert fixed_port_node.longnames and fixed_port_node.epmd_port is None
    with fp.FakeServer(fp.record_only) as would_be_epmd:
        with connect(fixed_port_node, epmd_port=would_be_epmd.port) as conn:
            assert conn.via_epmd is False
            assert conn.port == fixed_port_node.port
            release = conn.rpc('erlang', 'system_info', [Atom('otp_release')])
            assert etf.as_text(release) == node_release(fixed_port_node)
            assert conn.rpc('erlang', 'node', []) == Atom(fixed_port_node.node)
            assert [str(n) for n in conn.rpc('erlang', 'nodes', [])] == node_list(fixed_port_node, 'nodes()')
            # a long-name node gets a long-name client
            assert '.' in conn.own_node.split('@')[1]
        assert would_be_epmd.accepted == 0


def test_nodes_lists_the_visible_peers_as_the_node_does(epmd_node, erl_node_factory):
    peer = erl_node_factory('vispeer', cookie=epmd_node.cookie, epmd_port=epmd_node.epmd_port)
    assert epmd_node.connect(peer)
    with connect(epmd_node) as conn:
        seen = sorted(str(n) for n in conn.rpc('erlang', 'nodes', []))
        assert seen == sorted(node_list(epmd_node, 'nodes()')) == [peer.node]
        # the client is hidden: not a visible member of anyone's cluster
        assert conn.own_node not in node_list(peer, 'nodes(connected)')
        assert conn.own_node in node_list(epmd_node, 'nodes(hidden)')


def test_client_is_a_hidden_node_while_connected(any_node):
    conn = connect(any_node)
    try:
        assert conn.own_node in node_list(any_node, 'nodes(hidden)')
        assert conn.own_node not in node_list(any_node, 'nodes()')
        # the node's view of us agrees: we are a hidden node of the node's name kind
        assert conn.rpc('erlang', 'nodes', [Atom('hidden')]).count(Atom(conn.own_node)) == 1
    finally:
        conn.close()
    assert wait_until(lambda: conn.own_node not in node_list(any_node, 'nodes(hidden)')), \
        'the node still lists the client after close()'


# --------------------------------------------------------------------------- real nodes: ticks

def test_ticks_are_answered_while_waiting(erl_node_factory):
    ticktime = 2
    node = erl_node_factory('ticker', extra_args=['-kernel', 'net_ticktime', str(ticktime)])
    assert node.eval('net_kernel:get_net_ticktime()') == str(ticktime)
    busy = connect(node)     # waits for a long RPC (timer:sleep)
    idle = connect(node)     # waits in receive() while nothing at all arrives
    silent = connect(node)   # control: never reads, so never answers a tick
    try:
        quiet = 2.5 * ticktime  # the node drops a silent peer after 1 to 1.25 x ticktime
        assert {busy.own_node, idle.own_node, silent.own_node} <= set(node_list(node, 'nodes(hidden)'))
        results = {}

        def run_busy():
            results['busy'] = busy.rpc('timer', 'sleep', [int(quiet * 1000)], timeout=quiet + 4)

        def run_idle():
            try:
                idle.receive(timeout=quiet, match=lambda message: False)
            except erldist.DistError as exc:
                results['idle'] = exc.reason

        threads = [threading.Thread(target=run_busy), threading.Thread(target=run_idle)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(quiet + 6)
        assert results == {'busy': Atom('ok'), 'idle': 'timeout'}
        # The node itself: the two that answered ticks are still there, the silent one was dropped.
        hidden = node_list(node, 'nodes(hidden)')
        assert busy.own_node in hidden and idle.own_node in hidden
        assert silent.own_node not in hidden
        assert idle.rpc('erlang', 'node', []) == Atom(node.node)
        assert busy.rpc('erlang', 'node', []) == Atom(node.node)
        expect_reason('unreachable', lambda: silent.rpc('erlang', 'node', [], timeout=2))
    finally:
        for conn in (busy, idle, silent):
            conn.close()


# --------------------------------------------------------------------------- real nodes: big answers, RPC errors

def test_five_megabyte_binary(epmd_node):
    with connect(epmd_node) as conn:
        data = conn.rpc('binary', 'copy', [b'0123456789', 500000], timeout=20)
        assert isinstance(data, bytes) and len(data) == 5000000
        assert data == b'0123456789' * 500000
        assert conn.rpc('erlang', 'md5', [data], timeout=20) == \
            conn.rpc('erlang', 'md5', [b'0123456789' * 500000], timeout=20)


def test_long_list_and_a_node_compressed_term(epmd_node):
    with connect(epmd_node) as conn:
        assert conn.rpc('lists', 'seq', [1, 100000], timeout=20) == list(range(1, 100001))
        # our encoding of a long list, compressed by the node and decoded here
        packed = conn.rpc('erlang', 'term_to_binary',
                          [list(range(1, 100001)), [(Atom('compressed'), 9)]], timeout=20)
        assert packed[:2] == bytes([131, etf.COMPRESSED])
        assert struct.unpack('>I', packed[2:6])[0] > 2 * len(packed)  # really compressed
        assert etf.binary_to_term(packed) == list(range(1, 100001))


def test_a_packet_over_max_packet_is_refused(epmd_node):
    with connect(epmd_node, max_packet=1 << 20) as conn:
        exc, _elapsed = expect_reason(
            'protocol_error', lambda: conn.rpc('binary', 'copy', [b'x', 2 << 20], timeout=10))
        assert str(1 << 20) in str(exc)


def test_remote_exception_is_rpc_error(any_node):
    with connect(any_node) as conn:
        exc, _elapsed = expect_reason('rpc_error', lambda: conn.rpc('erlang', 'error', [Atom('boom_xyz')]))
        assert 'boom_xyz' in str(exc) and 'erlang:error/1' in str(exc)
        exc, _elapsed = expect_reason('rpc_error', lambda: conn.rpc('no_such_module_xyz', 'f', []))
        assert 'undef' in str(exc)
        # the connection survives a failed call
        assert conn.rpc('erlang', 'node', []) == Atom(any_node.node)


# --------------------------------------------------------------------------- real nodes: every reason

def test_wrong_cookie_is_cookie_rejected(any_node):
    before = set(node_list(any_node, 'nodes(hidden)'))
    exc, _elapsed = expect_reason('cookie_rejected', lambda: connect(any_node, cookie='not-the-cookie'))
    assert 'cookie' in str(exc)
    # the node did not let us in
    assert not [n for n in set(node_list(any_node, 'nodes(hidden)')) - before if n.startswith(erldist.NAME_PREFIX)]


def test_unknown_name_is_not_registered_and_lists_the_names(epmd_node):
    exc, _elapsed = expect_reason('not_registered', lambda: erldist.connect(
        'nosuchnode@localhost', epmd_node.cookie, epmd_port=epmd_node.epmd_port, timeout=5))
    registered = epmd_names(epmd_node.epmd_port)
    assert registered and all(name in str(exc) for name in registered)
    assert 'nosuchnode' in str(exc)


def test_closed_port_is_unreachable():
    port = free_port()
    exc, elapsed = expect_reason('unreachable', lambda: erldist.connect(
        'gone@127.0.0.1', 'cookie', dist_port=port, timeout=5))
    assert str(port) in str(exc)
    assert elapsed < 2  # refused at once, not after the timeout


def test_no_epmd_is_epmd_unreachable():
    port = free_port()
    exc, elapsed = expect_reason('epmd_unreachable', lambda: erldist.connect(
        'gone@localhost', 'cookie', epmd_port=port, timeout=5))
    assert str(port) in str(exc) and 'dist_port' in str(exc)
    assert elapsed < 2


def test_short_name_asked_of_a_long_name_node_is_name_type_mismatch(fixed_port_node):
    exc, _elapsed = expect_reason('name_type_mismatch', lambda: erldist.connect(
        '%s@localhost' % fixed_port_node.name, fixed_port_node.cookie,
        dist_port=fixed_port_node.port, address=fixed_port_node.address, timeout=5))
    assert fixed_port_node.node in str(exc)


def test_long_name_asked_of_a_short_name_node_is_name_type_mismatch(epmd_node):
    exc, _elapsed = expect_reason('name_type_mismatch', lambda: erldist.connect(
        '%s@localhost.localdomain' % epmd_node.name, epmd_node.cookie, address='127.0.0.1',
        epmd_port=epmd_node.epmd_port, timeout=5))
    assert epmd_node.node in str(exc)


def test_node_with_an_allow_list_answers_not_allowed(erl_node_factory):
    node = erl_node_factory('picky')
    assert node.eval("net_kernel:allow(['somebody_else@localhost'])") == 'ok'
    exc, _elapsed = expect_reason('not_allowed', lambda: connect(node))
    assert node.node in str(exc)


def test_dist_port_pointing_at_epmd_is_protocol_error(epmd_node):
    """A real misconfiguration: dist_port set to the EPMD port. EPMD drops the odd request."""
    exc, _elapsed = expect_reason('protocol_error', lambda: erldist.connect(
        epmd_node.node, epmd_node.cookie, dist_port=epmd_node.epmd_port, address='127.0.0.1', timeout=5))
    assert 'handshake' in str(exc)


def test_epmd_port_pointing_at_a_node_is_protocol_error(epmd_node):
    """The other way round: epmd_port set to a node's distribution port."""
    exc, _elapsed = expect_reason('protocol_error', lambda: erldist.connect(
        epmd_node.node, epmd_node.cookie, epmd_port=epmd_node.port, timeout=5))
    assert 'EPMD' in str(exc)


def test_a_hung_epmd_and_a_hung_node_time_out(epmd_node):
    """SIGSTOP (our own) epmd, then the node itself: the kernel still accepts the TCP
    connection, nobody answers -- a real hang. Each is continued right afterwards."""
    assert epmd_node.epmd is not None  # the harness's private epmd, not a system one
    for pid, stage in ((epmd_node.epmd.pid, 'EPMD'), (epmd_node.pid, 'connecting')):
        os.kill(pid, signal.SIGSTOP)
        try:
            exc, elapsed = expect_reason('timeout', lambda: connect(epmd_node, timeout=0.5))
        finally:
            os.kill(pid, signal.SIGCONT)
        assert stage in str(exc)
        assert 0.5 - 0.05 <= elapsed <= 0.5 + SLACK
    with connect(epmd_node) as conn:  # and both are fine again
        assert conn.rpc('erlang', 'node', []) == Atom(epmd_node.node)


# --------------------------------------------------------------------------- fake peers: time limits

def fake_connect(peer, node='x@127.0.0.1', cookie='fakecookie', timeout=3.0, **kwargs):
    return lambda: erldist.connect(node, cookie, dist_port=peer.port, timeout=timeout, **kwargs)


def test_a_peer_that_stalls_times_out_within_the_timeout():
    with fp.FakeServer(fp.stall) as peer:
        exc, elapsed = expect_reason('timeout', fake_connect(peer, timeout=0.5))
    assert 0.5 - 0.05 <= elapsed <= 0.5 + SLACK
    assert peer.accepted == 1 and peer.received[0][2:3] == b'N'  # it did get our send_name
    assert '0.5 s' in str(exc)


def test_a_peer_that_trickles_hits_the_deadline_not_a_per_recv_timeout():
    # a byte every 0.5 s: every single recv() gets data well within any per-call
    # timeout, yet the whole answer (64 KB) would take hours
    with fp.FakeServer(fp.trickle(b'\xff\xff' + b's' * 65535, 0.5)) as peer:
        _exc, elapsed = expect_reason('timeout', fake_connect(peer, timeout=1.5))
    assert 1.5 - 0.05 <= elapsed <= 1.5 + SLACK


def test_an_epmd_that_stalls_times_out():
    with fp.FakeServer(fp.stall) as epmd:
        _exc, elapsed = expect_reason('timeout', lambda: erldist.connect(
            'x@localhost', 'c', epmd_port=epmd.port, timeout=0.5))
    assert elapsed <= 0.5 + SLACK


def test_a_node_that_ticks_forever_does_not_extend_the_rpc_deadline():
    peer_node = 'x@127.0.0.1'
    with fp.FakeServer(fp.Peer(peer_node, 'c', after=fp.tick_forever(0.2))) as peer:
        conn = erldist.connect(peer_node, 'c', dist_port=peer.port, timeout=3)
        try:
            _exc, elapsed = expect_reason('timeout', lambda: conn.rpc('erlang', 'node', [], timeout=1.5))
        finally:
            conn.close()
    assert 1.5 - 0.05 <= elapsed <= 1.5 + SLACK
    # the client answered the ticks it got while waiting
    assert peer.info['ticks_sent'] >= 3
    assert peer.info['tick_answers'] >= peer.info['ticks_sent'] - 2


# --------------------------------------------------------------------------- fake peers: handshake garbage

@pytest.mark.parametrize('answer, reason', [
    (b'\x00\x03xyz', 'protocol_error'),                              # a frame, but not a status
    (b'HTTP/1.1 400 Bad Request\r\n\r\n', 'protocol_error'),          # not Erlang at all, then close
    (b'\xff\xff' + b's' * 65535, 'protocol_error'),                   # the largest possible frame, all junk
    (b'\xff\xff' + b'sok', 'protocol_error'),                         # huge length, then the peer closes
    (b'\x00\x00', 'protocol_error'),                                  # an empty handshake frame
    (b'', 'protocol_error'),                                          # close without a word
], ids=['framed-junk', 'http', 'max-frame-junk', 'huge-length-truncated', 'empty-frame', 'closed'])
def test_garbage_instead_of_status(answer, reason):
    with fp.FakeServer(fp.answer_raw(answer)) as peer:
        expect_reason(reason, fake_connect(peer))
    assert not peer.errors


def test_a_reset_during_the_handshake_is_unreachable():
    with fp.FakeServer(fp.answer_raw(b'\x00\x03sok', then='reset')) as peer:
        exc, _elapsed = expect_reason('unreachable', fake_connect(peer))
    assert not peer.errors


def test_huge_handshake_length_then_silence_times_out():
    with fp.FakeServer(fp.answer_raw(b'\xff\xff', then='stall')) as peer:
        _exc, elapsed = expect_reason('timeout', fake_connect(peer, timeout=0.5))
    assert elapsed <= 0.5 + SLACK


@pytest.mark.parametrize('status, reason', [
    ('not_allowed', 'not_allowed'),
    ('nok', 'protocol_error'),
    ('alive', 'protocol_error'),
    ('named:', 'protocol_error'),
    ('bogus\x00\xff', 'protocol_error'),
])
def test_status(status, reason):
    with fp.FakeServer(fp.Peer('x@127.0.0.1', 'c', status=status)) as peer:
        expect_reason(reason, fake_connect(peer, cookie='c'))
    assert not peer.errors


def test_the_client_offers_the_flags_of_the_notes():
    with fp.FakeServer(fp.Peer('x@127.0.0.1', 'c')) as peer:
        erldist.connect('x@127.0.0.1', 'c', dist_port=peer.port, timeout=3).close()
    flags = peer.info['client_flags']
    mandatory = 0x1070F94 | 0x2000000 | (1 << 34)
    assert flags & mandatory == mandatory
    # hidden (no PUBLISHED 0x1), no atom cache (0x2000), no fragments (0x800000)
    assert not flags & (0x1 | 0x2000 | 0x800000)
    assert peer.info['client_digest_ok'] and peer.info['handshake_done']


@pytest.mark.parametrize('peer_name, reason', [
    ('y@127.0.0.1', 'not_registered'),       # another node of the same kind
    ('x@vm', 'name_type_mismatch'),          # a short name where a long one was asked for
    ('no-at-sign', 'not_registered'),        # not a node name at all
    ('\udcff', 'not_registered'),            # not even UTF-8 (sent as a lone surrogate escape)
])
def test_challenge_with_another_name(peer_name, reason):
    name = peer_name.encode('utf-8', 'surrogateescape')
    message = struct.pack('>BQIIH', ord('N'), fp.NODE_FLAGS, 1234, 1, len(name)) + name
    with fp.FakeServer(fp.Peer('x@127.0.0.1', 'c', challenge_message=message)) as peer:
        expect_reason(reason, fake_connect(peer, cookie='c'))


@pytest.mark.parametrize('message', [
    b'n' + struct.pack('>HII', 5, 0x1070F94, 1234) + b'x@127.0.0.1',   # version 5 challenge
    b'N' + b'\0' * 10,                                                 # too short
    b'?',
], ids=['v5-challenge', 'short-challenge', 'one-byte'])
def test_malformed_challenge(message):
    with fp.FakeServer(fp.Peer('x@127.0.0.1', 'c', challenge_message=message)) as peer:
        expect_reason('protocol_error', fake_connect(peer, cookie='c'))


def test_wrong_digest_in_the_ack_is_cookie_rejected():
    with fp.FakeServer(fp.Peer('x@127.0.0.1', 'c', ack='wrong')) as peer:
        exc, _elapsed = expect_reason('cookie_rejected', fake_connect(peer, cookie='c'))
    assert peer.info['client_digest_ok']  # our side of the proof was right
    assert 'prove' in str(exc)


def test_close_after_the_reply_is_cookie_rejected():
    with fp.FakeServer(fp.Peer('x@127.0.0.1', 'c', ack='close')) as peer:
        expect_reason('cookie_rejected', fake_connect(peer, cookie='c'))


@pytest.mark.parametrize('ack', [b'a' + b'\0' * 10, b'A' + b'\0' * 16, b'a' + b'\0' * 17],
                         ids=['short', 'wrong-tag', 'long'])
def test_malformed_ack(ack):
    with fp.FakeServer(fp.Peer('x@127.0.0.1', 'c', ack=ack)) as peer:
        expect_reason('protocol_error', fake_connect(peer, cookie='c'))


# --------------------------------------------------------------------------- fake peers: after the handshake

def rpc_against(after, limit=10.0, **rpc_kwargs):
    """Handshake with a fake node, then run one RPC whose answer ``after`` makes up."""
    with fp.FakeServer(fp.Peer('x@127.0.0.1', 'c', after=after)) as peer:
        conn = erldist.connect('x@127.0.0.1', 'c', dist_port=peer.port, timeout=3)
        try:
            _result, exc, elapsed = bounded(lambda: conn.rpc('erlang', 'node', [], **rpc_kwargs), limit)
        finally:
            conn.close()
    # the request the client sent is a well-formed REG_SEND to rex
    packet = peer.info.get('first_packet')
    assert packet and packet[0] == fp.PASS_THROUGH
    control, end = etf.decode_term(packet, 1)
    assert control[0] == erldist.REG_SEND and control[3] == Atom('rex')
    assert etf.binary_to_term(packet[end:])[0] == Atom('$gen_call')
    return exc, elapsed


def assert_reason(exc, reason):
    assert isinstance(exc, erldist.DistError), 'expected DistError(%s), got %r' % (reason, exc)
    assert exc.reason == reason, 'expected %s, got %s: %s' % (reason, exc.reason, exc)


def test_a_four_gigabyte_packet_length_is_refused_without_allocating():
    tracemalloc.start()
    try:
        exc, _elapsed = rpc_against(fp.after_first_packet(b'\xff\xff\xff\xff'))
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert_reason(exc, 'protocol_error')
    assert '4294967295' in str(exc)
    assert peak < 4 << 20, 'peak allocation %d bytes' % peak


def test_a_compressed_bomb_is_refused_without_inflating():
    # {2, '', Pid}-like control, then a message that claims to inflate to 1 GB
    control = etf.term_to_binary((2, Atom(''), Atom('x')))
    bomb = bytes([131, etf.COMPRESSED]) + struct.pack('>I', 1 << 30) + b'x\x9c' + b'\0' * 20
    tracemalloc.start()
    try:
        exc, _elapsed = rpc_against(fp.after_first_packet(fp.pass_through(control, bomb)))
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert_reason(exc, 'protocol_error')
    assert peak < 4 << 20, 'peak allocation %d bytes' % peak


@pytest.mark.parametrize('frame', [
    fp.pass_through(b'\x83\xff\x01'),                                           # unknown tag
    fp.pass_through(b'\x82' + etf.term_to_binary(1)[1:]),                       # wrong version byte
    fp.pass_through(etf.term_to_binary((2, Atom(''), Atom('x')))),              # SEND without a message
    fp.pass_through(etf.term_to_binary((2, Atom(''), Atom('x'))), b'\x83\x6c\x00\x00\xff\xff'),  # truncated list
    fp.pass_through(etf.term_to_binary((2, Atom(''), Atom('x'))), b'\x83' + b'\x68\x01' * 600 + b'\x6a'),  # too deep
    fp.pass_through(etf.term_to_binary((2, Atom(''), Atom('x'))), etf.term_to_binary(1) + b'\x00'),  # stray byte
    struct.pack('>I', 3) + b'\x71ab',                                           # not a pass-through packet
], ids=['bad-tag', 'bad-version', 'no-message', 'truncated', 'too-deep', 'stray-byte', 'not-pass-through'])
def test_malformed_packet_after_the_handshake(frame):
    exc, _elapsed = rpc_against(fp.after_first_packet(frame))
    assert_reason(exc, 'protocol_error')


@pytest.mark.parametrize('first', [[1], {1: 2}], ids=['list', 'map'])
def test_control_tuple_with_an_unhashable_operation(first):
    frame = fp.pass_through(etf.term_to_binary((first, Atom(''), Atom('x'))), etf.term_to_binary(1))
    exc, _elapsed = rpc_against(fp.after_first_packet(frame))
    assert_reason(exc, 'protocol_error')


def test_other_signals_are_skipped_and_the_answer_still_found():
    """A LINK (1) and a SEND to us with an unrelated message come first: both are skipped."""
    def after(link, server, peer):
        packet = link.recv_packet()
        server.info['first_packet'] = packet
        control, end = etf.decode_term(packet, 1)
        gen_call = etf.binary_to_term(packet[end:])
        pid, ref = gen_call[1]
        link.send(fp.pass_through(etf.term_to_binary((1, pid, pid))))
        link.send(fp.pass_through(etf.term_to_binary((2, Atom(''), pid)), etf.term_to_binary(Atom('noise'))))
        link.send_packet(b'')  # a tick in between
        link.send(fp.pass_through(etf.term_to_binary((2, Atom(''), pid)),
                                  etf.term_to_binary((ref, Atom(peer.name)))))
        server.info['control_of_request'] = control
        link.drain()

    with fp.FakeServer(fp.Peer('x@127.0.0.1', 'c', after=after)) as peer:
        with erldist.connect('x@127.0.0.1', 'c', dist_port=peer.port, timeout=3) as conn:
            result, exc, _elapsed = bounded(lambda: conn.rpc('erlang', 'node', [], timeout=3), 6)
    assert exc is None, exc
    assert result == Atom('x@127.0.0.1')
    assert not peer.errors


def test_a_node_that_goes_away_during_an_rpc_is_unreachable():
    def after(link, server, peer):
        server.info['first_packet'] = link.recv_packet()
        link.close()

    exc, elapsed = rpc_against(after, timeout=3)
    assert_reason(exc, 'unreachable')
    assert elapsed < 2


# --------------------------------------------------------------------------- fake EPMD

def epmd_connect(epmd, timeout=2.0):
    return lambda: erldist.connect('x@localhost', 'c', epmd_port=epmd.port, timeout=timeout)


@pytest.mark.parametrize('answer', [
    b'HTTP/1.0 400 Bad Request\r\n\r\n',   # garbage
    None,                                  # closes without answering
    b'\x77',                               # closes after one byte
    b'\x77\x00\x01\x02\x03',               # truncated PORT2_RESP
    b'\x00\x00',                           # wrong response code
], ids=['garbage', 'closes-early', 'one-byte', 'truncated', 'wrong-code'])
def test_fake_epmd_garbage_is_protocol_error(answer):
    with fp.FakeServer(fp.fake_epmd(answer)) as epmd:
        exc, _elapsed = expect_reason('protocol_error', epmd_connect(epmd))
    assert epmd.info['asked_for'] == 'x'  # PORT_PLEASE2 asked for the name part
    assert 'EPMD' in str(exc)


def test_fake_epmd_not_registered_lists_its_names():
    names = fp.names_resp([('ejabberd', 5210), ('other', 5211)])
    with fp.FakeServer(fp.fake_epmd(b'\x77\x01', names)) as epmd:
        exc, _elapsed = expect_reason('not_registered', epmd_connect(epmd))
    assert 'ejabberd' in str(exc) and 'other' in str(exc)


def test_fake_epmd_resetting_the_names_request_is_still_not_registered():
    with fp.FakeServer(fp.fake_epmd(b'\x77\x01', 'reset')) as epmd:
        exc, _elapsed = expect_reason('not_registered', epmd_connect(epmd))
    assert 'x' in str(exc)


def test_fake_epmd_stalling_the_names_request_keeps_the_deadline():
    with fp.FakeServer(fp.fake_epmd(b'\x77\x01', b'\x00\x00', names_then='stall')) as epmd:
        _exc, elapsed = expect_reason('not_registered', epmd_connect(epmd, timeout=0.5))
    assert elapsed <= 0.5 + SLACK


def test_epmd_pointing_at_a_closed_port_is_unreachable():
    port = free_port()
    with fp.FakeServer(fp.fake_epmd(fp.port2_resp(port))) as epmd:
        exc, _elapsed = expect_reason('unreachable', epmd_connect(epmd))
    assert str(port) in str(exc)
