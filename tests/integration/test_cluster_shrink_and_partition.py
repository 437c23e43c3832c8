# Copyright: xmpp.ejabberd contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Issue 10, points 4 and 5: a network partition reported by verify and healed by
recover_partition, then a host removed with remove_nodes, on real ejabberd nodes.

One lab per release (bookworm 23.01 on OTP 25, forky 26.07 on OTP 29): three VM-like hosts
n1..n3 (systemd, SSH as ``admin`` with sudo) converged once by xmpp.ejabberd.site in
fixed-port mode (ERL_DIST_PORT 5210, nftables, long names with the hosts' addresses). The
steps share that cluster, in file order:

1. bad input to remove_nodes and recover_partition is rejected before any change, naming
   the variable;
2. nftables rules inside n3 cut it off from n1 and n2 until the nodes notice (net_ticktime,
   60 s by default); an account is registered on each side; the network is restored;
   verify fails, reports the split and names recover_partition with n3 to discard;
3. recover_partition discarding n3: n3 is backed up and restarted, takes the other side's
   data, verify passes; the account written on n3 during the split is gone, the other one
   is everywhere. Timed from the end of the partition;
4. remove_nodes removes n3: backed up, stopped and disabled, n1 and n2 form the cluster,
   and real packets show that n3 can no longer open n1's and n2's distribution port while
   n1 and n2 still reach each other; a rerun changes nothing; verify with n3 out of the
   inventory passes;
5. n3, started again as a cluster of its own, gets an account: site with n3 back in the
   inventory stops before any change (no file, firewall or node touched on any host),
   naming both clusters and n3's table with user data;
6. site again with ejabberd_cluster_force and ejabberd_cluster_backup_dir: n3 is backed up
   (the run names the file, which holds the account), then joins; the cluster is whole
   and keeps its own data.

What the nodes say during and after the split (db_nodes, running_db_nodes, nodes(),
ejabberd_cluster:get_nodes) is printed at the end of each lab (terminal summary).
Cookies travel in private vars files and Python only, never in an argv or a report.
"""

from __future__ import annotations

import json
import re
import time

import pytest

from ansible_collections.xmpp.ejabberd.plugins.module_utils import erldist
from ansible_collections.xmpp.ejabberd.plugins.module_utils.etf import Atom, as_text
from ansible_collections.xmpp.ejabberd.tests.helpers.lab import (
    LabCluster, remove_stale_runs, run_prefix)
from ansible_collections.xmpp.ejabberd.tests.helpers.playbook import (
    PlaybookRunner, lab_session, start_lab)

pytestmark = pytest.mark.lab

HOSTS = (1, 2, 3)
DIST_PORT = 5210
VHOST = "localhost"          # the virtual host of Debian's default ejabberd.yml
CUT_TABLE = "xi10_partition"  # the test's own nftables table on n3
NOTICE_TIMEOUT = 150          # net_ticktime is 60 s: a dead link is noticed within 45-75 s

CASES = {
    "bookworm": {"release": "23.01", "otp": "25", "prefix": "xsp23"},
    "forky": {"release": "26.07", "otp": "29", "prefix": "xsp26"},
}


def sh(lab, ref, script: str):
    return lab.exec(ref, ["sh", "-c", script], check=False)


@pytest.fixture(scope="module", params=sorted(CASES))
def env(request):
    suite = request.param
    case = CASES[suite]
    remove_stale_runs(case["prefix"])

    def start() -> LabCluster:
        return start_lab(LabCluster(suite=suite, size=len(HOSTS), prefix=run_prefix(case["prefix"]),
                                    dist_port=DIST_PORT, start=False, vm=True), lambda lab: None)

    with lab_session(request, "%s shrink/partition lab" % suite, start) as session:
        lab = session["lab"]
        runner = PlaybookRunner(session["workdir"])
        ips = {ref: lab.node(ref)["ip"] for ref in HOSTS}

        def inventory(refs, name):
            hosts = {}
            for ref in refs:
                hosts["n%d" % ref] = (ref, {"ejabberd_node_name": "ejabberd@" + ips[ref],
                                            "ejabberd_inet_dist_interface": ips[ref],
                                            "ejabberd_address": ips[ref]})
            group_vars = {"ejabberd_epmd": False, "ejabberd_dist_port": DIST_PORT,
                          "ejabberd_firewall_backend": "nftables",
                          # the tests talk to the nodes from this machine (the gateway)
                          "ejabberd_firewall_peers": [ips[ref] for ref in refs] + [lab.gateway]}
            return runner.ssh_inventory(lab, hosts, group_vars, name=name)

        cookie = runner.cookie()
        env_ = {"lab": lab, "suite": suite, "case": case, "runner": runner, "cookie": cookie,
                "ips": ips, "names": {ref: lab.node(ref)["name"] for ref in HOSTS},
                "inventory": inventory(HOSTS, "inventory"),
                "inventory_after": inventory((1, 2), "inventory-after"),
                "timings": session["timings"], "notes": session["notes"]}
        site = runner.play("xmpp.ejabberd.site", env_["inventory"], {"ejabberd_cookie": cookie})
        session["timings"]["site"] = site.wall
        env_["site"] = site
        yield env_


def play(env, playbook: str, variables: dict | None = None, inventory: str = "inventory"):
    result = env["runner"].play("xmpp.ejabberd." + playbook, env[inventory], variables)
    assert not result.shows_a_secret(), "a cookie appears in the output of %s" % playbook
    return result


def connect(env, ref, timeout: float = 5) -> erldist.Connection:
    return erldist.connect(env["names"][ref], env["cookie"], address=env["ips"][ref],
                           dist_port=DIST_PORT, timeout=timeout)


def node_facts(env, ref) -> dict:
    """What node ``ref`` says about its cluster: ejabberd's and Mnesia's views, nodes()."""
    def names(term):
        return sorted(str(n).split("@")[1] for n in term)
    try:
        with connect(env, ref) as conn:
            return {
                "get_nodes": names(conn.rpc("ejabberd_cluster", "get_nodes", [], 5)),
                "get_known_nodes": names(conn.rpc("ejabberd_cluster", "get_known_nodes", [], 5)),
                "nodes()": names(conn.rpc("erlang", "nodes", [], 5)),
                "db_nodes": names(conn.rpc("mnesia", "system_info", [Atom("db_nodes")], 5)),
                "running_db_nodes": names(conn.rpc("mnesia", "system_info",
                                                   [Atom("running_db_nodes")], 5)),
            }
    except erldist.DistError as exc:
        return {"error": exc.reason}


def running(env, ref) -> list[str] | None:
    try:
        with connect(env, ref) as conn:
            return sorted(str(n) for n in conn.rpc("ejabberd_cluster", "get_nodes", [], 5))
    except erldist.DistError:
        return None


def has_account(env, ref, user: str) -> bool:
    """ejabberd_auth:user_exists/2 (the passwd table's key differs between releases)."""
    with connect(env, ref) as conn:
        found = conn.rpc("ejabberd_auth", "user_exists", [user.encode(), VHOST.encode()], 5)
    assert isinstance(found, bool), found
    return found


def record(env, what: str) -> None:
    env["notes"].append("%s: %s" % (what, json.dumps({"n%d" % ref: node_facts(env, ref)
                                                      for ref in HOSTS}, sort_keys=True)))


def wait_for(predicate, timeout: float, interval: float = 1.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())


def backup_paths(result, host: str) -> list[str]:
    return re.findall(r"%s:(/\S+?\.backup)\b" % re.escape(host), result.out)


def can_connect(env, src, dst) -> bool:
    return sh(env["lab"], src, "nc -z -w 3 %s %d" % (env["ips"][dst], DIST_PORT)).returncode == 0


# ---------------------------------------------------------------------------------

def test_site_converges(env):
    site = env["site"]
    assert site.rc == 0, site
    all_names = sorted(env["names"].values())
    assert wait_for(lambda: all(running(env, ref) == all_names for ref in HOSTS), 60)
    with connect(env, 1) as conn:
        vsn = conn.rpc("application", "get_key", [Atom("ejabberd"), Atom("vsn")], 5)
    assert as_text(vsn[1]).startswith(env["case"]["release"]), vsn


@pytest.mark.parametrize("playbook,variable,value,says", [
    ("remove_nodes", "ejabberd_remove_hosts", ["n1", "n2", "n3"], "names every host"),
    ("remove_nodes", "ejabberd_remove_hosts", ["n3", "xmpp9"], "xmpp9 is not a host"),
    ("recover_partition", "ejabberd_recover_discard_hosts", "n1,n2,n3", "names every host"),
    ("recover_partition", "ejabberd_recover_discard_hosts", ["nope"], "nope is not a host"),
])
def test_bad_input_is_rejected_before_any_change(env, playbook, variable, value, says):
    result = play(env, playbook, {variable: value})
    assert result.rc != 0, result
    messages = " ".join(result.fatal_messages())
    assert variable in messages and says in messages, result
    assert all(counts["changed"] == 0 for counts in result.recap.values()), result
    all_names = sorted(env["names"].values())
    assert all(running(env, ref) == all_names for ref in HOSTS)


def test_partition_is_reported_by_verify(env):
    lab, ips, names = env["lab"], env["ips"], env["names"]
    record(env, "whole")
    rules = ("table inet %s {\n"
             " chain i {\n  type filter hook input priority -10;\n  ip saddr { %s, %s } drop\n }\n"
             " chain o {\n  type filter hook output priority -10;\n  ip daddr { %s, %s } drop\n }\n"
             "}\n" % (CUT_TABLE, ips[1], ips[2], ips[1], ips[2]))
    lab.exec(3, ["nft", "-f", "-"], input=rules)
    cut = time.monotonic()
    try:
        assert wait_for(lambda: running(env, 1) == sorted([names[1], names[2]])
                        and running(env, 3) == [names[3]], NOTICE_TIMEOUT), \
            (node_facts(env, 1), node_facts(env, 3))
        env["timings"]["partition_noticed"] = time.monotonic() - cut
        record(env, "split (network cut)")
        # one write on each side while they are apart
        lab.ejabberdctl(1, "register", "keptwrite", VHOST, "secret-1")
        lab.ejabberdctl(3, "register", "lostwrite", VHOST, "secret-3")
    finally:
        lab.exec(3, ["nft", "delete table inet %s" % CUT_TABLE])
    env["restored"] = time.monotonic()
    time.sleep(5)
    record(env, "network restored +5 s")

    result = play(env, "verify")
    assert result.rc != 0, result
    assert "SPLIT" in result.out and "xmpp.ejabberd.recover_partition" in result.out, result
    # the proposed command (its quotes are escaped in the debug output)
    assert re.search(r'ejabberd_recover_discard_hosts\\?": \[\\?"n3\\?"\]', result.out), result
    # each side's view with its hosts, and Mnesia's own signal (a member running apart)
    for side, hosts in ((sorted([names[1], names[2]]), ["n1", "n2"]), ([names[3]], ["n3"])):
        quoted = ", ".join(r'\\?"%s\\?"' % host for host in hosts)
        view = r'\\?"%s\\?": \[%s\]' % (re.escape(" ".join(side)), quoted)
        assert re.search(view, result.out), (side, result)
    assert "Mnesia is partitioned" in " ".join(result.fatal_messages()), result
    record(env, "after verify")


def test_recover_partition_takes_the_kept_side(env):
    assert "restored" in env, "the partition step did not run"
    names = env["names"]
    result = play(env, "recover_partition", {"ejabberd_recover_discard_hosts": ["n3"]})
    env["timings"]["recover_partition_playbook"] = result.wall
    assert result.rc == 0, result
    env["timings"]["partition_end_to_whole"] = time.monotonic() - env["restored"]
    record(env, "after recover_partition")
    all_names = sorted(names.values())
    assert all(running(env, ref) == all_names for ref in HOSTS)
    for ref in HOSTS:
        assert has_account(env, ref, "keptwrite"), ref
        assert not has_account(env, ref, "lostwrite"), ref
    paths = backup_paths(result, "n3")
    assert paths, result
    size = sh(env["lab"], 3, "stat -c %%s %s" % paths[0]).stdout.strip()
    assert size.isdigit() and int(size) > 0, (paths, size)
    # the discarded write is in that backup
    assert sh(env["lab"], 3, "grep -q -a lostwrite %s" % paths[0]).returncode == 0
    # the cluster-level result an AWX workflow reads (set_stats)
    stats = result.run_stats()["ejabberd_recover_partition"]
    assert sorted(stats["kept"]) == sorted([names[1], names[2]]), stats
    assert stats["discarded"] == [names[3]] and stats["backups"] == {"n3": paths[0]}, stats

    verify = play(env, "verify")
    assert verify.rc == 0, verify
    assert "SPLIT" not in verify.out, verify


def test_remove_nodes_removes_n3(env):
    lab, names = env["lab"], env["names"]
    assert can_connect(env, 3, 1) and can_connect(env, 2, 1)
    result = play(env, "remove_nodes", {"ejabberd_remove_hosts": ["n3"]})
    env["timings"]["remove_nodes"] = result.wall
    assert result.rc == 0, result
    assert result.changed("n3") > 0 and result.changed("n1") > 0, result
    paths = backup_paths(result, "n3")
    assert paths, result
    size = sh(lab, 3, "stat -c %%s %s" % paths[0]).stdout.strip()
    assert size.isdigit() and int(size) > 0, (paths, size)
    stats = result.run_stats()["ejabberd_remove_nodes"]
    assert stats["removed"] == [names[3]] and stats["backups"] == {"n3": paths[0]}, stats
    assert sorted(stats["remaining"]) == sorted([names[1], names[2]]), stats
    state = sh(lab, 3, "systemctl is-active ejabberd; systemctl is-enabled ejabberd").stdout.split()
    assert state[0] in ("inactive", "failed") and state[1] == "disabled", state
    rest = sorted([names[1], names[2]])
    for ref in (1, 2):
        assert running(env, ref) == rest, ref
        with connect(env, ref) as conn:
            known = sorted(str(n) for n in conn.rpc("ejabberd_cluster", "get_known_nodes", [], 5))
        assert known == rest, (ref, known)
    # real packets: the removed host is shut out, the remaining peers are not
    assert not can_connect(env, 3, 1) and not can_connect(env, 3, 2)
    assert can_connect(env, 2, 1) and can_connect(env, 1, 2)
    record(env, "after remove_nodes")


def test_remove_nodes_rerun_changes_nothing(env):
    result = play(env, "remove_nodes", {"ejabberd_remove_hosts": ["n3"]})
    assert result.rc == 0, result
    changed = re.findall(r"^TASK \[([^\]]*)\][^\n]*\n(?:(?!TASK \[).*\n)*?changed: \[(\S+)\]", result.out, re.M)
    assert {host: counts["changed"] for host, counts in result.recap.items()} == \
        {"n1": 0, "n2": 0, "n3": 0}, (changed, result)


def test_verify_passes_on_the_remaining_hosts(env):
    result = play(env, "verify", inventory="inventory_after")
    assert result.rc == 0, result
    assert not can_connect(env, 3, 1)


def test_site_stops_before_any_change_when_two_clusters_hold_data(env):
    """n3 runs alone (its database was deleted by the removal) and holds an account; n1 and
    n2 form the other cluster. Joining n3 would delete the account: site must stop first."""
    lab, names = env["lab"], env["names"]
    lab.exec(3, ["systemctl", "start", "ejabberd"], timeout=120)
    assert wait_for(lambda: running(env, 3) == [names[3]], 90), node_facts(env, 3)
    lab.ejabberdctl(3, "register", "alone", VHOST, "secret-alone")
    assert has_account(env, 3, "alone")
    state = ("sha256sum /etc/default/ejabberd /var/lib/ejabberd/.erlang.cookie; "
             "nft list table inet xmpp_ejabberd | grep -v counter; pgrep -x beam.smp")
    before = {ref: sh(lab, ref, state).stdout for ref in HOSTS}

    result = play(env, "site", {"ejabberd_cookie": env["cookie"]})
    assert result.rc != 0, result
    assert all(counts["changed"] == 0 for counts in result.recap.values()), result
    messages = result.fatal_messages()
    assert len(messages) == len(HOSTS), result
    both = ("[%s]" % ", ".join(sorted([names[1], names[2]])), "[%s]" % names[3])
    for msg in messages:
        assert all(cluster in msg for cluster in both), msg
        assert re.search(r"n3:passwd [1-9]", msg) and "nothing was changed" in msg, msg
    assert "Install the ejabberd package" not in result.out, "role ejabberd went past its checks"
    assert {ref: sh(lab, ref, state).stdout for ref in HOSTS} == before
    assert has_account(env, 3, "alone")
    assert running(env, 1) == sorted([names[1], names[2]]) and running(env, 3) == [names[3]]


def test_site_with_force_backs_up_n3_then_joins_it(env):
    """The same two clusters, forced: n3 joins the larger one after ejabberd's own backup,
    which the run names and which holds n3's account; the cluster keeps its data."""
    lab, names = env["lab"], env["names"]
    backup_dir = "/var/backups/xi10-force"
    result = play(env, "site", {"ejabberd_cookie": env["cookie"], "ejabberd_cluster_force": "true",
                                "ejabberd_cluster_backup_dir": backup_dir})
    env["timings"]["site_forced_join"] = result.wall
    assert result.rc == 0, result
    assert "lose their databases" in result.out and "n3:passwd" in result.out, result
    paths = sorted(set(re.findall(r"(%s/\S+?\.backup)" % re.escape(backup_dir), result.out)))
    assert len(paths) == 1 and names[3] in paths[0], (paths, result)
    assert sh(lab, 3, "grep -q -a alone %s" % paths[0]).returncode == 0, paths
    all_names = sorted(names.values())
    assert wait_for(lambda: all(running(env, ref) == all_names for ref in HOSTS), 90), \
        node_facts(env, 3)
    assert has_account(env, 3, "keptwrite") and not has_account(env, 1, "alone")
