# Copyright: xmpp.ejabberd contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Role xmpp.ejabberd.erlang_firewall on VM-like lab hosts, with real packets.

The hosts are lab containers that behave like servers (tests/helpers/lab.py, ``vm=True``):
systemd is PID 1, sshd runs, and Ansible logs in over SSH as the unprivileged ``admin``
and becomes root with sudo, as an operator's play does (``include_role``, as the ejabberd
role does). The package's own ejabberd node runs as it does after installation; it plays
no part here. ``docker exec`` as root is used only to look at the hosts, to play the
operator (enable ufw, start firewalld) and to make packets: listeners are ``nc -lk``
processes, connections are tried with ``nc -z`` from the other hosts.

n1 and n2 are the cluster (nftables, each the other's peer), n3 is a fresh host (check
mode, bad input, then the ufw backend), ``fw`` runs firewalld under systemd and ``out``
is an outsider. At the end n1, n3 and fw (one per backend) are rebooted: systemd shuts
down and boots again, and the rules must be back, SSH must still work and the role must
find nothing to change.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import re
import shlex
import subprocess
import time

import pytest

from ansible_collections.xmpp.ejabberd.tests.helpers.playbook import (
    FATAL_RE, Play, PlaybookRunner, lab_session, start_lab)
from ansible_collections.xmpp.ejabberd.tests.helpers.lab import ADMIN_USER, DOCKER, LabCluster

pytestmark = pytest.mark.lab

SUITE = os.environ.get("XMPP_EJABBERD_TEST_SUITE", "bookworm")
PREFIX = "xrfw"
HOSTS = (1, 2, 3, "out", "fw")
DIST_PORT = 5210
OTHER_PORT = 2222          # an operator's own service: never filtered
SSH_PORT = 22
TABLE = "inet xmpp_ejabberd"
NFT_FILE = "/etc/nftables.d/xmpp_ejabberd.nft"
NFT_CONF = "/etc/nftables.conf"
INCLUDE_LINE = 'include "/etc/nftables.d/*.nft"'


def name(ref) -> str:
    """The inventory name of a lab host: n1, n2, n3, out, fw."""
    return "n%d" % ref if isinstance(ref, int) else ref


def ip(lab, ref) -> str:
    return lab.node(ref)["ip"]


def address_beside_n1(lab) -> str:
    """The free address just below n1's (.10): n1's erlang_firewall_address is the /31
    network of both, so that a peer set holding .10 proves that the role took
    erlang_firewall_address and not ansible_host (n1's own address)."""
    return str(lab.subnet.network_address + 10)


# ---------------------------------------------------------------------------------
# Running the role


class Runner(PlaybookRunner):
    """The role through ansible-playbook, over SSH as admin with sudo."""

    def __init__(self, lab: LabCluster, workdir: str) -> None:
        super().__init__(workdir)
        self.playbook = self.role_playbook("erlang_firewall")
        hosts = {name(ref): (ref, {}) for ref in HOSTS}
        hosts["n1"] = (1, {"erlang_firewall_address": address_beside_n1(lab) + "/31"})
        self.inventory = self.ssh_inventory(lab, hosts)

    def run(self, limit: str, variables: dict, *args: str) -> Play:
        return self.play(self.playbook, self.inventory, variables, "--limit", limit, *args,
                         timeout=600)


# ---------------------------------------------------------------------------------
# Lab


def _start_lab() -> LabCluster:
    return start_lab(LabCluster(suite=SUITE, size=3, prefix=PREFIX, start=False, vm=True),
                     _prepare)


def _prepare(lab: LabCluster) -> None:
    """The outsider and the firewalld host, booted side by side (fixed addresses .101, .102)."""
    net = lab.subnet.network_address
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        for fut in [pool.submit(lab.add_container, short, str(net + 101 + k))
                    for k, short in enumerate(("out", "fw"))]:
            fut.result()


