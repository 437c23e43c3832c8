# Copyright: xmpp.ejabberd contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Hosts without systemd (issue 8: no role path left untested): the init-script branch of
role ejabberd (``/etc/init.d/ejabberd start``), on containers whose PID 1 is tini, reached
with docker exec as root, as a host without systemd (a container, an old init) is.

One lab, Debian 12 (ejabberd 23.01), two hosts where the package is installed but no node
was ever started, fixed-port mode, nftables: site converges, a rerun changes nothing,
verify passes, the node runs under the configured name with the cluster's cookie, and
nothing of systemd was asked for.
"""

from __future__ import annotations

import re

import pytest

from ansible_collections.xmpp.ejabberd.plugins.module_utils import erldist
from ansible_collections.xmpp.ejabberd.tests.helpers.lab import (
    LabCluster, remove_stale_runs, run_prefix)
from ansible_collections.xmpp.ejabberd.tests.helpers.playbook import (
    PlaybookRunner, lab_session, start_lab)

pytestmark = pytest.mark.lab

HOSTS = (1, 2)
DIST_PORT = 5210
PREFIX = "xnosd"


@pytest.fixture(scope="module")
def env(request):
    remove_stale_runs(PREFIX)

    def start() -> LabCluster:
        return start_lab(LabCluster(suite="bookworm", size=len(HOSTS), prefix=run_prefix(PREFIX),
                                    dist_port=DIST_PORT, start=False, vm=False), lambda lab: None)

    with lab_session(request, "no-systemd lab", start) as session:
        lab = session["lab"]
        runner = PlaybookRunner(session["workdir"])
        ips = {ref: lab.node(ref)["ip"] for ref in HOSTS}
        lines = ["[ejabberd]"] + [
            "n%d ansible_host=%s ejabberd_node_name=ejabberd@%s ejabberd_inet_dist_interface=%s"
            % (ref, lab.node(ref)["container"], ips[ref], ips[ref]) for ref in HOSTS]
        lines += ["", "[ejabberd:vars]", "ejabberd_dist_port=%d" % DIST_PORT,
                  "ejabberd_firewall_backend=nftables",
                  # the test talks to the nodes from this machine (the gateway); an INI
                  # inventory gives the list as a comma-separated string
                  "ejabberd_firewall_peers=%s" % ",".join([*ips.values(), lab.gateway]), ""]
        inventory = runner.docker_inventory(lines)
        cookie = runner.cookie()
        plays = {}
        for step, playbook in (("site", "site"), ("rerun", "site"), ("verify", "verify")):
            plays[step] = runner.play("xmpp.ejabberd." + playbook, inventory, {"ejabberd_cookie": cookie})
            session["timings"][step] = plays[step].wall
        yield {"lab": lab, "ips": ips, "cookie": cookie, "plays": plays}


def task_output(out: str, task: str) -> str:
    """What a task or handler printed, up to the next task, handler or recap."""
    match = re.search(r"^(?:TASK|RUNNING HANDLER) \[[^\]]*: %s\][^\n]*\n(.*?)(?=^TASK \[|^RUNNING HANDLER|^PLAY RECAP)"
                      % re.escape(task), out, re.M | re.S)
    return match.group(1) if match else ""


def test_the_hosts_have_no_systemd(env):
    for ref in HOSTS:
        init = env["lab"].exec(ref, ["cat", "/proc/1/comm"]).stdout.strip()
        assert init == "tini", init
        assert env["lab"].exec(ref, ["test", "-d", "/run/systemd/system"], check=False).returncode != 0


def test_site_converges_reruns_and_verifies(env):
    plays = env["plays"]
    for step in ("site", "rerun", "verify"):
        assert plays[step].rc == 0, (step, " ".join(plays[step].fatal_messages()) or plays[step])
        assert not plays[step].shows_a_secret(), step
    assert {host: counts["changed"] for host, counts in plays["rerun"].recap.items()} == \
        {"n1": 0, "n2": 0}, plays["rerun"]
    # the init script started the nodes (the restart its new settings called for, else the
    # start); the systemd task was skipped on both hosts
    out = plays["site"].out
    started = task_output(out, "Start ejabberd (init script)") + task_output(out, "Start ejabberd (no systemd)")
    assert sorted(re.findall(r"^changed: \[(n\d)\]", started, re.M)) == ["n1", "n2"], plays["site"]
    ran = task_output(plays["site"].out, "Enable and start ejabberd (systemd)")
    assert re.findall(r"^(\w+): \[", ran, re.M) in ([], ["skipping", "skipping"]), ran


def test_the_nodes_form_one_cluster_with_the_cookie(env):
    names = sorted("ejabberd@%s" % ip for ip in env["ips"].values())
    for ref in HOSTS:
        with erldist.connect("ejabberd@" + env["ips"][ref], env["cookie"], address=env["ips"][ref],
                             dist_port=DIST_PORT, timeout=5) as conn:
            members = sorted(str(n) for n in conn.rpc("ejabberd_cluster", "get_nodes", [], 5))
        assert members == names, ref
        running = env["lab"].exec(ref, ["pgrep", "-a", "beam.smp"]).stdout
        assert "-name ejabberd@%s" % env["ips"][ref] in running, running
