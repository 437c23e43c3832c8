# Copyright: xmpp.ejabberd contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Where a module process goes before it talks to a node (issue 13, point 4).

A module imports ``ansible.module_utils.basic`` (ansible-core's own import: the
floor), then the collection's module_utils.  Under Ansible a module runs from its
AnsiballZ zip, so Python compiles those sources on every run; this script splits
our part into:

* stdlib modules that only our code imports (not already loaded by basic);
* compiling our sources: ``compile()`` of each file, the minimum of many;
* our module-level work: the import of each file with its bytecode cached (in a
  private PYTHONPYCACHEPREFIX), i.e. unmarshal + running the module body.

Fresh processes with ``python -X importtime`` (no bytecode cache, as under
AnsiballZ); minimum and median over ``--runs`` processes, as the machine may be
shared.  ``--callgrind`` adds instruction counts (valgrind), which load does not
move.

``--ansiballz`` also builds the real AnsiballZ payloads (``ansible localhost -m``,
local connection, kept with ANSIBLE_KEEP_REMOTE_FILES) of the module and of
``ping`` (ansible-core's floor under AnsiballZ, where its module_utils come from the
zip too), counts how often each of our sources is compiled in one run (twice:
zipimport's get_filename() compiles the source too, CPython gh-141276) and times
both payloads, interleaved.  The module's arguments there make it fail fast
(port 1, ``fail_on_error: false``): its imports are what is measured.

Used by bench.py (``make bench``); also runs alone::

    .venv/bin/python benchmarks/module_cost.py [--runs 30] [--callgrind] [--ansiballz]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COLLECTIONS = ROOT / ".build" / "collections"
PACKAGE = "ansible_collections.xmpp.ejabberd"
BASIC = "ansible.module_utils.basic"

_IMPORTTIME = re.compile(r"^import time:\s+(\d+) \|\s+(\d+) \| (\s*)(\S+)$")

# Run by the interpreter under test: what our import adds to sys.modules, and the
# minimum time of compile() of each of our source files.
_PROBE = r"""
import json, sys, time
import ansible.module_utils.basic
before = set(sys.modules)
__import__(sys.argv[1])
ours, stdlib = [], []
for name in sorted(set(sys.modules) - before):
    (ours if name.split('.')[0] == 'ansible_collections' else stdlib).append(name)
compiled = {}
for name in ours:
    path = getattr(sys.modules[name], '__file__', None)
    if not path:
        continue  # a namespace package: nothing to compile
    with open(path, 'rb') as handle:
        source = handle.read()
    best = None
    for _ in range(int(sys.argv[2])):
        start = time.perf_counter()
        compile(source, path, 'exec', dont_inherit=True)
        took = time.perf_counter() - start
        best = took if best is None else min(best, took)
    compiled[name] = {'ms': best * 1000, 'bytes': len(source)}
print(json.dumps({'ours': ours, 'stdlib': stdlib, 'compile': compiled}))
"""


def _child_env(pycache=None, collections=COLLECTIONS):
    env = dict(os.environ, PYTHONPATH=str(collections), PYTHONDONTWRITEBYTECODE="1")
    env.pop("PYTHONHOME", None)
    env.pop("PYTHONPYCACHEPREFIX", None)
    if pycache:
        env["PYTHONPYCACHEPREFIX"] = pycache
    return env


def importtime(python, statement, env):
    """``{module: (self_us, cumulative_us)}`` of one fresh ``python -X importtime``."""
    proc = subprocess.run([python, "-X", "importtime", "-c", statement], env=env,
                          capture_output=True, text=True, check=True, stdin=subprocess.DEVNULL)
    found = {}
    for line in proc.stderr.splitlines():
        match = _IMPORTTIME.match(line)
        if match:
            found[match.group(4)] = (int(match.group(1)), int(match.group(2)))
    return found


def _stats(values_us):
    ms = [v / 1000.0 for v in values_us]
    return {"min_ms": round(min(ms), 3), "median_ms": round(statistics.median(ms), 3)}


def _callgrind_argv(argv, env):
    """Instructions executed by the command ``argv`` (valgrind's callgrind)."""
    proc = subprocess.run(["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null"] + argv,
                          env=env, capture_output=True, text=True, check=True,
                          stdin=subprocess.DEVNULL)
    return int(re.search(r"Collected : (\d+)", proc.stderr).group(1))


def callgrind(python, statement, env):
    """Instructions executed by ``python -c statement``."""
    return _callgrind_argv([python, "-c", statement], env)


def measure(python, module="erlang_node_info", runs=20, compiles=50, with_callgrind=False,
            collections=COLLECTIONS):
    """The breakdown, as a JSON-ready dict (times in ms); ``collections``: the
    ansible_collections root to import the collection from."""
    def env(pycache=None):
        return _child_env(pycache, collections)

    target = "%s.plugins.modules.%s" % (PACKAGE, module)
    statement = "import %s; import %s" % (BASIC, target)
    probe = subprocess.run([python, "-c", _PROBE, target, str(compiles)], env=env(),
                           capture_output=True, text=True, check=True, stdin=subprocess.DEVNULL)
    found = json.loads(probe.stdout)
    pycache = tempfile.mkdtemp(prefix="xmpp-ejabberd-pycache-")
    try:
        warm = dict(env(pycache))
        warm.pop("PYTHONDONTWRITEBYTECODE")
        subprocess.run([python, "-c", statement], env=warm, check=True, stdin=subprocess.DEVNULL)
        cold, cached = [], []
        for _run in range(runs):  # alternated, so that load hits both alike
            cold.append(importtime(python, statement, env()))
            cached.append(importtime(python, statement, env(pycache)))
        counts = None
        if with_callgrind and shutil.which("valgrind"):
            counts = {
                "python -c pass": callgrind(python, "pass", env()),
                "import basic": callgrind(python, "import %s" % BASIC, env()),
                "import basic + module": callgrind(python, statement, env()),
                "import basic + module, our bytecode cached":
                    callgrind(python, statement, env(pycache)),
            }
    finally:
        shutil.rmtree(pycache, ignore_errors=True)

    def column(samples, name, which):
        values = [s[name][which] for s in samples if name in s]
        return _stats(values) if values else None

    files = {}
    for name in found["ours"]:
        files[name] = {
            "bytes": found["compile"].get(name, {}).get("bytes"),
            "compile_ms": (round(found["compile"][name]["ms"], 3) if name in found["compile"]
                           else None),
            "import_no_cache": column(cold, name, 0),
            "import_cached": column(cached, name, 0),
        }
    return {
        "module": module,
        "python": python,
        "runs": runs,
        "floor_basic": column(cold, BASIC, 1),
        "ours_total": column(cold, target, 1),
        "ours_total_cached": column(cached, target, 1),
        "stdlib_only_ours": {name: column(cold, name, 0) for name in found["stdlib"]},
        "compile_sum_ms": round(sum(c["ms"] for c in found["compile"].values()), 3),
        "files": files,
        "instructions": counts,
    }


# Run by the interpreter under test: an AnsiballZ payload, with every compile() counted.
_COUNT_COMPILES = r"""
import builtins, collections, json, runpy, sys
counts, real = collections.Counter(), builtins.compile
def counting(source, filename, *args, **kwargs):
    counts[str(filename)] += 1
    return real(source, filename, *args, **kwargs)
builtins.compile = counting
payload = sys.argv[1]
sys.argv = [payload]
try:
    runpy.run_path(payload, run_name='__main__')
finally:
    sys.stderr.write('\nCOMPILES ' + json.dumps(counts) + '\n')
"""


def ansiballz_payload(python, module, args, collections, workdir):
    """The AnsiballZ_*.py that ``ansible localhost -m MODULE -a ARGS`` runs, kept."""
    remote = Path(tempfile.mkdtemp(prefix="remote-", dir=workdir))
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(collections), ANSIBLE_KEEP_REMOTE_FILES="1",
               ANSIBLE_REMOTE_TMP=str(remote), ANSIBLE_LOCAL_TEMP=str(remote / "local"),
               ANSIBLE_PIPELINING="0", ANSIBLE_NOCOLOR="1")
    proc = subprocess.run([str(Path(python).parent / "ansible"), "localhost", "-c", "local",
                           "-e", "ansible_python_interpreter=%s" % python, "-m", module, "-a", args],
                          env=env, capture_output=True, text=True, check=False,
                          stdin=subprocess.DEVNULL)
    found = sorted(remote.glob("ansible-tmp-*/AnsiballZ_*.py"))
    if proc.returncode != 0 or not found:
        raise RuntimeError("ansible -m %s: exit %d, no payload: %s"
                           % (module, proc.returncode, (proc.stdout + proc.stderr)[-600:]))
    return found[0]


