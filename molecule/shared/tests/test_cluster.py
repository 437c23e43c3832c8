"""Checks of the molecule `default` cluster, made from inside the containers.

Three nodes (group `ejabberd`) and one outsider (group `outsiders`) on an internal
docker network. Fixed-port mode: ERL_DIST_PORT 5210, no epmd; nftables firewall.

The cookie is never printed: its file is compared through sha256 digests only,
and assertions that involve digests assert a plain boolean (pytest would
otherwise show the compared values).
"""

from __future__ import annotations

import hashlib
import itertools
import os
import re
import shlex

import pytest
import testinfra
import testinfra.utils.ansible_runner

INVENTORY = os.environ["MOLECULE_INVENTORY_FILE"]
RUNNER = testinfra.utils.ansible_runner.AnsibleRunner(INVENTORY)
NODES = sorted(RUNNER.get_hosts("ejabberd"))
OUTSIDERS = sorted(RUNNER.get_hosts("outsiders"))

# Tests that take the `host` fixture run once per cluster node.
testinfra_hosts = NODES

CTL_CFG_LINK = "/etc/ejabberd/ejabberdctl.cfg"
CTL_CFG = "/etc/default/ejabberd"  # Debian: the symlink's target
EJABBERDCTL = "/usr/sbin/ejabberdctl"
SERVICE_USER = "ejabberd"
EPMD_PORT = 4369
C2S_PORT = 5222  # ejabberd's client port, open to everyone: the outsider's control probe
MANAGED_MARKER = re.compile(r"^# (BEGIN|END) xmpp\.ejabberd managed block$")
NODE_LINE = re.compile(r"'?([^'\s]+@[^'\s]+)'?")


def _host(name: str) -> testinfra.host.Host:
    return testinfra.get_host(f"ansible://{name}?ansible_inventory={INVENTORY}")


def _vars(name: str) -> dict:
    return RUNNER.get_variables(name)


def _name(host) -> str:
    return host.backend.get_hostname()


DIST_PORT = int(_vars(NODES[0])["ejabberd_dist_port"])
EXPECTED_NODES = sorted(_vars(n)["ejabberd_node_name"] for n in NODES)


def _address(name: str) -> str:
    v = _vars(name)
    return v.get("ejabberd_address") or v["lab_address"]


def test_inventory_shape():
    assert len(NODES) == 3
    assert len(OUTSIDERS) == 1
    assert len({_vars(n).get("ejabberd_dist_port") for n in NODES}) == 1


# -- ejabberdctl.cfg -------------------------------------------------------------

def test_ctl_cfg_is_still_debians_symlink(host):
    link = host.file(CTL_CFG_LINK)
    assert link.is_symlink
    assert link.linked_to == CTL_CFG
    target = host.file(CTL_CFG)
    assert target.is_file and not target.is_symlink
    assert target.user == "root"


def test_ctl_cfg_values(host):
    """The values ejabberdctl sees when it sources the file."""
    v = _vars(_name(host))
    script = ". " + CTL_CFG_LINK + " && printf '%s|%s|%s|%s|%s\\n' " \
        '"$ERLANG_NODE" "$ERL_DIST_PORT" "$INET_DIST_INTERFACE" "$FIREWALL_WINDOW" "$ERL_EPMD_ADDRESS"'
    out = host.check_output("sh -c %s", script)
    node, port, interface, window, epmd_address = out.split("|")
    assert node == v["ejabberd_node_name"]
    assert port == str(DIST_PORT)
    assert interface == v["ejabberd_inet_dist_interface"]
    assert window == ""
    assert epmd_address == ""


def test_ctl_cfg_keeps_the_package_lines(host):
    """Every line the package shipped is still there, in order, outside our block.

    The outsider runs the same image untouched: its file is the pristine one.
    """
    pristine = _host(OUTSIDERS[0]).file(CTL_CFG).content_string.splitlines()
    lines = host.file(CTL_CFG).content_string.splitlines()
    markers = [i for i, line in enumerate(lines) if MANAGED_MARKER.match(line)]
    assert len(markers) == 2, "exactly one managed block"
    outside = lines[:markers[0]] + lines[markers[1] + 1:]
    it = iter(outside)
    missing = [line for line in pristine if not any(line == o for o in it)]
    assert missing == []
    # Our settings are set only inside the block (the last assignment wins anyway).
    active = [line for line in outside if re.match(r"^\s*(export\s+)?(ERLANG_NODE|ERL_DIST_PORT|"
                                                   r"INET_DIST_INTERFACE|FIREWALL_WINDOW)=", line)]
    assert active == []


