# Copyright: xmpp.ejabberd contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Issue 9: the distribution client against anything a peer can send.

Fake PEERS on loopback (tests/helpers/fakepeer.py: a fake EPMD, a fake node that
shakes hands and answers RPCs with hostile terms); the client and the modules
run for real against them, the modules as Ansible runs them (``python -m``
with an arguments file).  One section per class of the issue:

1. names: the client presents itself under one of 16 names; busy names are
   skipped (alive answered with false, nok, a close before the status);
2. exceptions: whatever a peer sends, the client raises DistError only and
   every module answers JSON with failed, reason and msg;
3. memory: peak RSS of a client process (resource.getrusage) stays within
   MAX_MESSAGE_BYTES of what it was before the hostile reply;
4. time: every call ends within its timeout + 0.25 s;
5. replies to another pid are not taken;
6. erlang_cookie_set never prints a cookie that a node echoes back;
7. bad arguments to connect() are DistError('bad_parameter').
"""

from __future__ import annotations

import concurrent.futures
import json
import math
import os
import secrets
import struct
import subprocess
import sys
import tempfile
import time

import pytest

from ansible_collections.xmpp.ejabberd.plugins.module_utils import erldist, etf
from ansible_collections.xmpp.ejabberd.plugins.module_utils.etf import Atom
from ansible_collections.xmpp.ejabberd.tests.helpers import fakepeer as fp
from ansible_collections.xmpp.ejabberd.tests.helpers import probe
from ansible_collections.xmpp.ejabberd.tests.helpers.common import COLLECTIONS_ROOT, write_private

NODE = 'x@127.0.0.1'
COOKIE = 'Hostile-Test-Cookie-%s' % secrets.token_hex(6)
# The time a call may take past its timeout (the target).
SLACK = 0.25
MB = 1024 * 1024
MODULES = ('erlang_node_info', 'ejabberd_cluster_info', 'ejabberd_cluster_member',
           'erlang_cookie_set')
MODULE_REASONS = frozenset(erldist.REASONS)


def fake_node(answer, **peer):
    """A fake node x@127.0.0.1 that shakes hands with COOKIE and answers RPCs."""
    return fp.FakeServer(fp.Peer(NODE, COOKIE, after=fp.rpc_server(answer), **peer))


def hostile(name, benign=None):
    """rpc_server answers: erlang:nodes/0 (and ``benign`` calls) get the hostile
    reply ``name``, everything else a plain answer."""
    replies = {
        ('erlang', 'node'): fp.encoded(Atom(NODE)),
        ('erlang', 'system_info'): fp.encoded('25'),
        ('application', 'get_key'): fp.encoded((Atom('ok'), '23.01')),
        ('erlang', 'nodes'): fp.HOSTILE_REPLIES[name],
        ('ejabberd_cluster', 'get_nodes'): fp.HOSTILE_REPLIES[name],
        ('ejabberd_cluster', 'get_known_nodes'): fp.encoded([]),
        # Mnesia's view (db_nodes, running_db_nodes, local_tables): a node without tables.
        ('mnesia', 'system_info'): fp.encoded([]),
    }
    replies.update(benign or {})
    return fp.answer_with(replies)


def run_client(port, timeout):
    """erlang:nodes/0 from a client process of its own against the fake node on
    ``port``: outcome, time and peak RSS (tests/helpers/probe.py)."""
    return probe.run_client(NODE, port, COOKIE, timeout)


def run_module(name, args, check_mode=False, hide=()):
    """``python -m`` the module with an arguments file (private, removed afterwards),
    as Ansible runs it; the JSON result, with the exit code in ``_rc`` and the whole
    output in ``_output``.  Fails if a value of ``hide`` shows anywhere in it."""
    payload = dict(args, _ansible_check_mode=check_mode)
    path = write_private(tempfile.gettempdir(), 'xmpp-ejabberd-hostile.%s.json'
                         % secrets.token_hex(8), json.dumps({'ANSIBLE_MODULE_ARGS': payload}))
    try:
        proc = subprocess.run([sys.executable, '-m', 'ansible_collections.xmpp.ejabberd.plugins.'
                               'modules.%s' % name, path], capture_output=True, text=True,
                              env=dict(os.environ, PYTHONPATH=COLLECTIONS_ROOT), timeout=120,
                              stdin=subprocess.DEVNULL, check=False)
    finally:
        os.unlink(path)
    output = proc.stdout + proc.stderr
    for secret in hide:
        if secret in output:
            pytest.fail('%s printed a secret (at offset %d of its output)'
                        % (name, output.index(secret)))
    assert 'Traceback' not in output, output[-3000:]
    lines = [line for line in proc.stdout.splitlines() if line.startswith('{')]
    assert lines, 'no JSON from %s: %s' % (name, output[-3000:])
    result = json.loads(lines[-1])
    result['_rc'], result['_output'] = proc.returncode, output
    return result


@pytest.fixture(scope='module')
def empty_cfg(tmp_path_factory):
    path = tmp_path_factory.mktemp('cfg') / 'ejabberdctl.cfg'
    path.write_text('')
    return str(path)


def module_args(name, port, empty_cfg, **extra):
    args = dict(node=NODE, cookie=COOKIE, dist_port=port, address='127.0.0.1',
                ejabberdctl_cfg=empty_cfg, timeout=2)
    if name == 'ejabberd_cluster_member':
        args.update(cluster_node='y@127.0.0.2', cluster_address='127.0.0.2')
    if name == 'erlang_cookie_set':
        args.update(new_cookie='New-%s' % secrets.token_hex(8))
    args.update(extra)
    return args


def assert_failed_as_json(result, reasons=MODULE_REASONS):
    """A module's failure as the issue wants it: JSON with failed, a reason, a message."""
    assert result['_rc'] == 1 and result['failed'] is True, result
    assert result['reason'] in reasons, result
    assert isinstance(result['msg'], str) and result['msg'], result
    size = len(json.dumps({k: v for k, v in result.items() if k != '_output'}))
    assert size < 64 * 1024, 'a %d-byte result' % size


