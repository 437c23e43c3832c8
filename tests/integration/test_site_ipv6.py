# Copyright: xmpp.ejabberd contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Erlang distribution over IPv6 (issue 14), on VM-like hosts whose package node runs:
ejabberd 23.01 (OTP 25, nftables) and 26.07 (OTP 29, firewalld) in fixed-port mode, 24.12
(OTP 27, ufw) in epmd mode (epmd bound to the IPv6 address, a port window).

Each lab: two hosts and an outsider on a network with an IPv4 and an IPv6 subnet; SSH
stays on IPv4, the nodes are ``ejabberd@n<i>.lab`` and ``ejabberd_inet_dist_interface``
is each host's IPv6 address. In file order:

1. site from the package's state converges, a rerun changes nothing, verify passes.
2. The distribution listens on the IPv6 address only (no IPv4 listener; epmd absent, or
   on the IPv6 address and loopback in epmd mode), the cluster is whole (ejabberdctl's own list_cluster and the client over IPv6 agree).
3. Real packets over IPv6: a peer reaches the distribution port, the outsider does not.
4. TLS distribution on the same cluster (``inet6_tls``): site, a rerun with no change,
   verify, and a plain-TCP client refused over IPv6.
"""

from __future__ import annotations

import os
import re

import pytest

from ansible_collections.xmpp.ejabberd.plugins.module_utils import erldist
from ansible_collections.xmpp.ejabberd.tests.helpers.lab import LabCluster
from ansible_collections.xmpp.ejabberd.tests.helpers.playbook import (
    PlaybookRunner, lab_session, start_lab)

pytestmark = pytest.mark.lab

HOSTS = (1, 2)
DIST_PORT = 5210
WINDOW = (4370, 4379)
CASES = {"bookworm": {"prefix": "xip623", "backend": "nftables", "epmd": False},
         "trixie": {"prefix": "xip624", "backend": "ufw", "epmd": True},
         "forky": {"prefix": "xip626", "backend": "firewalld", "epmd": False}}


def sh(lab, ref, script: str):
    return lab.exec(ref, ["sh", "-c", script], check=False)


@pytest.fixture(scope="module", params=sorted(CASES))
def env(request):
    suite = request.param
    case = CASES[suite]

    def prepare(lab: LabCluster) -> None:
        lab.add_container("out")
        # the image leaves both off; an operator turns one on (ufw: everything else allowed)
        on = {"firewalld": "systemctl enable --now firewalld.service",
              "ufw": "ufw default allow incoming && ufw --force enable"}.get(case["backend"])
        for ref in HOSTS if on else ():
            lab.exec(ref, ["sh", "-c", on])

    def start() -> LabCluster:
        return start_lab(LabCluster(suite=suite, size=len(HOSTS), prefix=case["prefix"],
                                    dist_port=None if case["epmd"] else DIST_PORT, start=False,
                                    vm=True, ipv6=True),
                         prepare)

    with lab_session(request, "%s IPv6 lab" % suite, start) as session:
        lab, work = session["lab"], session["workdir"]
        runner = PlaybookRunner(work)
        ip6 = {ref: lab.node(ref)["ip6"] for ref in HOSTS}
        hosts = {"n%d" % ref: (ref, {"ejabberd_node_name": "ejabberd@n%d.lab" % ref,
                                     "ejabberd_inet_dist_interface": ip6[ref],
                                     "ejabberd_epmd_address": ip6[ref]}) for ref in HOSTS}
        mode = ({"ejabberd_epmd": True, "ejabberd_firewall_window": "%d-%d" % WINDOW}
                if case["epmd"] else {"ejabberd_dist_port": DIST_PORT})
        group = {**mode, "ejabberd_firewall_backend": case["backend"],
                 # the peers by their IPv6 addresses, and this machine (the tests talk from it)
                 "ejabberd_firewall_peers": [ip6[ref] for ref in HOSTS] + [lab.gateway6]}
        cookie = runner.cookie()
        plain = runner.ssh_inventory(lab, hosts, group, name="plain")
        tls = runner.ssh_inventory(lab, hosts, {**group, "ejabberd_dist_tls": True,
                                                "ejabberd_dist_tls_ca_dir": os.path.join(work, "ca")},
                                   name="tls")
        plays = {}
        for step, inventory, playbook in (("site", plain, "site"), ("rerun", plain, "site"),
                                          ("verify", plain, "verify")):
            plays[step] = runner.play("xmpp.ejabberd." + playbook, inventory,
                                      {"ejabberd_cookie": cookie})
            session["timings"][step] = plays[step].wall
        yield {"lab": lab, "suite": suite, "epmd": case["epmd"], "runner": runner, "cookie": cookie, "ip6": ip6,
               "plays": plays, "tls": tls, "work": work, "timings": session["timings"],
               "names": sorted("ejabberd@n%d.lab" % ref for ref in HOSTS)}


def members(conn) -> list[str]:
    return sorted(str(node) for node in conn.rpc("ejabberd_cluster", "get_nodes", [], 5))


def test_site_converges_reruns_and_verifies(env):
    for step in ("site", "rerun", "verify"):
        play = env["plays"][step]
        assert play.rc == 0, (step, play.fatal_messages() or play.out[-3000:])
        assert not play.shows_a_secret(), step
    assert {h: v["changed"] for h, v in env["plays"]["rerun"].recap.items()} == {"n1": 0, "n2": 0}, \
        env["plays"]["rerun"]


def listeners(lab, ref) -> dict[int, list[str]]:
    """TCP port -> the addresses listening on it, as ss shows them ([v6] in brackets)."""
    found: dict[int, set[str]] = {}
    for address, port in re.findall(r"(\S+):(\d+)\s", sh(lab, ref, "ss -Htln").stdout):
        found.setdefault(int(port), set()).add(address)
    return {port: sorted(addresses) for port, addresses in found.items()}


def dist_ports(ports: dict) -> list[int]:
    """The distribution's port among PORTS: the fixed one, or those of the window."""
    return [p for p in ports if p == DIST_PORT or WINDOW[0] <= p <= WINDOW[1]]


def dist_port(env, ref) -> int:
    (port,) = dist_ports(listeners(env["lab"], ref))
    return port


def connect(env, ref, **options):
    """The client over IPv6: through epmd at the node's IPv6 address, or to the fixed port."""
    fixed = {} if env["epmd"] else {"dist_port": DIST_PORT}
    return erldist.connect("ejabberd@n%d.lab" % ref, env["cookie"], address=env["ip6"][ref],
                           timeout=5, **fixed, **options)


def test_distribution_listens_on_ipv6_only(env):
    lab = env["lab"]
    for ref in HOSTS:
        ports = listeners(lab, ref)
        assert [ports[p] for p in dist_ports(ports)] == [["[%s]" % env["ip6"][ref]]], (ref, ports)
        if env["epmd"]:  # ERL_EPMD_ADDRESS, plus loopback where the nodes register
            assert ports.get(4369) == sorted(["[%s]" % env["ip6"][ref], "127.0.0.1", "[::1]"]), ports
        else:
            assert 4369 not in ports, (ref, ports)
        cfg = sh(lab, ref, "cat /etc/default/ejabberd").stdout
        assert "inet_dist_use_interface" in cfg and "-proto_dist inet6_tcp" in cfg, cfg


def test_cluster_is_whole_over_ipv6(env):
    lab = env["lab"]
    listed = lab.ejabberdctl(1, "list_cluster").stdout
    assert sorted(re.findall(r"ejabberd@n\d\.lab", listed)) == env["names"], listed
    for ref in HOSTS:
        with connect(env, ref) as conn:
            assert members(conn) == env["names"], ref


def test_peer_gets_in_over_ipv6_and_outsider_does_not(env):
    lab = env["lab"]
    ports = [dist_port(env, 1)] + ([4369] if env["epmd"] else [])
    for port in ports:
        probe = "nc -6 -z -w 2 %s %d" % (env["ip6"][1], port)
        assert sh(lab, 2, probe).returncode == 0, port
        assert sh(lab, "out", probe).returncode != 0, port
        # nothing listens on the IPv4 address: the distribution is IPv6 only
        if port != 4369:
            assert sh(lab, 2, "nc -4 -z -w 2 %s %d" % (lab.node(1)["ip"], port)).returncode != 0


def test_tls_distribution_over_ipv6(env):
    lab, runner = env["lab"], env["runner"]
    for step in ("tls_site", "tls_rerun", "tls_verify"):
        play = runner.play("xmpp.ejabberd." + ("verify" if step == "tls_verify" else "site"),
                           env["tls"], {"ejabberd_cookie": env["cookie"]})
        env["timings"][step] = play.wall
        assert play.rc == 0, (step, play.fatal_messages() or play.out[-3000:])
        assert not play.shows_a_secret(), step
        if step == "tls_rerun":
            assert {h: v["changed"] for h, v in play.recap.items()} == {"n1": 0, "n2": 0}, play
    for ref in HOSTS:
        cfg = sh(lab, ref, "cat /etc/default/ejabberd").stdout
        assert "-proto_dist inet6_tls" in cfg and "inet6_tcp" not in cfg, cfg
    assert sorted(re.findall(r"ejabberd@n\d\.lab", lab.ejabberdctl(2, "list_cluster").stdout)) \
        == env["names"]
    # a plain-TCP client over IPv6 is refused now
    with pytest.raises(erldist.DistError):
        connect(env, 1).close()
