# Copyright: xmpp.ejabberd contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Role xmpp.ejabberd.erlang_cookie against lab containers.

The hosts are VM-like (systemd as PID 1, reached over SSH as ``admin`` with sudo). n1 and
n2 run ejabberd as one cluster under systemd (tests/helpers/lab.py, cookie in their files);
w1 and w2 have ejabberd installed but never started (the service disabled, no cookie file).
The role runs through ``ansible-playbook``, as the ejabberd role runs it (``include_role``). Cookies travel in private vars files only
(never in an argv); files are compared by SHA-256 digest and no cookie is ever printed:
assertions are made on booleans so that pytest cannot show one either.
"""

from __future__ import annotations

import concurrent.futures
import os
import subprocess
import time

import pytest

from ansible_collections.xmpp.ejabberd.plugins.module_utils import erldist
from ansible_collections.xmpp.ejabberd.plugins.module_utils.etf import Atom
from ansible_collections.xmpp.ejabberd.tests.helpers.common import node_accepts
from ansible_collections.xmpp.ejabberd.tests.helpers.playbook import (
    Play, PlaybookRunner, lab_session, sha256, start_lab)
from ansible_collections.xmpp.ejabberd.tests.helpers.lab import LabCluster

pytestmark = pytest.mark.lab

SUITE = os.environ.get("XMPP_EJABBERD_TEST_SUITE", "bookworm")
PREFIX = "xrck"
DIST_PORT = 5210
COOKIE_FILE = "/var/lib/ejabberd/.erlang.cookie"   # HOME of user ejabberd in Debian's package


# ---------------------------------------------------------------------------------
# Running the role


class Runner(PlaybookRunner):
    """The role through ansible-playbook against the lab's containers."""

    def __init__(self, lab: LabCluster, workdir: str) -> None:
        super().__init__(workdir)
        self.playbook = self.role_playbook("erlang_cookie")
        self.inventory = self.ssh_inventory(
            lab, {ref: (lab_ref(ref), {}) for ref in ("n1", "n2", "w1", "w2")}, group="all")

    def run(self, limit: str, variables: dict, *args: str) -> Play:
        return self.play(self.playbook, self.inventory, variables, "--limit", limit, *args)


# ---------------------------------------------------------------------------------
# Lab


def lab_ref(ref: str) -> int | str:
    """The harness's reference of inventory host n1, n2 (nodes) or w1, w2 (extra)."""
    return int(ref[1]) if ref[0] == "n" else ref


def lab_node(lab: LabCluster, ref: str) -> dict:
    """The lab's node n1, n2 or extra container w1, w2 (by inventory name)."""
    return lab.node(lab_ref(ref))


def _prepare(lab: LabCluster) -> None:
    lab.join_cluster(2, 1)
    for ref in ("w1", "w2"):
        lab.add_container(ref)
        # Installed, never started: no node, no cookie file.
        lab.exec(ref, ["sh", "-c", "systemctl disable --now ejabberd && rm -f %s" % COOKIE_FILE])


def _start_lab() -> LabCluster:
    return start_lab(LabCluster(suite=SUITE, size=2, prefix=PREFIX, dist_port=DIST_PORT,
                                vm=True), _prepare)


@pytest.fixture(scope="module")
def env(request):
    with lab_session(request, "erlang_cookie lab", _start_lab) as session:
        lab = session["lab"]
        runner = Runner(lab, session["workdir"])
        runner.secrets.append(lab.cookie)
        yield {"lab": lab, "runner": runner, "run": runner.run, "timings": session["timings"],
               "cluster_cookie": lab.cookie, "w_cookie": None}


def sh(lab, ref, script: str, check: bool = False) -> subprocess.CompletedProcess[str]:
    return lab.exec(lab_ref(ref), ["sh", "-c", script], check=check)