def assert_dist_error(exc, reasons=erldist.REASONS):
    assert isinstance(exc, erldist.DistError), 'not a DistError: %r' % (exc,)
    assert exc.reason in reasons, exc.reason
    text = str(exc)
    assert text and len(text) < 4000, len(text)
    json.dumps(text)


def call(func):
    """``(result, exception, seconds)`` of ``func()``; only DistError may come out."""
    start = time.monotonic()
    try:
        return func(), None, time.monotonic() - start
    except erldist.DistError as exc:
        return None, exc, time.monotonic() - start


# --------------------------------------------------------------------------- 1. names

SLOT_NAMES = {erldist.own_name(NODE, slot, '127.0.0.1') for slot in range(erldist.NAME_SLOTS)}


def slot_of(name):
    return int(name.split('@')[0][len(erldist.NAME_PREFIX):])


def test_every_name_the_client_presents_is_one_of_the_slots():
    with fake_node(hostile('integer_for_a_list')) as peer:
        for dummy in range(3 * erldist.NAME_SLOTS):
            erldist.connect(NODE, COOKIE, dist_port=peer.port).close()
    names = peer.info['client_names']
    assert len(names) == 3 * erldist.NAME_SLOTS
    assert set(names) == SLOT_NAMES  # all of them, and nothing else
    # one process goes round the names: never the one it has just closed first
    assert all(a != b for a, b in zip(names, names[1:]))
    assert len(erldist.NAME_PREFIX + '15') < 255 and erldist.NAME_PREFIX < 'a'