@pytest.fixture(scope="module")
def env(request):
    with lab_session(request, "erlang_firewall lab", _start_lab) as session:
        runner = Runner(session["lab"], session["workdir"])
        yield {"lab": session["lab"], "runner": runner, "run": runner.run,
               "timings": session["timings"], "notes": session["notes"],
               "final": set()}   # backends whose test left the rules the reboot expects


def sh(lab: LabCluster, ref, script: str, check: bool = False) -> subprocess.CompletedProcess[str]:
    return lab.exec(ref, ["sh", "-c", script], check=check)


def listen(lab: LabCluster, ref, *ports: int) -> None:
    """Background ``nc -lk`` listeners (until the host reboots), then wait until they listen."""
    subprocess.run([DOCKER, "exec", "-d", lab.node(ref)["container"], "sh", "-c",
                    " ".join("nc -lk -p %d &" % port for port in ports) + " wait"],
                   check=True, capture_output=True, stdin=subprocess.DEVNULL)
    greps = " && ".join("grep -q ':%d\\b' /tmp/ss" % port for port in ports)
    proc = sh(lab, ref, "for i in $(seq 100); do ss -Htln >/tmp/ss; %s && exit 0; sleep 0.1; "
                        "done; cat /tmp/ss; exit 1" % greps)
    assert proc.returncode == 0, "listeners %s did not come up: %s" % (ports, proc.stdout)


def reachability(lab, checks, wait: int = 2) -> dict[tuple, bool]:
    """{(src, dst, port): connected} for all checks at once: one TCP connection attempt
    (``nc -z``) each, those of one source host side by side in one ``docker exec``.
    A dropped attempt gives up after ``wait`` seconds."""
    by_source: dict = {}
    for check in checks:
        by_source.setdefault(check[0], []).append(check)

    def attempts(src):
        mine = by_source[src]
        script = " ".join(
            "(nc -z -w %d %s %d; echo \"%d $?\") &"
            % (wait, dst if isinstance(dst, str) and dst[0].isdigit() else ip(lab, dst), port, k)
            for k, (dummy, dst, port) in enumerate(mine)) + " wait"
        out = sh(lab, src, script, check=True).stdout.split("\n")
        codes = dict(line.split() for line in out if line.strip())
        return {check: codes[str(k)] == "0" for k, check in enumerate(mine)}

    with concurrent.futures.ThreadPoolExecutor(max_workers=len(by_source)) as pool:
        return {c: ok for part in pool.map(attempts, by_source) for c, ok in part.items()}


def can_connect(lab: LabCluster, src, dst, port: int, wait: int = 2) -> bool:
    """One TCP connection attempt from host ``src`` to ``dst``:``port``."""
    return reachability(lab, [(src, dst, port)], wait)[(src, dst, port)]


def ssh_login(lab: LabCluster, ref, timeout: float = 60) -> float:
    """Log in as admin over a new SSH connection (no multiplexing) and run ``sudo -n true``,
    until it works; the seconds it took. AssertionError after ``timeout``."""
    argv = ["ssh", "-i", lab.ssh_key, "-o", "BatchMode=yes", "-o", "ControlMaster=no",
            "-o", "ControlPath=none", "-o", "StrictHostKeyChecking=no",
            "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
            "-o", "ConnectTimeout=3", "%s@%s" % (ADMIN_USER, ip(lab, ref)), "sudo", "-n", "true"]
    start = time.monotonic()
    while True:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=30,
                              stdin=subprocess.DEVNULL, check=False)
        if proc.returncode == 0:
            return time.monotonic() - start
        if time.monotonic() - start > timeout:
            raise AssertionError("no SSH login as %s on %s within %ss: %s"
                                 % (ADMIN_USER, name(ref), timeout, proc.stderr.strip()))
        time.sleep(0.2)


def table_exists(lab, ref) -> bool:
    return sh(lab, ref, "nft list table %s" % TABLE).returncode == 0


