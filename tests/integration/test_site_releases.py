# Copyright: xmpp.ejabberd contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""xmpp.ejabberd.site on the newer ejabberd releases Debian ships, on VM-like hosts.

test_playbooks.py covers Debian 12 (ejabberd 23.01) in fixed-port mode in depth; here the
same playbook meets the other releases, each in the mode an operator would pick there:

* trixie (ejabberd 24.12, OTP 27): epmd mode, FIREWALL_WINDOW 4370-4379 and
  ERL_EPMD_ADDRESS the host's own address, nftables;
* forky (ejabberd 26.07, OTP 29): fixed-port mode (ERL_DIST_PORT 5210), ufw.

Each lab: two VM-like hosts (systemd as PID 1, SSH as ``admin`` with sudo) whose package
node ``ejabberd@localhost`` runs as after the package install, and an outsider on the same
network. Checked: site converges, a rerun changes nothing, the cluster is whole, the
release is the expected one, the ports are where the mode says (real packets from a peer
and from the outsider), and after a reboot of one host the cluster is whole again.
"""

from __future__ import annotations

import re
import time

import pytest

from ansible_collections.xmpp.ejabberd.plugins.module_utils import erldist
from ansible_collections.xmpp.ejabberd.plugins.module_utils.etf import Atom, as_text
from ansible_collections.xmpp.ejabberd.tests.helpers.playbook import (
    PlaybookRunner, lab_session, start_lab)
from ansible_collections.xmpp.ejabberd.tests.helpers.lab import LabCluster

pytestmark = pytest.mark.lab

HOSTS = (1, 2)
WINDOW = (4370, 4379)
DIST_PORT = 5210

CASES = {
    "trixie-epmd": {"suite": "trixie", "release": "24.12", "otp": "27", "prefix": "xsr24",
                    "epmd": True, "backend": "nftables"},
    "forky-fixed": {"suite": "forky", "release": "26.07", "otp": "29", "prefix": "xsr26",
                    "epmd": False, "backend": "ufw"},
}


def sh(lab, ref, script: str):
    return lab.exec(ref, ["sh", "-c", script], check=False)


def host_vars(lab, ref, case) -> dict:
    ip = lab.node(ref)["ip"]
    variables = {"ejabberd_node_name": "ejabberd@" + ip, "ejabberd_inet_dist_interface": ip,
                 "ejabberd_address": ip}
    if case["epmd"]:
        variables["ejabberd_epmd_address"] = ip
    return variables


def group_vars(lab, case) -> dict:
    peers = [lab.node(ref)["ip"] for ref in HOSTS] + [lab.gateway]   # the tests talk from here
    variables = {"ejabberd_epmd": case["epmd"], "ejabberd_firewall_backend": case["backend"],
                 "ejabberd_firewall_peers": peers}
    if case["epmd"]:
        variables["ejabberd_firewall_window"] = "%d-%d" % WINDOW
    else:
        variables["ejabberd_dist_port"] = DIST_PORT
    return variables


def prepare(lab: LabCluster, case: dict) -> None:
    lab.add_container("out")
    if case["backend"] == "ufw":   # as the operator has it: on, SSH allowed (the role never enables ufw)
        for ref in HOSTS:
            lab.exec(ref, ["sh", "-c", "ufw allow 22/tcp && ufw --force enable"])


@pytest.fixture(scope="module", params=sorted(CASES))
def env(request):
    case = CASES[request.param]

    def start() -> LabCluster:
        return start_lab(LabCluster(
            suite=case["suite"], size=len(HOSTS), prefix=case["prefix"],
            dist_port=None if case["epmd"] else DIST_PORT, start=False, vm=True),
            lambda lab: prepare(lab, case))

    with lab_session(request, "%s lab" % request.param, start) as session:
        lab = session["lab"]
        runner = PlaybookRunner(session["workdir"])
        inventory = runner.ssh_inventory(
            lab, {"n%d" % ref: (ref, host_vars(lab, ref, case)) for ref in HOSTS},
            group_vars(lab, case))
        cookie = runner.cookie()
        before = {ref: "-sname ejabberd@localhost" in sh(lab, ref, "pgrep -a beam.smp").stdout
                  for ref in HOSTS}
        first = runner.play("xmpp.ejabberd.site", inventory, {"ejabberd_cookie": cookie})
        session["timings"]["site"] = first.wall
        second = runner.play("xmpp.ejabberd.site", inventory, {"ejabberd_cookie": cookie})
        session["timings"]["site_rerun"] = second.wall
        yield {"lab": lab, "case": case, "cookie": cookie, "before": before, "first": first,
               "second": second, "timings": session["timings"],
               "names": [lab.node(ref)["name"] for ref in HOSTS]}


def connect(env, ref) -> erldist.Connection:
    node, case = env["lab"].node(ref), env["case"]
    return erldist.connect(node["name"], env["cookie"], address=node["ip"],
                           dist_port=None if case["epmd"] else DIST_PORT, timeout=5)


def test_site_converges_from_the_package_node(env):
    assert env["before"] == {ref: True for ref in HOSTS}, "the package's node did not run"
    play = env["first"]
    assert play.rc == 0, play
    assert not play.shows_a_secret()
    for ref in HOSTS:
        state = sh(env["lab"], ref, "systemctl is-active ejabberd; systemctl is-enabled ejabberd")
        assert state.stdout.split() == ["active", "enabled"], ref


def test_site_rerun_changes_nothing(env):
    play = env["second"]
    assert play.rc == 0, play
    assert {h: v["changed"] for h, v in play.recap.items()} == {"n1": 0, "n2": 0}, play


def test_cluster_is_whole_on_the_expected_release(env):
    env["lab"].wait_members(HOSTS, env["names"], timeout=60)
    for ref in HOSTS:
        with connect(env, ref) as conn:
            vsn = as_text(conn.rpc("application", "get_key", [Atom("ejabberd"), Atom("vsn")], 5)[1])
            otp = as_text(conn.rpc("erlang", "system_info", [Atom("otp_release")], 5))
            running = sorted(str(n) for n in conn.rpc("ejabberd_cluster", "get_nodes", [], 5))
        assert vsn.startswith(env["case"]["release"]) and otp == env["case"]["otp"], (vsn, otp)
        assert running == sorted(env["names"])


def test_ports_are_where_the_mode_says(env):
    lab, case = env["lab"], env["case"]
    for ref in HOSTS:
        ip = lab.node(ref)["ip"]
        listening = sh(lab, ref, "ss -Htln").stdout
        epmd_on = sorted(set(re.findall(r"(\S+):4369\b", listening)))
        if case["epmd"]:
            # ERL_EPMD_ADDRESS: the host's address and loopback, not every address
            assert epmd_on == sorted([ip, "127.0.0.1"]), (ref, listening)
            port = registered_port(lab, ref)
            assert WINDOW[0] <= port <= WINDOW[1], (ref, port)
        else:
            assert epmd_on == [], (ref, listening)
            assert re.search(r"%s:%d\b" % (re.escape(ip), DIST_PORT), listening), (ref, listening)


def registered_port(lab, ref) -> int:
    """The distribution port the node registered with its epmd."""
    names = sh(lab, ref, "epmd -names").stdout
    return int(re.search(r"^name ejabberd at port (\d+)$", names, re.M).group(1))


def dist_ports(env, ref) -> list[int]:
    if not env["case"]["epmd"]:
        return [DIST_PORT]
    return [4369, registered_port(env["lab"], ref)]


def test_peer_gets_in_and_outsider_does_not(env):
    lab = env["lab"]
    target = lab.node(1)["ip"]
    for port in dist_ports(env, 1):
        probe = "nc -z -w 2 %s %d" % (target, port)
        assert sh(lab, 2, probe).returncode == 0, port
        assert sh(lab, "out", probe).returncode != 0, port


def test_reboot_of_a_host_rejoins(env):
    lab = env["lab"]
    start = time.monotonic()
    lab.reboot(2)
    lab.wait_members(HOSTS, env["names"], timeout=120)
    env["timings"]["reboot_n2_until_whole"] = time.monotonic() - start
    for port in dist_ports(env, 2):
        probe = "nc -z -w 2 %s %d" % (lab.node(2)["ip"], port)
        assert sh(lab, 1, probe).returncode == 0, port
        assert sh(lab, "out", probe).returncode != 0, port