def test_a_busy_name_is_answered_false_and_the_next_one_tried():
    busy = set(sorted(SLOT_NAMES)[::2])  # every other name is "connected" already
    statuses = {}

    def status(name):
        statuses[name] = 'alive' if name in busy else 'ok'
        return statuses[name]

    with fake_node(hostile('integer_for_a_list'), status=status) as peer:
        conns = [erldist.connect(NODE, COOKIE, dist_port=peer.port) for dummy in range(8)]
        for conn in conns:
            assert conn.own_node not in busy
            conn.close()
    asked_alive = [n for n in peer.info['client_names'] if n in busy]
    assert asked_alive, 'no busy name was ever tried'
    # every 'alive' got 'false' (never 'true': it would kill another connection)
    assert peer.info['replies'] == [b'sfalse'] * len(asked_alive)
    assert not peer.errors


def test_nok_moves_to_the_next_name():
    first = []

    def status(name):
        if not first:
            first.append(name)
            return 'nok'
        return 'ok'

    with fake_node(hostile('integer_for_a_list'), status=status) as peer:
        with erldist.connect(NODE, COOKIE, dist_port=peer.port) as conn:
            assert conn.own_node != first[0]
    assert peer.accepted == 2 and peer.info['replies'] == []


def test_a_close_before_the_status_is_taken_for_a_busy_name():
    """What a node does to a handshake under a name while it asks another one
    'alive' about it: the client tries the next name."""
    seen = []

    def status(name):
        seen.append(name)
        return None if len(seen) <= 2 else 'ok'  # None: close without a status

    with fake_node(hostile('integer_for_a_list'), status=status) as peer:
        with erldist.connect(NODE, COOKIE, dist_port=peer.port) as conn:
            assert conn.own_node == seen[2] and len(set(seen)) == 3


def test_a_peer_that_only_ever_closes_is_a_protocol_error():
    with fake_node(hostile('integer_for_a_list'), status=lambda name: None) as peer:
        _result, exc, _elapsed = call(lambda: erldist.connect(NODE, COOKIE, dist_port=peer.port))
    assert_dist_error(exc, ['protocol_error'])
    assert 'handshake' in str(exc) and peer.accepted == 3


def test_closes_after_a_busy_status_are_busy_names_too():
    seen = []

    def status(name):
        seen.append(name)
        return 'alive' if len(seen) == 1 else None if len(seen) <= 6 else 'ok'

    with fake_node(hostile('integer_for_a_list'), status=status) as peer:
        with erldist.connect(NODE, COOKIE, dist_port=peer.port) as conn:
            assert conn.own_node == seen[6]


@pytest.mark.parametrize('status', ['alive', 'nok'])
def test_every_name_busy_ends_within_the_timeout_and_says_so(status):
    with fake_node(hostile('integer_for_a_list'), status=status) as peer:
        _result, exc, elapsed = call(lambda: erldist.connect(NODE, COOKIE, dist_port=peer.port,
                                                             timeout=1.0))
    assert_dist_error(exc, ['protocol_error'])
    assert 'every one of our %d names' % erldist.NAME_SLOTS in str(exc)
    assert elapsed <= 1.0 + SLACK
    assert set(peer.info['client_names']) == SLOT_NAMES  # it did try them all
    assert peer.accepted > erldist.NAME_SLOTS  # more than one round