def in_peer_set(lab, ref, address: str) -> bool:
    """Whether the live peers4 set of ``ref`` holds ``address`` (alone or in a range)."""
    return sh(lab, ref, "nft get element %s peers4 '{ %s }'" % (TABLE, address)).returncode == 0


def file_state(lab, ref) -> str:
    """What the role may change on a host, to prove that nothing changed."""
    return sh(lab, ref, "sha256sum %s 2>&1; ls -la /etc/nftables.d 2>&1; "
                        "nft list table %s 2>&1; ufw show added 2>&1; "
                        "systemctl is-enabled nftables 2>&1" % (NFT_CONF, TABLE)).stdout


# ---------------------------------------------------------------------------------
# The operator's own set-up of each backend (idempotent; the role never does this)


def operator_ufw(lab, ref) -> None:
    """ufw on, everything else allowed: the role's refusal is the only one."""
    sh(lab, ref, "ufw default allow incoming && ufw --force enable", check=True)


def operator_firewalld(lab, ref, *open_ports: int) -> None:
    """firewalld started by systemd (``systemctl start``: enabling it for the next boot is
    left to the role), with some ports open to everyone (permanent, then reloaded).
    Zone public keeps its ssh service."""
    adds = "".join(" && firewall-cmd --permanent --add-port=%d/tcp" % p for p in open_ports)
    sh(lab, ref, "systemctl start firewalld.service%s && firewall-cmd --reload" % adds,
       check=True)
    state = sh(lab, ref, "firewall-cmd --state").stdout.strip()
    assert state == "running", "firewalld under systemd: %s" % state


def firewalld_vars(lab) -> dict:
    return {"erlang_firewall_backend": "firewalld", "erlang_firewall_dist_port": DIST_PORT,
            "erlang_firewall_peers": [ip(lab, 2)]}


def ufw_vars(lab) -> dict:
    return {"erlang_firewall_backend": "ufw", "erlang_firewall_dist_port": DIST_PORT,
            "erlang_firewall_peers": [ip(lab, 2)]}


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
        ("out", 1, OTHER_PORT),     # any other port stays open
        ("out", 1, SSH_PORT),       # SSH too
        (1, "127.0.0.1", DIST_PORT),  # loopback
        (1, 1, DIST_PORT),          # the node's own address (local traffic goes over lo)
    ])
    assert got == {
        (2, 1, DIST_PORT): True, (1, 2, DIST_PORT): True,
        ("out", 1, DIST_PORT): False, (3, 1, DIST_PORT): False,
        ("out", 1, OTHER_PORT): True, ("out", 1, SSH_PORT): True,
        (1, "127.0.0.1", DIST_PORT): True, (1, 1, DIST_PORT): True,
    }

    # Its own table only; Docker's rules (embedded DNS) are still there.
    tables = sh(lab, 1, "nft list tables").stdout
    assert "table %s" % TABLE in tables
    # The default peers are the play's hosts: n2 by its ansible_host, n1 by its
    # erlang_firewall_address (a /31 that also holds .10), which wins over ansible_host.
    assert in_peer_set(lab, 1, ip(lab, 2)) and in_peer_set(lab, 2, ip(lab, 1))
    assert in_peer_set(lab, 2, address_beside_n1(lab))
    assert not in_peer_set(lab, 1, ip(lab, "out")) and not in_peer_set(lab, 1, ip(lab, 3))
    assert sh(lab, 1, "getent hosts %s" % lab.node(2)["container"]).returncode == 0, \
        "Docker's embedded DNS must keep working (no ruleset flush)"


def test_nftables_second_run_changes_nothing(env):
    play = env["run"]("n1,n2", {"erlang_firewall_dist_port": DIST_PORT})
    env["timings"]["second_run"] = play.wall
    assert play.rc == 0, play
    assert play.changed("n1") == 0 and play.changed("n2") == 0, play


