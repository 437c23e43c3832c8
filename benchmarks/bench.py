# Copyright: xmpp.ejabberd contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmarks of the bundled Erlang distribution client and the modules built on it.

Run through ``benchmarks/run.sh`` (``make bench``); see benchmarks/README.md.

* Issue 2 (local Erlang nodes, fixed-port and epmd mode): connect + handshake +
  ``rpc erlang:nodes/0`` in-process; the whole ``erlang_node_info`` module as a
  Python process; ``erl_call`` and ``erl`` doing the same, in the same run.
* Issue 3 (3-node ejabberd cluster in lab containers): the whole
  ``ejabberd_cluster_info`` module as a Python process on the host vs
  ``ejabberdctl list_cluster`` inside node 1's container; plus the in-process
  time of the module's queries.
* Issue 9 (hostile replies): each reply of tests/helpers/fakepeer.HOSTILE_REPLIES
  from a fake node on loopback to a client process of its own: the peak RSS it
  adds and the wall time of the rpc (timeout 2 s).

Timings are reported, never asserted: each target is printed with whether it
was met. Every Erlang node and container started here is stopped here, also on
Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COLLECTIONS = ROOT / ".build" / "collections"
MODULE_PKG = "ansible_collections.xmpp.ejabberd.plugins.modules"
if str(COLLECTIONS) not in sys.path:
    sys.path.insert(0, str(COLLECTIONS))

# pylint: disable=wrong-import-position
from ansible_collections.xmpp.ejabberd.plugins.module_utils import erldist  # noqa: E402
from ansible_collections.xmpp.ejabberd.plugins.modules import ejabberd_cluster_info  # noqa: E402
from ansible_collections.xmpp.ejabberd.plugins.modules import erlang_node_info  # noqa: E402
from ansible_collections.xmpp.ejabberd.plugins.module_utils.etf import Atom, Pid, Reference  # noqa: E402
from ansible_collections.xmpp.ejabberd.tests.helpers import fakepeer as fp  # noqa: E402
from ansible_collections.xmpp.ejabberd.tests.helpers import probe  # noqa: E402
from ansible_collections.xmpp.ejabberd.tests.helpers.common import write_private  # noqa: E402
from ansible_collections.xmpp.ejabberd.tests.helpers.erlnode import ErlNode  # noqa: E402
from ansible_collections.xmpp.ejabberd.tests.helpers import lab as harness  # noqa: E402

IN_PROCESS_TARGET_MS = 5.0
PROCESS_RATIO_TARGET = 0.25
HOSTILE_TIMEOUT = 2.0
HOSTILE_RSS_TARGET_MB = 64.0
HOSTILE_SLACK_S = 0.25
HOSTILE_NODE = "x@127.0.0.1"
# The hostile replies measured, by name in fakepeer.HOSTILE_REPLIES.
HOSTILE_CASES = ("long_strings_compressed", "wrong_ref_stream", "long_strings_half",
                 "binary_filling_the_budget", "wrong_ref_stream_fitting", "list_tail_chain",
                 "many_small_tuples", "badrpc_deep", "badrpc_bigint", "control_deep",
                 "control_huge", "reply_to_another_pid")


# --------------------------------------------------------------------------- helpers

# Python processes run without a bytecode cache, as under Ansible (AnsiballZ runs a module
# from a zip, so its sources are compiled on every run), and whatever the caller's
# environment says: figures compare from one machine to the next.
PYTHON_ENV = {"PYTHONDONTWRITEBYTECODE": "1"}


def log(msg):
    print("[bench %s] %s" % (time.strftime("%H:%M:%S"), msg), file=sys.stderr, flush=True)


def summarize(seconds):
    """n, median, p90, mean, stdev, min, max of a list of durations, in ms."""
    ms = sorted(s * 1000.0 for s in seconds)
    if not ms:
        return None
    p90 = statistics.quantiles(ms, n=10, method="inclusive")[8] if len(ms) > 1 else ms[0]
    return {
        "n": len(ms),
        "median_ms": round(statistics.median(ms), 3),
        "p90_ms": round(p90, 3),
        "mean_ms": round(statistics.fmean(ms), 3),
        "stdev_ms": round(statistics.stdev(ms), 3) if len(ms) > 1 else 0.0,
        "min_ms": round(ms[0], 3),
        "max_ms": round(ms[-1], 3),
    }


