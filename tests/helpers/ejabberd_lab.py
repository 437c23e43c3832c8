# Copyright: xmpp.ejabberd contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Helpers for the module tests against the docker lab (tests/helpers/lab.py).

* :func:`run_module` runs a module of the collection the way Ansible runs it
  (``python -m <module> ARGS_FILE``) and returns its JSON result.
* :class:`SuiteLab` is one LabCluster of a Debian suite plus everything a test
  needs to talk to it from the host: a private cookie file (mode 0600, never in
  an argv or an args file), connection arguments for each node, shortcuts for
  the two cluster modules.
* :func:`start_labs` starts several suites at once (containers, configuration
  and ejabberd of every node in parallel).
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Any, Callable, Iterable, Mapping

from ansible_collections.xmpp.ejabberd.tests.helpers.common import COLLECTIONS_ROOT, write_private
from ansible_collections.xmpp.ejabberd.tests.helpers.lab import LabCluster, LabError, random_cookie

MODULE_PACKAGE = "ansible_collections.xmpp.ejabberd.plugins.modules"

#: What each lab image runs.
RELEASES = {
    "bookworm": {"ejabberd": "23.01", "otp": "25"},
    "trixie": {"ejabberd": "24.12", "otp": "27"},
    "forky": {"ejabberd": "26.07", "otp": "29"},
}


class ModuleRunError(AssertionError):
    """The module did not print one JSON result."""