# -- the cookie ------------------------------------------------------------------

def _home(host) -> str:
    return host.check_output("getent passwd %s", SERVICE_USER).split(":")[5]


def test_cookie_file_in_the_real_home(host):
    home = _home(host)
    assert home == "/var/lib/ejabberd"  # Debian's package
    cookie = host.file(f"{home}/.erlang.cookie")
    assert cookie.is_file and not cookie.is_symlink
    assert cookie.user == SERVICE_USER
    assert cookie.group == host.check_output("id -gn %s", SERVICE_USER)
    assert cookie.mode == 0o400
    # Not somewhere else as well (root's HOME, the old /etc/ejabberd location).
    assert not host.file("/root/.erlang.cookie").exists


def test_cookie_is_the_same_on_every_node_and_is_the_configured_one():
    digests = {n: _host(n).file(f"{_home(_host(n))}/.erlang.cookie").sha256sum for n in NODES}
    same = len(set(digests.values())) == 1
    assert same, "the cookie file differs between nodes (digests compared, not shown)"
    configured = _vars(NODES[0])["ejabberd_cookie"]
    allowed = {hashlib.sha256(c.encode()).hexdigest() for c in (configured, configured + "\n")}
    is_configured = next(iter(digests.values())) in allowed
    assert is_configured, "the cookie file does not hold the inventory's ejabberd_cookie"


def test_cookie_not_in_the_process_list(host):
    configured = _vars(_name(host))["ejabberd_cookie"]
    found = configured in host.check_output("ps -eo args")
    assert not found, "the cookie appears in a command line (-setcookie?)"


# -- listening sockets -----------------------------------------------------------

def _tcp_listeners(host) -> list[str]:
    return [s for s in host.socket.get_listening_sockets() if s.startswith("tcp://")]


def test_nothing_on_the_epmd_port(host):
    on_epmd = [s for s in _tcp_listeners(host) if s.endswith(f":{EPMD_PORT}")]
    assert on_epmd == []
    assert host.run("pgrep -x epmd").rc == 1


def test_dist_port_only_on_the_configured_address(host):
    address = _vars(_name(host))["ejabberd_inet_dist_interface"]
    on_dist = [s for s in _tcp_listeners(host) if s.endswith(f":{DIST_PORT}")]
    assert on_dist == [f"tcp://{address}:{DIST_PORT}"]


# -- the firewall, with real packets ---------------------------------------------

def _can_connect(source: str, address: str, port: int) -> bool:
    return _host(source).run(f"nc -z -w 2 {shlex.quote(address)} {port}").rc == 0


@pytest.mark.parametrize(("source", "target"), list(itertools.permutations(NODES, 2)))
def test_peer_reaches_the_dist_port(source, target):
    assert _can_connect(source, _address(target), DIST_PORT)


@pytest.mark.outsider
@pytest.mark.parametrize("target", NODES)
def test_outsider_cannot_reach_the_dist_port(target):
    outsider = OUTSIDERS[0]
    # Control: the outsider does reach the node (ejabberd's client port is open to
    # all), so a refused dist port is the firewall, not the network.
    assert _can_connect(outsider, _address(target), C2S_PORT)
    assert not _can_connect(outsider, _address(target), DIST_PORT)


# -- membership ------------------------------------------------------------------

def test_cluster_members_through_the_module(host):
    info = host.ansible(
        "xmpp.ejabberd.ejabberd_cluster_info",
        f"cookie_user={SERVICE_USER} check_peers=true expected_nodes={','.join(EXPECTED_NODES)}",
        check=True,  # read-only either way
    )
    # testinfra raises only on `failed`, which ad-hoc results may lack: look at `reason`.
    assert info.get("reason") is None, info.get("msg")
    assert info["node"] == _vars(_name(host))["ejabberd_node_name"]
    assert info["running_nodes"] == EXPECTED_NODES
    assert info["stopped_nodes"] == []
    assert info.get("missing", []) == []
    assert info.get("unexpected", []) == []


def test_cluster_members_through_ejabberdctl(host):
    out = host.check_output("runuser -u %s -- %s list_cluster", SERVICE_USER, EJABBERDCTL)
    members = sorted(m.group(1) for line in out.splitlines()
                     if (m := NODE_LINE.fullmatch(line.strip())))
    assert members == EXPECTED_NODES