def time_loop(func, iterations, warmup):
    for _warm in range(warmup):
        func()
    samples = []
    for _iteration in range(iterations):
        start = time.perf_counter()
        func()
        samples.append(time.perf_counter() - start)
    return summarize(samples)


def module_argv(python, module, args_file):
    return [python, "-m", "%s.%s" % (MODULE_PKG, module), args_file]


@contextlib.contextmanager
def running(start, stop):
    """``start()``, then ``stop()`` whatever happens; Ctrl-C cannot cut the stop short."""
    try:
        yield start()
    finally:
        saved = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            stop()
        finally:
            for sig, handler in saved.items():
                signal.signal(sig, handler)


def check_run(argv, env, expect, what):
    """Run a command once, outside the timing, and check its answer."""
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120,
                          stdin=subprocess.DEVNULL, check=False)
    out = proc.stdout.strip()
    if proc.returncode != 0 or not expect(out):
        raise RuntimeError("%s: unexpected answer (exit %d): %s %s"
                           % (what, proc.returncode, out[-600:], proc.stderr.strip()[-600:]))
    return out


def measure(args, commands, env, export, warmup, runs):
    """Time ``[(name, argv), ...]`` as whole processes; one summary dict per name.

    ``interleaved`` (default): our own loop runs every command once per round, in
    a rotating order, so load from other programs hits all of them alike.
    ``hyperfine``: hyperfine (no intermediate shell), one command after the other.
    Raw times go to ``export`` either way.
    """
    log("%s x%d: %s" % (args.runner, runs, ", ".join(name for name, _argv in commands)))
    if args.runner == "hyperfine":
        return _hyperfine(commands, env, export, warmup, runs)
    times = {name: [] for name, _argv in commands}
    for rnd in range(warmup + runs):
        shift = rnd % len(commands)
        for name, argv in commands[shift:] + commands[:shift]:
            start = time.perf_counter()
            proc = subprocess.run(argv, env=env, stdin=subprocess.DEVNULL,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                  check=False)
            elapsed = time.perf_counter() - start
            if proc.returncode != 0:
                raise RuntimeError("%s exited %d during the benchmark" % (name, proc.returncode))
            if rnd >= warmup:
                times[name].append(elapsed)
    with open(export, "w", encoding="utf-8") as handle:
        json.dump({"runner": "interleaved", "results": [
            {"command": shlex.join(argv), "name": name, "times": times[name]}
            for name, argv in commands]}, handle, indent=1)
    results = {}
    for name, argv in commands:
        results[name] = dict(summarize(times[name]), command=shlex.join(argv))
    return results


def _hyperfine(commands, env, export, warmup, runs):
    cmd = ["hyperfine", "--shell=none", "--style", "none", "--warmup", str(warmup),
           "--runs", str(runs), "--export-json", str(export)]
    for name, _argv in commands:
        cmd += ["--command-name", name]
    cmd += [shlex.join(argv) for _name, argv in commands]
    subprocess.run(cmd, env=env, check=True, stdin=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    with open(export, encoding="utf-8") as handle:
        data = json.load(handle)
    results = {}
    for (name, argv), res in zip(commands, data["results"]):
        results[name] = dict(summarize(res["times"]), command=shlex.join(argv))
    return results


def load_average():
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def other_containers(prefixes):
    proc = subprocess.run([harness.DOCKER, "ps", "--format", "{{.Names}}"], capture_output=True,
                          text=True, check=False, stdin=subprocess.DEVNULL)
    names = proc.stdout.split()
    return sorted(n for n in names if not any(n.startswith(p + "-") for p in prefixes))


def tool_version(argv):
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False,
                              stdin=subprocess.DEVNULL)
        return (proc.stdout or proc.stderr).strip().splitlines()[0]
    except (OSError, IndexError, subprocess.TimeoutExpired):
        return None


# --------------------------------------------------------------------------- issue 2

