# Copyright: xmpp.ejabberd contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Role xmpp.ejabberd.erlang_firewall against lab containers, with real packets.

Containers on one internal network (tests/lab/harness.py): n1 and n2 are the
cluster (the role runs on them, each the other's peer), n3 is a fresh host (check
mode, bad input, the ufw backend) and ``out`` is an outsider. Listeners are plain
``nc -lk`` processes; connections are tried with ``nc -z`` from the other containers.
The role runs through ``ansible-playbook`` with the community.docker.docker
connection, the way an operator runs it (``include_role``, as the ejabberd role does).
"""

from __future__ import annotations

import concurrent.futures
import os
import re
import subprocess
import time

import pytest

from ansible_collections.xmpp.ejabberd.tests.helpers.playbook import (
    Play, PlaybookRunner, lab_session, lab_subnets, start_lab)
from ansible_collections.xmpp.ejabberd.tests.lab.harness import DOCKER, LabCluster

pytestmark = pytest.mark.lab

SUITE = os.environ.get("XMPP_EJABBERD_TEST_SUITE", "bookworm")
PREFIX = "xrfw"
SUBNETS = lab_subnets("XMPP_EJABBERD_TEST_SUBNET_FIREWALL", 110)
DIST_PORT = 5210
OTHER_PORT = 2222          # stands for SSH and everything else: never filtered
TABLE = "inet xmpp_ejabberd"
NFT_FILE = "/etc/nftables.d/xmpp_ejabberd.nft"
NFT_CONF = "/etc/nftables.conf"
INCLUDE_LINE = 'include "/etc/nftables.d/*.nft"'


# ---------------------------------------------------------------------------------
# Running the role


class Runner(PlaybookRunner):
    """The role through ansible-playbook against the lab's containers."""

    def __init__(self, lab: LabCluster, workdir: str) -> None:
        super().__init__(workdir)
        self.playbook = self.role_playbook("erlang_firewall")
        lines = []
        for ref in ("n1", "n2", "n3", "out", "fw"):
            node = lab.node(int(ref[1]) if ref[0] == "n" else ref)
            lines.append("%s ansible_host=%s erlang_firewall_address=%s"
                         % (ref, node["container"], node["ip"]))
        self.inventory = self.docker_inventory(lines)

    def run(self, limit: str, variables: dict, *args: str) -> Play:
        return self.play(self.playbook, self.inventory, variables, "--limit", limit, *args,
                         timeout=600)


# ---------------------------------------------------------------------------------
# Lab


def _start_lab() -> LabCluster:
    return start_lab(
        SUBNETS, lambda subnet: LabCluster(suite=SUITE, size=3, prefix=PREFIX, subnet=subnet, start=False),
        _prepare, "firewall lab")


def _prepare(lab: LabCluster) -> None:
    lab.add_container("out")
    lab.add_container("fw")     # runs firewalld (test_firewalld_backend)


@pytest.fixture(scope="module")
def env(request):
    with lab_session(request, "erlang_firewall lab", _start_lab) as session:
        runner = Runner(session["lab"], session["workdir"])
        yield {"lab": session["lab"], "run": runner.run, "timings": session["timings"]}


def sh(lab: LabCluster, ref, script: str, check: bool = False) -> subprocess.CompletedProcess[str]:
    return lab.exec(ref, ["sh", "-c", script], check=check)