def cookie_file(lab, ref) -> dict | None:
    """Owner, group, mode and SHA-256 of the cookie file (None when missing)."""
    proc = sh(lab, ref, "stat -c '%%U %%G %%a' %s && sha256sum %s" % (COOKIE_FILE, COOKIE_FILE))
    if proc.returncode != 0:
        return None
    lines = proc.stdout.split("\n")
    owner, group, mode = lines[0].split()
    return {"owner": owner, "group": group, "mode": mode, "sha256": lines[1].split()[0]}


def assert_cluster(lab, timeout: float = 60) -> None:
    """Both nodes list both as running members (ejabberdctl reads the cookie file)."""
    lab.wait_members((1, 2), [lab.node(i)["name"] for i in (1, 2)], timeout)


def assert_files(lab, refs, cookie: str) -> None:
    want = {"owner": "ejabberd", "group": "ejabberd", "mode": "400", "sha256": sha256(cookie)}
    for ref in refs:
        assert cookie_file(lab, ref) == want, ref


# ---------------------------------------------------------------------------------
# Fresh hosts: write, idempotence, secrecy, check mode, adoption


def test_writes_the_cookie_file(env):
    lab, runner = env["lab"], env["runner"]
    cookie = runner.cookie()
    assert cookie_file(lab, "w1") is None
    play = runner.run("w1", {"erlang_cookie_value": cookie})
    env["timings"]["first_write"] = play.wall
    assert play.rc == 0, play
    assert play.changed("w1") == 1, play
    assert_files(lab, ["w1"], cookie)
    env["w_cookie"] = cookie


def test_second_run_changes_nothing(env):
    play = env["run"]("w1", {"erlang_cookie_value": env["w_cookie"]})
    env["timings"]["second_run"] = play.wall
    assert play.rc == 0 and play.changed("w1") == 0, play


def test_check_mode_changes_nothing(env):
    lab, runner = env["lab"], env["runner"]
    play = runner.run("w1", {"erlang_cookie_value": runner.cookie()}, "--check", "--diff")
    assert play.rc == 0 and play.changed("w1") == 1, play
    assert_files(lab, ["w1"], env["w_cookie"])


def test_cookie_file_changed_by_hand_is_put_back(env):
    """The role's one stat of the file (digest, owner, group, mode) still sees a file that an
    operator opened to the group or gave to root: the same cookie is written back, owner-only."""
    lab, run = env["lab"], env["run"]
    for change in ("chmod 0640 %s", "chown root:root %s"):
        sh(lab, "w1", change % COOKIE_FILE, check=True)
        play = run("w1", {"erlang_cookie_value": env["w_cookie"]})
        assert play.rc == 0 and play.changed("w1") == 1, (change, play)
        assert_files(lab, ["w1"], env["w_cookie"])


def test_cookie_never_in_verbose_diff_output(env):
    lab, runner = env["lab"], env["runner"]
    old, cookie = env["w_cookie"], runner.cookie()
    play = runner.run("w1", {"erlang_cookie_value": cookie}, "-vvv", "--diff")
    assert play.rc == 0 and play.changed("w1") == 1, play
    leaked = play.shows(cookie) or play.shows(old)
    assert not leaked, "a cookie appears in the -vvv --diff output"
    assert_files(lab, ["w1"], cookie)
    env["w_cookie"] = cookie


def test_adopts_the_cookie_of_a_host_that_has_one(env):
    lab, run = env["lab"], env["run"]
    assert cookie_file(lab, "w2") is None
    play = run("w1,w2", {}, "-vvv")                 # no erlang_cookie_value
    assert play.rc == 0, play
    assert play.changed("w1") == 0 and play.changed("w2") == 1, play
    assert not play.shows(env["w_cookie"]), "the adopted cookie appears in the output"
    assert_files(lab, ["w1", "w2"], env["w_cookie"])
    play = run("w1,w2", {})
    assert play.rc == 0 and play.changed("w2") == 0, play


# ---------------------------------------------------------------------------------
# Bad input: rejected with the variable named, nothing changed


