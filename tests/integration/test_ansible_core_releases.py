# Copyright: xmpp.ejabberd contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The collection as a user installs it, on the older ansible-core releases it claims.

meta/runtime.yml says ansible-core >= 2.16; everything else runs on 2.19 (.venv). Here
ansible-core 2.17 and 2.18 (each with the collections of its ``ansible`` package, from
``make ansible-cores``) run the playbooks from a copy of the collection built with
``ansible-galaxy collection build`` and installed from that tarball into a clean directory
(what a user gets from Galaxy, not this checkout). 2.16 runs under ansible-runner, as AWX
runs it (test_awx_jobs.py).

One lab per release, two VM-like hosts (systemd, SSH as ``admin`` with sudo, the package's
node running): site in fixed-port mode (converge, rerun with changed=0, verify), then the
same hosts switched to epmd mode with a port window (converge, rerun with changed=0,
verify), the ports where each mode says.
"""

from __future__ import annotations

import os
import re

import pytest

from ansible_collections.xmpp.ejabberd.tests.helpers.collection import (
    ansible_core_bin, installed_collection)
from ansible_collections.xmpp.ejabberd.tests.helpers.lab import LabCluster
from ansible_collections.xmpp.ejabberd.tests.helpers.playbook import (
    PlaybookRunner, lab_session, start_lab)

pytestmark = pytest.mark.lab

HOSTS = (1, 2)
DIST_PORT = 5210
WINDOW = "4370-4379"
RELEASES = {
    "2.17": {"suite": "trixie", "prefix": "xac17"},
    "2.18": {"suite": "forky", "prefix": "xac18"},
}
MODES = {
    "fixed": {"ejabberd_epmd": False, "ejabberd_dist_port": DIST_PORT},
    "epmd": {"ejabberd_epmd": True, "ejabberd_firewall_window": WINDOW},
}


@pytest.fixture(scope="module", params=sorted(RELEASES))
def env(request, tmp_path_factory):
    release = request.param
    case = RELEASES[release]
    bindir = ansible_core_bin(release)
    collections = installed_collection(bindir, str(tmp_path_factory.mktemp("ac" + release)))

    def start() -> LabCluster:
        return start_lab(LabCluster(suite=case["suite"], size=len(HOSTS), prefix=case["prefix"],
                                    dist_port=DIST_PORT, start=False, vm=True), lambda lab: None)

    with lab_session(request, "ansible-core %s lab" % release, start) as session:
        lab = session["lab"]
        runner = PlaybookRunner(session["workdir"])
        runner.ansible_playbook = os.path.join(bindir, "ansible-playbook")
        runner.env["ANSIBLE_COLLECTIONS_PATH"] = collections
        runner.env["PATH"] = bindir + os.pathsep + runner.env["PATH"]
        cookie = runner.cookie()
        plays = {}
        for mode, settings in MODES.items():
            hosts = {}
            for ref in HOSTS:
                ip = lab.node(ref)["ip"]
                hosts["n%d" % ref] = (ref, {
                    "ejabberd_node_name": "ejabberd@" + ip, "ejabberd_inet_dist_interface": ip,
                    **({"ejabberd_epmd_address": ip} if settings["ejabberd_epmd"] else {})})
            inventory = runner.ssh_inventory(lab, hosts, settings, name="inventory-" + mode)
            for step in ("converge", "rerun", "verify"):
                playbook = "xmpp.ejabberd.verify" if step == "verify" else "xmpp.ejabberd.site"
                plays[mode, step] = runner.play(playbook, inventory, {"ejabberd_cookie": cookie})
                session["timings"]["%s_%s" % (mode, step)] = plays[mode, step].wall
            plays[mode, "listening"] = {
                ref: lab.exec(ref, ["ss", "-Htln"], check=False).stdout for ref in HOSTS}
        yield {"lab": lab, "release": release, "plays": plays, "bindir": bindir}


def test_the_tools_are_the_release_under_test(env):
    version = os.popen(os.path.join(env["bindir"], "ansible-playbook") + " --version").read()
    assert re.search(r"\[core %s\.\d+\]" % re.escape(env["release"]), version), version


@pytest.mark.parametrize("mode", sorted(MODES))
def test_site_converges(env, mode):
    play = env["plays"][mode, "converge"]
    assert play.rc == 0, play
    assert not play.shows_a_secret()


@pytest.mark.parametrize("mode", sorted(MODES))
def test_site_rerun_changes_nothing(env, mode):
    play = env["plays"][mode, "rerun"]
    assert play.rc == 0, play
    assert {host: counts["changed"] for host, counts in play.recap.items()} == {"n1": 0, "n2": 0}, play


@pytest.mark.parametrize("mode", sorted(MODES))
def test_verify_passes(env, mode):
    play = env["plays"][mode, "verify"]
    assert play.rc == 0, play
    names = sorted(env["lab"].node(ref)["name"] for ref in HOSTS)
    for name in names:
        assert re.search(r"%s\s+\S+\s+\S+\s+2\s+0\s+OK" % re.escape(name), play.out), play


def test_ports_are_where_each_mode_says(env):
    lab = env["lab"]
    low, high = (int(port) for port in WINDOW.split("-"))
    for ref in HOSTS:
        ip = lab.node(ref)["ip"]
        fixed = env["plays"]["fixed", "listening"][ref]
        assert re.search(r"%s:%d\b" % (re.escape(ip), DIST_PORT), fixed), fixed
        assert not re.search(r":4369\b", fixed), fixed
        epmd = env["plays"]["epmd", "listening"][ref]
        assert re.search(r"%s:4369\b" % re.escape(ip), epmd), epmd
        ports = [int(port) for port in re.findall(r"%s:(\d+)\b" % re.escape(ip), epmd)]
        assert any(low <= port <= high for port in ports), epmd
        assert DIST_PORT not in ports, epmd