def test_a_process_never_offers_a_name_it_holds_on_that_node():
    """Names this process holds (open connections) are skipped, not offered; when
    it holds them all, a new connect waits for one, then says every name is busy."""
    other_node = fp.Peer('y@127.0.0.1', COOKIE, after=fp.rpc_server(hostile('integer_for_a_list')))
    with fake_node(hostile('integer_for_a_list')) as peer, fp.FakeServer(other_node) as other:
        held = [erldist.connect(NODE, COOKIE, dist_port=peer.port)
                for dummy in range(erldist.NAME_SLOTS)]
        assert {c.own_node for c in held} == SLOT_NAMES
        offered = len(peer.info['client_names'])
        assert offered == erldist.NAME_SLOTS  # no name was offered twice
        # another node: the same names are free there
        erldist.connect('y@127.0.0.1', COOKIE, dist_port=other.port).close()
        _result, exc, elapsed = call(lambda: erldist.connect(NODE, COOKIE, dist_port=peer.port,
                                                             timeout=0.5))
        assert_dist_error(exc, ['protocol_error'])
        assert 'every one of our' in str(exc) and elapsed <= 0.5 + SLACK
        assert len(peer.info['client_names']) == offered  # none tried: all ours
        freed = held.pop()
        freed.close()
        with erldist.connect(NODE, COOKIE, dist_port=peer.port) as conn:
            assert conn.own_node == freed.own_node
        lost = held.pop()
        name = lost.own_node
        del lost  # never closed: its name comes back when the object goes
        with erldist.connect(NODE, COOKIE, dist_port=peer.port) as conn:
            assert conn.own_node == name
        for conn in held:
            conn.close()


def test_own_names_are_of_the_target_kind_and_this_host(monkeypatch):
    short = erldist.own_name('ejabberd@xmpp1', 3)
    assert short.startswith(erldist.NAME_PREFIX + '3@') and '.' not in short.split('@')[1]
    monkeypatch.setattr('socket.gethostname', lambda: 'client7')
    # a long name without an FQDN: the address the connection leaves from
    assert erldist.own_name('ejabberd@10.0.0.5', 4, '10.0.0.9') == erldist.NAME_PREFIX + '4@10.0.0.9'
    assert erldist.own_name('ejabberd@10.0.0.5', 4, None).endswith('@127.0.0.1')
    monkeypatch.setattr('socket.gethostname', lambda: 'client7.example.org')
    assert erldist.own_name('ejabberd@10.0.0.5', 4, '10.0.0.9').endswith('@client7.example.org')
    assert erldist.own_name('ejabberd@xmpp1', 4).endswith('@client7')


# --------------------------------------------------------------------------- 2. exceptions: the client

@pytest.mark.parametrize('status', ['%s%d%%', 'ok%s', '\u00e9%r', 'x' * 5000, '\0\xff'])
def test_status_text_with_format_characters(status):
    with fake_node(hostile('integer_for_a_list'), status=status) as peer:
        _result, exc, _elapsed = call(lambda: erldist.connect(NODE, COOKIE, dist_port=peer.port))
    assert_dist_error(exc, ['protocol_error'])
    assert 'status' in str(exc) and len(str(exc)) < 400


HOSTILE_NAMES = (b'name ok at port 4370\n'
                 b'name superscript at port \xc2\xb2\n'           # Unicode digit
                 b'name huge at port ' + b'9' * 5000 + b'\n'     # 5,000 digits
                 b'name toobig at port 65536\n'
                 b'name zero at port 0\n'
                 b'name arabic at port \xd9\xa3\xd9\xa4\n'       # Arabic-Indic digits
                 b'name  at port 12\n'
                 b'junk\xff\xfe line\n'
                 b'name crlf at port 4371\r\n')


def test_epmd_names_are_parsed_as_strict_ascii():
    answer = struct.pack('>I', 4369) + HOSTILE_NAMES
    with fp.FakeServer(fp.fake_epmd(b'\x77\x01', answer)) as epmd:
        names, exc, _elapsed = call(lambda: erldist.epmd_names('127.0.0.1', epmd_port=epmd.port))
        assert exc is None and names == {'ok': 4370, 'crlf': 4371}
        _result, exc, _elapsed = call(lambda: erldist.connect('nobody@localhost', COOKIE,
                                                              epmd_port=epmd.port))
    assert_dist_error(exc, ['not_registered'])
    assert "'ok'" in str(exc) and 'superscript' not in str(exc)