def test_nftables_rules_persist(env):
    """The boot configuration: the reboot itself is tested at the end of the file."""
    lab = env["lab"]
    conf = sh(lab, 1, "cat %s" % NFT_CONF, check=True).stdout
    assert conf.count(INCLUDE_LINE) == 1
    assert conf.startswith("#!/usr/sbin/nft -f"), "Debian's file is kept, only a line is added"
    assert sh(lab, 1, "nft --check --file %s" % NFT_FILE).returncode == 0
    mode = sh(lab, 1, "stat -c '%%a %%U' %s" % NFT_FILE).stdout.split()
    assert mode == ["644", "root"]
    assert sh(lab, 1, "systemctl is-enabled nftables.service").stdout.strip() == "enabled"


def test_nftables_missing_live_table_is_restored(env):
    """The file is there but not the table (a boot without the nftables service, or
    someone deleted it)."""
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


def test_nftables_files_changed_by_hand_are_put_back(env):
    """The role reads the backend's files once and writes only what differs: a ruleset file
    edited and opened to others, and the include line gone from the service configuration,
    are both seen and put back; then a rerun changes nothing."""
    lab, run = env["lab"], env["run"]
    before = sh(lab, 1, "cat %s" % NFT_FILE, check=True).stdout
    sh(lab, 1, "echo '# edited by hand' >> %s && chmod 0666 %s && grep -vxF %s %s > /tmp/conf; cat /tmp/conf > %s"
       % (NFT_FILE, NFT_FILE, shlex.quote(INCLUDE_LINE), NFT_CONF, NFT_CONF), check=True)
    assert INCLUDE_LINE not in sh(lab, 1, "cat %s" % NFT_CONF, check=True).stdout

    play = run("n1,n2", {"erlang_firewall_dist_port": DIST_PORT})
    assert play.rc == 0, play
    assert play.changed("n1") == 3 and play.changed("n2") == 0, play   # file, include, load
    assert sh(lab, 1, "cat %s" % NFT_FILE, check=True).stdout == before
    assert sh(lab, 1, "stat -c '%%a %%U %%G' %s" % NFT_FILE).stdout.split() == ["644", "root", "root"]
    assert sh(lab, 1, "cat %s" % NFT_CONF, check=True).stdout.count(INCLUDE_LINE) == 1

    play = run("n1,n2", {"erlang_firewall_dist_port": DIST_PORT})
    assert play.rc == 0 and play.changed("n1") == 0, play


def test_nftables_epmd_mode_replaces_the_rules(env):
    """EPMD + window, peers given explicitly (IPv6 too), reject; then back to fixed port.
    Port 4369 is the package's own epmd.socket (systemd listens on every address)."""
    lab, run = env["lab"], env["run"]
    listen(lab, 1, 4375)
    assert re.search(r":4369\b", sh(lab, 1, "ss -Htln").stdout), "epmd.socket listens"
    variables = {
        "erlang_firewall_epmd": True,
        "erlang_firewall_window": "4370-4380",
        "erlang_firewall_dist_port": "{{ omit }}",    # as a play of its own may pass it
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
    # Timed inside the outsider, without docker exec's own delay.
    proc = sh(lab, "out", "s=$(date +%%s%%N); nc -z -w 5 %s 4369; r=$?; "
                          "echo $r $(( ($(date +%%s%%N) - s) / 1000000 ))" % ip(lab, 1), check=True)
    code, millis = proc.stdout.split()
    assert code != "0" and int(millis) < 4000, "reject answers at once: %s" % proc.stdout

    play = run("n1,n2", {"erlang_firewall_dist_port": DIST_PORT})
    assert play.rc == 0 and play.changed("n1") > 0, play
    got = reachability(lab, [("out", 1, DIST_PORT), ("out", 1, 4369), (2, 1, DIST_PORT)])
    assert got == {("out", 1, DIST_PORT): False, ("out", 1, 4369): True, (2, 1, DIST_PORT): True}
    env["final"].add("nftables")


# ---------------------------------------------------------------------------------
# Check mode and bad input on a fresh host: nothing changes


def test_check_mode_changes_nothing(env):
    lab, run = env["lab"], env["run"]
    before = file_state(lab, 3)
    assert "disabled" in before, "a fresh host: the nftables service is not enabled yet"
    play = run("n3", {"erlang_firewall_dist_port": DIST_PORT,
                      "erlang_firewall_peers": [ip(lab, 1)]}, "--check")
    assert play.rc == 0, play
    assert play.changed("n3") > 0, "check mode reports what it would change: %r" % play
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
    # firewalld is installed but disabled (the image's default), ufw installed but inactive.
    "firewalld_not_running": ({"erlang_firewall_dist_port": DIST_PORT,
                               "erlang_firewall_backend": "firewalld"}, "erlang_firewall_backend"),
    "ufw_not_active": ({"erlang_firewall_dist_port": DIST_PORT, "erlang_firewall_backend": "ufw"},
                       "erlang_firewall_backend"),
}


