# Copyright: xmpp.ejabberd contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The playbooks xmpp.ejabberd.site, verify, rotate_cookie and rolling_restart against
three lab containers, run as an operator runs them (``ansible-playbook xmpp.ejabberd.<name>``).

s1, s2 and s3 are VM-like hosts (systemd as PID 1, reached over SSH as ``admin`` with sudo)
as a server is after the package was installed: the package's own node runs as
``ejabberd@localhost`` with its own random cookie and database. The site playbook does
everything (inventory as lab/demo/inventory.yml: fixed-port mode on 5210, long names with
the containers' addresses, nftables, the default ``ejabberd_install: package``). ``fresh``
stays such a host for the bad-input cases. The firewall peers are the three nodes plus this
machine (the network's gateway), so that the tests can talk to the nodes over Erlang
distribution from here.

Cookies travel in private (0600) vars files only, never in an argv; cookie files are
compared by SHA-256 digest, and assertions are made on booleans so that no cookie is
ever shown. The tests run in file order on one lab (module-scoped fixtures): site,
verify, rotate_cookie, rolling_restart, bad input.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import re
import secrets
import subprocess
import sys
import threading
import time

import pytest

from ansible_collections.xmpp.ejabberd.plugins.module_utils import erldist
from ansible_collections.xmpp.ejabberd.plugins.module_utils.etf import as_text
from ansible_collections.xmpp.ejabberd.tests.helpers.common import node_accepts, write_private
from ansible_collections.xmpp.ejabberd.tests.helpers.playbook import (
    Play, PlaybookRunner, lab_session, new_cookie, sha256, start_lab)
from ansible_collections.xmpp.ejabberd.tests.helpers.lab import LabCluster

pytestmark = pytest.mark.lab

SUITE = os.environ.get("XMPP_EJABBERD_TEST_SUITE", "bookworm")
PREFIX = "xpb"
DIST_PORT = 5210
HOSTS = ("s1", "s2", "s3")          # the cluster; inventory names are the container names
FRESH = "fresh"                     # stays unconfigured: bad input
COOKIE_FILE = "/var/lib/ejabberd/.erlang.cookie"   # HOME of user ejabberd in Debian's package
CTL_CFG = "/etc/default/ejabberd"                  # target of /etc/ejabberd/ejabberdctl.cfg
POLL_INTERVAL = 0.1
RPC_TIMEOUT = 5.0      # per poll; generous for a loaded CI machine

# Ask every node from this machine with the collection's module (cookie from a file).
CHECK_PLAYBOOK = """\
---
- name: Ask every node of the cluster from this machine
  hosts: localhost
  connection: local
  gather_facts: false
  tasks:
    - name: Read each node's view, and every peer's
      xmpp.ejabberd.ejabberd_cluster_info:
        node: "{{ item.name }}"
        address: "{{ item.ip }}"
        dist_port: "{{ dist_port }}"
        cookie_file: "{{ cookie_file }}"
        expected_nodes: "{{ expected }}"
        check_peers: true
      loop: "{{ nodes }}"
      register: check_info
      ignore_errors: true

    - name: Save the answers
      ansible.builtin.copy:
        dest: "{{ out_file }}"
        content: "{{ check_info.results | to_json }}"
        mode: "0600"
"""


# ---------------------------------------------------------------------------------
# Running the playbooks


class Runner(PlaybookRunner):
    """The collection's playbooks against the lab's containers; inventories written once."""

    def __init__(self, lab: LabCluster, workdir: str) -> None:
        super().__init__(workdir)
        self.lab = lab
        self.gateway = lab.gateway
        self.ips = {ref: lab.node(ref)["ip"] for ref in (*HOSTS, FRESH)}
        self.names = {ref: "ejabberd@" + ip for ref, ip in self.ips.items()}
        peers = [self.ips[ref] for ref in HOSTS] + [self.gateway]
        self.inventories = {
            "cluster": self._inventory("cluster", HOSTS, {"ejabberd_firewall_peers": peers}),
            "fresh": self._inventory("fresh", (FRESH,), {}),
            # s1 with a short name, s2 and s3 with long names
            "mixed": self._inventory("mixed", HOSTS, {"ejabberd_firewall_peers": peers},
                                     names={"s1": "ejabberd@n1"}),
        }
        self.check_playbook = self.write("check.yml", CHECK_PLAYBOOK)

    def _inventory(self, label: str, refs, extra_vars: dict, names: dict | None = None) -> str:
        hosts = {}
        for ref in refs:
            ip = self.ips[ref]
            hosts[self.lab.node(ref)["container"]] = (ref, {
                "ejabberd_node_name": (names or {}).get(ref, "ejabberd@" + ip),
                "ejabberd_inet_dist_interface": ip,
                "ejabberd_address": ip,
            })
        group_vars = {
            "ejabberd_layout": "debian",
            "ejabberd_epmd": False,
            "ejabberd_dist_port": DIST_PORT,
            "ejabberd_firewall_backend": "nftables",
            **extra_vars,
        }
        return self.ssh_inventory(self.lab, hosts, group_vars, name="inventory-%s" % label)

    def run(self, playbook: str, variables: dict | None = None, *args: str,
            inventory: str = "cluster") -> Play:
        """ansible-playbook [-e @private vars file] ARGS xmpp.ejabberd.<playbook>."""
        return self.play("xmpp.ejabberd." + playbook, self.inventories[inventory], variables, *args)

    def module_check(self, cookie: str) -> list[dict]:
        """ejabberd_cluster_info (expected_nodes, check_peers) on every node, run here."""
        run_id = secrets.token_hex(4)
        cookie_file = write_private(self.workdir, "cookie-%s" % run_id, cookie)
        out_file = os.path.join(self.workdir, "check-%s.json" % run_id)
        variables = {
            "nodes": [{"name": self.names[ref], "ip": self.ips[ref]} for ref in HOSTS],
            "expected": [self.names[ref] for ref in HOSTS],
            "dist_port": DIST_PORT, "cookie_file": cookie_file, "out_file": out_file,
            "ansible_python_interpreter": sys.executable,
        }
        varfile = write_private(self.workdir, "check-vars-%s.json" % run_id, json.dumps(variables))
        try:
            proc = subprocess.run([self.ansible_playbook, "-i", "localhost,",
                                   "-e", "@" + varfile, self.check_playbook],
                                  capture_output=True, text=True, env=self.env, timeout=300,
                                  stdin=subprocess.DEVNULL, cwd=self.workdir, check=False)
            play = Play(proc, 0, self.secrets)
            assert proc.returncode == 0 and os.path.exists(out_file), play
            assert not play.shows_a_secret(), "a cookie appears in the module check's output"
            with open(out_file, encoding="utf-8") as handle:
                return json.load(handle)
        finally:
            for path in (cookie_file, varfile, out_file):
                if os.path.exists(path):
                    os.unlink(path)


# ---------------------------------------------------------------------------------
# Watching the cluster from this machine during a playbook


class ClusterPoller:
    """One distribution connection per node, and a thread that asks every node for
    ``ejabberd_cluster:get_nodes()`` every POLL_INTERVAL seconds.

    ``rounds`` is a list of ``{node: sorted running members, or None}``, one per round.
    Without ``reconnect``, the connections opened before the playbook are the only
    ones (a broken one stays broken: its polls fail); with it, a node that dropped the
    connection (restarted) is connected again with ``cookie``.
    """

    def __init__(self, nodes: list[dict], cookie: str, *, reconnect: bool) -> None:
        self.nodes = nodes
        self._cookie = cookie
        self.reconnect = reconnect
        self.conns: dict[str, erldist.Connection | None] = {}
        self.rounds: list[dict[str, list[str] | None]] = []
        self.errors: dict[str, list[str]] = {n["name"]: [] for n in nodes}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __repr__(self) -> str:   # no cookie here
        return "ClusterPoller(%d rounds, errors=%r)" % (
            len(self.rounds), {k: v[:5] for k, v in self.errors.items()})

    def _connect(self, node: dict, timeout: float) -> erldist.Connection:
        return erldist.connect(node["name"], self._cookie, address=node["ip"],
                               dist_port=DIST_PORT, timeout=timeout)

    def _poll(self, node: dict) -> list[str] | None:
        name = node["name"]
        conn = self.conns.get(name)
        if conn is None:
            if not self.reconnect:
                self.errors[name].append("connection lost")
                return None
            try:
                conn = self.conns[name] = self._connect(node, 1.0)
            except Exception as exc:  # pylint: disable=broad-exception-caught
                self.errors[name].append("connect: %s" % getattr(exc, "reason", type(exc).__name__))
                return None
        try:
            return sorted(str(n) for n in conn.rpc("ejabberd_cluster", "get_nodes", [], RPC_TIMEOUT))
        except Exception as exc:  # pylint: disable=broad-exception-caught
            self.errors[name].append("rpc: %s" % getattr(exc, "reason", type(exc).__name__))
            conn.close()
            self.conns[name] = None
            return None

    def _run(self) -> None:
        while not self._stop.is_set():
            start = time.monotonic()
            self.rounds.append({n["name"]: self._poll(n) for n in self.nodes})
            self._stop.wait(max(0.0, POLL_INTERVAL - (time.monotonic() - start)))

    def polls(self, name: str) -> int:
        """How many polls of this node got an answer."""
        return sum(1 for r in self.rounds if r[name] is not None)

    def __enter__(self) -> "ClusterPoller":
        try:
            for node in self.nodes:
                self.conns[node["name"]] = self._connect(node, 5.0)
        except BaseException:
            self._close()
            raise
        self._thread = threading.Thread(target=self._run, name="cluster-poller", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)
        self._close()

    def _close(self) -> None:
        for conn in self.conns.values():
            if conn is not None:
                conn.close()


# ---------------------------------------------------------------------------------
# Lab


def _add_hosts(lab: LabCluster) -> None:
    net = lab.subnet
    refs = (*HOSTS, FRESH)
    with concurrent.futures.ThreadPoolExecutor(max_workers=len(refs)) as pool:
        for fut in [pool.submit(lab.add_container, ref, str(net.network_address + 11 + k))
                    for k, ref in enumerate(refs)]:
            fut.result()


def _start_lab() -> LabCluster:
    return start_lab(LabCluster(suite=SUITE, size=0, prefix=PREFIX, dist_port=DIST_PORT,
                                start=False, vm=True), _add_hosts)


@pytest.fixture(scope="module")
def env(request):
    with lab_session(request, "playbooks lab", _start_lab) as session:
        runner = Runner(session["lab"], session["workdir"])
        yield {"lab": session["lab"], "runner": runner, "run": runner.run,
               "timings": session["timings"], "cookie": None, "notes": session["notes"]}


def nodes_of(env) -> list[dict]:
    runner = env["runner"]
    return [{"name": runner.names[ref], "ip": runner.ips[ref]} for ref in HOSTS]


def expected(env) -> list[str]:
    return sorted(env["runner"].names[ref] for ref in HOSTS)


def sh(lab, ref, script: str, check: bool = False) -> subprocess.CompletedProcess[str]:
    return lab.exec(ref, ["sh", "-c", script], check=check)


def cookie_digests(lab) -> dict[str, str | None]:
    digests = {}
    for ref in HOSTS:
        proc = sh(lab, ref, "sha256sum %s" % COOKIE_FILE)
        digests[ref] = proc.stdout.split()[0] if proc.returncode == 0 else None
    return digests


def wait_cluster(env, timeout: float = 90) -> None:
    """Every node lists the three nodes as running (ejabberdctl list_cluster)."""
    env["lab"].wait_members(HOSTS, expected(env), timeout)


def vm_pids(env) -> dict[str, str]:
    pids = {}
    for node in nodes_of(env):
        with erldist.connect(node["name"], env["cookie"], address=node["ip"], dist_port=DIST_PORT,
                             timeout=5) as conn:
            pids[node["name"]] = as_text(conn.rpc("os", "getpid", [], 5))
    return pids


def require_deployed(env) -> None:
    if not env.get("deployed"):
        pytest.fail("the site playbook did not deploy the cluster (see test_site_*)")


# ---------------------------------------------------------------------------------
# 1. site: everything, on fresh hosts


def package_nodes(lab) -> dict[str, bool]:
    """Whether the node Debian's package started (ejabberd@localhost, short names) runs."""
    return {ref: "-sname ejabberd@localhost" in sh(lab, ref, "pgrep -a beam.smp").stdout
            for ref in HOSTS}


@pytest.fixture(scope="module")
def site(env):
    runner = env["runner"]
    env["package_nodes_before_site"] = package_nodes(env["lab"])
    cookie = runner.cookie()
    # -vv: the module results and arguments are shown, so a leak would show too.
    play = runner.run("site", {"ejabberd_cookie": cookie}, "-vv")
    env["timings"]["site_first_run"] = play.wall
    if play.rc == 0:
        env["cookie"] = cookie
        env["deployed"] = True
    return play


@pytest.fixture(scope="module")
def site_again(env, site):
    require_deployed(env)
    play = env["run"]("site", {"ejabberd_cookie": env["cookie"]})
    env["timings"]["site_second_run"] = play.wall
    return play


def test_site_succeeds_on_fresh_hosts(env, site):
    assert site.rc == 0, site
    assert sorted(site.recap) == sorted(env["lab"].node(ref)["container"] for ref in HOSTS), site
    assert all(v["failed"] == 0 and v["unreachable"] == 0 for v in site.recap.values()), site


def test_site_took_over_the_package_node(env, site):
    """The hosts ran the package's own node before; site renamed it (its empty database
    reset) into the cluster's node, under systemd."""
    require_deployed(env)
    assert env["package_nodes_before_site"] == {ref: True for ref in HOSTS}
    assert package_nodes(env["lab"]) == {ref: False for ref in HOSTS}
    for ref in HOSTS:
        status = sh(env["lab"], ref, "systemctl show -p ActiveState -p UnitFileState ejabberd")
        assert status.stdout.split() == ["ActiveState=active", "UnitFileState=enabled"], ref


def test_site_fixed_port_mode_leaves_nothing_on_4369(env, site):
    require_deployed(env)
    for ref in HOSTS:
        listening = sh(env["lab"], ref, "ss -Htln").stdout
        assert not re.search(r":4369\b", listening), (ref, listening)
        assert re.search(r"%s:%d\b" % (re.escape(env["runner"].ips[ref]), DIST_PORT), listening)
        units = sh(env["lab"], ref, "systemctl is-active epmd.socket epmd.service; "
                                    "systemctl is-enabled epmd.socket epmd.service").stdout.split()
        assert units == ["inactive", "inactive", "disabled", "disabled"], (ref, units)


def test_site_puts_back_units_changed_by_hand(env, site):
    """Role ejabberd reads the systemd units once and writes only what differs: a unit of
    its own edited by hand and epmd.socket enabled again are both seen and put back."""
    require_deployed(env)
    lab, ref = env["lab"], HOSTS[0]
    unit = "/etc/systemd/system/ejabberd.service"
    before = sh(lab, ref, "cat %s" % unit, check=True).stdout
    sh(lab, ref, "echo '# edited by hand' >> %s && systemctl daemon-reload && systemctl enable --now epmd.socket"
       % unit, check=True)
    assert re.search(r":4369\b", sh(lab, ref, "ss -Htln").stdout)

    play = env["run"]("site", {"ejabberd_cookie": env["cookie"]})
    assert play.rc == 0, play
    assert play.changed(lab.node(ref)["container"]) > 0, play
    assert all(play.changed(lab.node(other)["container"]) == 0 for other in HOSTS[1:]), play
    assert sh(lab, ref, "cat %s" % unit, check=True).stdout == before
    assert not re.search(r":4369\b", sh(lab, ref, "ss -Htln").stdout)
    units = sh(lab, ref, "systemctl is-enabled epmd.socket epmd.service").stdout.split()
    assert units == ["disabled", "disabled"], units


def test_site_every_node_lists_the_three_members(env, site):
    require_deployed(env)
    lab, want = env["lab"], expected(env)
    got = {ref: lab.list_cluster(ref) for ref in HOSTS}
    assert got == {ref: want for ref in HOSTS}


def test_site_module_from_this_machine_sees_one_cluster(env, site):
    require_deployed(env)
    want = expected(env)
    results = env["runner"].module_check(env["cookie"])
    assert len(results) == 3
    for result in results:
        keys = ("node", "failed", "running_nodes", "stopped_nodes", "split_brain", "missing",
                "unexpected", "msg")
        summary = {k: result.get(k) for k in keys}
        assert not result.get("failed") and result["running_nodes"] == want, summary
        assert result["split_brain"] is False and result["stopped_nodes"] == [], summary
        assert sorted(result["views"]) == want, summary


def test_site_cookie_files(env, site):
    require_deployed(env)
    lab = env["lab"]
    for ref in HOSTS:
        mode = sh(lab, ref, "stat -c '%%U %%G %%a' %s" % COOKIE_FILE).stdout.split()
        assert mode == ["ejabberd", "ejabberd", "400"], ref
    same = cookie_digests(lab) == {ref: sha256(env["cookie"]) for ref in HOSTS}
    assert same, "the cookie files do not hold the cluster's cookie"


def test_site_second_run_changes_nothing(env, site_again):
    play = site_again
    assert play.rc == 0, play
    assert sorted(play.recap) == sorted(env["lab"].node(ref)["container"] for ref in HOSTS), play
    assert {h: v["changed"] for h, v in play.recap.items()} == {h: 0 for h in play.recap}, play


def test_site_never_shows_the_cookie(env, site, site_again):
    for play in (site, site_again):
        leaked = play.shows_a_secret()
        assert not leaked, "the cookie appears in the output of the site playbook"


# ---------------------------------------------------------------------------------
# 2. verify


def table_rows(play: Play) -> dict[str, tuple[str, ...]]:
    """Rows of the table the verify play prints: node -> (ejabberd, otp, run, stopped, status)."""
    rows = {}
    for match in re.finditer(r'"(ejabberd@\S+)\s+(\S+)\s+(\S+)\s+(\d+)\s+(\d+)\s+(OK|FAIL[^"]*)",?$',
                             play.out, re.M):
        rows[match.group(1)] = match.groups()[1:]
    return rows


def test_verify_prints_the_table_and_writes_the_summary(env, site):
    require_deployed(env)
    summary_path = os.path.join(env["runner"].workdir, "verify-ok.json")
    play = env["run"]("verify", {"verify_summary_path": summary_path})
    env["timings"]["verify"] = play.wall
    assert play.rc == 0, play
    assert all(v["changed"] == 0 for v in play.recap.values()), play    # read-only
    want = expected(env)
    rows = table_rows(play)
    assert sorted(rows) == want, play
    for name, row in rows.items():
        version, otp, run, stopped, status = row
        assert (run, stopped, status) == ("3", "0", "OK"), (name, row)
        assert version != "?" and otp != "?", (name, row)
    with open(summary_path, encoding="utf-8") as handle:
        summary = json.load(handle)
    assert sorted(summary) == want
    for name, entry in summary.items():
        assert entry["ok"] is True, (name, entry)
        assert entry["running_nodes"] == want, (name, entry)
        assert entry["stopped_nodes"] == [] and entry["split_brain"] is False, (name, entry)
        assert entry["cookie_mode"] == "0400", (name, entry)
    assert not play.shows_a_secret()


def test_verify_fails_when_a_node_is_stopped(env, site):
    require_deployed(env)
    lab, runner = env["lab"], env["runner"]
    stopped = runner.names["s2"]
    summary_path = os.path.join(runner.workdir, "verify-stopped.json")
    lab.stop_node("s2")
    try:
        play = runner.run("verify", {"verify_summary_path": summary_path})
    finally:
        start = time.monotonic()
        lab.start_node("s2")
        wait_cluster(env)
        env["timings"]["verify_restore_s2"] = time.monotonic() - start
    assert play.rc != 0, play
    assert all(v["failed"] == 1 for v in play.recap.values()), play
    rows = table_rows(play)
    assert rows[stopped][-1].startswith("FAIL"), play
    for ref in ("s1", "s3"):
        status = rows[runner.names[ref]][-1]
        assert status.startswith("FAIL") and stopped in status, play   # "missing: <s2>"
    with open(summary_path, encoding="utf-8") as handle:
        summary = json.load(handle)
    assert summary[stopped]["ok"] is False, summary
    for ref in ("s1", "s3"):
        entry = summary[runner.names[ref]]
        assert entry["ok"] is False and stopped in entry["msg"], entry
        assert stopped not in entry["running_nodes"], entry
    assert any(stopped in msg for msg in play.fatal_messages()), play


# ---------------------------------------------------------------------------------
# 3. rotate_cookie, watched from here: never a split


@pytest.fixture(scope="module")
def rotation(env, site):
    require_deployed(env)
    runner = env["runner"]
    wait_cluster(env)
    old, new = env["cookie"], runner.cookie()
    # Connections opened with the old cookie before the rotation; they must stay up.
    with ClusterPoller(nodes_of(env), old, reconnect=False) as poller:
        play = runner.run("rotate_cookie", {"ejabberd_cookie": new})
    env["timings"]["rotate_cookie"] = play.wall
    env["notes"].append("rotate_cookie: %d poll rounds, answers per node %s" % (
        len(poller.rounds), [poller.polls(n["name"]) for n in nodes_of(env)]))
    if play.rc == 0:
        env["cookie"] = new
    return {"play": play, "poller": poller, "old": old, "new": new}


def test_rotate_cookie_succeeds(rotation):
    play = rotation["play"]
    assert play.rc == 0, play
    assert all(v["failed"] == 0 for v in play.recap.values()), play
    assert not play.shows_a_secret(), "a cookie appears in the output of rotate_cookie"


def test_rotate_cookie_never_splits_the_cluster(env, rotation):
    poller, want = rotation["poller"], expected(env)
    for name in want:
        assert poller.polls(name) > 0, poller
    bad = [r for r in poller.rounds if any(v != want for v in r.values())]
    assert not bad, "%d of %d poll rounds saw fewer than the 3 nodes (first: %s); %r" % (
        len(bad), len(poller.rounds), bad[:3], poller)
    assert all(not errors for errors in poller.errors.values()), poller


def test_rotate_cookie_files_and_nodes_use_the_new_cookie(env, rotation):
    assert rotation["play"].rc == 0
    new, old = rotation["new"], rotation["old"]
    same = cookie_digests(env["lab"]) == {ref: sha256(new) for ref in HOSTS}
    assert same, "a cookie file does not hold the new cookie"
    for node in nodes_of(env):
        switched = node_accepts(node, new, DIST_PORT) and not node_accepts(node, old, DIST_PORT)
        assert switched, "%s does not accept only the new cookie" % node["name"]


def assert_whole_from_here(env, cookie: str) -> None:
    """Every node, asked by the collection's module from this machine, sees all three
    running, none stopped, and the same view as its peers."""
    wait_cluster(env, timeout=5)
    want = expected(env)
    for result in env["runner"].module_check(cookie):
        assert not result.get("failed") and result["running_nodes"] == want, result.get("msg")
        assert result["stopped_nodes"] == [] and result["split_brain"] is False, result.get("msg")


def test_rotate_cookie_keeps_one_cluster(env, rotation):
    assert rotation["play"].rc == 0
    assert_whole_from_here(env, rotation["new"])


def test_rotate_cookie_second_run_changes_nothing(env, rotation):
    assert rotation["play"].rc == 0
    play = env["run"]("rotate_cookie", {"ejabberd_cookie": rotation["new"]})
    env["timings"]["rotate_cookie_again"] = play.wall
    assert play.rc == 0, play
    assert {h: v["changed"] for h, v in play.recap.items()} == {h: 0 for h in play.recap}, play
    assert len(play.recap) == 3, play
    assert not play.shows_a_secret()


# ---------------------------------------------------------------------------------
# 4. rolling_restart, watched from here: one node at a time


@pytest.fixture(scope="module")
def rolling(env, site):
    require_deployed(env)
    wait_cluster(env)
    before = vm_pids(env)
    with ClusterPoller(nodes_of(env), env["cookie"], reconnect=True) as poller:
        play = env["run"]("rolling_restart")
    env["timings"]["rolling_restart"] = play.wall
    env["notes"].append("rolling_restart: %d poll rounds, answers per node %s" % (
        len(poller.rounds), [poller.polls(n["name"]) for n in nodes_of(env)]))
    after = vm_pids(env) if play.rc == 0 else {}
    return {"play": play, "poller": poller, "before": before, "after": after}


def test_rolling_restart_succeeds(rolling):
    play = rolling["play"]
    assert play.rc == 0, play
    assert all(v["failed"] == 0 for v in play.recap.values()), play
    assert not play.shows_a_secret()


def test_rolling_restart_restarts_every_vm(env, rolling):
    assert rolling["play"].rc == 0
    before, after = rolling["before"], rolling["after"]
    assert sorted(after) == expected(env)
    assert all(after[name] != before[name] for name in after), (before, after)


def at_most_one_out(round_: dict, want: list[str]) -> bool:
    """True when some node X (or none) exists such that every other node answered and
    lists every node but (at most) X: the cluster was never missing two nodes. The nodes
    are asked one after the other, so a round may catch a node on its way back, with
    views that disagree for a moment about it; that still fits one X."""
    def fine_without(candidate: str | None) -> bool:
        rest = set(want) - {candidate}
        return all(round_[n] is not None and rest <= set(round_[n]) for n in want if n != candidate)

    return fine_without(None) or any(fine_without(n) for n in want)


def restarting_in(round_: dict, want: list[str]) -> set[str]:
    """The nodes this round shows restarting, on unambiguous evidence only: no answer, or
    an answer listing only the node itself (ejabberd up, not yet back in the cluster).
    Partial views while connections come back are not evidence of which node restarted."""
    return {n for n in want if round_[n] is None or list(round_[n]) == [n]}


def test_rolling_restart_rounds_are_judged_on_evidence():
    """Rounds observed in earlier runs, where a node was on its way back."""
    a, b, c = want = ["a@h", "b@h", "c@h"]
    assert at_most_one_out({a: want, b: want, c: want}, want)
    assert restarting_in({a: want, b: want, c: want}, want) == set()
    assert restarting_in({a: want, b: None, c: want}, want) == {b}
    assert restarting_in({a: [a, c], b: [b], c: [a, c]}, want) == {b}
    # b is back and reaches c before a: a looks missing from b's view only.
    assert at_most_one_out({a: want, b: [b, c], c: want}, want)
    # c is back and sees everyone; a and b were asked before c reached them.
    assert at_most_one_out({a: [a, b], b: [a, b], c: want}, want)
    # b is back and sees everyone; a was asked before b reached it (seen in CI): not an
    # episode of a.
    round_ = {a: [a, c], b: want, c: want}
    assert at_most_one_out(round_, want) and restarting_in(round_, want) == set()
    # Two nodes down: a and b do not answer.
    assert not at_most_one_out({a: None, b: None, c: [c]}, want)


def test_rolling_restart_one_node_at_a_time(env, rolling):
    assert rolling["play"].rc == 0
    poller, want = rolling["poller"], expected(env)
    for name in want:
        assert poller.polls(name) > 0, poller
    bad = [r for r in poller.rounds
           if not at_most_one_out(r, want) or len(restarting_in(r, want)) > 1]
    assert not bad, "%d of %d poll rounds saw two nodes out (first: %s)" % (
        len(bad), len(poller.rounds), bad[:3])
    # Each node was seen restarting, in the order of the inventory (serial: 1), once each.
    episodes: list[str] = []
    for round_ in poller.rounds:
        for name in restarting_in(round_, want):
            if not episodes or episodes[-1] != name:
                episodes.append(name)
    assert episodes == [env["runner"].names[ref] for ref in HOSTS], (episodes, poller)


def test_rolling_restart_leaves_the_cluster_whole(env, rolling):
    assert rolling["play"].rc == 0
    assert_whole_from_here(env, env["cookie"])


# ---------------------------------------------------------------------------------
# 5. A reboot of every host: systemd brings the cluster back, firewall included


@pytest.fixture(scope="module")
def rebooted(env, rolling):
    require_deployed(env)
    lab = env["lab"]
    start = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(max_workers=len(HOSTS)) as pool:
        list(pool.map(lab.reboot, HOSTS))
    env["timings"]["reboot_until_systemd_runs"] = time.monotonic() - start
    wait_cluster(env, timeout=120)
    env["timings"]["reboot_until_cluster_whole"] = time.monotonic() - start


def test_reboot_brings_the_cluster_back(env, rebooted):
    assert_whole_from_here(env, env["cookie"])
    for ref in HOSTS:
        assert not re.search(r":4369\b", sh(env["lab"], ref, "ss -Htln").stdout), ref


def test_reboot_keeps_the_firewall(env, rebooted):
    """Real packets after the boot: a peer reaches s1's distribution port, the host that is
    not a peer (fresh) is refused."""
    lab, target = env["lab"], env["runner"].ips["s1"]
    probe = "nc -z -w 2 %s %d" % (target, DIST_PORT)
    assert sh(lab, "s2", probe).returncode == 0
    assert sh(lab, FRESH, probe).returncode != 0


def test_reboot_then_site_changes_nothing(env, rebooted):
    play = env["run"]("site", {"ejabberd_cookie": env["cookie"]})
    assert play.rc == 0, play
    assert {h: v["changed"] for h, v in play.recap.items()} == {h: 0 for h in play.recap}, play


# ---------------------------------------------------------------------------------
# 6. Bad input through the site playbook: rejected before anything changes


# case: (inventory, variables (the cookie added where missing), the variable the operator set)
BAD_INPUT = {
    "window_not_a_range": ("fresh", {"ejabberd_firewall_window": "5000"},
                           "ejabberd_firewall_window"),
    "window_above_65535": ("fresh", {"ejabberd_firewall_window": "70000-80000"},
                           "ejabberd_firewall_window"),
    "window_reversed": ("fresh", {"ejabberd_firewall_window": "2000-1000"},
                        "ejabberd_firewall_window"),
    "window_below_1024": ("fresh", {"ejabberd_firewall_window": "1000-2000"},
                          "ejabberd_firewall_window"),
    # The role checks ERL_DIST_PORT against FIREWALL_WINDOW in fixed-port mode (in epmd
    # mode ERL_DIST_PORT is not written, so there is nothing to clash; see below).
    "dist_port_inside_window": ("fresh", {"ejabberd_firewall_window": "5200-5300",
                                          "ejabberd_dist_port": 5210},
                                "ejabberd_dist_port"),
    "dist_port_70000": ("cluster", {"ejabberd_dist_port": 70000}, "ejabberd_dist_port"),
    "cookie_256_chars": ("cluster", {"ejabberd_cookie": new_cookie(256)},
                         "ejabberd_cookie"),
    "cookie_with_tab": ("cluster", {"ejabberd_cookie": new_cookie(16) + "\t" + new_cookie(16)},
                        "ejabberd_cookie"),
    "firewalld_not_installed": ("cluster", {"ejabberd_firewall_backend": "firewalld"},
                                "ejabberd_firewall_backend"),
    "mixed_long_and_short_names": ("mixed", {}, "ejabberd_node_name"),
}

STATE_SCRIPT = (
    "sha256sum %(cfg)s; stat -c '%%U %%G %%a %%y' %(cookie)s 2>&1; sha256sum %(cookie)s 2>&1; "
    "nft list table inet xmpp_ejabberd 2>&1 | sed -E 's/counter packets [0-9]+ bytes [0-9]+/counter/'; "
    "ls -la --time-style=full-iso /etc/nftables.d 2>&1; sha256sum /etc/nftables.conf 2>&1; "
    "pgrep -x beam.smp || echo no-beam"
) % {"cfg": CTL_CFG, "cookie": COOKIE_FILE}


def host_states(lab) -> dict[str, str]:
    return {ref: sh(lab, ref, STATE_SCRIPT).stdout for ref in (*HOSTS, FRESH)}


@pytest.fixture(scope="module")
def bad_runs(env, site):
    """Every bad-input case, and the epmd-mode window case, run at once."""
    require_deployed(env)
    lab, runner = env["lab"], env["runner"]
    for variables in [c[1] for c in BAD_INPUT.values()]:
        value = variables.get("ejabberd_cookie")
        if value:
            runner.secrets += [value, *value.split("\t")]
    before = host_states(lab)
    start = time.monotonic()
    jobs = {}
    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        for case, (inventory, variables, dummy) in BAD_INPUT.items():
            variables = {"ejabberd_cookie": env["cookie"], **variables}
            jobs[case] = pool.submit(runner.run, "site", variables, inventory=inventory)
        # Accepted: in epmd mode the dist port is not used, only validation runs here.
        jobs["epmd_mode_window"] = pool.submit(
            runner.run, "site", {"ejabberd_cookie": new_cookie(), "ejabberd_epmd": True,
                                 "ejabberd_firewall_window": "5200-5300",
                                 "ejabberd_dist_port": 5210},
            "--tags", "ejabberd_validate", inventory="fresh")
        results = {case: job.result() for case, job in jobs.items()}
    env["timings"]["bad_input_%d_runs" % len(jobs)] = time.monotonic() - start
    return {"results": results, "before": before, "after": host_states(lab)}


def _hosts_of(env, inventory: str) -> list[str]:
    refs = (FRESH,) if inventory == "fresh" else HOSTS
    return sorted(env["lab"].node(ref)["container"] for ref in refs)


@pytest.mark.parametrize("case", sorted(BAD_INPUT))
def test_bad_input_fails_before_any_change(env, bad_runs, case):
    play = bad_runs["results"][case]
    inventory, dummy, variable = BAD_INPUT[case]
    assert play.rc != 0, play
    assert sorted(play.recap) == _hosts_of(env, inventory), play
    assert {h: v["changed"] for h, v in play.recap.items()} == {h: 0 for h in play.recap}, play
    assert sum(v["failed"] for v in play.recap.values()) >= 1, play
    # Nothing of the rest of the play ran: no cluster, no verify.
    assert "ejabberd_cluster : Join" not in play.out and "PLAY [Verify" not in play.out, play
    assert not play.shows_a_secret(), "a cookie appears in the output"
    assert bad_runs["after"] == bad_runs["before"]


@pytest.mark.parametrize("case", sorted(BAD_INPUT))
def test_bad_input_message_names_the_operators_variable(bad_runs, case):
    play = bad_runs["results"][case]
    variable = BAD_INPUT[case][2]
    messages = play.fatal_messages()
    assert any(variable in msg for msg in messages), play
    # Not the variables the ejabberd role hands the value to (erlang_cookie_value, ...).
    assert not any(re.search(r"\berlang_(cookie|firewall)_\w+", msg) for msg in messages), messages


def test_dist_port_inside_the_window_is_accepted_in_epmd_mode(bad_runs):
    play = bad_runs["results"]["epmd_mode_window"]
    assert play.rc == 0, play
    assert all(v["changed"] == 0 for v in play.recap.values()), play


def test_bad_input_left_every_host_as_it_was(env, bad_runs):
    assert bad_runs["after"] == bad_runs["before"]
    fresh = bad_runs["after"][FRESH]        # still as the package left it: its node runs
    assert "no-beam" not in fresh and "table inet xmpp_ejabberd {" not in fresh, fresh
    assert "xmpp.ejabberd managed block" not in sh(env["lab"], FRESH, "cat %s" % CTL_CFG).stdout