@pytest.mark.parametrize('name, reason', [
    ('badrpc_deep', 'rpc_error'),
    ('badrpc_bigint', 'rpc_error'),
    ('control_deep', 'protocol_error'),
    ('control_huge', 'protocol_error'),
    ('long_strings_compressed', 'protocol_error'),
    ('wrong_ref_stream', 'protocol_error'),
    ('reply_to_another_pid', 'timeout'),
    ('wrong_ref_stream_fitting', 'timeout'),
])
def test_hostile_replies_end_in_a_dist_error(name, reason):
    with fake_node(hostile(name)) as peer:
        with erldist.connect(NODE, COOKIE, dist_port=peer.port, timeout=1.5) as conn:
            _result, exc, _elapsed = call(lambda: conn.rpc('erlang', 'nodes', []))
    assert_dist_error(exc, [reason])


@pytest.mark.parametrize('name', ['nodes_with_bigint', 'integer_for_a_list', 'error_bigint',
                                  'list_tail_chain'])
def test_odd_but_valid_replies_are_returned_as_terms(name):
    """Valid terms of the wrong shape are the caller's to judge (the modules do)."""
    with fake_node(hostile(name)) as peer:
        with erldist.connect(NODE, COOKIE, dist_port=peer.port, timeout=3) as conn:
            result, exc, _elapsed = call(lambda: conn.rpc('erlang', 'nodes', []))
    assert exc is None
    assert len(etf.format_term(result)) <= 403
    if name == 'list_tail_chain':
        assert result == [7] * 500000


# --------------------------------------------------------------------------- 2. exceptions: the modules

# (hostile reply, module) -> reasons the module may give; every module meets
# every reply at its first query (erlang:nodes/0 or ejabberd_cluster:get_nodes/0).
MODULE_CASES = ['badrpc_deep', 'badrpc_bigint', 'nodes_with_bigint', 'integer_for_a_list',
                'control_deep', 'long_strings_compressed', 'reply_to_another_pid']


@pytest.fixture(scope='module')
def module_runs(empty_cfg):
    """Every (hostile reply, module) pair, plus erlang_node_info with fail_on_error
    false, run concurrently (a module run is mostly Python start-up)."""
    jobs = {}
    servers = []
    try:
        for case in MODULE_CASES + ['status_percent']:
            for module in MODULES + ('erlang_node_info/no_fail',):
                if case == 'status_percent':
                    server = fake_node(hostile('integer_for_a_list'), status='%s%%d')
                else:
                    server = fake_node(hostile(case))
                servers.append(server.start())
                name, _sep, variant = module.partition('/')
                extra = {'fail_on_error': False} if variant else {}
                args = module_args(name, server.port, empty_cfg, **extra)
                hide = [COOKIE] + ([args['new_cookie']] if 'new_cookie' in args else [])
                jobs[(case, module)] = (name, args, hide)
        with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
            futures = {key: pool.submit(run_module, name, args, hide=hide)
                       for key, (name, args, hide) in jobs.items()}
            return {key: future.result() for key, future in futures.items()}
    finally:
        for server in servers:
            server.stop()


@pytest.mark.parametrize('module', MODULES)
@pytest.mark.parametrize('case', MODULE_CASES + ['status_percent'])
def test_modules_answer_json_with_failed_reason_and_msg(module_runs, case, module):
    result = module_runs[(case, module)]
    assert_failed_as_json(result)
    expected = {'control_deep': 'protocol_error', 'long_strings_compressed': 'protocol_error',
                'reply_to_another_pid': 'timeout', 'status_percent': 'protocol_error'}
    assert result['reason'] == expected.get(case, 'rpc_error'), result['msg']


@pytest.mark.parametrize('case', MODULE_CASES + ['status_percent'])
def test_fail_on_error_false_reports_instead_of_failing(module_runs, case):
    result = module_runs[(case, 'erlang_node_info/no_fail')]
    assert result['_rc'] == 0 and not result.get('failed'), result
    assert result['reachable'] is False
    assert result['reason'] in MODULE_REASONS and result['msg']


