# Copyright: xmpp.ejabberd contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""TLS distribution end to end (issue 14), on VM-like hosts, ejabberd 23.01 (OTP 25) and
26.07 (OTP 29): two hosts, fixed-port mode, nftables, the package's node running.

In file order, on one lab per release:

1. With tcpdump on the lab's bridge: site with ``ejabberd_dist_tls: true`` from the
   package's state (the role makes a cluster CA on this machine and a certificate per node;
   the second node joins over TLS), verify, rotate_cookie with a new cookie. The capture
   holds TLS only: no node name, no term, no cookie in the clear.
2. A rerun changes nothing; ejabberdctl's own calls (list_cluster) work; the node's key and
   certificate are the service user's, mode 0400; verify reports the certificates' days.
3. A plain-TCP client and a TLS client with a certificate of another CA are refused; a
   client with the node's certificate gets in.
4. verify fails when a certificate expires within ejabberd_dist_tls_min_days.
5. Renewal (ejabberd_dist_tls_renew_days above the certificates' days): new certificates,
   the cluster whole; then rolling_restart over TLS.
6. Bad input with the operator's own files (a file missing, a key of another certificate, a
   certificate another CA signed, one for another name): rejected before any change,
   naming the variable.
7. Switching back to plain TCP distribution, and to TLS again: the cluster whole each time.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time

import pytest

from ansible_collections.xmpp.ejabberd.plugins.module_utils import erldist
from ansible_collections.xmpp.ejabberd.tests.helpers import pki
from ansible_collections.xmpp.ejabberd.tests.helpers.lab import DOCKER, LabCluster
from ansible_collections.xmpp.ejabberd.tests.helpers.playbook import (
    PlaybookRunner, lab_session, start_lab)

pytestmark = pytest.mark.lab

HOSTS = (1, 2)
DIST_PORT = 5210
TLS_DIR = "/etc/ejabberd/dist-tls"
CASES = {"bookworm": {"prefix": "xtls23"}, "forky": {"prefix": "xtls26"}}


def sh(lab, ref, script):
    return lab.exec(ref, ["sh", "-c", script], check=False)