def bench_local_node(mode, node, args, workdir, python):
    """One local node: in-process loop, then the processes side by side."""
    res = {"node": node.node, "mode": mode, "port": node.port, "epmd_port": node.epmd_port}
    kwargs = dict(node=node.node, cookie=node.cookie, timeout=5.0)
    if node.fixed_port:
        kwargs["dist_port"] = node.port
    else:
        kwargs["epmd_port"] = node.epmd_port

    def once():
        with erldist.connect(**kwargs) as conn:
            conn.rpc("erlang", "nodes", [], 5.0)

    log("%s: in-process connect + handshake + rpc erlang:nodes/0, %d iterations"
        % (mode, args.iterations))
    res["in_process"] = time_loop(once, args.iterations, warmup=10)

    def module_work():
        with erldist.connect(**kwargs) as conn:
            erlang_node_info.node_facts(conn)
    res["in_process_module_work"] = time_loop(module_work, args.iterations, warmup=10)
    if not node.fixed_port:
        res["in_process_epmd_lookup"] = time_loop(
            lambda: erldist.epmd_port_please(node.address, node.name, node.epmd_port),
            args.iterations, warmup=10)

    module_args = {"node": node.node, "cookie_file": node.cookie_file}
    if node.fixed_port:
        module_args["dist_port"] = node.port
    else:
        module_args["epmd_port"] = node.epmd_port
    args_file = write_private(workdir, "args-%s.json" % mode,
                              json.dumps({"ANSIBLE_MODULE_ARGS": module_args}))
    py_module = module_argv(python, "erlang_node_info", args_file)
    erl_call = ["erl_call", *node.erl_call_args(), "-a", "erlang nodes []"]
    # -hidden like our client (and ejabberdctl): no visible connection, no global sync.
    expr = 'io:format("~p~n", [rpc:call(\'%s\', erlang, nodes, [])]), halt().' % node.node
    if node.fixed_port:
        erl = ["erl", "-noshell", "-hidden", "-name", "benchtmp@127.0.0.1",
               "-erl_epmd_port", str(node.port), "-start_epmd", "false",
               "-dist_listen", "false", "-eval", expr]
    else:
        erl = ["erl", "-noshell", "-hidden", "-sname", "benchtmp", "-start_epmd", "false",
               "-eval", expr]
    # One environment for every command: the node's private HOME (its cookie, read
    # by erl_call and erl) and ERL_EPMD_PORT (its private epmd, or a dead port).
    env = dict(node._env(), PYTHONPATH=str(COLLECTIONS), **PYTHON_ENV)  # pylint: disable=protected-access
    env.pop("PYTHONHOME", None)

    out = check_run(py_module, env, lambda o: json.loads(o).get("reachable") is True,
                    "erlang_node_info module")
    res["module_result"] = {k: v for k, v in json.loads(out).items() if k != "invocation"}
    check_run(erl_call, env, lambda o: o == "[]", "erl_call")
    check_run(erl, env, lambda o: o == "[]", "erl")

    probe = [python, str(Path(__file__).with_name("client_probe.py")), node.node,
             str(node.cookie_file), str(node.port) if node.fixed_port else "-",
             str(node.epmd_port or 4369)]
    check_run(probe, env, lambda o: o == "[]", "client_probe.py")
    commands = [
        ("python module erlang_node_info", py_module),
        ("python process, client only (no Ansible)", probe),
        ("erl_call -a 'erlang nodes []'", erl_call),
        ("erl -eval rpc:call(..nodes..)", erl),
    ]
    if mode == "fixed_port":
        # Where the module's time goes: the interpreter and Ansible's module_utils.
        commands += [
            ("baseline: python -c pass", [python, "-c", "pass"]),
            ("baseline: python import AnsibleModule",
             [python, "-c", "import ansible.module_utils.basic"]),
            # ... and the module with its module_utils, not run (issue 13: benchmarks/module_cost.py).
            ("baseline: python import Ansible + module",
             [python, "-c", "import ansible.module_utils.basic; import %s.erlang_node_info" % MODULE_PKG]),
            ("baseline: /bin/true (spawn cost)", ["/bin/true"]),
        ]
    res["load_before"] = load_average()
    res["process"] = measure(args, commands, env, args.results / ("raw-local-%s.json" % mode),
                             warmup=args.warmup, runs=args.runs)
    res["load_after"] = load_average()
    return res


# --------------------------------------------------------------------------- issue 9

