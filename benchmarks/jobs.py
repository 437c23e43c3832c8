"""Whole jobs, side by side (issue 13): the collection's `site` and `verify` against the
baseline play (benchmarks/baseline/: how existing ejabberd and RabbitMQ roles cluster), on
VM-like lab hosts (systemd, SSH as admin with sudo, pipelining, the package's node running
as after the install), for 3, 6 and 9 nodes.

For every size and every play: a fresh lab (the package's own node running, as on a
server where the package was installed), converge, rerun (nothing to change), verify; RUNS
times, each on a new lab. Prints a table (medians, and the ratio ours/baseline), the memory
of one node, and writes benchmarks/results/jobs.json. Timings are reported, never asserted.

    .venv/bin/python benchmarks/jobs.py [--sizes 3,6,9] [--runs 3] [--big-runs 1]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COLLECTIONS = ROOT / ".build" / "collections"
if str(COLLECTIONS) not in sys.path:
    sys.path.insert(0, str(COLLECTIONS))

# pylint: disable=wrong-import-position
from ansible_collections.xmpp.ejabberd.tests.helpers import lab as harness  # noqa: E402
from ansible_collections.xmpp.ejabberd.tests.helpers.playbook import PlaybookRunner  # noqa: E402

DIST_PORT = 5210
PLAYS = {
    "ours": {"site": "xmpp.ejabberd.site", "verify": "xmpp.ejabberd.verify"},
    "baseline": {"site": str(ROOT / "benchmarks" / "baseline" / "site.yml"),
                 "verify": str(ROOT / "benchmarks" / "baseline" / "verify.yml")},
}
# Targets of issue 13 (seconds; medians for 3 nodes, rerun for 9).
TARGETS = {("converge", 3): 30.0, ("rerun", 3): 10.0, ("verify", 3): 5.0, ("rerun", 9): 20.0}


def log(msg: str) -> None:
    print("jobs: " + msg, file=sys.stderr, flush=True)


def memory_mib(container: str) -> float:
    """The container's memory use as docker reports it (cgroup, MiB)."""
    out = subprocess.run([harness.DOCKER, "stats", "--no-stream", "--format", "{{.MemUsage}}",
                          container], capture_output=True, text=True, check=True).stdout
    value, unit = re.match(r"\s*([0-9.]+)\s*([KMG]i?B)", out).groups()
    return float(value) * {"KiB": 1 / 1024, "MiB": 1, "GiB": 1024, "kB": 1 / 1024,
                           "MB": 1, "GB": 1024}[unit]


def one_run(play: str, size: int, run: int, args) -> dict:
    """A fresh lab of SIZE hosts: converge, rerun, verify with PLAY's playbooks."""
    prefix = "%s%s%d" % (args.prefix, play[0], size)
    lab = harness.LabCluster(suite=args.suite, size=size, prefix=prefix, dist_port=DIST_PORT,
                             start=False, vm=True)
    workdir = tempfile.mkdtemp(prefix="xmpp-ejabberd-jobs.")
    try:
        began = time.monotonic()
        lab.up()
        result = {"lab_up_s": round(time.monotonic() - began, 1)}
        runner = PlaybookRunner(workdir)
        runner.env["ANSIBLE_FORKS"] = str(max(5, size))
        hosts = {}
        for ref in range(1, size + 1):
            ip = lab.node(ref)["ip"]
            hosts["n%d" % ref] = (ref, {"ejabberd_node_name": "ejabberd@" + ip,
                                        "ejabberd_inet_dist_interface": ip})
        inventory = runner.ssh_inventory(lab, hosts, {"ejabberd_dist_port": DIST_PORT})
        variables = {"ejabberd_cookie": runner.cookie()}
        for step, playbook in (("converge", "site"), ("rerun", "site"), ("verify", "verify")):
            done = runner.play(PLAYS[play][playbook], inventory, variables, timeout=1800)
            if done.rc != 0:
                raise RuntimeError("%s %s (%d nodes, run %d) failed: %r" % (play, step, size, run, done))
            result[step] = round(done.wall, 2)
            if step == "rerun":
                result["rerun_changed"] = sum(v["changed"] for v in done.recap.values())
            log("%s, %d nodes, run %d: %s %.1f s" % (play, size, run, step, done.wall))
        refs = range(1, size + 1)
        lab.wait_members(refs, sorted(lab.node(i)["name"] for i in refs), timeout=60)
        result["node_memory_mib"] = round(memory_mib(lab.node(1)["container"]), 1)
        return result
    finally:
        lab.close()
        subprocess.run(["rm", "-rf", workdir], check=False)