def test_join_answered_with_a_huge_integer(empty_cfg):
    """ejabberd_admin:join_cluster answering {error, 2^20000}: a refusal, with a message."""
    seed = fp.FakeServer(fp.Peer('y@127.0.0.1', COOKIE, after=fp.rpc_server(fp.answer_with({
        ('ejabberd_cluster', 'get_nodes'): fp.encoded([Atom('y@127.0.0.1')]),
        ('ejabberd_cluster', 'get_known_nodes'): fp.encoded([Atom('y@127.0.0.1')]),
    }))), host='127.0.0.2')
    with seed:
        joiner = fp.Peer(NODE, COOKIE, after=fp.rpc_server(fp.answer_with({
            ('ejabberd_cluster', 'get_nodes'): fp.encoded([]),
            ('ejabberd_cluster', 'get_known_nodes'): fp.encoded([]),
            ('mnesia', 'system_info'): fp.encoded([]),  # no local tables: no user data to guard
            ('ejabberd_admin', 'join_cluster'): fp.HOSTILE_REPLIES['error_bigint'],
        })))
        with fp.FakeServer(joiner, host='127.0.0.1', port=seed.port) as node:
            result = run_module('ejabberd_cluster_member', module_args(
                'ejabberd_cluster_member', node.port, empty_cfg, cluster_node='y@127.0.0.1',
                cluster_address='127.0.0.2'), hide=[COOKIE])
    assert_failed_as_json(result, ['rpc_error'])
    assert 'refused to join' in result['msg'] and '20001-bit integer' in result['msg']


# --------------------------------------------------------------------------- 3. memory, 4. time

@pytest.fixture(scope='module')
def baseline():
    """What the client process reaches with a plain answer (imports, one connection)."""
    with fake_node(hostile('integer_for_a_list')) as peer:
        return run_client(peer.port, 2)


@pytest.mark.parametrize('name', ['long_strings_compressed', 'long_strings_half',
                                  'binary_filling_the_budget', 'wrong_ref_stream',
                                  'wrong_ref_stream_fitting', 'many_small_tuples',
                                  'list_tail_chain', 'badrpc_deep', 'control_deep',
                                  'control_huge'])
def test_one_message_costs_at_most_64_mb_and_the_call_its_timeout(name, baseline):
    timeout = 2.0
    with fake_node(hostile(name)) as peer:
        report = run_client(peer.port, timeout)
    assert 'escaped' not in report, report
    assert report['growth_mb'] <= 64, '%s: peak RSS grew by %.0f MB' % (name, report['growth_mb'])
    assert report['elapsed'] <= timeout + SLACK, report


def test_replies_that_are_not_awaited_are_not_kept(baseline):
    """Eight ~20 MB wrong-reference replies cost no more than one: each is freed
    before the next is decoded."""
    with fake_node(hostile('wrong_ref_stream_fitting')) as peer:
        stream = run_client(peer.port, 2)

    def one(request):
        return fp.HOSTILE_REPLIES['wrong_ref_stream_fitting'](request)[:1]

    with fake_node(fp.answer_with({('erlang', 'node'): fp.encoded(Atom(NODE)),
                                   ('erlang', 'nodes'): one})) as peer:
        single = run_client(peer.port, 2)
    grew = [r['growth_mb'] for r in (single, stream)]
    assert stream['reason'] == single['reason'] == 'timeout'
    assert grew[0] > 5, 'the single reply did not cost anything: %s' % grew
    assert grew[1] <= grew[0] * 1.25 + 4, 'one reply: %.0f MB, eight: %.0f MB' % tuple(grew)


def test_a_reply_slower_to_decode_than_the_timeout_ends_in_time():
    with fake_node(hostile('many_small_tuples')) as peer:
        report = run_client(peer.port, 0.15)
    assert report['reason'] == 'timeout', report
    assert report['elapsed'] <= 0.15 + SLACK, report