def measure_ansiballz(python, module="erlang_node_info", runs=20, collections=COLLECTIONS,
                      with_callgrind=False):
    """The module's and ping's real AnsiballZ payloads: compile() calls of our sources
    in one run, wall times (interleaved) and, optionally, instructions."""
    workdir = tempfile.mkdtemp(prefix="xmpp-ejabberd-ansiballz-")
    try:
        ours = ansiballz_payload(python, "xmpp.ejabberd.%s" % module,
                                 "node=x@127.0.0.1 cookie=x dist_port=1 fail_on_error=false",
                                 collections, workdir)
        ping = ansiballz_payload(python, "ping", "", collections, workdir)
        env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
        env.pop("PYTHONPATH", None)
        proc = subprocess.run([python, "-c", _COUNT_COMPILES, str(ours)], env=env,
                              capture_output=True, text=True, check=True, stdin=subprocess.DEVNULL)
        counts = json.loads(re.search(r"^COMPILES (.*)$", proc.stderr, re.M).group(1))
        compiled = {path.split(".zip/", 1)[1]: n for path, n in counts.items()
                    if ".zip/ansible_collections/" in path}
        commands = [("AnsiballZ ping (the floor)", [python, str(ping)]),
                    ("AnsiballZ %s" % module, [python, str(ours)])]
        times = {name: [] for name, _argv in commands}
        for rnd in range(runs):
            for name, argv in (commands if rnd % 2 else commands[::-1]):
                start = time.perf_counter()
                subprocess.run(argv, env=env, check=True, stdin=subprocess.DEVNULL,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                times[name].append((time.perf_counter() - start) * 1e6)
        result = {"compiles": compiled, "times": {name: _stats(t) for name, t in times.items()}}
        if with_callgrind and shutil.which("valgrind"):
            result["instructions"] = {name: _callgrind_argv(argv, env) for name, argv in commands}
        return result
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def report(res):
    """The breakdown as a table on stdout."""
    title = ("Issue 13: where the %s module process goes before it talks to a node "
             "(python -X importtime, %d fresh processes each)" % (res["module"], res["runs"]))
    print()
    print(title)
    print("-" * len(title))
    print("%-58s %10s %10s" % ("", "min ms", "median ms"))

    def row(label, stats):
        if stats:
            print("%-58s %10.2f %10.2f" % (label, stats["min_ms"], stats["median_ms"]))
    row("(a) import ansible.module_utils.basic (the floor)", res["floor_basic"])
    row("our import after it, in all (no bytecode cache)", res["ours_total"])
    row("our import after it, our bytecode cached", res["ours_total_cached"])
    for name, stats in res["stdlib_only_ours"].items():
        row("(b) stdlib only our code imports: %s" % name, stats)
    print("(c) compile() of our sources (min of many, in one process): %.2f ms"
          % res["compile_sum_ms"])
    print("%-58s %10s %14s %14s" % ("  per file (self: min / median ms)", "compile()",
                                    "no cache", "cached = (d)"))
    for name, f in res["files"].items():
        short = name[len(PACKAGE) + 1:] if name.startswith(PACKAGE + ".") else name
        cold, warm = f["import_no_cache"], f["import_cached"]
        print("  %-56s %10s %14s %14s" % (
            "%s (%s bytes)" % (short, f["bytes"]) if f["bytes"] else short,
            "%.2f" % f["compile_ms"] if f["compile_ms"] is not None else "-",
            "%.2f / %.2f" % (cold["min_ms"], cold["median_ms"]) if cold else "-",
            "%.2f / %.2f" % (warm["min_ms"], warm["median_ms"]) if warm else "-"))
    counts = res.get("instructions")
    if counts:
        base = counts["import basic"]
        print("  instructions (callgrind): %s" % ", ".join(
            "%s %.1f M" % (k, v / 1e6) for k, v in counts.items()))
        print("  our import: %.1f M instructions (%.0f%% of the import of basic), %.1f M of them "
              "compiling" % ((counts["import basic + module"] - base) / 1e6,
                             100.0 * (counts["import basic + module"] - base) / base,
                             (counts["import basic + module"]
                              - counts["import basic + module, our bytecode cached"]) / 1e6))
    print("  (b) is self time; (d) = import with our bytecode cached: unmarshal + module body")
    az = res.get("ansiballz")
    if az:
        print("  real AnsiballZ payloads (ansible -m, kept), %d runs each, interleaved:" % res["runs"])
        for name, stats in az["times"].items():
            print("    %-54s %10.2f %10.2f" % (name, stats["min_ms"], stats["median_ms"]))
        print("    compile() calls per run: %s" % ", ".join(
            "%s x%d" % (path.rsplit("/", 1)[1], n) for path, n in sorted(az["compiles"].items())
            if path.endswith(".py") and not path.endswith("__init__.py")))
        if az.get("instructions"):
            print("    instructions: %s" % ", ".join(
                "%s %.1f M" % (k, v / 1e6) for k, v in az["instructions"].items()))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    ap.add_argument("--python", default=str(ROOT / ".venv" / "bin" / "python"),
                    help="interpreter with ansible-core")
    ap.add_argument("--module", default="erlang_node_info")
    ap.add_argument("--runs", type=int, default=20, help="fresh processes per measurement")
    ap.add_argument("--compiles", type=int, default=50, help="compile() calls per file")
    ap.add_argument("--callgrind", action="store_true", help="also count instructions (valgrind)")
    ap.add_argument("--ansiballz", action="store_true",
                    help="also build and time the real AnsiballZ payloads (runs ansible -m)")
    ap.add_argument("--collections", type=Path, default=COLLECTIONS,
                    help="ansible_collections root to import from (e.g. another checkout's "
                         ".build/collections, to compare)")
    ap.add_argument("--json", type=Path, help="write the figures here too")
    args = ap.parse_args(argv)
    res = measure(args.python, args.module, args.runs, args.compiles, args.callgrind,
                  args.collections)
    if args.ansiballz:
        res["ansiballz"] = measure_ansiballz(args.python, args.module, args.runs,
                                             args.collections, args.callgrind)
    if args.json:
        args.json.write_text(json.dumps(res, indent=2) + "\n", encoding="utf-8")
    report(res)
    return 0


if __name__ == "__main__":
    sys.exit(main())