def bench_hostile(args):
    """Each hostile reply, ``args.hostile_runs`` times, to a new client process."""
    cookie = "bench-%d" % os.getpid()
    sample = {"pid": Pid(HOSTILE_NODE, 1, 0, 5), "ref": Reference(HOSTILE_NODE, 5, [1, 2, 3])}
    res = {"timeout_s": HOSTILE_TIMEOUT, "client": str(args.client_collections), "replies": {}}
    for name in HOSTILE_CASES:
        fp.HOSTILE_REPLIES[name](sample)  # the fake node's own work (deflating) done once
        answer = fp.answer_with({("erlang", "node"): fp.encoded(Atom(HOSTILE_NODE)),
                                 ("erlang", "nodes"): fp.HOSTILE_REPLIES[name]})
        reports = []
        for _run in range(args.hostile_runs):
            with fp.FakeServer(fp.Peer(HOSTILE_NODE, cookie, after=fp.rpc_server(answer))) as peer:
                reports.append(probe.run_client(HOSTILE_NODE, peer.port, cookie, HOSTILE_TIMEOUT,
                                                str(args.client_collections)))
        last = reports[-1]
        if "escaped" in last:
            outcome = "escaped %s" % last["escaped"]
        else:
            outcome = last.get("reason") or "returned a %s" % last.get("result")
        res["replies"][name] = {
            "outcome": outcome,
            "growth_mb": round(max(r["growth_mb"] for r in reports), 1),
            "elapsed_s": round(max(r["elapsed"] for r in reports), 3),
            "elapsed_s_median": round(statistics.median(r["elapsed"] for r in reports), 3),
            "rss_before_mb": round(last["rss_before_kb"] / 1024.0, 1)}
        log("hostile %s: %s, +%.0f MB, %.2f s" % (name, outcome, res["replies"][name]["growth_mb"],
                                                  res["replies"][name]["elapsed_s"]))
    replies = res["replies"]
    res["worst_rss"] = max(replies, key=lambda n: replies[n]["growth_mb"])
    res["worst_wall"] = max(replies, key=lambda n: replies[n]["elapsed_s"])
    return res


# --------------------------------------------------------------------------- issue 3

def start_lab(suite, prefix):
    """A started 3-node LabCluster on a free subnet (the harness picks it)."""
    log("lab %s: starting 3 ejabberd containers (prefix %s)" % (suite, prefix))
    return harness.LabCluster(suite=suite, size=3, prefix=prefix, dist_port=5210).up()


def run_lab_suite(suite, args, workdir, python):
    prefix = "%s-%s" % (args.prefix, suite)
    res = {"suite": suite, "prefix": prefix}
    t0 = time.monotonic()
    labs = []

    def stop():
        if labs:
            log("lab %s: removing the containers" % suite)
            labs[0].close()

    with running(lambda: labs.append(start_lab(suite, prefix)), stop):
        lab = labs[0]
        res["subnet"] = str(lab.subnet)
        res["lab_up_s"] = round(time.monotonic() - t0, 1)
        t0 = time.monotonic()
        log("lab %s: joining n2 and n3 to n1 (ejabberdctl join_cluster)" % suite)
        for i in (2, 3):
            lab.join_cluster(i, 1, timeout=120)
        members = sorted(lab.node(i)["name"] for i in (1, 2, 3))
        listed = lab.list_cluster(1)
        if listed != members:
            raise RuntimeError("lab %s: list_cluster on n1 says %s, expected %s"
                               % (suite, listed, members))
        res["join_s"] = round(time.monotonic() - t0, 1)
        n1 = lab.node(1)
        res["node"] = n1["name"]
        res["container"] = n1["container"]
        res["members"] = members
        cookie_file = write_private(workdir, "cookie-%s" % suite, lab.cookie)

        target = dict(node=n1["name"], cookie=lab.cookie, address=None, dist_port=5210,
                      epmd_port=erldist.EPMD_DEFAULT_PORT, timeout=5.0)

        def own_view():
            facts = {}
            ejabberd_cluster_info.own_view(target, facts)
            return facts

        facts = own_view()
        if facts["running_nodes"] != members:
            raise RuntimeError("lab %s: own_view says %s" % (suite, facts))
        res["ejabberd_version"] = facts["ejabberd_version"]
        res["otp_release"] = facts["otp_release"]
        log("lab %s: in-process own_view (connect + the module's RPCs over the bridge), %d iterations"
            % (suite, args.lab_iterations))
        res["in_process_cluster_info"] = time_loop(own_view,
                                                   args.lab_iterations, warmup=5)

        def nodes_only():
            with erldist.connect(**target) as conn:
                conn.rpc("erlang", "nodes", [], 5.0)
        res["in_process_nodes"] = time_loop(nodes_only, args.lab_iterations, warmup=5)

        base = {"node": n1["name"], "cookie_file": cookie_file, "dist_port": 5210,
                "expected_nodes": members}
        args_file = write_private(workdir, "args-%s.json" % suite,
                                  json.dumps({"ANSIBLE_MODULE_ARGS": base}))
        peers_file = write_private(workdir, "args-%s-peers.json" % suite,
                                   json.dumps({"ANSIBLE_MODULE_ARGS": dict(base, check_peers=True)}))
        py_module = module_argv(python, "ejabberd_cluster_info", args_file)
        py_peers = module_argv(python, "ejabberd_cluster_info", peers_file)
        ctl = [harness.DOCKER, "exec", n1["container"], "runuser", "-u", harness.SERVICE_USER,
               "--", harness.EJABBERDCTL, "list_cluster"]
        exec_true = [harness.DOCKER, "exec", n1["container"], "true"]
        env = dict(os.environ, PYTHONPATH=str(COLLECTIONS), **PYTHON_ENV)

        out = check_run(py_module, env,
                        lambda o: json.loads(o).get("running_nodes") == members,
                        "ejabberd_cluster_info module")
        res["module_result"] = {k: v for k, v in json.loads(out).items() if k != "invocation"}
        check_run(py_peers, env, lambda o: json.loads(o).get("split_brain") is False,
                  "ejabberd_cluster_info module (check_peers)")
        check_run(ctl, env, lambda o: harness.parse_node_list(o) == members,
                  "ejabberdctl list_cluster")
        res["load_before"] = load_average()
        res["process"] = measure(
            args,
            [("python module ejabberd_cluster_info", py_module),
             ("ejabberdctl list_cluster (docker exec)", ctl),
             ("python module, check_peers=true", py_peers),
             ("baseline: docker exec true", exec_true)],
            env, args.results / ("raw-lab-%s.json" % suite),
            warmup=args.lab_warmup, runs=args.lab_runs)
        res["load_after"] = load_average()
    return res