def test_a_trickle_of_wrong_replies_ends_in_time():
    """Small wrong-reference replies, one every 10 ms, for longer than the timeout."""
    def trickle(request):
        other = etf.Reference(request['ref'].node, request['ref'].creation, [9, 9, 9])
        frame = fp.pass_through(fp.send_to(request['pid']),
                                fp.reply_message(other, fp.encoded(list(range(300)))))
        return [frame] * 300

    with fake_node(fp.answer_with({('erlang', 'node'): fp.encoded(Atom(NODE)),
                                   ('erlang', 'nodes'): trickle})) as peer:
        report = run_client(peer.port, 1.0)
    assert report['reason'] == 'timeout' and report['elapsed'] <= 1.0 + SLACK, report


# --------------------------------------------------------------------------- 5. the destination pid

def test_a_reply_to_another_pid_is_not_taken_and_the_right_one_is():
    def both(request):
        wrong = fp.HOSTILE_REPLIES['reply_to_another_pid'](request)
        right = fp.pass_through(fp.send_to(request['pid']),
                                fp.reply_message(request['ref'], fp.encoded([Atom('ok@h')])))
        return [wrong, right]

    with fake_node(fp.answer_with({('erlang', 'nodes'): both})) as peer:
        with erldist.connect(NODE, COOKIE, dist_port=peer.port, timeout=2) as conn:
            assert conn.rpc('erlang', 'nodes', []) == [Atom('ok@h')]


def test_a_send_without_a_destination_pid_is_malformed():
    def no_pid(request):
        return fp.pass_through(etf.term_to_binary((2, Atom(''))),
                               fp.reply_message(request['ref'], fp.encoded([])))

    with fake_node(fp.answer_with({('erlang', 'nodes'): no_pid})) as peer:
        with erldist.connect(NODE, COOKIE, dist_port=peer.port, timeout=2) as conn:
            _result, exc, _elapsed = call(lambda: conn.rpc('erlang', 'nodes', []))
    assert_dist_error(exc, ['protocol_error'])
    assert 'destination pid' in str(exc)


# --------------------------------------------------------------------------- 6. secrets

def echo_arguments(request_args):
    """A badrpc that echoes the call's arguments, as a real error report would."""
    return fp.encoded((Atom('badrpc'), (Atom('EXIT'), (Atom('badarg'), [
        (Atom('erlang'), Atom('set_cookie'), request_args, [])]))))


def echoing_node():
    """A node whose set_cookie answers echo the arguments; its calls, by function."""
    calls = {}

    def answer(module, function, args, request):
        calls[(module, function)] = args
        if (module, function) == ('erlang', 'nodes'):
            body = fp.encoded([Atom('peer@127.0.0.1')])
        elif (module, function) == ('erlang', 'set_cookie'):
            body = echo_arguments(args)
        else:
            body = fp.encoded(Atom('ok'))
        return fp.pass_through(fp.send_to(request['pid']), fp.reply_message(request['ref'], body))
    return fake_node(answer), calls


def test_a_secret_rpc_never_renders_the_echo():
    server, _calls = echoing_node()
    secret = 'Secret-%s' % secrets.token_hex(8)
    with server as peer:
        with erldist.connect(NODE, COOKIE, dist_port=peer.port, timeout=2) as conn:
            _result, exc, _elapsed = call(lambda: conn.rpc('erlang', 'set_cookie', [Atom(secret)]))
            assert_dist_error(exc, ['rpc_error'])
            assert secret in str(exc)  # without secret=True the echo shows ...
            _result, exc, _elapsed = call(lambda: conn.rpc('erlang', 'set_cookie', [Atom(secret)],
                                                           secret=True))
    assert_dist_error(exc, ['rpc_error'])
    assert secret not in str(exc) and 'not shown' in str(exc)  # ... with it, never


