# Copyright: xmpp.ejabberd contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The playbooks as AWX job templates run them: ansible-runner on ansible-core 2.16 (what
AWX execution environments commonly carry), on VM-like hosts.

Each job gets a private data dir as AWX lays it out (tests/helpers/awx.py): inventory/,
env/extravars (the job template's and the survey's variables, booleans as the strings
"true"/"false" since surveys have no boolean type), env/ssh_key and ``-u admin --become``
(the machine credential), the cookie injected by the collection's credential type
(extensions/awx/credential_type_erlang_cookie.yml), no terminal, no prompt. The collection
is the built tarball installed into a clean directory. The inventory is minimal: the hosts
(their inventory names are the containers' names, which the lab network resolves) with
``ansible_host`` only; every other variable is the roles' default.

Jobs, in order: site (fixed-port mode), site again (changed=0), verify; site switched to
epmd mode by survey strings, site again (changed=0); rotate_cookie with a new credential;
verify with it; rolling_restart. Checked: each job's result, the cluster-level summaries
the playbooks publish with set_stats (read from the job events, where AWX takes a job's
artifacts from), and that no cookie appears anywhere in the artifacts.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import time

import pytest

from ansible_collections.xmpp.ejabberd.tests.helpers import awx
from ansible_collections.xmpp.ejabberd.tests.helpers.collection import (
    ansible_core_bin, installed_collection)
from ansible_collections.xmpp.ejabberd.tests.helpers.lab import LabCluster
from ansible_collections.xmpp.ejabberd.tests.helpers.playbook import lab_session, new_cookie, start_lab

pytestmark = pytest.mark.lab

RELEASE = "2.16"
HOSTS = (1, 2)
WINDOW = "4370-4379"
# (ident, playbook, survey and job template variables, which credential)
JOBS = [
    ("site", "xmpp.ejabberd.site", {"ejabberd_cluster_force": "false"}, "first"),
    ("site-again", "xmpp.ejabberd.site", {}, "first"),
    ("verify", "xmpp.ejabberd.verify", {}, "first"),
    ("site-epmd", "xmpp.ejabberd.site", {"ejabberd_epmd": "true", "ejabberd_firewall_window": WINDOW}, "first"),
    ("site-epmd-again", "xmpp.ejabberd.site", {"ejabberd_epmd": "true", "ejabberd_firewall_window": WINDOW}, "first"),
    ("rotate", "xmpp.ejabberd.rotate_cookie", {"ejabberd_epmd": "true", "ejabberd_firewall_window": WINDOW}, "second"),
    ("verify-rotated", "xmpp.ejabberd.verify", {"ejabberd_epmd": "true"}, "second"),
    ("rolling", "xmpp.ejabberd.rolling_restart", {"ejabberd_epmd": "true"}, "second"),
]


@pytest.fixture(scope="module")
def env(request, tmp_path_factory):
    bindir = ansible_core_bin(RELEASE)
    collections = installed_collection(bindir, str(tmp_path_factory.mktemp("awx-collections")))

    def start() -> LabCluster:
        return start_lab(LabCluster(suite="bookworm", size=len(HOSTS), prefix="xawx",
                                    start=False, vm=True), lambda lab: None)

    with lab_session(request, "AWX jobs (ansible-core %s) lab" % RELEASE, start) as session:
        lab = session["lab"]
        names = {ref: lab.node(ref)["container"] for ref in HOSTS}
        inventory = {"all": {"children": {"ejabberd": {"hosts": {
            names[ref]: {"ansible_host": lab.node(ref)["ip"]} for ref in HOSTS}}}}}
        cookies = {"first": new_cookie(), "second": new_cookie()}
        credential_type = awx.load_credential_type()
        jobs = {}
        for ident, playbook, extra_vars, credential in JOBS:
            path = os.path.join(session["workdir"], ident)
            injected = awx.render_injectors(credential_type, {"cookie": cookies[credential]}, path)
            awx.build_private_data_dir(
                path, inventory=inventory, extra_vars=extra_vars, injected=injected,
                ssh_key=lab.ssh_key, collections_path=collections, playbook=playbook,
                job_args=("-u", "admin", "--become"),
                envvars={"ANSIBLE_HOST_KEY_CHECKING": "False", "ANSIBLE_PIPELINING": "True",
                         "ANSIBLE_PYTHON_INTERPRETER": "/usr/bin/python3"})
            short = playbook.rsplit(".", 1)[-1] + ".yml"
            began = time.monotonic()
            proc = awx.run_job(path, short, ident, timeout=1200, bindir=bindir)
            session["timings"][ident] = time.monotonic() - began
            jobs[ident] = {"path": path, "proc": proc}
            if proc.returncode != 0:
                break
        yield {"lab": lab, "jobs": jobs, "cookies": cookies, "bindir": bindir,
               "names": {ref: "ejabberd@" + names[ref] for ref in HOSTS},
               "hosts": sorted(names.values()), "workdir": session["workdir"]}


def job(env, ident: str) -> dict:
    found = env["jobs"].get(ident)
    assert found is not None, "an earlier job failed: %s" % {
        k: (v["proc"].returncode, v["proc"].stdout[-3000:]) for k, v in env["jobs"].items()}
    return found


def succeeded(env, ident: str) -> dict:
    found = job(env, ident)
    assert found["proc"].returncode == 0, found["proc"].stdout[-6000:] + found["proc"].stderr[-2000:]
    return found


def stats(env, ident: str) -> dict:
    return awx.stats_artifact_data(job(env, ident)["path"], ident)


@pytest.mark.parametrize("ident", [job_[0] for job_ in JOBS])
def test_job_succeeds(env, ident):
    succeeded(env, ident)


@pytest.mark.parametrize("ident", ["site-again", "site-epmd-again"])
def test_rerun_changes_nothing(env, ident):
    found = succeeded(env, ident)
    recap = awx.job_recap(found["path"], ident)
    assert {host: counts["changed"] for host, counts in recap.items()} == \
        {host: 0 for host in env["hosts"]}, recap


@pytest.mark.parametrize("ident", ["site", "verify", "site-epmd", "verify-rotated"])
def test_verify_publishes_the_cluster(env, ident):
    succeeded(env, ident)
    summary = stats(env, ident)["ejabberd_verify"]
    names = sorted(env["names"].values())
    assert summary["ok"] is True and summary["split"] is False, summary
    assert sorted(summary["expected_nodes"]) == names, summary
    assert sorted(summary["nodes"]) == names, summary
    for view in summary["nodes"].values():
        assert view["ok"] is True and sorted(view["running_nodes"]) == names, summary


def test_the_survey_strings_switched_to_epmd_mode(env):
    succeeded(env, "site-epmd")
    for ref in HOSTS:
        listening = env["lab"].exec(ref, ["ss", "-Htln"], check=False).stdout
        assert ":4369 " in listening and ":5210 " not in listening, listening
        cfg = env["lab"].exec(ref, ["grep", "-E", "^(ERL_DIST_PORT|FIREWALL_WINDOW)=", "/etc/default/ejabberd"]).stdout
        assert cfg.split() == ["ERL_DIST_PORT=", "FIREWALL_WINDOW=" + WINDOW], cfg


def test_rotation_publishes_and_the_nodes_take_the_new_cookie(env):
    succeeded(env, "rotate")
    summary = stats(env, "rotate")["ejabberd_rotate_cookie"]
    names = sorted(env["names"].values())
    assert summary["ok"] is True and sorted(summary["nodes"]) == names, summary
    assert sorted(summary["switched_at_runtime"]) == names, summary
    want = hashlib.sha256(env["cookies"]["second"].encode()).hexdigest()
    for ref in HOSTS:
        digest = env["lab"].exec(ref, ["sha256sum", "/var/lib/ejabberd/.erlang.cookie"]).stdout.split()[0]
        assert digest == want, ref
    # ... and the nodes run with it: verify (which reads the cookie files) passes.
    succeeded(env, "verify-rotated")


def test_rolling_restart_publishes_every_node_once(env):
    succeeded(env, "rolling")
    restarted = stats(env, "rolling")["ejabberd_rolling_restart"]["restarted"]
    assert sorted(restarted) == sorted(env["names"].values()), restarted


def test_no_cookie_in_any_artifact(env):
    """AWX keeps the artifacts (stdout, events, command) with the job; the cookies must
    not be there. The credential's own file under env/ holds the cookie by design."""
    for found in env["jobs"].values():
        artifacts = os.path.join(found["path"], "artifacts")
        assert os.path.isdir(artifacts), found["path"]
        for directory, _dirs, files in os.walk(artifacts):
            for name in files:
                with open(os.path.join(directory, name), "rb") as handle:
                    data = handle.read()
                for cookie in env["cookies"].values():
                    assert cookie.encode() not in data, os.path.join(directory, name)
        assert all(cookie not in found["proc"].stdout + found["proc"].stderr
                   for cookie in env["cookies"].values())


def test_runner_is_the_release_under_test(env):
    version = os.popen(os.path.join(env["bindir"], "ansible-playbook") + " --version").read()
    assert "[core %s." % RELEASE in version, version
    assert shutil.which("ansible-runner", path=env["bindir"]), env["bindir"]