def run_module(name: str, args: Mapping[str, Any], *, check_mode: bool = False,
               secrets_to_hide: Iterable[str] = (), timeout: float = 300) -> dict[str, Any]:
    """Run ``plugins/modules/<name>.py`` as Ansible does; return its result.

    The arguments go to a private temporary file (``{"ANSIBLE_MODULE_ARGS": ...}``)
    that is removed afterwards. The result carries ``_rc`` (the exit code) and
    ``_wall_s`` (seconds, process start included). Fails the test when the
    output is not one JSON object, when the exit code disagrees with ``failed``,
    or when one of ``secrets_to_hide`` shows up in stdout or stderr.
    """
    payload = dict(args)
    payload["_ansible_check_mode"] = bool(check_mode)
    payload["_ansible_diff"] = True
    path = write_private(tempfile.gettempdir(), "xmpp-ejabberd-args.%s.json" % secrets.token_hex(8),
                         json.dumps({"ANSIBLE_MODULE_ARGS": payload}))
    try:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (COLLECTIONS_ROOT, env.get("PYTHONPATH")) if p)
        start = time.monotonic()
        proc = subprocess.run([sys.executable, "-m", "%s.%s" % (MODULE_PACKAGE, name), path],
                              capture_output=True, text=True, env=env, timeout=timeout, check=False,
                              stdin=subprocess.DEVNULL, cwd=tempfile.gettempdir())
        wall = time.monotonic() - start
    finally:
        os.unlink(path)
    for secret in secrets_to_hide:
        if secret and (secret in proc.stdout or secret in proc.stderr):
            raise ModuleRunError("%s printed the Erlang cookie" % name)
    result = None
    for line in reversed(proc.stdout.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                result = json.loads(line)
                break
            except ValueError:
                continue
    if not isinstance(result, dict):
        raise ModuleRunError("%s exited %d without a JSON result; stdout: %s; stderr: %s"
                             % (name, proc.returncode, proc.stdout[-2000:], proc.stderr[-2000:]))
    failed = bool(result.get("failed"))
    if proc.returncode != (1 if failed else 0):
        raise ModuleRunError("%s exited %d but failed=%s: %s"
                             % (name, proc.returncode, failed, result))
    result["_rc"] = proc.returncode
    result["_wall_s"] = round(wall, 2)
    return result


class SuiteLab:
    """One suite's LabCluster and the host-side means to drive the modules against it.

    ``other_cookie_nodes`` get a cookie of their own (not the cluster's) before
    ejabberd starts: they stand for "a node of somebody else".
    """

    def __init__(self, suite: str, *, size: int, prefix: str,
                 dist_port: int = 5210, other_cookie_nodes: Iterable[int] = ()) -> None:
        self.suite = suite
        self.release = RELEASES[suite]
        self.size = size
        self.prefix = prefix
        self.dist_port = dist_port
        self.other_cookie_nodes = tuple(other_cookie_nodes)
        self.other_cookie = random_cookie()
        # 300 s per start (and stop), not the harness's 120 (90): with other labs on this
        # 2-core machine (load average 50-90) a start took more than 120 s, a stop more than 90.
        self.cluster = LabCluster(suite=suite, size=size, prefix=prefix, dist_port=dist_port,
                                  start=False, start_timeout=300)
        self.tmpdir = tempfile.mkdtemp(prefix="xmpp-ejabberd-%s." % suite)
        os.chmod(self.tmpdir, 0o700)
        self.cookie_file = write_private(self.tmpdir, "cluster.cookie", self.cluster.cookie)
        self.wrong_cookie_file = write_private(self.tmpdir, "wrong.cookie", random_cookie())
        self.timings: dict[str, float] = {}
        self.events: list[tuple[str, float]] = []  # (what, module elapsed_s)
        self.spent: dict[str, list[float]] = {}  # operation -> [count, seconds]

    def __repr__(self) -> str:
        return "SuiteLab(%r)" % self.suite

    # -- lifecycle ---------------------------------------------------------------

    def up(self) -> "SuiteLab":
        """Containers and configuration (harness), then ejabberd on every node at once."""
        t = time.monotonic()
        self.cluster.up()
        self.subnet = self.cluster.subnet
        for i in self.other_cookie_nodes:
            self.cluster.set_cookie_file(i, self.other_cookie)
        self.timings["containers"] = time.monotonic() - t
        t = time.monotonic()
        self.parallel(self.cluster.start_node, self.indexes)
        for i in self.indexes:
            self.cluster.wait_tcp(i)
        self.timings["ejabberd_start"] = time.monotonic() - t
        return self

    def close(self) -> None:
        try:
            self.cluster.close()
        finally:
            shutil.rmtree(self.tmpdir, ignore_errors=True)

    @staticmethod
    def parallel(func: Callable[[Any], Any], items: Iterable[Any]) -> list[Any]:
        items = list(items)
        if len(items) < 2:
            return [func(i) for i in items]
        with concurrent.futures.ThreadPoolExecutor(max_workers=len(items)) as pool:
            return [f.result() for f in [pool.submit(func, i) for i in items]]

    # -- names -------------------------------------------------------------------

    @property
    def indexes(self) -> list[int]:
        return list(range(1, self.cluster.size + 1))

    def name(self, i: int) -> str:
        return self.cluster.node(i)["name"]

    def names(self, *indexes: int) -> list[str]:
        return sorted(self.name(i) for i in indexes)

    def ip(self, i: int) -> str:
        return self.cluster.node(i)["ip"]

    def unused_ip(self) -> str:
        """An address of the lab subnet that no container uses."""
        return str(self.subnet.network_address + 250)

    # -- modules -----------------------------------------------------------------

    def conn_args(self, node: int | str, **extra: Any) -> dict[str, Any]:
        """Connection options for node i (or a full node name), cluster cookie by file."""
        args = {"node": node if isinstance(node, str) else self.name(node),
                "dist_port": self.dist_port, "cookie_file": self.cookie_file, "timeout": 5}
        args.update(extra)
        return args

    def _spend(self, what: str, start: float) -> None:
        entry = self.spent.setdefault(what, [0, 0.0])
        entry[0] += 1
        entry[1] += time.monotonic() - start

    def run(self, module: str, args: Mapping[str, Any], check_mode: bool = False,
            timeout: float = 300) -> dict[str, Any]:
        start = time.monotonic()
        try:
            return run_module(module, args, check_mode=check_mode, timeout=timeout,
                              secrets_to_hide=(self.cluster.cookie, self.other_cookie))
        finally:
            self._spend(module, start)

    def stop_node(self, i: int) -> float:
        start = time.monotonic()
        try:
            return self.cluster.stop_node(i, timeout=300)  # loaded machine: see __init__
        finally:
            self._spend("stop_node", start)

    def start_node(self, i: int) -> float:
        start = time.monotonic()
        try:
            return self.cluster.start_node(i)
        finally:
            self._spend("start_node", start)

    def info(self, node: int | str, check_mode: bool = False, **extra: Any) -> dict[str, Any]:
        return self.run("ejabberd_cluster_info", self.conn_args(node, **extra), check_mode)

    def member(self, node: int | str, cluster_node: int | str, check_mode: bool = False,
               **extra: Any) -> dict[str, Any]:
        seed = cluster_node if isinstance(cluster_node, str) else self.name(cluster_node)
        result = self.run("ejabberd_cluster_member",
                          self.conn_args(node, cluster_node=seed, **extra), check_mode)
        if result.get("changed") and "elapsed_s" in result:
            what = "%s %s->%s" % ("join" if extra.get("state", "present") == "present" else "leave",
                                  node, cluster_node)
            self.events.append((what, result["elapsed_s"]))
        return result

    # -- network partitions --------------------------------------------------------

    PARTITION_TABLE = "xmpp_ejabberd_partition"

    def cut(self, i: int, peers: Iterable[int]) -> None:
        """Drop every packet between node i and ``peers``, inside node i's container (its
        own nftables table; the host still reaches it over the bridge)."""
        addrs = ", ".join(self.ip(p) for p in peers)
        table = self.PARTITION_TABLE
        self.cluster.exec(i, ["nft", "add table inet %s; "
                              "add chain inet %s in { type filter hook input priority -10; }; "
                              "add chain inet %s out { type filter hook output priority -10; }; "
                              "add rule inet %s in ip saddr { %s } drop; "
                              "add rule inet %s out ip daddr { %s } drop"
                              % (table, table, table, table, addrs, table, addrs)])

    def heal(self, i: int) -> None:
        """Undo :meth:`cut` on node i."""
        self.cluster.exec(i, ["nft", "delete table inet %s" % self.PARTITION_TABLE], check=False)

    # -- the containers' own view ------------------------------------------------

    def list_cluster(self, i: int) -> list[str]:
        """``ejabberdctl list_cluster`` inside the container (running members)."""
        start = time.monotonic()
        try:
            return self.cluster.list_cluster(i)
        finally:
            self._spend("ejabberdctl list_cluster", start)

    def list_clusters(self, indexes: Iterable[int]) -> dict[int, list[str]]:
        """list_cluster on several nodes at once (each call boots an Erlang VM)."""
        indexes = list(indexes)
        return dict(zip(indexes, self.parallel(self.list_cluster, indexes)))

    def wait_until(self, check: Callable[[], Any], timeout: float, what: str,
                   interval: float = 0.5) -> Any:
        end = time.monotonic() + timeout
        last: Any = None
        while True:
            try:
                last = check()
            except (LabError, AssertionError) as exc:
                last = exc
            else:
                if last:
                    return last
            if time.monotonic() > end:
                raise AssertionError("%s: not true after %ss (last: %r)" % (what, timeout, last))
            time.sleep(interval)


def start_labs(labs: Mapping[str, SuiteLab]) -> dict[str, BaseException]:
    """``up()`` every SuiteLab at once; returns the errors by suite (empty: all up)."""
    errors: dict[str, BaseException] = {}
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, len(labs))) as pool:
        futures = {suite: pool.submit(lab.up) for suite, lab in labs.items()}
        for suite, future in futures.items():
            try:
                future.result()
            except BaseException as exc:  # pylint: disable=broad-exception-caught
                errors[suite] = exc
    return errors