def host_messages(play: Play) -> dict[str, str]:
    """{inventory host: the msg of its fatal line}, whitespace collapsed."""
    msgs = {}
    for match in FATAL_RE.finditer(play.out):
        try:
            msg = str(json.loads(match.group(2)).get("msg", ""))
        except ValueError:
            msg = match.group(2)
        msgs[match.group(1)] = " ".join(msg.split())
    return msgs


def run_cases(env, ref, cases: dict[str, dict], label: str) -> Play:
    """One play, one inventory host per case, all of them ``ref`` with the case's variables
    as host variables: every case fails or passes on its own, for one ansible-playbook.
    At most 8 forks: their SSH sessions share one connection, and sshd allows 10."""
    runner = env["runner"]
    hosts = {case: (ref, variables) for case, variables in cases.items()}
    inventory = runner.ssh_inventory(env["lab"], hosts, name="inventory-%s" % label)
    return runner.play(runner.playbook, inventory, None, "--forks", str(min(len(hosts), 8)),
                       timeout=600)


@pytest.fixture(scope="module")
def bad_runs(env):
    """Every bad-input case on the fresh host n3, in one play; n3's state before and after."""
    lab = env["lab"]
    before = file_state(lab, 3)
    assert sh(lab, 3, "ufw status").stdout.strip() == "Status: inactive", "n3 must be fresh"
    play = run_cases(env, 3, {case: variables for case, (variables, dummy) in BAD_INPUT.items()},
                     "bad-input")
    env["timings"]["bad_input_%d_cases" % len(BAD_INPUT)] = play.wall
    return {"play": play, "messages": host_messages(play), "before": before,
            "after": file_state(lab, 3)}


@pytest.mark.parametrize("case", sorted(BAD_INPUT))
def test_bad_input_fails_before_any_change(bad_runs, case):
    play = bad_runs["play"]
    variable = BAD_INPUT[case][1]
    assert play.rc != 0, play
    assert play.failed(case) == 1 and play.changed(case) == 0, play
    assert variable in bad_runs["messages"].get(case, ""), play
    assert bad_runs["after"] == bad_runs["before"]


@pytest.mark.parametrize("case, words", [
    ("firewalld_not_running", "firewalld is not running"),
    ("ufw_not_active", "ufw is not active"),
    ("window_reversed", "1024 <= low <= high <= 65535"),
])
def test_bad_input_message_says_why(bad_runs, case, words):
    assert words in bad_runs["messages"].get(case, ""), bad_runs["play"]


TOOLS = {"ufw": "/usr/sbin/ufw", "firewalld": "/usr/bin/firewall-cmd"}


@pytest.fixture(scope="module")
def not_installed(env):
    """The image has both tools: both are hidden on the outsider for one play, as if not
    installed; one inventory host per backend."""
    lab = env["lab"]
    try:
        sh(lab, "out", " && ".join("mv %s %s.hidden" % (t, t) for t in TOOLS.values()), check=True)
        play = run_cases(env, "out", {backend: {"erlang_firewall_dist_port": DIST_PORT,
                                                "erlang_firewall_backend": backend}
                                      for backend in TOOLS}, "not-installed")
    finally:
        sh(lab, "out", " && ".join("{ [ ! -e %s.hidden ] || mv %s.hidden %s; }" % (t, t, t)
                                   for t in TOOLS.values()), check=True)
    return {"play": play, "messages": host_messages(play)}


