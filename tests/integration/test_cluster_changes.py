# Copyright: xmpp.ejabberd contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Cluster changes on a living cluster (issue 10, points 2, 3, 4 and 6), on VM-like hosts.

One lab per suite (bookworm: ejabberd 23.01; trixie: 24.12), four hosts n1..n4 (systemd as
PID 1, SSH as ``admin`` with sudo, the package's node running as after the install). The
tests build on each other, in file order:

1. ``site`` makes n1, n2, n3 one cluster (fixed-port mode, nftables, the default firewall
   peers: the inventory's hosts); an account is registered on n1.
2. ``--limit n3``: site, verify, rolling_restart and rotate_cookie each succeed (rotate
   refuses a new cookie cleanly) and change nothing (rolling_restart restarts n3 only);
   every node still reaches every other one's distribution port (real packets, nc -z).
3. A bad ``ejabberd_cluster_seed`` is rejected before any change, naming the variable.
4. n4 is put FIRST in the inventory: site joins it to the existing cluster (timed), and
   the account is still there.
5. A node down: rolling_restart with n2's ejabberd stopped fails before restarting any
   node, naming n2's node and the reason code; site with n2's container stopped fails on
   every host at the first task, naming n2; with n2 back, site changes nothing and
   rolling_restart restarts every node.
6. remove_nodes takes n4 out again (timed): n4 stopped and disabled, n1..n3 the cluster,
   their firewalls no longer admit n4 (real packets), verify passes on the three.
"""

from __future__ import annotations

import concurrent.futures
import os
import re
import subprocess
import time

import pytest

from ansible_collections.xmpp.ejabberd.tests.helpers.playbook import (
    Play, PlaybookRunner, lab_session, start_lab)
from ansible_collections.xmpp.ejabberd.tests.helpers.lab import DOCKER, LabCluster

pytestmark = pytest.mark.lab

DIST_PORT = 5210
CLUSTER = (1, 2, 3)
ALL = (1, 2, 3, 4)
COOKIE_FILE = "/var/lib/ejabberd/.erlang.cookie"
SUITES = {"bookworm": {"prefix": "xcc23", "release": "23.01"},
          "trixie": {"prefix": "xcc24", "release": "24.12"}}
ACCOUNT = ("alice", "localhost")


def name(ref) -> str:
    return "n%d" % ref


def sh(lab: LabCluster, ref, script: str) -> subprocess.CompletedProcess[str]:
    return lab.exec(ref, ["sh", "-c", script], check=False)


class Runner(PlaybookRunner):
    """The collection's playbooks over SSH; inventories in the order given."""

    def __init__(self, lab: LabCluster, workdir: str) -> None:
        super().__init__(workdir)
        self.lab = lab
        # A loaded CI machine answers sudo slowly: do not take that for a host that is down.
        self.env["ANSIBLE_TIMEOUT"] = "60"

    def inventory(self, label: str, refs) -> str:
        hosts = {}
        for ref in refs:
            ip = self.lab.node(ref)["ip"]
            hosts[name(ref)] = (ref, {"ejabberd_node_name": "ejabberd@" + ip,
                                      "ejabberd_inet_dist_interface": ip})
        # No ejabberd_firewall_peers: the default (every host of the inventory group) is
        # what is tested.
        group_vars = {"ejabberd_epmd": False, "ejabberd_dist_port": DIST_PORT,
                      "ejabberd_firewall_backend": "nftables"}
        return self.ssh_inventory(self.lab, hosts, group_vars, name="inventory-%s" % label)


@pytest.fixture(scope="module", params=sorted(SUITES))
def env(request):
    suite = request.param

    def start() -> LabCluster:
        return start_lab(LabCluster(suite=suite, size=len(ALL), prefix=SUITES[suite]["prefix"],
                                    dist_port=DIST_PORT, start=False, vm=True), lambda lab: None)

    with lab_session(request, "cluster changes %s lab" % suite, start) as session:
        lab = session["lab"]
        runner = Runner(lab, session["workdir"])
        yield {"lab": lab, "suite": suite, "runner": runner, "timings": session["timings"],
               "notes": session["notes"], "cookie": runner.cookie(),
               "three": runner.inventory("three", CLUSTER),
               "four_first": runner.inventory("four", (4, *CLUSTER)),
               "names": {ref: lab.node(ref)["name"] for ref in ALL}}


def run(env, playbook: str, inventory: str, *args: str, variables: dict | None = None) -> Play:
    variables = {"ejabberd_cookie": env["cookie"]} if variables is None else variables
    # Generous: on a loaded 2-core CI machine a first site has taken 13 minutes.
    play = env["runner"].play("xmpp.ejabberd." + playbook, env[inventory], variables, *args,
                              timeout=2400)
    log = os.environ.get("XMPP_EJABBERD_PLAY_LOG")
    if log:     # every run's output, cookies masked (Play's repr), for a failure's post-mortem
        with open(log, "a", encoding="utf-8") as handle:
            handle.write("=== %s %s %s\n%r\n" % (playbook, inventory, " ".join(args), play))
    return play


def changed(play: Play) -> dict[str, int]:
    return {host: v["changed"] for host, v in play.recap.items()}


def members(env, refs) -> list[str]:
    return sorted(env["names"][ref] for ref in refs)


def beam_pids(lab, refs) -> dict[int, str]:
    return {ref: sh(lab, ref, "pgrep -x beam.smp").stdout.strip() for ref in refs}


def cookie_digests(lab, refs) -> dict[int, str]:
    return {ref: sh(lab, ref, "sha256sum %s" % COOKIE_FILE).stdout.split(" ")[0] for ref in refs}


def peers_allowed(lab, ref, peers) -> dict[int, bool]:
    """Whether the live peers4 set of ``ref`` holds each peer's address (alone or in a range:
    the set auto-merges neighbours)."""
    return {peer: sh(lab, ref, "nft get element inet xmpp_ejabberd peers4 '{ %s }'"
                     % lab.node(peer)["ip"]).returncode == 0 for peer in peers}


def reachability(lab, refs) -> dict[tuple[int, int], bool]:
    """{(src, dst): connected}: one ``nc -z`` from every node to every other node's
    distribution port, those of one source side by side in one docker exec."""
    def from_source(src):
        dsts = [dst for dst in refs if dst != src]
        script = " ".join("(nc -z -w 3 %s %d; echo \"%d $?\") &" % (lab.node(dst)["ip"], DIST_PORT, dst)
                          for dst in dsts) + " wait"
        out = sh(lab, src, script).stdout.split()
        return {(src, int(out[k])): out[k + 1] == "0" for k in range(0, len(out), 2)}

    got: dict[tuple[int, int], bool] = {}
    with concurrent.futures.ThreadPoolExecutor(max_workers=len(refs)) as pool:
        for part in pool.map(from_source, refs):
            got.update(part)
    return got


def joined(play: Play) -> list[str]:
    """The hosts whose "Join the seed's cluster" task reported a change."""
    hosts = []
    for block in play.out.split("TASK [")[1:]:
        if block.startswith("xmpp.ejabberd.ejabberd_cluster : Join the seed's cluster]"):
            hosts += re.findall(r"^changed: \[([^\]]+)\]", block, re.M)
    return sorted(hosts)


def registered(lab, ref) -> list[str]:
    return sh(lab, ref, "runuser -u ejabberd -- /usr/sbin/ejabberdctl registered_users %s"
              % ACCOUNT[1]).stdout.split()


# ---------------------------------------------------------------------------------
# 1. A healthy 3-node cluster with an account


@pytest.fixture(scope="module")
def cluster(env):
    play = run(env, "site", "three")
    env["timings"]["site_3_nodes"] = play.wall
    assert play.rc == 0, play
    lab = env["lab"]
    lab.wait_members(CLUSTER, members(env, CLUSTER), timeout=90)
    proc = lab.exec(1, ["runuser", "-u", "ejabberd", "--", "/usr/sbin/ejabberdctl", "register",
                        ACCOUNT[0], ACCOUNT[1], "s3cret-not-a-cookie"], check=False)
    assert proc.returncode == 0, proc
    assert ACCOUNT[0] in registered(lab, 1)
    return play


def test_site_makes_the_cluster_with_the_inventory_as_peers(env, cluster):
    lab = env["lab"]
    for ref in CLUSTER:
        assert peers_allowed(lab, ref, ALL) == {1: True, 2: True, 3: True, 4: False}, ref


# ---------------------------------------------------------------------------------
# 2. --limit n3 on the healthy cluster


@pytest.fixture(scope="module")
def limited(env, cluster):
    lab = env["lab"]
    pids = beam_pids(lab, CLUSTER)
    digests = cookie_digests(lab, CLUSTER)
    plays = {}
    for playbook in ("site", "verify", "rolling_restart", "rotate_cookie"):
        plays[playbook] = run(env, playbook, "three", "--limit", "n3")
        env["timings"]["%s_limit_n3" % playbook] = plays[playbook].wall
    new_cookie = env["runner"].cookie()
    plays["rotate_new"] = run(env, "rotate_cookie", "three", "--limit", "n3",
                              variables={"ejabberd_cookie": new_cookie})
    return {"plays": plays, "pids_before": pids, "pids_after": beam_pids(lab, CLUSTER),
            "digests_before": digests, "digests_after": cookie_digests(lab, CLUSTER),
            "peers": {ref: peers_allowed(lab, ref, CLUSTER) for ref in CLUSTER},
            "reach": reachability(lab, CLUSTER)}


@pytest.mark.parametrize("playbook", ["site", "verify", "rolling_restart", "rotate_cookie"])
def test_limit_succeeds_on_the_limited_host_only(limited, playbook):
    play = limited["plays"][playbook]
    assert play.rc == 0, play
    assert sorted(play.recap) == ["n3"], play
    assert not play.shows_a_secret()


@pytest.mark.parametrize("playbook", ["site", "verify", "rotate_cookie"])
def test_limit_changes_nothing(limited, playbook):
    play = limited["plays"][playbook]
    assert changed(play) == {"n3": 0}, play


def test_limit_rolling_restart_restarts_n3_only(limited):
    before, after = limited["pids_before"], limited["pids_after"]
    assert after[1] == before[1] and after[2] == before[2], (before, after)
    assert after[3] and after[3] != before[3], (before, after)


def test_limit_rotate_with_a_new_cookie_refuses_before_any_change(limited):
    play = limited["plays"]["rotate_new"]
    assert play.rc != 0, play
    assert changed(play) == {"n3": 0}, play
    messages = " ".join(play.fatal_messages())
    assert "--limit" in messages and "n1, n2" in messages and "Nothing was changed" in messages, play
    assert limited["digests_after"] == limited["digests_before"]
    assert not play.shows_a_secret()


def test_limit_keeps_every_peer_in_the_firewall(limited):
    assert limited["peers"] == {ref: {1: True, 2: True, 3: True} for ref in CLUSTER}
    assert limited["reach"] == {(a, b): True for a in CLUSTER for b in CLUSTER if a != b}


def test_limit_leaves_the_cluster_whole(env, limited):
    env["lab"].wait_members(CLUSTER, members(env, CLUSTER), timeout=90)


# ---------------------------------------------------------------------------------
# 3. Bad input


def test_seed_outside_the_cluster_is_rejected_before_any_change(env, limited):
    lab = env["lab"]
    before = {ref: sh(lab, ref, "sha256sum /etc/default/ejabberd; nft list table inet xmpp_ejabberd "
                                "| grep -v counter").stdout for ref in ALL}
    play = run(env, "site", "four_first",
               variables={"ejabberd_cookie": env["cookie"], "ejabberd_cluster_seed": "n9"})
    assert play.rc != 0, play
    assert all(v == 0 for v in changed(play).values()), play
    assert any("ejabberd_cluster_seed" in msg for msg in play.fatal_messages()), play
    assert "ejabberd_cluster : Join" not in play.out
    after = {ref: sh(lab, ref, "sha256sum /etc/default/ejabberd; nft list table inet xmpp_ejabberd "
                               "| grep -v counter").stdout for ref in ALL}
    assert after == before


# ---------------------------------------------------------------------------------
# 4. A fourth host, first in the inventory


@pytest.fixture(scope="module")
def grown(env, limited):
    play = run(env, "site", "four_first")
    env["timings"]["site_add_n4_first"] = play.wall
    return play


def test_fourth_host_first_in_the_inventory_joins_the_cluster(env, grown):
    assert grown.rc == 0, grown
    env["lab"].wait_members(ALL, members(env, ALL), timeout=90)
    # Only n4 joined: the members of the existing cluster were left alone.
    assert joined(grown) == ["n4"], grown


def test_old_members_keep_their_data(env, grown):
    lab = env["lab"]
    for ref in (1, 4):
        assert ACCOUNT[0] in registered(lab, ref), ref


def test_every_node_reaches_every_other_after_growing(env, grown):
    assert reachability(env["lab"], ALL) == {(a, b): True for a in ALL for b in ALL if a != b}


# ---------------------------------------------------------------------------------
# 5. A node down


@pytest.fixture(scope="module")
def service_down(env, grown):
    lab = env["lab"]
    lab.exec(2, ["systemctl", "stop", "ejabberd"], timeout=120)
    pids = beam_pids(lab, ALL)
    play = run(env, "rolling_restart", "four_first")
    env["timings"]["rolling_restart_n2_stopped"] = play.wall
    after = beam_pids(lab, ALL)
    lab.exec(2, ["systemctl", "start", "ejabberd"], timeout=120)
    lab.wait_members(ALL, members(env, ALL), timeout=120)
    return {"play": play, "before": pids, "after": after}


def test_rolling_restart_with_a_node_stopped_restarts_nothing(env, service_down):
    play = service_down["play"]
    assert play.rc != 0, play
    assert service_down["after"] == service_down["before"], service_down
    assert all(v == 0 for v in changed(play).values()), play
    assert "Restart ejabberd" not in play.out.split("PLAY [Restart the ejabberd cluster")[-1] \
        or "PLAY [Restart the ejabberd cluster" not in play.out, play
    messages = " ".join(play.fatal_messages())
    assert env["names"][2] in messages and "n2" in messages, play
    assert re.search(r"reason: (unreachable|not_registered|epmd_unreachable|timeout)", messages), play


@pytest.fixture(scope="module")
def container_down(env, service_down):
    lab = env["lab"]
    container = lab.node(2)["container"]
    subprocess.run([DOCKER, "stop", "-t", "60", container], check=True, capture_output=True,
                   timeout=120)
    try:
        digests = {ref: sh(lab, ref, "sha256sum /etc/default/ejabberd").stdout for ref in (1, 3, 4)}
        site = run(env, "site", "four_first")
        restart = run(env, "rolling_restart", "four_first")
        after = {ref: sh(lab, ref, "sha256sum /etc/default/ejabberd").stdout for ref in (1, 3, 4)}
    finally:
        subprocess.run([DOCKER, "start", container], check=True, capture_output=True, timeout=120)
        lab.wait_booted(2)
    start = time.monotonic()
    lab.wait_members(ALL, members(env, ALL), timeout=180)
    env["timings"]["n2_boot_until_whole"] = time.monotonic() - start
    pids = beam_pids(lab, ALL)
    rerun = run(env, "site", "four_first")
    env["timings"]["site_rerun_after_n2_back"] = rerun.wall
    rolling = run(env, "rolling_restart", "four_first")
    env["timings"]["rolling_restart_4_nodes"] = rolling.wall
    return {"site": site, "restart": restart, "before": digests, "after": after, "rerun": rerun,
            "rolling": rolling, "pids": pids, "pids_after": beam_pids(lab, ALL)}


def test_site_with_a_host_down_fails_at_once_naming_it(container_down):
    play = container_down["site"]
    assert play.rc != 0, play
    assert re.search(r"^fatal: \[n2\]: UNREACHABLE!", play.out, re.M), play
    assert all(v == 0 for v in changed(play).values()), play
    assert "ejabberd : " not in play.out, "no task of role ejabberd may run: %r" % play
    assert container_down["after"] == container_down["before"]


def test_rolling_restart_with_a_host_down_restarts_nothing(container_down):
    play = container_down["restart"]
    assert play.rc != 0, play
    assert all(v == 0 for v in changed(play).values()), play
    messages = " ".join(play.fatal_messages())
    assert "n2" in messages and "unreachable" in messages, play


def test_rerun_after_the_node_is_back_converges(container_down):
    rerun = container_down["rerun"]
    assert rerun.rc == 0, rerun
    assert all(v == 0 for v in changed(rerun).values()), rerun
    rolling = container_down["rolling"]
    assert rolling.rc == 0, rolling
    before, after = container_down["pids"], container_down["pids_after"]
    assert all(after[ref] and after[ref] != before[ref] for ref in ALL), (before, after)


def test_cluster_whole_and_reachable_at_the_end(env, container_down):
    lab = env["lab"]
    lab.wait_members(ALL, members(env, ALL), timeout=120)
    assert reachability(lab, ALL) == {(a, b): True for a in ALL for b in ALL if a != b}
    assert ACCOUNT[0] in registered(lab, 2)


# ---------------------------------------------------------------------------------
# 6. The fourth host removed again


@pytest.fixture(scope="module")
def shrunk(env, container_down):
    play = run(env, "remove_nodes", "four_first",
               variables={"ejabberd_cookie": env["cookie"], "ejabberd_remove_hosts": "n4"})
    env["timings"]["remove_n4"] = play.wall
    return play


def test_removing_the_fourth_host_leaves_three(env, shrunk):
    assert shrunk.rc == 0, shrunk
    lab = env["lab"]
    lab.wait_members(CLUSTER, members(env, CLUSTER), timeout=90)
    state = sh(lab, 4, "systemctl is-active ejabberd; systemctl is-enabled ejabberd").stdout.split()
    assert state[0] in ("inactive", "failed") and state[1] == "disabled", state
    assert shrunk.run_stats()["ejabberd_remove_nodes"]["removed"] == [env["names"][4]], shrunk
    # real packets: the remaining nodes still reach each other, n4 is shut out of them
    assert reachability(lab, CLUSTER) == {(a, b): True for a in CLUSTER for b in CLUSTER if a != b}
    assert {ref: peers_allowed(lab, ref, ALL)[4] for ref in CLUSTER} == {1: False, 2: False, 3: False}
    assert sh(lab, 4, "nc -z -w 3 %s %d" % (lab.node(1)["ip"], DIST_PORT)).returncode != 0
    assert ACCOUNT[0] in registered(lab, 1)


def test_verify_passes_without_the_fourth_host(env, shrunk):
    play = run(env, "verify", "three")
    assert play.rc == 0, play
