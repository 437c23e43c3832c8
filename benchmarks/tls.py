"""TLS distribution beside plain TCP (issue 14): connect + handshake + rpc erlang:nodes/0 in
one process, against real `erl` nodes on loopback in the same run: a plain fixed-port node,
and TLS nodes (inet_tls_dist, peers verified both ways) offering TLS 1.3 and TLS 1.2 only.
Target: TLS within 3 ms (median). Prints a table, writes benchmarks/results/tls.json.

    .venv/bin/python benchmarks/tls.py [--iterations 300]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COLLECTIONS = ROOT / ".build" / "collections"
if str(COLLECTIONS) not in sys.path:
    sys.path.insert(0, str(COLLECTIONS))

# pylint: disable=wrong-import-position
from bench import time_loop  # noqa: E402  (this directory: the measuring loop of make bench)
from ansible_collections.xmpp.ejabberd.plugins.module_utils import erldist  # noqa: E402
from ansible_collections.xmpp.ejabberd.tests.helpers import pki  # noqa: E402
from ansible_collections.xmpp.ejabberd.tests.helpers.erlnode import ErlNode  # noqa: E402

TARGET_MS = 3.0


def loop(node, tls, iterations, warmup=20):
    """connect + handshake + rpc + close, timed (bench.time_loop: median, p90... in ms)."""
    def once():
        with erldist.connect(node.node, node.cookie, address=node.address, dist_port=node.port,
                             timeout=5, tls=tls) as conn:
            conn.rpc("erlang", "nodes", [], 5)
    cpu = time.process_time()
    row = time_loop(once, iterations, warmup)
    # This process's own CPU per call (ours: Python, OpenSSL); the rest of the wall time is
    # the node's side of the handshake (OTP's ssl, written in Erlang) and the waits between.
    row["client_cpu_ms"] = (time.process_time() - cpu) * 1000 / (iterations + warmup)
    return row


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    ap.add_argument("--iterations", type=int, default=300)
    ap.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results")
    args = ap.parse_args(argv)
    work = tempfile.mkdtemp(prefix="xmpp-ejabberd-bench-tls.")
    ca = pki.CA(work)
    cert, key = ca.issue("node", ["127.0.0.1"])
    client = erldist.tls_context(*ca.issue("client", ["127.0.0.1"]), ca.path)
    nodes = {
        "plain TCP": ([], None),
        "TLS 1.3": (pki.tls_node_args(pki.ssl_dist_optfile(os.path.join(work, "t13.conf"), cert, key, ca.path,
                                                           ("tlsv1.3",))), client),
        "TLS 1.2": (pki.tls_node_args(pki.ssl_dist_optfile(os.path.join(work, "t12.conf"), cert, key, ca.path,
                                                           ("tlsv1.2",))), client),
    }
    results = {}
    for label, (extra, tls) in nodes.items():
        with ErlNode("bench%d" % len(results), longnames=True, dist_port=0, extra_args=extra) as node:
            print("tls bench: %s, %d iterations" % (label, args.iterations), file=sys.stderr)
            results[label] = loop(node, tls, args.iterations)
    base = results["plain TCP"]["median_ms"]
    print("\nConnect + handshake + rpc erlang:nodes/0 in one process, loopback, OTP's own node (ms):")
    print("%-10s %8s %8s %8s %10s %11s" % ("", "median", "p90", "min", "vs plain", "client CPU"))
    for label, row in results.items():
        print("%-10s %8.2f %8.2f %8.2f %9.1fx %11.2f" % (label, row["median_ms"], row["p90_ms"], row["min_ms"],
                                                         row["median_ms"] / base, row["client_cpu_ms"]))
    print("  client CPU: this process's own CPU per call (mean); the rest is the node's side and the waits")
    worst = max(results["TLS 1.3"]["median_ms"], results["TLS 1.2"]["median_ms"])
    print("  target: TLS within %.0f ms (median): %.2f ms, %s"
          % (TARGET_MS, worst, "MET" if worst <= TARGET_MS else "NOT MET"))
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / "tls.json").write_text(json.dumps({"results": results, "load": os.getloadavg()}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