@pytest.mark.parametrize("backend", sorted(TOOLS))
def test_backend_not_installed(not_installed, backend):
    play, msg = not_installed["play"], not_installed["messages"].get(backend, "")
    assert play.rc != 0 and play.failed(backend) == 1 and play.changed(backend) == 0, play
    assert "erlang_firewall_backend" in msg, play
    assert "%s is not installed" % os.path.basename(TOOLS[backend]) in msg, play


# ---------------------------------------------------------------------------------
# ufw (enabled by the operator, here the test, never by the role)


def test_ufw_backend(env):
    lab, run = env["lab"], env["run"]
    operator_ufw(lab, 3)
    listen(lab, 3, DIST_PORT, OTHER_PORT)
    variables = {**ufw_vars(lab), "erlang_firewall_peers": [ip(lab, 1)]}
    play = run("n3", variables)
    assert play.rc == 0 and play.changed("n3") > 0, play
    got = reachability(lab, [(1, 3, DIST_PORT), (2, 3, DIST_PORT), ("out", 3, DIST_PORT),
                             ("out", 3, OTHER_PORT), ("out", 3, SSH_PORT),
                             (3, "127.0.0.1", DIST_PORT)])
    assert got == {(1, 3, DIST_PORT): True, (2, 3, DIST_PORT): False, ("out", 3, DIST_PORT): False,
                   ("out", 3, OTHER_PORT): True, ("out", 3, SSH_PORT): True,
                   (3, "127.0.0.1", DIST_PORT): True}

    play = run("n3", variables)
    assert play.rc == 0 and play.changed("n3") == 0, play

    # Another peer: its allow goes before the refusal, the former peer's rule goes.
    variables = ufw_vars(lab)
    play = run("n3", variables)
    assert play.rc == 0 and play.changed("n3") > 0, play
    got = reachability(lab, [(1, 3, DIST_PORT), (2, 3, DIST_PORT), ("out", 3, DIST_PORT)])
    assert got == {(1, 3, DIST_PORT): False, (2, 3, DIST_PORT): True, ("out", 3, DIST_PORT): False}
    added = sh(lab, 3, "ufw show added", check=True).stdout
    assert ip(lab, 1) not in added
    play = run("n3", variables)
    assert play.rc == 0 and play.changed("n3") == 0, play
    env["final"].add("ufw")


# ---------------------------------------------------------------------------------
# firewalld (enabled and started by systemd on "fw", as on an operator's host)


def rich_rules(lab: LabCluster, ref, permanent: bool = True) -> list[str]:
    return sh(lab, ref, "firewall-cmd %s--list-rich-rules" % ("--permanent " if permanent else ""),
              check=True).stdout.splitlines()


def firewalld_rule(lab, peer) -> str:
    return ('rule family="ipv4" source address="%s" port port="%d" protocol="tcp" accept'
            % (ip(lab, peer), DIST_PORT))


