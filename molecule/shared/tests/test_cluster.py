"""Checks of a molecule cluster, made on the hosts themselves (every scenario).

Three nodes (group `ejabberd`) and one outsider (group `outsiders`) on an internal
docker network; VM-like hosts (systemd as PID 1) reached over SSH as `admin` with
sudo, as converge reached them. The scenario's inventory says the mode:
- fixed port (`ejabberd_epmd: false`): ERL_DIST_PORT, no epmd, nothing on 4369;
- epmd (`ejabberd_epmd: true`): epmd on 4369 bound to the node's address and
  loopback, the distribution on a port of `ejabberd_firewall_window`.
Firewall checks use real packets (`nc -z -w 2`) from a peer node and from the outsider.

The cookie is never printed: its file is compared through sha256 digests only,
and assertions that involve digests assert a plain boolean (pytest would
otherwise show the compared values).
"""

from __future__ import annotations

import functools
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
SERVICE = "ejabberd"
SERVICE_USER = "ejabberd"
ADMIN_USER = "admin"
EPMD_PORT = 4369
SSH_PORT = 22      # the firewall roles never touch SSH: the outsider's control probe
C2S_PORT = 5222    # ejabberd's client port; open to all where nothing but our table filters
MANAGED_MARKER = re.compile(r"^# (BEGIN|END) xmpp\.ejabberd managed block$")
NODE_LINE = re.compile(r"'?([^'\s]+@[^'\s]+)'?")
EPMD_NAME_LINE = re.compile(r"^name (\S+) at port (\d+)$")


def _host(name: str) -> testinfra.host.Host:
    return testinfra.get_host(f"ansible://{name}?ansible_inventory={INVENTORY}")


def _vars(name: str) -> dict:
    return RUNNER.get_variables(name)


def _name(host) -> str:
    return host.backend.get_hostname()


def _address(name: str) -> str:
    return _vars(name)["ansible_host"]


SETTINGS = _vars(NODES[0])
EPMD = bool(SETTINGS.get("ejabberd_epmd", False))
BACKEND = SETTINGS["ejabberd_firewall_backend"]
FIXED_PORT = None if EPMD else int(SETTINGS["ejabberd_dist_port"])
WINDOW = tuple(int(p) for p in SETTINGS["ejabberd_firewall_window"].split("-")) if EPMD else None
EXPECTED_NODES = sorted(_vars(n)["ejabberd_node_name"] for n in NODES)
only_epmd = pytest.mark.skipif(not EPMD, reason="epmd mode only")
only_fixed = pytest.mark.skipif(EPMD, reason="fixed-port mode only")


@functools.cache
def _dist_port(name: str) -> int:
    """The port the node's distribution listens on: ERL_DIST_PORT, or in epmd mode
    what the node registered with its epmd (what a peer's PORT_PLEASE gets)."""
    if not EPMD:
        return FIXED_PORT
    node = _vars(name)["ejabberd_node_name"].split("@")[0]
    out = _host(name).check_output("epmd -names")
    ports = [int(m.group(2)) for line in out.splitlines()
             if (m := EPMD_NAME_LINE.match(line.strip())) and m.group(1) == node]
    assert len(ports) == 1, out
    return ports[0]


def test_inventory_shape():
    assert len(NODES) == 3
    assert len(OUTSIDERS) == 1
    for key in ("ejabberd_epmd", "ejabberd_dist_port", "ejabberd_firewall_window",
                "ejabberd_firewall_backend"):
        assert len({repr(_vars(n).get(key)) for n in NODES}) == 1, key


# -- the hosts are VM-like and reached as an operator reaches them ----------------

@pytest.mark.parametrize("name", NODES + OUTSIDERS)
def test_reached_over_ssh_as_admin_with_sudo(name):
    v = _vars(name)
    assert v["ansible_connection"] == "ssh"
    assert v["ansible_user"] == ADMIN_USER and v["ansible_become"] is True
    # What testinfra's ansible backend runs the commands through: plain ssh.
    assert RUNNER.get_host(name).backend.NAME == "ssh"
    host = _host(name)
    assert host.check_output("id -un") == "root"
    assert host.check_output("printenv SUDO_USER") == ADMIN_USER


def test_systemd_runs_the_host(host):
    assert host.check_output("ps -o comm= -p 1") == "systemd"
    state = host.run("systemctl is-system-running").stdout.strip()
    failed = host.run("systemctl --failed --no-legend --plain").stdout.strip()
    assert state == "running", failed