# --------------------------------------------------------------------------- report

def fmt(x):
    return "%.2f" % x if x < 100 else "%.1f" % x


def print_table(title, rows, note=None):
    print()
    print(title)
    print("-" * len(title))
    head = ("%-44s %6s %10s %10s %10s %10s" % ("", "n", "median ms", "p90 ms", "mean ms", "min ms"))
    print(head)
    for name, s in rows:
        if s is None:
            continue
        print("%-44s %6d %10s %10s %10s %10s" % (name, s["n"], fmt(s["median_ms"]),
                                                 fmt(s["p90_ms"]), fmt(s["mean_ms"]),
                                                 fmt(s["min_ms"])))
    if note:
        for line in note:
            print("  " + line)


def evaluate(results):
    """Targets and whether they were met (never a failure)."""
    targets = []
    for mode, r in results.get("local", {}).items():
        med = r["in_process"]["median_ms"]
        targets.append({
            "id": "issue2-in-process-%s" % mode,
            "what": "in-process connect+handshake+rpc nodes/0 (%s): median %.2f ms (p90 %.2f)"
                    % (mode, med, r["in_process"]["p90_ms"]),
            "target": "< %.0f ms" % IN_PROCESS_TARGET_MS,
            "value": med, "met": med < IN_PROCESS_TARGET_MS})
        proc = r["process"]
        py = proc["python module erlang_node_info"]["median_ms"]
        erl_call = proc["erl_call -a 'erlang nodes []'"]["median_ms"]
        erl = proc["erl -eval rpc:call(..nodes..)"]["median_ms"]
        fastest_name, fastest = min((("erl_call", erl_call), ("erl", erl)), key=lambda x: x[1])
        ratio = py / fastest
        min_ratio = proc["python module erlang_node_info"]["min_ms"] / min(
            proc["erl_call -a 'erlang nodes []'"]["min_ms"],
            proc["erl -eval rpc:call(..nodes..)"]["min_ms"])
        bare = proc["python process, client only (no Ansible)"]["median_ms"]
        targets.append({
            "id": "issue2-client-process-%s" % mode,
            "what": "python process with the client only (%s) %.1f ms vs erl %.1f ms: ratio %.3f "
                    "(vs erl_call %.3f)" % (mode, bare, erl, bare / erl, bare / erl_call),
            "target": "ratio <= %.2f against erl" % PROCESS_RATIO_TARGET,
            "value": round(bare / erl, 4), "met": bare / erl <= PROCESS_RATIO_TARGET})
        targets.append({
            "id": "issue2-process-%s" % mode,
            "what": "python module process (%s) %.1f ms vs faster Erlang client (%s) %.1f ms: "
                    "ratio %.3f (vs erl %.3f, vs erl_call %.3f; ratio of the minima %.3f)"
                    % (mode, py, fastest_name, fastest, ratio, py / erl, py / erl_call,
                       min_ratio),
            "target": "ratio <= %.2f" % PROCESS_RATIO_TARGET,
            "value": round(ratio, 4), "met": ratio <= PROCESS_RATIO_TARGET})
    hostile = results.get("hostile")
    if hostile:
        worst = hostile["replies"][hostile["worst_rss"]]
        targets.append({
            "id": "issue9-hostile-rss",
            "what": "peak RSS added by the worst hostile reply (%s): %.1f MB"
                    % (hostile["worst_rss"], worst["growth_mb"]),
            "target": "<= %.0f MB" % HOSTILE_RSS_TARGET_MB,
            "value": worst["growth_mb"], "met": worst["growth_mb"] <= HOSTILE_RSS_TARGET_MB})
        worst = hostile["replies"][hostile["worst_wall"]]
        limit = HOSTILE_TIMEOUT + HOSTILE_SLACK_S
        targets.append({
            "id": "issue9-hostile-wall",
            "what": "longest rpc against a hostile reply (%s): %.2f s with timeout %.1f s"
                    % (hostile["worst_wall"], worst["elapsed_s"], HOSTILE_TIMEOUT),
            "target": "<= %.2f s" % limit,
            "value": worst["elapsed_s"], "met": worst["elapsed_s"] <= limit})
    for suite, r in results.get("lab", {}).items():
        proc = r["process"]
        py = proc["python module ejabberd_cluster_info"]["median_ms"]
        ctl = proc["ejabberdctl list_cluster (docker exec)"]["median_ms"]
        dx = proc["baseline: docker exec true"]["median_ms"]
        ratio = py / ctl
        min_ratio = (proc["python module ejabberd_cluster_info"]["min_ms"]
                     / proc["ejabberdctl list_cluster (docker exec)"]["min_ms"])
        targets.append({
            "id": "issue3-%s" % suite,
            "what": "ejabberd_cluster_info process %.1f ms vs ejabberdctl list_cluster %.1f ms "
                    "(%s, ejabberd %s): ratio %.3f (%.3f against ejabberdctl minus the "
                    "docker exec baseline of %.1f ms; ratio of the minima %.3f)"
                    % (py, ctl, suite, r.get("ejabberd_version"), ratio,
                       py / max(ctl - dx, 1e-9), dx, min_ratio),
            "target": "ratio <= %.2f" % PROCESS_RATIO_TARGET,
            "value": round(ratio, 4), "met": ratio <= PROCESS_RATIO_TARGET})
    return targets