def test_firewalld_backend(env):
    lab, run = env["lab"], env["run"]
    # What an operator already has: a port of theirs open to everyone, and (by mistake)
    # the distribution port too; ssh is a service of zone public.
    operator_firewalld(lab, "fw", OTHER_PORT, DIST_PORT)
    listen(lab, "fw", DIST_PORT, OTHER_PORT)
    assert can_connect(lab, "out", "fw", DIST_PORT), "open to everyone before the role"
    assert sh(lab, "fw", "systemctl is-enabled firewalld.service").stdout.strip() == "disabled"
    variables = {**firewalld_vars(lab), "erlang_firewall_peers": [ip(lab, 1)]}
    play = run("fw", variables)
    assert play.rc == 0 and play.changed("fw") > 0, play
    # Started by hand only, firewalld would not come back after a reboot (nor the rules).
    assert sh(lab, "fw", "systemctl is-enabled firewalld.service").stdout.strip() == "enabled"
    checks = [(1, "fw", DIST_PORT), (2, "fw", DIST_PORT), ("out", "fw", DIST_PORT),
              ("out", "fw", OTHER_PORT), ("out", "fw", SSH_PORT), ("fw", "127.0.0.1", DIST_PORT)]
    want = {(1, "fw", DIST_PORT): True, (2, "fw", DIST_PORT): False, ("out", "fw", DIST_PORT): False,
            ("out", "fw", OTHER_PORT): True, ("out", "fw", SSH_PORT): True,
            ("fw", "127.0.0.1", DIST_PORT): True}
    assert reachability(lab, checks) == want
    assert rich_rules(lab, "fw") == [firewalld_rule(lab, 1)]
    assert rich_rules(lab, "fw", permanent=False) == [firewalld_rule(lab, 1)]
    assert sh(lab, "fw", "firewall-cmd --permanent --list-ports").stdout.split() == ["%d/tcp" % OTHER_PORT]
    assert "ssh" in sh(lab, "fw", "firewall-cmd --permanent --list-services").stdout.split()

    play = run("fw", variables)
    assert play.rc == 0 and play.changed("fw") == 0, play

    # The rules are permanent: a reload (what a boot loads) gives the same answers.
    sh(lab, "fw", "firewall-cmd --reload", check=True)
    assert reachability(lab, checks) == want

    # Another peer: its rule comes, the former peer's goes.
    variables = firewalld_vars(lab)
    play = run("fw", variables)
    assert play.rc == 0 and play.changed("fw") > 0, play
    got = reachability(lab, [(1, "fw", DIST_PORT), (2, "fw", DIST_PORT), ("out", "fw", DIST_PORT)])
    assert got == {(1, "fw", DIST_PORT): False, (2, "fw", DIST_PORT): True, ("out", "fw", DIST_PORT): False}
    assert rich_rules(lab, "fw") == [firewalld_rule(lab, 2)]
    assert "%d/tcp" % OTHER_PORT in sh(lab, "fw", "firewall-cmd --permanent --list-ports").stdout
    play = run("fw", variables)
    assert play.rc == 0 and play.changed("fw") == 0, play
    env["final"].add("firewalld")


# ---------------------------------------------------------------------------------
# Reboot: one host per backend, rebooted side by side (systemd shuts down and boots)

# backend: (the rebooted host, the hosts of its role run, the role's variables)
REBOOTS = {
    "nftables": (1, "n1,n2", lambda lab: {"erlang_firewall_dist_port": DIST_PORT}),
    "ufw": (3, "n3", ufw_vars),
    "firewalld": ("fw", "fw", firewalld_vars),
}


def _reboot_checks(lab, host) -> list[tuple]:
    """n2 is a peer of every rebooted host; out is not, nor n3 (of n1) or n1 (of the others)."""
    other = 3 if host == 1 else 1
    return [(2, host, DIST_PORT), ("out", host, DIST_PORT), (other, host, DIST_PORT),
            ("out", host, OTHER_PORT), ("out", host, SSH_PORT), (host, "127.0.0.1", DIST_PORT)]


