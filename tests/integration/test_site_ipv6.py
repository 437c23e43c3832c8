# Copyright: xmpp.ejabberd contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Erlang distribution over IPv6 (issue 14), on VM-like hosts whose package node runs:
ejabberd 23.01 (OTP 25, nftables) and 26.07 (OTP 29, firewalld), fixed-port mode.

Each lab: two hosts and an outsider on a network with an IPv4 and an IPv6 subnet; SSH
stays on IPv4, the nodes are ``ejabberd@n<i>.lab`` and ``ejabberd_inet_dist_interface``
is each host's IPv6 address. In file order:

1. site from the package's state converges, a rerun changes nothing, verify passes.
2. The distribution listens on the IPv6 address only (no IPv4 listener, no epmd), the
   cluster is whole (ejabberdctl's own list_cluster and the client over IPv6 agree).
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
CASES = {"bookworm": {"prefix": "xip623", "backend": "nftables"},
         "forky": {"prefix": "xip626", "backend": "firewalld"}}


def sh(lab, ref, script: str):
    return lab.exec(ref, ["sh", "-c", script], check=False)


@pytest.fixture(scope="module", params=sorted(CASES))
def env(request):
    suite = request.param
    case = CASES[suite]

    def prepare(lab: LabCluster) -> None:
        lab.add_container("out")
        if case["backend"] == "firewalld":  # the image leaves it off; an operator turns it on
            for ref in HOSTS:
                lab.exec(ref, ["systemctl", "enable", "--now", "firewalld.service"])

    def start() -> LabCluster:
        return start_lab(LabCluster(suite=suite, size=len(HOSTS), prefix=case["prefix"],
                                    dist_port=DIST_PORT, start=False, vm=True, ipv6=True),
                         prepare)

    with lab_session(request, "%s IPv6 lab" % suite, start) as session:
        lab, work = session["lab"], session["workdir"]
        runner = PlaybookRunner(work)
        ip6 = {ref: lab.node(ref)["ip6"] for ref in HOSTS}
        hosts = {"n%d" % ref: (ref, {"ejabberd_node_name": "ejabberd@n%d.lab" % ref,
                                     "ejabberd_inet_dist_interface": ip6[ref]}) for ref in HOSTS}
        group = {"ejabberd_dist_port": DIST_PORT, "ejabberd_firewall_backend": case["backend"],
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
        yield {"lab": lab, "suite": suite, "runner": runner, "cookie": cookie, "ip6": ip6,
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


def test_distribution_listens_on_ipv6_only(env):
    lab = env["lab"]
    for ref in HOSTS:
        listening = sh(lab, ref, "ss -Htln").stdout
        on_port = sorted(set(re.findall(r"(\S+):%d\b" % DIST_PORT, listening)))
        assert on_port == ["[%s]" % env["ip6"][ref]], (ref, listening)
        assert ":4369" not in listening, (ref, listening)
        cfg = sh(lab, ref, "cat /etc/default/ejabberd").stdout
        assert "inet_dist_use_interface" in cfg and "-proto_dist inet6_tcp" in cfg, cfg


def test_cluster_is_whole_over_ipv6(env):
    lab = env["lab"]
    listed = lab.ejabberdctl(1, "list_cluster").stdout
    assert sorted(re.findall(r"ejabberd@n\d\.lab", listed)) == env["names"], listed
    for ref in HOSTS:
        with erldist.connect("ejabberd@n%d.lab" % ref, env["cookie"], address=env["ip6"][ref],
                             dist_port=DIST_PORT, timeout=5) as conn:
            assert members(conn) == env["names"], ref


def test_peer_gets_in_over_ipv6_and_outsider_does_not(env):
    lab = env["lab"]
    probe = "nc -6 -z -w 2 %s %d" % (env["ip6"][1], DIST_PORT)
    assert sh(lab, 2, probe).returncode == 0
    assert sh(lab, "out", probe).returncode != 0
    # nothing listens on the IPv4 address: the distribution is IPv6 only
    assert sh(lab, 2, "nc -4 -z -w 2 %s %d" % (lab.node(1)["ip"], DIST_PORT)).returncode != 0


def test_tls_distribution_over_ipv6(env):
    lab, runner = env["lab"], env["runner"]
    for step in ("tls_site", "tls_rerun", "tls_verify"):
        play = runner.play("xmpp.ejabberd." + ("verify" if step == "tls_verify" else "site"),
                           env["tls"], {"ejabberd_cookie": env["cookie"]})
        env["timings"][step] = play.wall
        assert play.rc == 0, (step, play)
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
        erldist.connect("ejabberd@n1.lab", env["cookie"], address=env["ip6"][1],
                        dist_port=DIST_PORT, timeout=5).close()
