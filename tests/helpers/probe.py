# Copyright: xmpp.ejabberd contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""One rpc of the client in a process of its own: what it costs in time and memory.

Used by tests/integration/test_hostile_peers.py and benchmarks/bench.py against
the fake nodes of tests/helpers/fakepeer.py.  The process connects, makes one
benign call (so the code paths are loaded and the baseline includes them), then
the call under test, and reports its outcome, its wall time and the peak RSS
(``resource.getrusage(RUSAGE_SELF).ru_maxrss``) before and after it.
"""

from __future__ import annotations

import json
import subprocess
import sys

from ansible_collections.xmpp.ejabberd.tests.helpers.common import COLLECTIONS_ROOT

_CLIENT = r'''
import json, resource, sys, time
sys.path.insert(0, sys.argv[1])
from ansible_collections.xmpp.ejabberd.plugins.module_utils import erldist
node, port, timeout = sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
conn = erldist.connect(node, sys.stdin.readline().strip(), dist_port=port, timeout=5)
conn.rpc('erlang', 'node', [])
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
start = time.monotonic()
out = {}
try:
    result = conn.rpc('erlang', 'nodes', [], timeout)
    out['result'] = type(result).__name__
except erldist.DistError as exc:
    out.update(reason=exc.reason, msg=str(exc))
except BaseException as exc:
    out.update(escaped=type(exc).__name__, msg=str(exc)[:300])
out['elapsed'] = time.monotonic() - start
out['rss_before_kb'] = before
out['rss_after_kb'] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps(out))
'''

# The client process is started from this small one, not from the caller: Linux
# keeps ru_maxrss across exec, and a child made by (v)fork of a big process (pytest:
# hundreds of MB) starts with its parent's peak, hiding the client's own.
_LAUNCHER = 'import subprocess, sys; sys.exit(subprocess.call([sys.executable] + sys.argv[1:]))'


def run_client(node, port, cookie, timeout, collections=COLLECTIONS_ROOT):
    """The report of one probe against the fake node ``node`` on ``port``: ``reason``
    and ``msg`` (or ``result``, or ``escaped`` for an exception other than
    DistError), ``elapsed`` seconds, ``rss_before_kb``, ``rss_after_kb``, and
    ``growth_mb``.  ``collections``: where the client under test is imported from."""
    proc = subprocess.run([sys.executable, '-c', _LAUNCHER, '-c', _CLIENT, collections, node,
                           str(port), str(timeout)], input=cookie + '\n', capture_output=True,
                          text=True, timeout=300, check=False)
    if proc.returncode != 0 or not proc.stdout.strip():
        raise RuntimeError('probe failed (exit %d): %s' % (proc.returncode, proc.stderr[-3000:]))
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    report['growth_mb'] = (report['rss_after_kb'] - report['rss_before_kb']) / 1024.0
    return report