def test_the_service_is_enabled_and_active(host):
    assert host.run("systemctl is-enabled %s", SERVICE).stdout.strip() == "enabled"
    assert host.run("systemctl is-active %s", SERVICE).stdout.strip() == "active"


def test_the_package_node_is_gone(host):
    """The image boots the package's own `ejabberd@localhost`; the role took it over."""
    assert "ejabberd@localhost" not in host.check_output("ps -eo args")


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
    assert interface == v["ejabberd_inet_dist_interface"]
    if EPMD:
        assert (port, window) == ("", v["ejabberd_firewall_window"])
        assert epmd_address == v["ejabberd_epmd_address"]
    else:
        assert (port, window, epmd_address) == (str(FIXED_PORT), "", "")


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
                                                   r"INET_DIST_INTERFACE|FIREWALL_WINDOW|"
                                                   r"ERL_EPMD_ADDRESS)=", line)]
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


# -- epmd and listening sockets --------------------------------------------------

def _tcp_listeners(host) -> list[str]:
    return [s for s in host.socket.get_listening_sockets() if s.startswith("tcp://")]


def _unit_states(host, unit: str) -> tuple[str, str]:
    return (host.run("systemctl is-active %s", unit).stdout.strip(),
            host.run("systemctl is-enabled %s", unit).stdout.strip())


@only_fixed
def test_fixed_port_nothing_on_the_epmd_port(host):
    on_epmd = [s for s in _tcp_listeners(host) if s.endswith(f":{EPMD_PORT}")]
    assert on_epmd == []
    assert host.run("pgrep -x epmd").rc == 1
    assert _unit_states(host, "epmd.socket") == ("inactive", "disabled")
    assert _unit_states(host, "epmd.service")[0] == "inactive"
    # ...and it stays so after a boot: nothing pulls epmd in again.
    requires = host.check_output("systemctl show -p Requires --value %s", SERVICE).split()
    assert "epmd.service" not in requires


@only_epmd
def test_epmd_listens_on_the_node_address_and_loopback_only(host):
    address = _vars(_name(host))["ejabberd_epmd_address"]
    on_epmd = sorted(s for s in _tcp_listeners(host) if s.endswith(f":{EPMD_PORT}"))
    assert on_epmd == sorted([f"tcp://{address}:{EPMD_PORT}", f"tcp://127.0.0.1:{EPMD_PORT}"])
    assert _unit_states(host, "epmd.socket") == ("active", "enabled")


@only_epmd
def test_epmd_port_is_inside_the_window():
    for name in NODES:
        assert WINDOW[0] <= _dist_port(name) <= WINDOW[1], name


def test_dist_port_only_on_the_configured_address(host):
    address = _vars(_name(host))["ejabberd_inet_dist_interface"]
    port = _dist_port(_name(host))
    on_dist = [s for s in _tcp_listeners(host) if s.endswith(f":{port}")]
    assert on_dist == [f"tcp://{address}:{port}"]


# -- the firewall, with real packets ---------------------------------------------

def _can_connect(source: str, address: str, port: int) -> bool:
    return _host(source).run(f"nc -z -w 2 {shlex.quote(address)} {port}").rc == 0


def _cluster_ports(target: str) -> list[int]:
    return [EPMD_PORT, _dist_port(target)] if EPMD else [_dist_port(target)]


@pytest.mark.parametrize(("source", "target"), list(itertools.permutations(NODES, 2)))
def test_peer_reaches_the_cluster_ports(source, target):
    reached = {port: _can_connect(source, _address(target), port) for port in _cluster_ports(target)}
    assert reached == {port: True for port in reached}


@pytest.mark.outsider
@pytest.mark.parametrize("target", NODES)
def test_outsider_cannot_reach_the_cluster_ports(target):
    outsider = OUTSIDERS[0]
    # Control: the outsider does reach the node (SSH is never filtered by the roles;
    # with nftables nothing but our table filters, so ejabberd's client port is open
    # too), so a refused cluster port is the firewall, not the network.
    controls = [SSH_PORT, C2S_PORT] if BACKEND == "nftables" else [SSH_PORT]
    reached = {port: _can_connect(outsider, _address(target), port) for port in controls}
    assert reached == {port: True for port in controls}
    reached = {port: _can_connect(outsider, _address(target), port) for port in _cluster_ports(target)}
    assert reached == {port: False for port in reached}


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