def listen(lab: LabCluster, ref, *ports: int) -> None:
    """Background ``nc -lk`` listeners (kept until the container goes)."""
    container = lab.node(ref)["container"]
    for port in ports:
        subprocess.run([DOCKER, "exec", "-d", container, "nc", "-lk", "-p", str(port)],
                       check=True, capture_output=True, stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while True:
        listening = sh(lab, ref, "ss -Htln").stdout
        if all(re.search(r":%d\b" % p, listening) for p in ports):
            return
        if time.monotonic() > deadline:
            raise AssertionError("listeners %s did not come up: %s" % (ports, listening))
        time.sleep(0.1)


def can_connect(lab: LabCluster, src, dst, port: int, wait: int = 2) -> bool:
    """One TCP connection attempt from container ``src`` to ``dst``:``port``."""
    address = dst if isinstance(dst, str) and dst[0].isdigit() else lab.node(dst)["ip"]
    proc = lab.exec(src, ["nc", "-z", "-w", str(wait), address, str(port)], check=False)
    return proc.returncode == 0


def reachability(lab, checks):
    """{(src, dst, port): connected} for all checks at once (a refusal waits ``-w``)."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=len(checks)) as pool:
        futures = {c: pool.submit(can_connect, lab, *c) for c in checks}
        return {c: f.result() for c, f in futures.items()}


def table_exists(lab, ref) -> bool:
    return sh(lab, ref, "nft list table %s" % TABLE).returncode == 0


def file_state(lab, ref) -> str:
    """What the role may change on a host, to prove that nothing changed."""
    return sh(lab, ref, "sha256sum %s 2>&1; ls -la /etc/nftables.d 2>&1; "
                        "nft list table %s 2>&1; ufw show added 2>&1" % (NFT_CONF, TABLE)).stdout


def ip(lab, ref) -> str:
    return lab.node(ref)["ip"]


# ---------------------------------------------------------------------------------
# nftables, fixed-port mode: the lead's default


def test_nftables_opens_the_port_to_peers_only(env):
    lab, run = env["lab"], env["run"]
    listen(lab, 1, DIST_PORT, OTHER_PORT)
    listen(lab, 2, DIST_PORT)
    before = reachability(lab, [("out", 1, DIST_PORT), (3, 1, DIST_PORT)])
    assert all(before.values()), "listeners must be reachable before the role runs: %s" % before

    play = run("n1,n2", {"erlang_firewall_dist_port": DIST_PORT})
    env["timings"]["converge_2_nodes"] = play.wall
    assert play.rc == 0, play
    assert play.changed("n1") > 0 and play.changed("n2") > 0, play

    got = reachability(lab, [
        (2, 1, DIST_PORT),          # peer
        (1, 2, DIST_PORT),          # peer, the other way
        ("out", 1, DIST_PORT),      # outsider
        (3, 1, DIST_PORT),          # a lab host that is not a peer
        ("out", 1, OTHER_PORT),     # any other port stays open ("SSH")
        (1, "127.0.0.1", DIST_PORT),  # loopback
        (1, 1, DIST_PORT),          # the node's own address (local traffic goes over lo)
    ])
    assert got == {
        (2, 1, DIST_PORT): True, (1, 2, DIST_PORT): True,
        ("out", 1, DIST_PORT): False, (3, 1, DIST_PORT): False,
        ("out", 1, OTHER_PORT): True,
        (1, "127.0.0.1", DIST_PORT): True, (1, 1, DIST_PORT): True,
    }

    # Its own table only; Docker's rules (embedded DNS) are still there.
    tables = sh(lab, 1, "nft list tables").stdout
    assert "table %s" % TABLE in tables
    listing = sh(lab, 1, "nft list table %s" % TABLE).stdout
    assert ip(lab, 2) in listing            # n1 and n2 (.11, .12) may be merged into a range
    assert ip(lab, "out") not in listing
    assert sh(lab, 1, "getent hosts %s" % lab.node(2)["container"]).returncode == 0, \
        "Docker's embedded DNS must keep working (no ruleset flush)"


def test_nftables_second_run_changes_nothing(env):
    play = env["run"]("n1,n2", {"erlang_firewall_dist_port": DIST_PORT})
    env["timings"]["second_run"] = play.wall
    assert play.rc == 0, play
    assert play.changed("n1") == 0 and play.changed("n2") == 0, play


def test_nftables_rules_persist(env):
    lab = env["lab"]
    conf = sh(lab, 1, "cat %s" % NFT_CONF, check=True).stdout
    assert conf.count(INCLUDE_LINE) == 1
    assert conf.startswith("#!/usr/sbin/nft -f"), "Debian's file is kept, only a line is added"
    assert sh(lab, 1, "nft --check --file %s" % NFT_FILE).returncode == 0
    mode = sh(lab, 1, "stat -c '%%a %%U' %s" % NFT_FILE).stdout.split()
    assert mode == ["644", "root"]


def test_nftables_missing_live_table_is_restored(env):
    """After a reboot (or a container restart) the file is there but not the table."""
    lab, run = env["lab"], env["run"]
    sh(lab, 1, "nft delete table %s" % TABLE, check=True)
    assert can_connect(lab, "out", 1, DIST_PORT)

    play = run("n1,n2", {"erlang_firewall_dist_port": DIST_PORT})
    assert play.rc == 0, play
    assert play.changed("n1") == 1 and play.changed("n2") == 0, play
    assert table_exists(lab, 1)
    assert not can_connect(lab, "out", 1, DIST_PORT, wait=1)

    # A stale table (edited by hand, or an older version of the rules) is replaced too.
    sh(lab, 1, "nft flush chain %s input" % TABLE, check=True)
    play = run("n1,n2", {"erlang_firewall_dist_port": DIST_PORT})
    assert play.rc == 0 and play.changed("n1") == 1, play
    assert not can_connect(lab, "out", 1, DIST_PORT, wait=1)


def test_nftables_boot_configuration_loads_the_table(env):
    """What the nftables service does at boot: load /etc/nftables.conf."""
    lab, run = env["lab"], env["run"]
    sh(lab, 2, "nft delete table %s" % TABLE, check=True)
    sh(lab, 2, "nft --file %s" % NFT_CONF, check=True)   # flushes the ruleset, as at boot
    assert table_exists(lab, 2)
    got = reachability(lab, [(1, 2, DIST_PORT), ("out", 2, DIST_PORT)])
    assert got == {(1, 2, DIST_PORT): True, ("out", 2, DIST_PORT): False}
    play = run("n1,n2", {"erlang_firewall_dist_port": DIST_PORT})
    assert play.rc == 0 and play.changed("n2") == 0, play


def test_nftables_epmd_mode_replaces_the_rules(env):
    """EPMD + window, peers given explicitly (IPv6 too), reject; then back to fixed port."""
    lab, run = env["lab"], env["run"]
    listen(lab, 1, 4369, 4375)
    variables = {
        "erlang_firewall_epmd": True,
        "erlang_firewall_window": "4370-4380",
        "erlang_firewall_dist_port": "{{ omit }}",    # as the ejabberd role passes it
        "erlang_firewall_peers": [ip(lab, 2), "fd00:db8::2", "10.99.0.0/16"],
        "erlang_firewall_action": "reject",
    }
    play = run("n1", variables)
    assert play.rc == 0 and play.changed("n1") > 0, play
    got = reachability(lab, [
        (2, 1, 4369), (2, 1, 4375), ("out", 1, 4369), ("out", 1, 4375),
        ("out", 1, DIST_PORT),   # no longer filtered
    ])
    assert got == {(2, 1, 4369): True, (2, 1, 4375): True, ("out", 1, 4369): False,
                   ("out", 1, 4375): False, ("out", 1, DIST_PORT): True}
    listing = sh(lab, 1, "nft list table %s" % TABLE).stdout
    assert "fd00:db8::2" in listing and "reject" in listing
    start = time.monotonic()
    assert not can_connect(lab, "out", 1, 4369, wait=5)
    assert time.monotonic() - start < 4, "reject answers at once"

    play = run("n1,n2", {"erlang_firewall_dist_port": DIST_PORT})
    assert play.rc == 0 and play.changed("n1") > 0, play
    got = reachability(lab, [("out", 1, DIST_PORT), ("out", 1, 4369), (2, 1, DIST_PORT)])
    assert got == {("out", 1, DIST_PORT): False, ("out", 1, 4369): True, (2, 1, DIST_PORT): True}


# ---------------------------------------------------------------------------------
# Check mode and bad input on a fresh host: nothing changes


def test_check_mode_changes_nothing(env):
    lab, run = env["lab"], env["run"]
    before = file_state(lab, 3)
    play = run("n3", {"erlang_firewall_dist_port": DIST_PORT,
                      "erlang_firewall_peers": [ip(lab, 1)]}, "--check")
    assert play.rc == 0, play
    assert not table_exists(lab, 3)
    assert file_state(lab, 3) == before


BAD_INPUT = {
    "window_not_a_range": ({"erlang_firewall_window": "5000", "erlang_firewall_epmd": True},
                           "erlang_firewall_window"),
    "window_out_of_range": ({"erlang_firewall_window": "70000-80000", "erlang_firewall_epmd": True},
                            "erlang_firewall_window"),
    "window_reversed": ({"erlang_firewall_window": "2000-1000", "erlang_firewall_epmd": True},
                        "erlang_firewall_window"),
    "window_below_1024": ({"erlang_firewall_window": "80-90", "erlang_firewall_epmd": True},
                          "erlang_firewall_window"),
    "dist_port_in_window": ({"erlang_firewall_window": "5000-6000", "erlang_firewall_epmd": True,
                             "erlang_firewall_dist_port": DIST_PORT}, "erlang_firewall_dist_port"),
    "dist_port_out_of_range": ({"erlang_firewall_dist_port": 70000}, "erlang_firewall_dist_port"),
    "nothing_to_filter": ({}, "erlang_firewall_dist_port"),
    "peer_not_an_address": ({"erlang_firewall_dist_port": DIST_PORT,
                             "erlang_firewall_peers": ["10.0.0.1", "n2.lab"]}, "erlang_firewall_peers"),
    "backend_unknown": ({"erlang_firewall_dist_port": DIST_PORT, "erlang_firewall_backend": "iptables"},
                        "erlang_firewall_backend"),
    "firewalld_not_running": ({"erlang_firewall_dist_port": DIST_PORT,
                               "erlang_firewall_backend": "firewalld"}, "erlang_firewall_backend"),
    "ufw_not_active": ({"erlang_firewall_dist_port": DIST_PORT, "erlang_firewall_backend": "ufw"},
                       "erlang_firewall_backend"),
}


@pytest.fixture(scope="module")
def bad_runs(env):
    """Every bad-input case on the fresh host n3, run at once; n3's state before and after."""
    lab, run = env["lab"], env["run"]
    before = file_state(lab, 3)
    start = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        futures = {case: pool.submit(run, "n3", variables)
                   for case, (variables, dummy) in BAD_INPUT.items()}
        results = {case: f.result() for case, f in futures.items()}
    env["timings"]["bad_input_%d_runs" % len(BAD_INPUT)] = time.monotonic() - start
    return {"results": results, "before": before, "after": file_state(lab, 3)}


@pytest.mark.parametrize("case", sorted(BAD_INPUT))
def test_bad_input_fails_before_any_change(bad_runs, case):
    play = bad_runs["results"][case]
    variable = BAD_INPUT[case][1]
    assert play.rc != 0, play
    assert play.failed("n3") == 1 and play.changed("n3") == 0, play
    assert variable in play.out, play
    assert bad_runs["after"] == bad_runs["before"]


@pytest.mark.parametrize("case, words", [
    ("firewalld_not_running", "firewalld is not running"),
    ("ufw_not_active", "ufw is not active"),
    ("window_reversed", "1024 <= low <= high <= 65535"),
])
def test_bad_input_message_says_why(bad_runs, case, words):
    play = bad_runs["results"][case]
    assert words in " ".join(play.out.split()), play


@pytest.mark.parametrize("backend, tool", [("ufw", "/usr/sbin/ufw"), ("firewalld", "/usr/bin/firewall-cmd")])
def test_backend_not_installed(env, backend, tool):
    """The image has both tools: one is hidden for the run, as if not installed."""
    lab, run = env["lab"], env["run"]
    sh(lab, "out", "mv %s %s.hidden" % (tool, tool), check=True)
    try:
        play = run("out", {"erlang_firewall_dist_port": DIST_PORT, "erlang_firewall_backend": backend})
    finally:
        sh(lab, "out", "mv %s.hidden %s" % (tool, tool), check=True)
    assert play.rc != 0 and play.changed("out") == 0, play
    assert "erlang_firewall_backend" in play.out, play
    assert "%s is not installed" % os.path.basename(tool) in " ".join(play.out.split()), play


# ---------------------------------------------------------------------------------
# ufw (runs in the containers too; ufw is enabled by the test, never by the role)


def test_ufw_backend(env):
    lab, run = env["lab"], env["run"]
    sh(lab, 3, "ufw default allow incoming && ufw --force enable", check=True)
    listen(lab, 3, DIST_PORT, OTHER_PORT)
    variables = {"erlang_firewall_backend": "ufw", "erlang_firewall_dist_port": DIST_PORT,
                 "erlang_firewall_peers": [ip(lab, 1)]}
    play = run("n3", variables)
    assert play.rc == 0 and play.changed("n3") > 0, play
    got = reachability(lab, [(1, 3, DIST_PORT), (2, 3, DIST_PORT), ("out", 3, DIST_PORT),
                             ("out", 3, OTHER_PORT), (3, "127.0.0.1", DIST_PORT)])
    assert got == {(1, 3, DIST_PORT): True, (2, 3, DIST_PORT): False, ("out", 3, DIST_PORT): False,
                   ("out", 3, OTHER_PORT): True, (3, "127.0.0.1", DIST_PORT): True}

    play = run("n3", variables)
    assert play.rc == 0 and play.changed("n3") == 0, play

    # Another peer: its allow goes before the refusal, the former peer's rule goes.
    variables["erlang_firewall_peers"] = [ip(lab, 2)]
    play = run("n3", variables)
    assert play.rc == 0 and play.changed("n3") > 0, play
    got = reachability(lab, [(1, 3, DIST_PORT), (2, 3, DIST_PORT), ("out", 3, DIST_PORT)])
    assert got == {(1, 3, DIST_PORT): False, (2, 3, DIST_PORT): True, ("out", 3, DIST_PORT): False}
    added = sh(lab, 3, "ufw show added", check=True).stdout
    assert ip(lab, 1) not in added
    play = run("n3", variables)
    assert play.rc == 0 and play.changed("n3") == 0, play


# ---------------------------------------------------------------------------------
# firewalld (started by the test on "fw" without systemd: its own D-Bus system bus)


def start_firewalld(lab: LabCluster, ref) -> None:
    sh(lab, ref, "mkdir -p /run/dbus && dbus-daemon --system --fork", check=True)
    subprocess.run([DOCKER, "exec", "-d", lab.node(ref)["container"], "firewalld", "--nofork", "--nopid"],
                   check=True, capture_output=True, stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while sh(lab, ref, "firewall-cmd --state").stdout.strip() != "running":
        if time.monotonic() > deadline:
            raise AssertionError("firewalld did not start: %s" % sh(lab, ref, "firewall-cmd --state"))
        time.sleep(0.2)


def rich_rules(lab: LabCluster, ref) -> list[str]:
    return sh(lab, ref, "firewall-cmd --permanent --list-rich-rules", check=True).stdout.splitlines()


def test_firewalld_backend(env):
    lab, run = env["lab"], env["run"]
    start_firewalld(lab, "fw")
    # What an operator already has: another port open to everyone (stands for SSH).
    sh(lab, "fw", "firewall-cmd --permanent --add-port=%d/tcp && firewall-cmd --reload" % OTHER_PORT,
       check=True)
    listen(lab, "fw", DIST_PORT, OTHER_PORT)
    variables = {"erlang_firewall_backend": "firewalld", "erlang_firewall_dist_port": DIST_PORT,
                 "erlang_firewall_peers": [ip(lab, 1)]}
    play = run("fw", variables)
    assert play.rc == 0 and play.changed("fw") > 0, play
    checks = [(1, "fw", DIST_PORT), (2, "fw", DIST_PORT), ("out", "fw", DIST_PORT),
              ("out", "fw", OTHER_PORT), ("fw", "127.0.0.1", DIST_PORT)]
    want = {(1, "fw", DIST_PORT): True, (2, "fw", DIST_PORT): False, ("out", "fw", DIST_PORT): False,
            ("out", "fw", OTHER_PORT): True, ("fw", "127.0.0.1", DIST_PORT): True}
    assert reachability(lab, checks) == want
    assert rich_rules(lab, "fw") == ['rule family="ipv4" source address="%s" port port="%d" '
                                     'protocol="tcp" accept' % (ip(lab, 1), DIST_PORT)]

    play = run("fw", variables)
    assert play.rc == 0 and play.changed("fw") == 0, play

    # The rules are permanent: a reload (what a boot loads) gives the same answers.
    sh(lab, "fw", "firewall-cmd --reload", check=True)
    assert reachability(lab, checks) == want

    # Another peer: its rule comes, the former peer's goes.
    variables["erlang_firewall_peers"] = [ip(lab, 2)]
    play = run("fw", variables)
    assert play.rc == 0 and play.changed("fw") > 0, play
    got = reachability(lab, [(1, "fw", DIST_PORT), (2, "fw", DIST_PORT), ("out", "fw", DIST_PORT)])
    assert got == {(1, "fw", DIST_PORT): False, (2, "fw", DIST_PORT): True, ("out", "fw", DIST_PORT): False}
    assert all(ip(lab, 1) not in rule for rule in rich_rules(lab, "fw"))
    assert "%d/tcp" % OTHER_PORT in sh(lab, "fw", "firewall-cmd --permanent --list-ports").stdout
    play = run("fw", variables)
    assert play.rc == 0 and play.changed("fw") == 0, play
