# Copyright: xmpp.ejabberd contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The client and a module over IPv6 (issue 14, point 6), against real `erl` nodes on the
IPv6 loopback ::1 (``-proto_dist inet6_tcp``, or ``inet6_tls`` with TLS), named with an
IPv6 address as host part, as a node whose INET_DIST_INTERFACE is an IPv6 address is.

Checked: connect + handshake + RPC in fixed-port and in epmd mode (epmd asked over IPv6),
with and without an explicit address; TLS distribution over IPv6 with a certificate for
the IPv6 address; the module reading node, port and interface from an ejabberdctl.cfg
written the way the role writes it for an IPv6 interface.
"""

from __future__ import annotations

import os
import socket

import pytest

from ansible_collections.xmpp.ejabberd.plugins.module_utils import erldist
from ansible_collections.xmpp.ejabberd.tests.helpers import pki
from ansible_collections.xmpp.ejabberd.tests.helpers.ejabberd_lab import run_module
from ansible_collections.xmpp.ejabberd.tests.helpers.erlnode import ErlNode, erlang_available


def _has_ipv6_loopback():
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as sock:
            sock.bind(("::1", 0))
        return True
    except OSError:
        return False


pytestmark = [
    pytest.mark.skipif(not erlang_available(), reason="erl is not installed (make deps)"),
    pytest.mark.skipif(not _has_ipv6_loopback(), reason="this machine has no IPv6 loopback (::1)"),
]


def connect(node, with_address=True, **extra):
    args = dict(timeout=5)
    if with_address:
        args["address"] = node.address
    if node.fixed_port:
        args["dist_port"] = node.port
    else:
        args["epmd_port"] = node.epmd_port
    args.update(extra)
    return erldist.connect(node.node, node.cookie, **args)


@pytest.fixture(scope="module")
def v6_fixed():
    with ErlNode("v6fixed", longnames=True, host="::1", dist_port=0) as node:
        yield node


@pytest.fixture(scope="module")
def v6_epmd():
    with ErlNode("v6epmd", longnames=True, host="::1") as node:
        yield node


@pytest.mark.parametrize("which", ["v6_fixed", "v6_epmd"])
@pytest.mark.parametrize("with_address", [True, False], ids=["address", "from_node_name"])
def test_rpc_over_ipv6(request, which, with_address):
    v6_node = request.getfixturevalue(which)
    with connect(v6_node, with_address) as conn:
        assert conn.rpc("erlang", "node", [], 5) == erldist.Atom("%s@::1" % v6_node.name)
        # The node's own view: its distribution listens on IPv6 and our link is IPv6.
        assert conn.rpc("net_kernel", "get_net_ticktime", [], 5) > 0
        assert conn.address == "::1" and conn.via_epmd is (not v6_node.fixed_port)


def test_epmd_answers_over_ipv6(v6_epmd):
    found = erldist.epmd_port_please("::1", v6_epmd.name, epmd_port=v6_epmd.epmd_port)
    assert found["port"] == v6_epmd.port, found


def test_an_ipv4_address_does_not_reach_an_ipv6_only_node(v6_fixed):
    with pytest.raises(erldist.DistError) as caught:
        connect(v6_fixed, address="127.0.0.1").close()
    assert caught.value.reason == "unreachable", caught.value


def test_tls_over_ipv6(tmp_path):
    ca = pki.CA(str(tmp_path), "cluster")
    certfile, keyfile = ca.issue("node6", ["::1"])
    optfile = pki.ssl_dist_optfile(str(tmp_path / "v6.conf"), certfile, keyfile, ca.path)
    with ErlNode("v6tls", longnames=True, host="::1", dist_port=0,
                 extra_args=pki.tls_node_args(optfile, inet6=True)) as node:
        with connect(node, tls=erldist.tls_context(certfile, keyfile, ca.path)) as conn:
            assert conn.rpc("erlang", "node", [], 5) == erldist.Atom(node.node)
            assert conn.tls["subject"] == "commonName=::1"
        with pytest.raises(erldist.DistError):
            connect(node).close()  # plain TCP to a TLS node over IPv6 is refused too


def test_the_module_reads_an_ipv6_ejabberdctl_cfg(tmp_path):
    """ejabberdctl.cfg as the role writes it for an IPv6 interface on 23.01 (which does
    not add inet6_tcp by itself): the module finds node, port and address there."""
    with ErlNode("v6module", longnames=True, host="::1", dist_port=0) as node:
        cfg = tmp_path / "ejabberdctl.cfg"
        cfg.write_text('ERLANG_NODE=%s\nERL_DIST_PORT=%d\nINET_DIST_INTERFACE=::1\n'
                       'ERL_OPTIONS="-proto_dist inet6_tcp"\n' % (node.node, node.port))
        result = run_module("erlang_node_info", {"ejabberdctl_cfg": str(cfg), "cookie": node.cookie},
                            secrets_to_hide=[node.cookie])
        assert result["reachable"] is True, result
        assert result["node"] == node.node and result.get("tls") is False, result
        assert os.path.isfile(str(cfg))
