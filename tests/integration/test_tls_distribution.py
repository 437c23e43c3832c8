# Copyright: xmpp.ejabberd contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The client over OTP's TLS distribution (inet_tls_dist), against real `erl` nodes on
loopback started with ``-proto_dist inet_tls -ssl_dist_optfile`` and peers verified both
ways (verify_peer, fail_if_no_peer_cert), certificates from tests/helpers/pki.py.

Checked: connect + handshake + RPC over TLS in fixed-port and in epmd mode, long and short
names; the node's certificate reported (days left); each TLS failure has reason
``tls_failed`` and its cause (a CA the other side does not trust, either way; an expired
certificate; a certificate for another name; no client certificate; a plain node; a key
that is not the certificate's); a plain client is refused by a TLS node; the module takes
its TLS settings from the local ejabberdctl.cfg (ERL_OPTIONS and the node's own ssl_dist
options file) when none are given.
"""

from __future__ import annotations

import os

import pytest

from ansible_collections.xmpp.ejabberd.plugins.module_utils import connection, erldist
from ansible_collections.xmpp.ejabberd.tests.helpers import pki
from ansible_collections.xmpp.ejabberd.tests.helpers.ejabberd_lab import run_module
from ansible_collections.xmpp.ejabberd.tests.helpers.erlnode import ErlNode, erlang_available

pytestmark = pytest.mark.skipif(not erlang_available(), reason="erl is not installed (make deps)")


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    work = str(tmp_path_factory.mktemp("tls"))
    ca, other = pki.CA(work, "cluster"), pki.CA(work, "other")
    made = {"dir": work, "ca": ca.path, "other_ca": other.path}
    made["node"] = ca.issue("node", ["127.0.0.1", "localhost"])
    made["client"] = ca.issue("client", ["127.0.0.1", "localhost"])
    made["other_client"] = other.issue("other-client", ["127.0.0.1"])
    made["expired"] = ca.issue("expired", ["127.0.0.1"], days=-1, valid_from_days=-10)
    made["wrong_name"] = ca.issue("wrong-name", ["xmpp9.example.org"])
    return made


def optfile(certs, name, cert="node", ca="ca"):
    certfile, keyfile = certs[cert]
    return pki.ssl_dist_optfile(os.path.join(certs["dir"], name + ".conf"), certfile, keyfile, certs[ca])


@pytest.fixture(scope="module")
def tls_fixed(certs):
    with ErlNode("tlsfixed", longnames=True, dist_port=0,
                 extra_args=pki.tls_node_args(optfile(certs, "fixed"))) as node:
        yield node


@pytest.fixture(scope="module")
def tls_epmd(certs):
    with ErlNode("tlsepmd", longnames=False,
                 extra_args=pki.tls_node_args(optfile(certs, "epmd"))) as node:
        yield node


def context(certs, cert="client", ca="ca"):
    certfile, keyfile = certs[cert] if cert else (None, None)
    return erldist.tls_context(certfile, keyfile, certs[ca])


def connect(node, tls, **extra):
    args = dict(address=node.address, timeout=5, tls=tls)
    if node.fixed_port:
        args["dist_port"] = node.port
    else:
        args["epmd_port"] = node.epmd_port
    args.update(extra)
    return erldist.connect(node.node, node.cookie, **args)


def tls_cause(node, tls):
    with pytest.raises(erldist.DistError) as caught:
        connect(node, tls).close()
    assert caught.value.reason == "tls_failed", caught.value
    assert str(caught.value).startswith("TLS with ") and node.node in str(caught.value), caught.value
    return caught.value.cause


@pytest.mark.parametrize("which", ["tls_fixed", "tls_epmd"])
def test_rpc_over_tls(request, certs, which):
    node = request.getfixturevalue(which)
    with connect(node, context(certs)) as conn:
        assert conn.rpc("erlang", "node", [], 5) == erldist.Atom(node.node)
        assert conn.tls["version"] in ("TLSv1.2", "TLSv1.3")
        assert conn.tls["subject"] == "commonName=127.0.0.1"
        assert 28 <= conn.tls["days_left"] <= 30, conn.tls
    assert conn.via_epmd is (which == "tls_epmd")


def test_a_plain_client_is_refused(tls_fixed):
    with pytest.raises(erldist.DistError) as caught:
        connect(tls_fixed, None).close()
    assert caught.value.reason in ("protocol_error", "unreachable"), caught.value
    assert "TLS" in str(caught.value), caught.value


def test_tls_to_a_plain_node_says_so(certs, fixed_port_node):
    assert tls_cause(fixed_port_node, context(certs)) == "not_tls"


def test_client_certificate_of_another_ca_is_refused(certs, tls_fixed):
    assert tls_cause(tls_fixed, context(certs, cert="other_client")) == "unknown_ca"


def test_node_certificate_of_another_ca_is_refused(certs, tls_fixed):
    assert tls_cause(tls_fixed, context(certs, ca="other_ca")) == "unknown_ca"


def test_no_client_certificate_is_refused(certs, tls_fixed):
    assert tls_cause(tls_fixed, context(certs, cert=None)) == "no_client_certificate"


def test_expired_node_certificate(certs):
    with ErlNode("tlsexpired", longnames=True, dist_port=0,
                 extra_args=pki.tls_node_args(optfile(certs, "expired", cert="expired"))) as node:
        assert tls_cause(node, context(certs)) == "certificate_expired"


def test_node_certificate_for_another_name(certs):
    with ErlNode("tlsname", longnames=True, dist_port=0,
                 extra_args=pki.tls_node_args(optfile(certs, "name", cert="wrong_name"))) as node:
        assert tls_cause(node, context(certs)) == "name_mismatch"


def test_a_key_that_is_not_the_certificates(certs):
    with pytest.raises(erldist.DistError) as caught:
        erldist.tls_context(certs["client"][0], certs["node"][1], certs["ca"])
    assert (caught.value.reason, caught.value.cause) == ("tls_failed", "bad_files")


def test_the_module_takes_the_local_nodes_tls_settings(certs, tls_fixed, tmp_path):
    """A bare call on a managed node: ejabberdctl.cfg names the node, its port and its
    ssl_dist options file; the module speaks TLS with the files named there."""
    cfg = tmp_path / "ejabberdctl.cfg"
    cfg.write_text('ERLANG_NODE=%s\nERL_DIST_PORT=%d\nINET_DIST_INTERFACE=127.0.0.1\n'
                   'ERL_OPTIONS="-proto_dist inet_tls -ssl_dist_optfile %s"\n'
                   % (tls_fixed.node, tls_fixed.port, optfile(certs, "module", cert="client")))
    result = run_module("erlang_node_info", {"ejabberdctl_cfg": str(cfg), "cookie": tls_fixed.cookie},
                        secrets_to_hide=[tls_fixed.cookie])
    assert result["reachable"] is True and result["tls"] is True, result
    assert result["tls_certificate"]["days_left"] >= 28, result
    plain = run_module("erlang_node_info", {"ejabberdctl_cfg": str(cfg), "cookie": tls_fixed.cookie,
                                            "tls": False, "fail_on_error": False},
                       secrets_to_hide=[tls_fixed.cookie])
    assert plain["reachable"] is False, plain


def test_tls_options_are_checked_before_any_traffic(certs, tmp_path):
    cfg = tmp_path / "ejabberdctl.cfg"
    cfg.write_text('ERLANG_NODE=x@127.0.0.1\nERL_OPTIONS="-proto_dist inet_tls"\n')
    with pytest.raises(connection.ConnectionOptionError) as caught:
        connection.resolve({"ejabberdctl_cfg": str(cfg), "cookie": "C"})
    assert "tls_cafile" in str(caught.value)
    failed = run_module("erlang_node_info", {"node": "x@127.0.0.1", "cookie": "C", "tls": True,
                                             "tls_cafile": certs["ca"], "tls_certfile": certs["client"][0],
                                             "tls_keyfile": certs["node"][1]})
    assert failed["failed"] and failed["reason"] == "tls_failed" and failed["tls_cause"] == "bad_files", failed