@pytest.fixture(scope="module")
def rebooted(env):
    """The three hosts rebooted at once, with the rules the backend tests above left (the
    role is applied first only for a backend whose test did not run to its end); then, in
    this order: a new SSH login with sudo (how long until the host is ready), the evidence
    of what the boot restored (service states, packets), and the role run again."""
    lab, run = env["lab"], env["run"]
    missing = [backend for backend in REBOOTS if backend not in env["final"]]
    if "ufw" in missing:
        operator_ufw(lab, 3)
    if "firewalld" in missing:
        operator_firewalld(lab, "fw", OTHER_PORT)
    if missing:
        with concurrent.futures.ThreadPoolExecutor(max_workers=len(missing)) as pool:
            applied = dict(zip(missing, pool.map(
                lambda b: run(REBOOTS[b][1], REBOOTS[b][2](lab)), missing)))
        for backend, play in applied.items():
            assert play.rc == 0, (backend, play)

    def reboot(backend):
        host = REBOOTS[backend][0]
        start = time.monotonic()
        systemd = lab.reboot(host)
        ssh_login(lab, host)
        return {"systemd_running": systemd, "ssh_login": time.monotonic() - start}

    start = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(max_workers=len(REBOOTS)) as pool:
        seconds = dict(zip(REBOOTS, pool.map(reboot, REBOOTS)))
    env["timings"]["reboot_3_hosts_until_ssh"] = time.monotonic() - start
    for backend, took in seconds.items():
        env["notes"].append("reboot of %s (%s): systemd running after %.1f s, SSH login and "
                            "sudo after %.1f s" % (name(REBOOTS[backend][0]), backend,
                                                   took["systemd_running"], took["ssh_login"]))

    state = {
        "nftables": sh(lab, 1, "systemctl is-active nftables.service; nft list tables").stdout,
        "ufw": sh(lab, 3, "ufw status").stdout,
        "firewalld": sh(lab, "fw", "firewall-cmd --state; firewall-cmd --list-rich-rules").stdout,
    }
    for backend, (host, dummy, dummy2) in REBOOTS.items():
        listen(lab, host, DIST_PORT, OTHER_PORT)
    checks = [c for backend in REBOOTS for c in _reboot_checks(lab, REBOOTS[backend][0])]
    packets = reachability(lab, checks)

    with concurrent.futures.ThreadPoolExecutor(max_workers=len(REBOOTS)) as pool:
        again = dict(zip(REBOOTS, pool.map(lambda b: run(REBOOTS[b][1], REBOOTS[b][2](lab)),
                                           REBOOTS)))
    return {"seconds": seconds, "state": state, "packets": packets, "again": again}


@pytest.mark.parametrize("backend", sorted(REBOOTS))
def test_reboot_keeps_the_rules(env, rebooted, backend):
    """Real packets after the boot, before the role runs again: the peer gets in, other
    hosts do not, loopback, the operator's port and SSH are open."""
    lab, host = env["lab"], REBOOTS[backend][0]
    checks = _reboot_checks(lab, host)
    got = {c: rebooted["packets"][c] for c in checks}
    assert got == dict(zip(checks, (True, False, False, True, True, True)))


def test_reboot_nftables_loaded_by_its_service(env, rebooted):
    """nftables.service (enabled by the role) loaded /etc/nftables.conf and its include.
    Debian's file begins with ``flush ruleset``: in a lab container that also removes the
    embedded-DNS rules Docker installed before systemd started (not so on a real host,
    where that service runs before any other firewall), so names are not checked here."""
    assert rebooted["state"]["nftables"].splitlines()[0] == "active"
    assert "table %s" % TABLE in rebooted["state"]["nftables"]


def test_reboot_ufw_active_again(env, rebooted):
    state = rebooted["state"]["ufw"]
    assert "Status: active" in state
    assert re.search(r"%d/tcp\s+ALLOW\s+%s\b" % (DIST_PORT, re.escape(ip(env["lab"], 2))), state), state


def test_reboot_firewalld_running_with_the_rules(env, rebooted):
    """firewalld (started by hand before the role, enabled by the role) started by systemd
    at boot, with the role's rule in its runtime set."""
    lab = env["lab"]
    assert rebooted["state"]["firewalld"].splitlines() == ["running", firewalld_rule(lab, 2)]


@pytest.mark.parametrize("backend", sorted(REBOOTS))
def test_reboot_then_role_changes_nothing(rebooted, backend):
    """Ansible reaches the host again over SSH, and the rules are already right."""
    play = rebooted["again"][backend]
    assert play.rc == 0, play
    assert all(v["changed"] == 0 and v["unreachable"] == 0 for v in play.recap.values()), play