BAD_INPUT = {
    "empty_and_nothing_to_adopt": ({"erlang_cookie_value": ""}, "erlang_cookie_value"),
    "empty_where_required": ({"erlang_cookie_value": "", "erlang_cookie_require_value": True},
                             "erlang_cookie_value"),
    "too_long": ({"erlang_cookie_value": "A" * 256}, "erlang_cookie_value"),
    "tab": ({"erlang_cookie_value": "ABCDEF\tGHIJKL"}, "erlang_cookie_value"),
    "newline": ({"erlang_cookie_value": "ABCDEF\nGHIJKL"}, "erlang_cookie_value"),
    "only_spaces": ({"erlang_cookie_value": "    "}, "erlang_cookie_value"),
    "not_ascii": ({"erlang_cookie_value": "ABCDEF\u00e9GHIJKL"}, "erlang_cookie_value"),
    "user_without_home": ({"erlang_cookie_value": "GOODCOOKIEVALUE1", "erlang_cookie_user": "nohome"},
                          "erlang_cookie_user"),
    "user_home_missing": ({"erlang_cookie_value": "GOODCOOKIEVALUE2", "erlang_cookie_user": "gonehome"},
                          "erlang_cookie_user"),
    "missing_user": ({"erlang_cookie_value": "GOODCOOKIEVALUE3", "erlang_cookie_user": "nosuchuser"},
                     "erlang_cookie_user"),
    "rotation_method": ({"erlang_cookie_value": "GOODCOOKIEVALUE4",
                         "erlang_cookie_rotation_method": "reboot"}, "erlang_cookie_rotation_method"),
}


def _host_state(lab, ref) -> str:
    return sh(lab, ref, "ls -la --time-style=full-iso /var/lib/ejabberd; "
                        "sha256sum /var/lib/ejabberd/.erlang.cookie 2>&1").stdout


@pytest.fixture(scope="module")
def bad_runs(env):
    """Every bad-input case on w2 (its cookie file removed first), run at once."""
    lab, run = env["lab"], env["run"]
    sh(lab, "w2", "rm -f %s; echo 'nohome:x:4243:4243:no home::/usr/sbin/nologin' >> /etc/passwd; "
                  "useradd -M -d /nonexistent gonehome" % COOKIE_FILE, check=True)
    assert sh(lab, "w2", "getent passwd nohome | cut -d: -f6").stdout.strip() == ""
    before = _host_state(lab, "w2")
    start = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        futures = {case: pool.submit(run, "w2", variables)
                   for case, (variables, dummy) in BAD_INPUT.items()}
        results = {case: f.result() for case, f in futures.items()}
    env["timings"]["bad_input_%d_runs" % len(BAD_INPUT)] = time.monotonic() - start
    return {"results": results, "before": before, "after": _host_state(lab, "w2")}


@pytest.mark.parametrize("case", sorted(BAD_INPUT))
def test_bad_input_fails_before_any_change(bad_runs, case):
    play = bad_runs["results"][case]
    variables, variable = BAD_INPUT[case]
    assert play.rc != 0, play
    assert play.failed("w2") == 1 and play.changed("w2") == 0, play
    assert variable in play.out, play
    value = variables.get("erlang_cookie_value")
    if value and value.strip():
        leaked = play.shows(value)
        assert not leaked, "the rejected cookie appears in the output"
    assert bad_runs["after"] == bad_runs["before"]


def test_empty_cookie_message_says_what_to_set(bad_runs):
    play = bad_runs["results"]["empty_and_nothing_to_adopt"]
    assert "set erlang_cookie_value" in play.out, play


# ---------------------------------------------------------------------------------
# Rotation on the running cluster n1+n2