def test_erlang_cookie_set_never_prints_an_echoed_cookie(empty_cfg):
    server, calls = echoing_node()
    with server as peer:
        args = module_args('erlang_cookie_set', peer.port, empty_cfg)
        result = run_module('erlang_cookie_set', args, hide=[COOKIE, args['new_cookie']])
    assert_failed_as_json(result, ['rpc_error'])
    # the node did get the new cookie, and echoed it back ...
    assert calls[('erlang', 'set_cookie')] == [Atom('peer@127.0.0.1'), Atom(args['new_cookie'])]
    # ... and the message says so without it: not even masked by Ansible's no_log
    assert 'not shown' in result['msg'] and '********' not in result['_output']


def test_cookie_scrubbing_is_a_safety_net():
    from ansible_collections.xmpp.ejabberd.plugins.module_utils import connection  # noqa
    assert connection.without_secrets('a KEY b KEY', ('KEY', '', None)) == 'a (secret) b (secret)'


# --------------------------------------------------------------------------- 7. bad parameters

@pytest.mark.parametrize('kwargs, option', [
    (dict(dist_port=-1), 'dist_port'),
    (dict(dist_port=70000), 'dist_port'),
    (dict(dist_port=True), 'dist_port'),
    (dict(dist_port='4370'), 'dist_port'),
    (dict(epmd_port=0), 'epmd_port'),
    (dict(timeout=math.nan), 'timeout'),
    (dict(timeout=math.inf), 'timeout'),
    (dict(timeout=-1), 'timeout'),
    (dict(timeout=0), 'timeout'),
    (dict(timeout='5'), 'timeout'),
    (dict(timeout=1e300), 'timeout'),
    (dict(node=123), 'node'),
    (dict(node='no-at-sign'), 'node'),
    (dict(node='a@b@c'), 'node'),
    (dict(node='x' * 300 + '@h'), 'node'),
    (dict(node='a\0b@h'), 'node'),
    (dict(cookie=None), 'cookie'),
    (dict(cookie=b'bytes'), 'cookie'),
    (dict(cookie=''), 'cookie'),
    (dict(cookie='\u20ac-not-latin-1'), 'cookie'),
    (dict(address='\0'), 'address'),
    (dict(address=5), 'address'),
    (dict(max_packet=0), 'max_packet'),
], ids=lambda v: repr(v)[:40])
def test_bad_arguments_are_bad_parameter(kwargs, option):
    args = dict(node=NODE, cookie=COOKIE, dist_port=9, timeout=1)
    args.update(kwargs)
    with fp.FakeServer(fp.record_only) as listener:
        args['dist_port'] = kwargs.get('dist_port', listener.port)
        _result, exc, _elapsed = call(lambda: erldist.connect(**args))
        time.sleep(0.05)
    assert_dist_error(exc, ['bad_parameter'])
    assert str(exc).startswith(option + ':'), str(exc)
    assert COOKIE not in str(exc) and listener.accepted == 0
    if isinstance(kwargs.get('cookie'), str) and kwargs['cookie']:
        assert kwargs['cookie'] not in str(exc)


def test_bad_arguments_to_the_other_calls():
    with fake_node(hostile('integer_for_a_list')) as peer:
        with erldist.connect(NODE, COOKIE, dist_port=peer.port, timeout=2) as conn:
            for func in (lambda: conn.rpc('erlang', 'nodes', [], math.nan),
                         lambda: conn.rpc('erlang', 'nodes', None),
                         lambda: conn.rpc('m' * 300, 'f', []),
                         lambda: conn.receive(-1),
                         lambda: conn.send_reg('rex', object())):
                _result, exc, _elapsed = call(func)
                assert_dist_error(exc, ['bad_parameter'])
            assert conn.rpc('erlang', 'node', []) == Atom(NODE)  # still usable
    for func in (lambda: erldist.epmd_names('127.0.0.1', epmd_port=-5),
                 lambda: erldist.epmd_port_please('', 'x'),
                 lambda: erldist.epmd_port_please('127.0.0.1', 'x', timeout=math.inf)):
        _result, exc, _elapsed = call(func)
        assert_dist_error(exc, ['bad_parameter'])
