#!/usr/bin/env bash
# xmpp.ejabberd benchmarks (issues 2 and 3): `make bench`, or directly:
#
#   benchmarks/run.sh [--suites bookworm,trixie|bookworm|none] [--skip-local] [--skip-jobs]
#                     [--jobs-sizes 3,6,9] [--jobs-runs N] [--help]
#
# Assumes `make deps` (erlang, hyperfine, docker.io) and `make venv` ran. Prints a
# table and writes benchmarks/results/latest.json. Timings are reported, never
# asserted. Every node and container started is removed, also on Ctrl-C.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

# The collection under its import name (what `make collection` does).
LINK="$ROOT/.build/collections/ansible_collections/xmpp/ejabberd"
if [ ! -L "$LINK" ]; then
  mkdir -p "$(dirname "$LINK")"
  ln -sfn "$ROOT" "$LINK"
fi

PY="$ROOT/.venv/bin/python"
if [ ! -x "$PY" ] || ! "$PY" -c 'import ansible.module_utils.basic' 2>/dev/null; then
  echo "benchmarks: $PY with ansible-core is missing: run make venv" >&2
  exit 2
fi
for tool in hyperfine erl erl_call epmd; do
  command -v "$tool" >/dev/null || { echo "benchmarks: $tool not found: run make deps" >&2; exit 2; }
done

# Options of this script (the others go to bench.py): --skip-jobs (no whole-job
# benchmark, benchmarks/jobs.py, the longest part), --jobs-sizes 3,6,9, --jobs-runs N.
jobs=1; jobs_args=()
bench_args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --skip-jobs) jobs=0 ;;
    --jobs-sizes) jobs_args+=(--sizes "$2"); shift ;;
    --jobs-runs) jobs_args+=(--runs "$2"); shift ;;
    *) bench_args+=("$1") ;;
  esac
  shift
done

start=$(date +%s%N)
rc=0
# No exec: keep this shell to report the total time. Ctrl-C reaches the Python
# process too (same process group); it stops its nodes and containers itself.
"$PY" "$ROOT/benchmarks/bench.py" --python "$PY" "${bench_args[@]}" || rc=$?
# Where the module process goes: ansible-core's import, ours, compiling, real AnsiballZ (issue 13).
"$PY" "$ROOT/benchmarks/module_cost.py" --python "$PY" --ansiballz || rc=$?
# TLS distribution beside plain TCP (issue 14), in process, on loopback.
"$PY" "$ROOT/benchmarks/tls.py" || rc=$?
# Whole jobs against the baseline play, 3, 6 and 9 nodes (issue 13).
if [ "$jobs" = 1 ]; then
  "$PY" "$ROOT/benchmarks/jobs.py" "${jobs_args[@]}" || rc=$?
fi
end=$(date +%s%N)
ms=$(( (end - start) / 1000000 ))
printf 'benchmarks/run.sh total: %d.%d s (exit %d)\n' $((ms / 1000)) $((ms % 1000 / 100)) "$rc"
exit "$rc"