class Capture:
    """tcpdump on the lab network's bridge (this machine's side), stopped by its PID."""

    def __init__(self, lab: LabCluster, path: str) -> None:
        net = subprocess.run([DOCKER, "network", "inspect", "-f", "{{.Id}}", lab.network],
                             capture_output=True, text=True, check=True).stdout.strip()
        self.path = path
        self.proc = subprocess.Popen(  # pylint: disable=consider-using-with
            ["tcpdump", "-i", "br-" + net[:12], "-U", "-s", "0", "-w", path, "tcp"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
        time.sleep(1)

    def stop(self) -> bytes:
        self.proc.send_signal(signal.SIGINT)
        self.proc.wait(timeout=30)
        with open(self.path, "rb") as handle:
            return handle.read()


@pytest.fixture(scope="module", params=sorted(CASES))
def env(request):
    suite = request.param

    def start() -> LabCluster:
        return start_lab(LabCluster(suite=suite, size=len(HOSTS), prefix=CASES[suite]["prefix"],
                                    dist_port=DIST_PORT, start=False, vm=True), lambda lab: None)

    with lab_session(request, "%s TLS lab" % suite, start) as session:
        lab, work = session["lab"], session["workdir"]
        runner = PlaybookRunner(work)
        ips = {ref: lab.node(ref)["ip"] for ref in HOSTS}
        group = {"ejabberd_dist_port": DIST_PORT, "ejabberd_dist_tls": True,
                 "ejabberd_dist_tls_ca_dir": os.path.join(work, "ca"),
                 # the tests talk to the nodes from this machine (the gateway)
                 "ejabberd_firewall_peers": [ips[ref] for ref in HOSTS] + [lab.gateway]}

        def inventory(name, extra_group=None, extra_hosts=None):
            hosts = {"n%d" % ref: (ref, {"ejabberd_node_name": "ejabberd@" + ips[ref],
                                         "ejabberd_inet_dist_interface": ips[ref],
                                         **(extra_hosts or {}).get(ref, {})}) for ref in HOSTS}
            return runner.ssh_inventory(lab, hosts, {**group, **(extra_group or {})}, name=name)

        cookies = [runner.cookie(), runner.cookie()]
        env_ = {"lab": lab, "suite": suite, "runner": runner, "work": work, "ips": ips,
                "inventory": inventory, "tls": inventory("inventory"), "cookies": cookies,
                "names": {ref: lab.node(ref)["name"] for ref in HOSTS},
                "timings": session["timings"], "plays": {}}
        capture = Capture(lab, os.path.join(work, "dist.pcap"))
        try:
            for step, playbook, cookie in (("site", "site", 0), ("verify", "verify", 0),
                                           ("rotate", "rotate_cookie", 1)):
                env_["plays"][step] = runner.play("xmpp.ejabberd." + playbook, env_["tls"],
                                                  {"ejabberd_cookie": cookies[cookie]})
                session["timings"][step] = env_["plays"][step].wall
        finally:
            env_["capture"] = capture.stop()
        yield env_


def play(env, name, playbook, inventory="tls", variables=None, *args):
    result = env["runner"].play("xmpp.ejabberd." + playbook, env[inventory] if inventory in env else inventory,
                                {"ejabberd_cookie": env["cookies"][1], **(variables or {})}, *args)
    env["timings"][name] = result.wall
    assert not result.shows_a_secret(), "a cookie appears in the output of %s" % name
    return result


def running(env, ref, tls=True):
    """The running members node REF reports, asked over TLS with the node's own certificate."""
    node = env["lab"].node(ref)
    with erldist.connect(node["name"], env["cookies"][1], address=node["ip"], dist_port=DIST_PORT,
                         timeout=10, tls=client_tls(env) if tls else None) as conn:
        return sorted(str(n) for n in conn.rpc("ejabberd_cluster", "get_nodes", [], 10))


def client_tls(env, ref=1):
    """A TLS context with node REF's own certificate and key (copied here, owner only)."""
    paths = {}
    for name in ("ca.pem", "node.pem", "node.key"):
        paths[name] = os.path.join(env["work"], "n%d-%s" % (ref, name))
        if not os.path.exists(paths[name]):
            text = env["lab"].exec(ref, ["cat", "%s/%s" % (TLS_DIR, name)]).stdout
            pki._write(paths[name], text.encode())  # pylint: disable=protected-access
    return erldist.tls_context(paths["node.pem"], paths["node.key"], paths["ca.pem"])


def whole(env, tls=True):
    names = sorted(env["names"].values())
    deadline = time.monotonic() + 90
    while True:
        try:
            if all(running(env, ref, tls) == names for ref in HOSTS):
                return True
        except erldist.DistError:
            pass
        if time.monotonic() > deadline:
            return False
        time.sleep(2)


# ---------------------------------------------------------------------------------
# 1. site, verify and rotate_cookie over TLS, captured


@pytest.mark.parametrize("step", ["site", "verify", "rotate"])
def test_playbooks_pass_over_tls(env, step):
    result = env["plays"][step]
    assert result.rc == 0, result
    assert not result.shows_a_secret()


def test_the_join_happened_over_tls(env):
    assert re.search(r"TASK \[xmpp\.ejabberd\.ejabberd_cluster : Join the seed's cluster\][^\n]*\n(?:[^\n]*\n)*?changed: \[n2\]",
                     env["plays"]["site"].out), env["plays"]["site"]
    assert whole(env)


def test_nothing_in_the_clear(env):
    data = env["capture"]
    assert len(data) > 10000, "the capture holds %d bytes" % len(data)
    # TLS records (application data, 0x17 0x03 0x03) on the distribution port
    assert data.count(b"\x17\x03\x03") > 20
    for name in env["names"].values():
        assert name.encode() not in data, name
    for clear in (erldist.NAME_PREFIX.encode(), b"ejabberd_cluster", b"get_nodes", b"$gen_call"):
        assert clear not in data, clear
    for cookie in env["cookies"]:
        assert cookie.encode() not in data


# ---------------------------------------------------------------------------------
# 2. rerun, ejabberdctl, files


def test_rerun_changes_nothing(env):
    result = play(env, "rerun", "site")
    assert result.rc == 0, result
    assert {h: v["changed"] for h, v in result.recap.items()} == {"n1": 0, "n2": 0}, result


def test_ejabberdctl_speaks_tls_too(env):
    listed = env["lab"].ejabberdctl(1, "list_cluster").stdout
    assert sorted(re.findall(r"ejabberd@[0-9.]+", listed)) == sorted(env["names"].values()), listed
    cfg = sh(env["lab"], 1, "grep ^ERL_OPTIONS /etc/default/ejabberd").stdout
    assert "-proto_dist inet_tls -ssl_dist_optfile %s/ssl_dist.conf" % TLS_DIR in cfg, cfg


def test_key_and_certificate_belong_to_the_service_user(env):
    for ref in HOSTS:
        listing = sh(env["lab"], ref, "stat -c '%%U %%a %%n' %s/*" % TLS_DIR).stdout.split("\n")
        assert {line.split()[0] for line in listing if line} == {"ejabberd"}, listing
        assert {line.split()[1] for line in listing if line} == {"400"}, listing


def test_verify_reports_the_certificates_days(env):
    out = env["plays"]["verify"].out
    for name in env["names"].values():
        assert re.search(r"%s\s+\S+\s+\S+\s+2\s+0\s+OK\s+7[23]\d" % re.escape(name), out), out


# ---------------------------------------------------------------------------------
# 3. who gets in


def test_plain_and_foreign_clients_are_refused(env, tmp_path):
    node = env["lab"].node(1)
    with pytest.raises(erldist.DistError):
        erldist.connect(node["name"], env["cookies"][1], address=node["ip"], dist_port=DIST_PORT,
                        timeout=5).close()
    other = pki.CA(str(tmp_path), "other")
    cert, key = other.issue("intruder", [env["lab"].gateway])
    foreign = erldist.tls_context(cert, key, os.path.join(env["work"], "ca", "ca.pem"))
    with pytest.raises(erldist.DistError) as caught:
        erldist.connect(node["name"], env["cookies"][1], address=node["ip"], dist_port=DIST_PORT,
                        timeout=5, tls=foreign).close()
    assert caught.value.reason == "tls_failed" and caught.value.cause == "unknown_ca", caught.value
    assert running(env, 1) == sorted(env["names"].values())


# ---------------------------------------------------------------------------------
# 4. and 5. lifecycle


def test_verify_fails_when_a_certificate_expires_soon(env):
    result = play(env, "verify_min_days", "verify", variables={"ejabberd_dist_tls_min_days": 5000})
    assert result.rc != 0, result
    messages = " ".join(result.fatal_messages())
    assert "ejabberd_dist_tls_min_days" in messages and "expires in" in messages, result


def test_renewal_keeps_the_cluster_whole(env):
    digest = "sha256sum %s/node.pem" % TLS_DIR
    before = {ref: sh(env["lab"], ref, digest).stdout for ref in HOSTS}
    result = play(env, "renew", "site", variables={"ejabberd_dist_tls_renew_days": 100000})
    assert result.rc == 0, result
    after = {ref: sh(env["lab"], ref, digest).stdout for ref in HOSTS}
    assert all(after[ref] != before[ref] for ref in HOSTS), (before, after)
    for name in ("ca.pem", "node.pem", "node.key"):  # the local copies are stale now
        for path in [os.path.join(env["work"], "n1-" + name)]:
            if os.path.exists(path):
                os.unlink(path)
    assert whole(env)


def test_rolling_restart_over_tls(env):
    result = play(env, "rolling_restart", "rolling_restart")
    assert result.rc == 0, result
    assert whole(env)


# ---------------------------------------------------------------------------------
# 6. bad input (the operator's own files)


def test_bad_files_are_rejected_before_any_change(env, tmp_path):
    lab, ips = env["lab"], env["ips"]
    ca, other = pki.CA(str(tmp_path), "own"), pki.CA(str(tmp_path), "stranger")
    good = {ref: ca.issue("n%d" % ref, [ips[ref]]) for ref in HOSTS}
    foreign = other.issue("foreign", [ips[1]])
    misnamed = ca.issue("misnamed", ["xmpp9.example.org"])

    def files(ref, cert, key, ca_path=ca.path):
        return {"ejabberd_dist_tls_ca_cert_file": ca_path, "ejabberd_dist_tls_cert_file": cert,
                "ejabberd_dist_tls_key_file": key}

    cases = {
        "missing": (files(1, str(tmp_path / "none.pem"), good[1][1]), "ejabberd_dist_tls_cert_file"),
        "key_of_another": (files(1, good[1][0], good[2][1]),
                           "ejabberd_dist_tls_key_file: the key does not belong"),
        "other_ca": (files(1, foreign[0], foreign[1]), "ejabberd_dist_tls_ca_cert_file: the CA did not sign"),
        "other_name": (files(1, misnamed[0], misnamed[1]),
                       "ejabberd_dist_tls_cert_file: the certificate does not name %s" % ips[1]),
    }
    state = "sha256sum /etc/default/ejabberd %s/*; pgrep -x beam.smp" % TLS_DIR
    before = {ref: sh(lab, ref, state).stdout for ref in HOSTS}
    for case, (hostvars, says) in cases.items():
        inventory = env["inventory"]("inventory-" + case, extra_hosts={
            1: hostvars, 2: files(2, good[2][0], good[2][1])})
        result = play(env, "bad_" + case, "site", inventory)
        assert result.rc != 0, (case, result)
        assert all(v["changed"] == 0 for v in result.recap.values()), (case, result)
        messages = " ".join(result.fatal_messages())
        assert says in messages and "Nothing was changed" in messages, (case, messages)
        assert "ejabberd : Put the TLS distribution files in place" not in result.out, case
    assert {ref: sh(lab, ref, state).stdout for ref in HOSTS} == before


# ---------------------------------------------------------------------------------
# 7. switching


def test_switch_to_plain_and_back(env):
    plain = play(env, "switch_to_plain", "site", variables={"ejabberd_dist_tls": "false"})  # a survey's string
    assert plain.rc == 0, plain
    assert "switches to plain TCP distribution" in plain.out, plain
    assert whole(env, tls=False)
    again = play(env, "switch_to_tls", "site")
    assert again.rc == 0, again
    assert whole(env)
    checked = play(env, "verify_after_switch", "verify")
    assert checked.rc == 0, checked
