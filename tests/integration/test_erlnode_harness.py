# Copyright: xmpp.ejabberd contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The ErlNode harness starts real nodes the way the integration tests need them."""

from __future__ import annotations

import os
import stat

import pytest

from ansible_collections.xmpp.ejabberd.tests.helpers.erlnode import (
    ErlEvalError,
    ErlNode,
    epmd_names,
    free_port,
    port_is_listening,
)


def _cmdline(pid):
    with open("/proc/%d/cmdline" % pid, "rb") as handle:
        return handle.read().split(b"\0")


def test_epmd_node_is_up_and_registered(epmd_node):
    assert epmd_node.node == "epmdnode@localhost"
    assert epmd_node.alive
    assert epmd_node.epmd_port not in (None, 4369)
    assert epmd_names(epmd_node.epmd_port) == {"epmdnode": epmd_node.port}
    assert port_is_listening(epmd_node.port)
    # our own epmd, started in the foreground, not as a daemon
    assert epmd_node.epmd is not None and epmd_node.epmd.proc.poll() is None
    assert b"-daemon" not in _cmdline(epmd_node.epmd.pid)


def test_eval_returns_printed_result(epmd_node):
    assert epmd_node.eval("nodes()") == "[]"
    assert epmd_node.eval("node()") == "epmdnode@localhost"
    assert epmd_node.eval("X = 20, Y = 22, X + Y.") == "42"
    assert epmd_node.eval("erlang:system_info(otp_release)").strip('"').isdigit()


def test_eval_error_is_raised(epmd_node):
    with pytest.raises(ErlEvalError):
        epmd_node.eval("erlang:error(boom)")
    with pytest.raises(ErlEvalError):
        epmd_node.eval("this is not erlang")


def test_fixed_port_node_has_no_epmd(fixed_port_node):
    node = fixed_port_node
    assert node.node == "fixednode@127.0.0.1"
    assert node.fixed_port and node.epmd_port is None and node.epmd is None
    assert port_is_listening(node.port)
    args = _cmdline(node.pid)
    assert b"-erl_epmd_port" in args and str(node.port).encode() in args
    # ERL_EPMD_PORT of the node points at a port where nothing listens
    with open("/proc/%d/environ" % node.pid, "rb") as handle:
        env = dict(item.split(b"=", 1) for item in handle.read().split(b"\0") if b"=" in item)
    assert not port_is_listening(int(env[b"ERL_EPMD_PORT"]))
    assert node.eval("node()") == "'fixednode@127.0.0.1'"
    assert node.eval("nodes()") == "[]"


def test_cookie_file_is_private_and_not_on_argv(epmd_node, fixed_port_node):
    for node in (epmd_node, fixed_port_node):
        mode = os.stat(node.cookie_file).st_mode
        assert stat.S_IMODE(mode) == 0o400
        with open(node.cookie_file, encoding="latin-1") as handle:
            assert handle.read() == node.cookie
        assert node.cookie.encode() not in b" ".join(_cmdline(node.pid))
        assert node.eval("erlang:get_cookie()") == "'%s'" % node.cookie


def test_two_nodes_connect_through_one_epmd(erl_node_factory):
    first = erl_node_factory("a1")
    second = erl_node_factory("a2", epmd_port=first.epmd_port, cookie=first.cookie)
    assert second.epmd is None  # reused the first node's epmd
    assert set(epmd_names(first.epmd_port)) == {"a1", "a2"}
    assert first.connect(second)
    assert second.eval("nodes()") == "[a1@localhost]"


def test_fixed_port_nodes_share_one_port_on_two_loopback_addresses(erl_node_factory):
    port = free_port()
    first = erl_node_factory("f1", longnames=True, dist_port=port, host="127.0.0.2")
    second = erl_node_factory("f2", longnames=True, dist_port=port, host="127.0.0.3", cookie=first.cookie)
    assert first.port == second.port == port
    assert first.connect(second)
    assert "'f2@127.0.0.3'" in first.eval("nodes()")


def test_wrong_cookie_cannot_connect(erl_node_factory):
    first = erl_node_factory("c1")
    second = erl_node_factory("c2", epmd_port=first.epmd_port, cookie="OTHER" + first.cookie)
    assert not first.connect(second)


def test_stop_cleans_up():
    node = ErlNode("gone", longnames=True)
    node.start()
    pid, epmd_pid, home, port = node.pid, node.epmd.pid, node.home, node.epmd_port
    node.stop()
    assert not os.path.exists(home)
    for gone in (pid, epmd_pid):
        assert not os.path.exists("/proc/%s" % gone)  # stopped and reaped
    assert not port_is_listening(port)


def test_start_failure_reports_node_output():
    node = ErlNode("bad", extra_args=["-eval", "erlang:halt(3)."], start_timeout=10)
    with pytest.raises(Exception) as info:
        node.start()
    assert "bad@localhost" in str(info.value)
    assert node.epmd is None
    assert not os.path.exists(node.home)