def median(values):
    return round(statistics.median(values), 2) if values else None


def table(results: dict, sizes) -> str:
    header = ("nodes", "play", "converge", "rerun", "verify", "node MiB")
    lines = ["%-6s %-9s %10s %8s %8s %12s" % header]
    for size in sizes:
        row = {}
        for play in PLAYS:
            runs = results[str(size)][play]
            row[play] = {step: median([r[step] for r in runs]) for step in ("converge", "rerun", "verify")}
            lines.append("%-6d %-9s %10.1f %8.1f %8.1f %12.0f" % (
                size, play, row[play]["converge"], row[play]["rerun"], row[play]["verify"],
                median([r["node_memory_mib"] for r in runs])))
        lines.append("%-6d %-9s %10.2f %8.2f %8.2f" % (size, "ratio", *(
            row["ours"][step] / row["baseline"][step] for step in ("converge", "rerun", "verify"))))
    return "\n".join(lines)


def targets(results: dict) -> list[str]:
    out = []
    for (step, size), limit in sorted(TARGETS.items()):
        runs = results.get(str(size), {}).get("ours")
        if runs:
            got = median([r[step] for r in runs])
            out.append("%s %d nodes: %.1f s (target <= %.0f s): %s"
                       % (step, size, got, limit, "MET" if got <= limit else "NOT MET"))
    # Linear growth at most: verify's time per node does not rise from 3 nodes to the largest.
    largest = max((int(size) for size in results), default=3)
    if largest > 3 and "3" in results:
        per_node = {size: median([r["verify"] for r in results[str(size)]["ours"]]) / size
                    for size in (3, largest)}
        out.append("verify per node: %.2f s at 3 nodes, %.2f s at %d (target: no more): %s"
                   % (per_node[3], per_node[largest], largest,
                      "MET" if per_node[largest] <= per_node[3] else "NOT MET"))
    if "3" in results:
        for step in ("converge", "verify"):
            ours = median([r[step] for r in results["3"]["ours"]])
            base = median([r[step] for r in results["3"]["baseline"]])
            out.append("%s 3 nodes: ours/baseline %.2f (target <= 0.50): %s"
                       % (step, ours / base, "MET" if ours / base <= 0.5 else "NOT MET"))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    ap.add_argument("--sizes", default="3,6,9", help="cluster sizes (default 3,6,9)")
    ap.add_argument("--runs", type=int, default=3, help="runs per play for 3 nodes (default 3)")
    ap.add_argument("--big-runs", type=int, default=1, help="runs per play for more nodes (default 1)")
    ap.add_argument("--suite", default="bookworm", choices=harness.SUITES)
    ap.add_argument("--prefix", default="xjob")
    ap.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results")
    args = ap.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s]
    results: dict = {}
    for size in sizes:
        results[str(size)] = {}
        for play in PLAYS:
            runs = args.runs if size <= 3 else args.big_runs
            results[str(size)][play] = [one_run(play, size, run, args) for run in range(1, runs + 1)]
    text = table(results, sizes)
    print("\nWhole jobs on VM-like hosts (%s, SSH + sudo, pipelining), seconds, medians:\n%s"
          % (args.suite, text))
    for line in targets(results):
        print("  " + line)
    total_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2 ** 30
    per_node = median([r["node_memory_mib"] for size in results.values()
                       for runs in size.values() for r in runs])
    print("  memory: %.0f MiB per node (container: systemd, sshd, ejabberd); this machine (%.0f GiB) "
          "holds about %d such nodes" % (per_node, total_gib, total_gib * 1024 * 0.8 // per_node))
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / "jobs.json").write_text(json.dumps(
        {"results": results, "sizes": sizes, "suite": args.suite, "load": os.getloadavg()},
        indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
