# Copyright: xmpp.ejabberd contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Issue 9, class 1: thousands of connections leave a bounded number of atoms.

A real OTP node on loopback (the local erl, OTP 25; the lab containers run the
same checks for OTP 25, 27 and 29 in test_otp_matrix.py).  The node keeps each
node name that connects as an atom forever; the client reuses
erldist.NAME_SLOTS names, so 1,000 connections in a row, 1,000 from 20 threads
and 1,000 from 20 processes raise ``atom_count`` by at most NAME_SLOTS plus a
small constant, and the later phases by the constant alone.  Concurrent
connections all succeed, and a connection is not disturbed by another
process's handshake under its name.
"""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from ansible_collections.xmpp.ejabberd.plugins.module_utils import erldist
from ansible_collections.xmpp.ejabberd.plugins.module_utils.etf import Atom
from ansible_collections.xmpp.ejabberd.tests.helpers import churn
from ansible_collections.xmpp.ejabberd.tests.helpers.common import COLLECTIONS_ROOT


@pytest.fixture(params=['epmd_node', 'fixed_port_node'])
def node(request):
    return request.getfixturevalue(request.param)


def connect_args(node):
    if node.fixed_port:
        return dict(node=node.node, dist_port=node.port, address=node.address, timeout=10)
    return dict(node=node.node, epmd_port=node.epmd_port, timeout=10)


def test_thousands_of_connections_leave_a_bounded_number_of_atoms(node):
    args = connect_args(node)
    run = churn.atom_growth(lambda: erldist.connect(cookie=node.cookie, **args), args,
                            node.cookie, count=1000, parallel=20)
    counts = run['counts']
    print('atom_count of %s (OTP 25) before, after 1,000 in a row, 1,000 from 20 threads, '
          '1,000 from 20 processes: %s' % (node.node, counts))
    assert run['connections'] == 3000 and not run['failures'], run['failures'][:5]
    assert run['answers'] == {node.node}
    assert counts[-1] - counts[0] <= erldist.NAME_SLOTS + churn.SLACK_ATOMS, counts
    # once every name exists, more connections add nothing that grows with their number
    assert counts[-1] - counts[1] <= churn.SLACK_ATOMS, counts


def test_twenty_at_once_all_succeed_and_use_only_the_slots(epmd_node):
    args = connect_args(epmd_node)
    hidden = []

    def connect():
        conn = erldist.connect(cookie=epmd_node.cookie, **args)
        hidden.append(conn.own_node)
        return conn

    answers = churn.threads(connect, 200, 20)
    assert answers == [epmd_node.node] * 200
    assert set(hidden) <= {erldist.own_name(epmd_node.node, s) for s in range(erldist.NAME_SLOTS)}


def test_a_connection_is_not_disturbed_by_a_handshake_under_its_name(fixed_port_node):
    """Hold every one of the 16 names; another process then meets 'alive' on each
    of them (and answers false): it fails, saying so, and ours all stay up.
    Free one name and it gets in."""
    node = fixed_port_node
    args = connect_args(node)
    held = [erldist.connect(cookie=node.cookie, **args) for dummy in range(erldist.NAME_SLOTS)]
    try:
        assert len({c.own_node for c in held}) == erldist.NAME_SLOTS
        other = other_process_connects(dict(args, timeout=1.0), node.cookie)
        assert other['reason'] == 'protocol_error', other
        assert 'every one of our %d names' % erldist.NAME_SLOTS in other['msg']
        for conn in held:  # every held connection still works
            assert conn.rpc('erlang', 'node', []) == Atom(node.node)
        hidden = conn.rpc('erlang', 'nodes', [Atom('hidden')])
        assert {c.own_node for c in held} <= {str(n) for n in hidden}
        held.pop().close()
        other = other_process_connects(dict(args, timeout=3.0), node.cookie)
        assert other == {'node': node.node}, other
    finally:
        for conn in held:
            conn.close()


_OTHER = r'''
import json, sys
sys.path.insert(0, sys.argv[1])
from ansible_collections.xmpp.ejabberd.plugins.module_utils import erldist
try:
    with erldist.connect(cookie=sys.stdin.readline().strip(), **json.loads(sys.argv[2])) as c:
        print(json.dumps({'node': str(c.rpc('erlang', 'node', []))}))
except erldist.DistError as exc:
    print(json.dumps({'reason': exc.reason, 'msg': str(exc)}))
'''


def other_process_connects(args, cookie):
    import json  # pylint: disable=import-outside-toplevel
    proc = subprocess.run([sys.executable, '-c', _OTHER, COLLECTIONS_ROOT, json.dumps(args)],
                          input=cookie + '\n', capture_output=True, text=True, timeout=60,
                          check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_a_second_handshake_under_our_name_is_refused_not_the_first(fixed_port_node):
    """Why our names start with '-': while a handshake under a name is under way, a
    node refuses a second one under it (nok) when the name sorts before its own,
    and kills the first one (and lets the second in) when it sorts after."""
    node = fixed_port_node
    ours = churn.second_handshake_under_one_name(node.address, node.port,
                                                 erldist.own_name(node.node, 5, '127.0.0.1'))
    assert ours == {'first': 'sok', 'challenge': 'N', 'second': 'snok', 'first_after': 'silent'}
    after = churn.second_handshake_under_one_name(node.address, node.port,
                                                  'zz_sorts_after@127.0.0.1')
    assert after['second'] == 'sok_simultaneous' and after['first_after'] == 'closed', after


def test_reusing_a_name_right_after_closing_it(fixed_port_node):
    """What a node says to a name whose connection has just closed: ok once it has
    seen the close, alive if not yet (nok on a loaded machine: a handshake of this
    test under that name, 16 rounds ago, not yet cleared).  The client never waits
    for any of it: it takes another name first (one process goes round the names)."""
    node = fixed_port_node
    args = connect_args(node)
    seen = {}
    for dummy in range(50):
        conn = erldist.connect(cookie=node.cookie, **args)
        name = conn.own_node
        conn.close()
        sock, status = churn.raw_handshake_start(node.address, node.port, name)
        sock.close()
        seen[status] = seen.get(status, 0) + 1
    print('a name offered again right after its close: %s' % seen)
    assert set(seen) <= {'sok', 'salive', 'snok'}
    names = []
    started = time.monotonic()
    for dummy in range(2 * erldist.NAME_SLOTS):
        with erldist.connect(cookie=node.cookie, **args) as conn:
            names.append(conn.own_node)
    assert all(a != b for a, b in zip(names, names[1:]))
    assert time.monotonic() - started < 5