def test_runtime_rotation_keeps_the_cluster(env):
    lab, runner = env["lab"], env["runner"]
    old = env["cluster_cookie"]
    assert_cluster(lab)
    cookie = runner.cookie()
    play = runner.run("n1,n2", {"erlang_cookie_value": cookie})
    env["timings"]["runtime_rotation"] = play.wall
    assert play.rc == 0, play
    assert play.changed("n1") == 2 and play.changed("n2") == 2, play   # switch + file
    assert_files(lab, ["n1", "n2"], cookie)
    for ref in ("n1", "n2"):
        switched = (node_accepts(lab_node(lab, ref), cookie, DIST_PORT)
                    and not node_accepts(lab_node(lab, ref), old, DIST_PORT))
        assert switched, ref
    assert_cluster(lab, timeout=5)       # no restart happened: still one cluster

    # New connections between the nodes (a reconnect) would use the new cookie: each
    # node's own cookie and its cookie for the other node are the new one. (Dropping the
    # connection to prove it would make Mnesia see a partition, which it does not heal.)
    for me, other in ((1, 2), (2, 1)):
        node = lab.node(me)
        with erldist.connect(node["name"], cookie, address=node["ip"], dist_port=DIST_PORT,
                             timeout=5) as conn:
            own = conn.rpc("erlang", "get_cookie", [], 5)
            for_peer = conn.rpc("erlang", "get_cookie", [Atom(lab.node(other)["name"])], 5)
            peers = conn.rpc("erlang", "nodes", [], 5)
        consistent = own == cookie and for_peer == cookie
        assert consistent, "n%d does not use the new cookie for itself and n%d" % (me, other)
        assert [str(p) for p in peers] == [lab.node(other)["name"]]

    play = runner.run("n1,n2", {"erlang_cookie_value": cookie})
    assert play.rc == 0 and play.changed("n1") == 0 and play.changed("n2") == 0, play
    env["cluster_cookie"] = cookie


def test_check_mode_on_the_cluster_changes_nothing(env):
    lab, runner = env["lab"], env["runner"]
    current = env["cluster_cookie"]
    play = runner.run("n1,n2", {"erlang_cookie_value": runner.cookie()}, "--check")
    assert play.rc == 0 and play.changed("n1") == 2, play
    assert_files(lab, ["n1", "n2"], current)
    for ref in ("n1", "n2"):
        assert node_accepts(lab_node(lab, ref), current, DIST_PORT), ref


def test_interrupted_rotation_is_finished_by_a_rerun(env):
    """n1 already runs with the new cookie (a former run stopped after the switch)."""
    lab, runner = env["lab"], env["runner"]
    old, cookie = env["cluster_cookie"], runner.cookie()
    n1 = lab.node(1)
    with erldist.connect(n1["name"], old, address=n1["ip"], dist_port=DIST_PORT, timeout=5) as conn:
        conn.rpc("erlang", "set_cookie", [Atom(lab.node(2)["name"]), Atom(cookie)], 5)
        conn.rpc("erlang", "set_cookie", [Atom(cookie)], 5)
    play = runner.run("n1,n2", {"erlang_cookie_value": cookie})
    assert play.rc == 0, play
    assert play.changed("n1") == 1 and play.changed("n2") == 2, play   # n1: file only
    assert_files(lab, ["n1", "n2"], cookie)
    assert_cluster(lab, timeout=5)
    env["cluster_cookie"] = cookie


def test_restart_rotation(env):
    lab, runner = env["lab"], env["runner"]
    cookie = runner.cookie()
    play = runner.run("n1,n2", {"erlang_cookie_value": cookie,
                                "erlang_cookie_rotation_method": "restart"})
    env["timings"]["restart_rotation"] = play.wall
    assert play.rc == 0, play
    assert play.changed("n1") >= 3 and play.changed("n2") >= 3, play   # stop, file, start
    assert_files(lab, ["n1", "n2"], cookie)
    for ref in ("n1", "n2"):
        assert node_accepts(lab_node(lab, ref), cookie, DIST_PORT), ref
    assert_cluster(lab)
    env["cluster_cookie"] = cookie
