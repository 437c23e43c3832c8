# Copyright: xmpp.ejabberd contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Many short connections to one real node, and what they leave behind.

Shared by tests/integration/test_atom_bound.py (a local OTP 25 node) and
tests/integration/test_otp_matrix.py (OTP 25, 27 and 29 in lab containers):
a node keeps every node name that connects as an atom, forever, so the
client must reuse a small set of names (erldist.NAME_SLOTS), and must still
let many connections run at once.

``connect`` below is a function of no arguments that returns a new
erldist.Connection to the node under test (its cookie stays in the caller).
"""

from __future__ import annotations

import concurrent.futures
import json
import socket
import struct
import subprocess
import sys

from ansible_collections.xmpp.ejabberd.plugins.module_utils import erldist
from ansible_collections.xmpp.ejabberd.plugins.module_utils.etf import Atom
from ansible_collections.xmpp.ejabberd.tests.helpers.common import COLLECTIONS_ROOT

# Atoms a node may make for reasons of its own while the test runs (a module
# loaded on first use, ...): what the bound allows beyond NAME_SLOTS.
SLACK_ATOMS = 4


def atom_count(connect):
    with connect() as conn:
        return conn.rpc('erlang', 'system_info', [Atom('atom_count')])


def one_connection(connect):
    """Connect, ask the node its name, close: the name, or the DistError's reason."""
    try:
        with connect() as conn:
            return str(conn.rpc('erlang', 'node', []))
    except erldist.DistError as exc:
        return 'error: %s: %s' % (exc.reason, exc)


def sequential(connect, count):
    return [one_connection(connect) for dummy in range(count)]


def threads(connect, count, parallel):
    with concurrent.futures.ThreadPoolExecutor(max_workers=parallel) as pool:
        return list(pool.map(lambda _i: one_connection(connect), range(count)))


# One of the processes of processes(): its own connections, one after the other.
_CHILD = r'''
import json, sys
sys.path.insert(0, sys.argv[1])
from ansible_collections.xmpp.ejabberd.plugins.module_utils import erldist
args = json.loads(sys.argv[2])
args['cookie'] = sys.stdin.readline().rstrip('\n')
out = []
for _ in range(int(sys.argv[3])):
    try:
        with erldist.connect(**args) as conn:
            out.append(str(conn.rpc('erlang', 'node', [])))
    except erldist.DistError as exc:
        out.append('error: %s: %s' % (exc.reason, exc))
print(json.dumps(out))
'''


def processes(connect_args, cookie, count, parallel):
    """``count`` connections from ``parallel`` processes at once (as Ansible forks
    do); ``connect_args``: erldist.connect's keyword arguments but the cookie,
    which goes to the children on stdin."""
    procs = [subprocess.Popen([sys.executable, '-c', _CHILD, COLLECTIONS_ROOT,
                               json.dumps(connect_args), str(count // parallel)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
             for dummy in range(parallel)]
    results = []
    for proc in procs:
        out, err = proc.communicate(cookie + '\n', timeout=600)
        assert proc.returncode == 0, err[-2000:]
        results += json.loads(out.strip().splitlines()[-1])
    return results


def atom_growth(connect, connect_args, cookie, count=1000, parallel=20):
    """``count`` connections one after the other, then ``count`` from ``parallel``
    threads, then ``count`` from ``parallel`` processes, with the node's
    atom_count before and after each phase.  Returns ``{'counts': [...],
    'failures': [...], 'names': set of node answers}``."""
    counts = [atom_count(connect)]
    answers = []
    for phase in (lambda: sequential(connect, count),
                  lambda: threads(connect, count, parallel),
                  lambda: processes(connect_args, cookie, count, parallel)):
        answers += phase()
        counts.append(atom_count(connect))
    return {'counts': counts, 'failures': [a for a in answers if a.startswith('error: ')],
            'answers': set(answers), 'connections': len(answers)}


# --------------------------------------------------------------------------- handshakes by hand

def raw_handshake_start(address, port, name, creation=7):
    """send_name under ``name`` on a new socket; returns ``(socket, status)`` (the
    status a node answers, or 'closed')."""
    sock = socket.create_connection((address, port), timeout=5)
    own = name.encode('utf-8')
    payload = struct.pack('>BQIH', ord('N'), erldist.CLIENT_FLAGS, creation, len(own)) + own
    sock.sendall(struct.pack('>H', len(payload)) + payload)
    return sock, recv_hs(sock)


def recv_hs(sock):
    """One handshake message as text ('closed' if the node closed, 'silent' if
    nothing came within the socket's timeout)."""
    try:
        head = sock.recv(2)
        if len(head) < 2:
            return 'closed'
        length = struct.unpack('>H', head)[0]
        data = b''
        while len(data) < length:
            chunk = sock.recv(length - len(data))
            if not chunk:
                return 'closed'
            data += chunk
        return data.decode('latin-1')
    except socket.timeout:
        return 'silent'
    except OSError:
        return 'closed'


def second_handshake_under_one_name(address, port, name):
    """Two handshakes under ``name``, the second while the first waits for its
    challenge: what each sees.  ``{'first': ..., 'second': ..., 'first_after': ...}``."""
    first, first_status = raw_handshake_start(address, port, name)
    try:
        challenge = recv_hs(first)
        second, second_status = raw_handshake_start(address, port, name)
        try:
            first.settimeout(0.5)
            return {'first': first_status, 'challenge': challenge[:1], 'second': second_status,
                    'first_after': recv_hs(first)}
        finally:
            second.close()
    finally:
        first.close()