def report(results):
    for mode, r in results.get("local", {}).items():
        rows = [("in-process: connect+handshake+rpc nodes/0", r["in_process"]),
                ("in-process: + otp_release (the module's work)", r["in_process_module_work"])]
        if "in_process_epmd_lookup" in r:
            rows.append(("in-process: EPMD PORT_PLEASE2 lookup alone", r["in_process_epmd_lookup"]))
        rows += list(r["process"].items())
        print_table("Issue 2, local OTP node %s (%s mode, port %s%s)"
                    % (r["node"], mode.replace("_", "-"), r["port"],
                       ", epmd port %s" % r["epmd_port"] if r["epmd_port"] else ""), rows,
                    note=["python processes: no bytecode cache (as under Ansible's AnsiballZ)",
                          "processes timed by: %s runner; load average %s -> %s"
                          % (results["settings"]["runner"], r.get("load_before"),
                             r.get("load_after"))])
    for suite, r in results.get("lab", {}).items():
        rows = [("in-process: own_view (connect + its RPCs)", r["in_process_cluster_info"]),
                ("in-process: connect + rpc nodes/0", r["in_process_nodes"])]
        rows += list(r["process"].items())
        print_table("Issue 3, lab %s: ejabberd %s / OTP %s, node 1 of 3 = %s"
                    % (suite, r["ejabberd_version"], r["otp_release"], r["node"]), rows,
                    note=["python module: a process on the host, reaching the container over "
                          "the docker bridge (dist port 5210)",
                          "ejabberdctl: runs inside the container (docker exec + runuser), "
                          "boots its own Erlang VM per call",
                          "lab up %s s, 2 joins %s s; processes timed by: %s runner; "
                          "load average %s -> %s"
                          % (r["lab_up_s"], r["join_s"], results["settings"]["runner"],
                             r.get("load_before"), r.get("load_after"))])
    hostile = results.get("hostile")
    if hostile:
        title = ("Issue 9, hostile replies: one rpc (timeout %.0f s) from a client process of its "
                 "own" % hostile["timeout_s"])
        print()
        print(title)
        print("-" * len(title))
        print("%-28s %-26s %16s %12s" % ("reply", "outcome", "peak RSS +MB", "wall s"))
        for name, r in hostile["replies"].items():
            print("%-28s %-26s %16.1f %12.3f" % (name, r["outcome"], r["growth_mb"], r["elapsed_s"]))
        print("  peak RSS: ru_maxrss of the client process after the call minus before it (max "
              "of %d runs); client: %s" % (results["settings"]["hostile_runs"], hostile["client"]))
    print()
    print("Targets (reported, not enforced)")
    print("--------------------------------")
    for t in results["targets"]:
        print("[%s] %s; target %s" % ("MET    " if t["met"] else "NOT MET", t["what"], t["target"]))


# --------------------------------------------------------------------------- main

def parse_args(argv):
    env = os.environ.get
    ap = argparse.ArgumentParser(description="xmpp.ejabberd benchmarks (issues 2, 3 and 9)")
    ap.add_argument("--suites", default=env("BENCH_SUITES", "bookworm,trixie"),
                    help="lab suites for issue 3, comma-separated (bookworm,trixie), "
                         "or 'none' (env BENCH_SUITES)")
    ap.add_argument("--skip-local", action="store_true", help="skip issue 2 (local nodes)")
    ap.add_argument("--skip-hostile", action="store_true", help="skip issue 9 (hostile replies)")
    ap.add_argument("--hostile-runs", type=int, default=3,
                    help="client processes per hostile reply (the worst is reported)")
    ap.add_argument("--client-collections", type=Path, default=COLLECTIONS,
                    help="where the client under test in the hostile-reply processes is "
                         "imported from (an ansible_collections root; e.g. another checkout's "
                         ".build/collections, to compare)")
    ap.add_argument("--iterations", type=int, default=int(env("BENCH_ITERATIONS", "200")),
                    help="in-process iterations against local nodes")
    ap.add_argument("--runner", choices=("interleaved", "hyperfine"),
                    default=env("BENCH_RUNNER", "interleaved"),
                    help="how whole processes are timed (env BENCH_RUNNER)")
    ap.add_argument("--runs", type=int, default=int(env("BENCH_RUNS", "30")),
                    help="timed runs of each process against the local nodes")
    ap.add_argument("--warmup", type=int, default=3, help="warmup runs (local)")
    ap.add_argument("--lab-runs", type=int, default=int(env("BENCH_LAB_RUNS", "15")),
                    help="timed runs of each process against the lab cluster")
    ap.add_argument("--lab-warmup", type=int, default=2, help="warmup runs (lab)")
    ap.add_argument("--lab-iterations", type=int, default=50,
                    help="in-process iterations against the lab cluster")
    ap.add_argument("--prefix", default=env("BENCH_PREFIX", "xbench"),
                    help="lab container/network name prefix")
    ap.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results")
    ap.add_argument("--python", default=sys.executable,
                    help="interpreter that runs the modules (needs ansible-core)")
    args = ap.parse_args(argv)
    suites = [s for s in args.suites.replace(" ", "").split(",") if s and s != "none"]
    for s in suites:
        if s not in harness.SUITES:
            ap.error("unknown suite %r (choose from %s)" % (s, ", ".join(harness.SUITES)))
    args.suites = suites
    return args


def _raise_interrupt(signum, _frame):
    raise KeyboardInterrupt("signal %d" % signum)


def main(argv=None):
    args = parse_args(argv)
    for tool in ("erl", "erl_call", "epmd") + (("hyperfine",) if args.runner == "hyperfine" else ()):
        if shutil.which(tool) is None:
            print("bench: %s not found (make deps installs it)" % tool, file=sys.stderr)
            return 2
    signal.signal(signal.SIGTERM, _raise_interrupt)
    signal.signal(signal.SIGHUP, _raise_interrupt)
    args.results.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    results = {
        "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "host": {"nproc": os.cpu_count(), "platform": platform.platform(),
                 "load_average_start": load_average()},
        "versions": {"python": platform.python_version(),
                     "ansible_core": _ansible_version(),
                     "otp_local": tool_version(["erl", "-noshell", "-eval",
                                                'io:format("~s~n",[erlang:system_info(otp_release)]),'
                                                ' halt().']),
                     "hyperfine": tool_version(["hyperfine", "--version"])},
        "settings": {"runner": args.runner, "iterations": args.iterations, "runs": args.runs,
                     "warmup": args.warmup, "lab_runs": args.lab_runs,
                     "lab_warmup": args.lab_warmup, "lab_iterations": args.lab_iterations,
                     "suites": args.suites, "hostile_runs": args.hostile_runs},
    }
    interrupted = False
    errors = {}
    results["errors"] = errors
    workdir = tempfile.mkdtemp(prefix="xmpp-ejabberd-bench-")
    os.chmod(workdir, 0o700)
    try:
        if args.suites:
            try:
                harness.ensure_docker()
                results["host"]["other_containers_running"] = len(
                    other_containers(["%s-%s" % (args.prefix, s) for s in harness.SUITES]))
            except harness.LabError as exc:
                errors["docker"] = str(exc)
                args.suites = []
        if not args.skip_local:
            results["local"] = {}
            for mode in ("fixed_port", "epmd"):
                if mode == "fixed_port":
                    node = ErlNode("benchfixed", longnames=True, dist_port=0)
                else:
                    node = ErlNode("benchepmd", longnames=False)
                log("starting a local Erlang node (%s mode)" % mode)
                try:
                    with running(node.start, node.stop):
                        results["local"][mode] = bench_local_node(mode, node, args, workdir,
                                                                  args.python)
                except Exception as exc:  # pylint: disable=broad-exception-caught
                    errors["local-%s" % mode] = "%s: %s" % (type(exc).__name__, exc)
                    log("local %s FAILED: %s" % (mode, exc))
        if not args.skip_hostile:
            try:
                results["hostile"] = bench_hostile(args)
            except Exception as exc:  # pylint: disable=broad-exception-caught
                errors["hostile"] = "%s: %s" % (type(exc).__name__, exc)
                log("hostile replies FAILED: %s" % exc)
        if args.suites:
            results["lab"] = {}
            for suite in args.suites:
                try:
                    results["lab"][suite] = run_lab_suite(suite, args, workdir, args.python)
                except Exception as exc:  # pylint: disable=broad-exception-caught
                    errors["lab-%s" % suite] = "%s: %s" % (type(exc).__name__, exc)
                    log("lab %s FAILED: %s" % (suite, exc))
    except KeyboardInterrupt:
        interrupted = True
        log("interrupted: everything started here has been stopped")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    results["host"]["load_average_end"] = load_average()
    results["duration_s"] = round(time.monotonic() - started, 1)
    results["targets"] = evaluate(results)
    results["interrupted"] = interrupted
    # An interrupted run does not replace the last complete one.
    out = args.results / ("interrupted.json" if interrupted else "latest.json")
    with open(out, "w", encoding="utf-8") as handle:
        json.dump(results, handle, indent=2, sort_keys=False)
        handle.write("\n")
    report(results)
    print()
    print("host: %s CPUs, load average %s at start, %s at end%s"
          % (results["host"]["nproc"], results["host"]["load_average_start"],
             results["host"]["load_average_end"],
             "; %d other containers running (other sessions: noise)"
             % results["host"]["other_containers_running"]
             if results["host"].get("other_containers_running") else ""))
    print("benchmark time %.1f s; JSON: %s" % (results["duration_s"], os.path.relpath(out, ROOT)))
    for what, text in errors.items():
        print("ERROR %s: %s" % (what, text))
    return 130 if interrupted else (1 if errors else 0)


def _ansible_version():
    try:
        from ansible.release import __version__  # pylint: disable=import-outside-toplevel
        return __version__
    except ImportError:
        return None


if __name__ == "__main__":
    sys.exit(main())
