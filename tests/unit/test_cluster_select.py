# Copyright: xmpp.ejabberd contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Role ejabberd_cluster's entry point ``select`` (the hosts an operator's variable names, for
remove_nodes and recover_partition), run by ansible-playbook on this machine (no node
involved): a list or a comma-separated string, checked before anything changes, with a
message that names the variable. The lab tests (test_cluster_shrink_and_partition.py,
test_cluster_changes.py) run it through the playbooks on real nodes.
"""

from __future__ import annotations

import json
import os
import sys

import pytest

from ansible_collections.xmpp.ejabberd.tests.helpers.playbook import PlaybookRunner

PLAYBOOK = """\
---
- name: Select hosts as remove_nodes does
  hosts: ejabberd
  gather_facts: false
  tasks:
    - name: Know the cluster
      ansible.builtin.include_role:
        name: xmpp.ejabberd.ejabberd_cluster
        tasks_from: facts
    - name: Select
      ansible.builtin.include_role:
        name: xmpp.ejabberd.ejabberd_cluster
        tasks_from: select
      vars:
        ejabberd_cluster_select_variable: my_hosts
        ejabberd_cluster_select_purpose: the hosts to try
        ejabberd_cluster_select_keep_reason: one must stay
        ejabberd_cluster_select_whole_reason: trying needs every host
    - name: Report
      ansible.builtin.copy:
        dest: "{{ out_dir }}/{{ inventory_hostname }}.json"
        mode: "0600"
        content: "{{ {'selected': __ejabberd_cluster_selected, 'unselected': __ejabberd_cluster_unselected} | to_json }}"
"""


@pytest.fixture(scope="module")
def runner(tmp_path_factory):
    work = tmp_path_factory.mktemp("select")
    (work / "tmp").mkdir()
    run = PlaybookRunner(str(work))
    run.playbook = run.write("select.yml", PLAYBOOK)
    hosts = {h: {"ansible_connection": "local"} for h in ("n1", "n2", "n3")}
    run.inventory = run.write("inventory.json", json.dumps({"ejabberd": {"hosts": hosts}}))
    return run


def select(runner, value, *args: str):
    out = os.path.join(runner.workdir, "out-%d" % len(os.listdir(runner.workdir)))
    os.makedirs(out)
    variables = {"out_dir": out, "ansible_python_interpreter": sys.executable}
    if value is not None:
        variables["my_hosts"] = value
    play = runner.play(runner.playbook, runner.inventory, variables, *args, timeout=300)
    reports = {}
    for name in os.listdir(out):
        with open(os.path.join(out, name), encoding="utf-8") as handle:
            reports[name[:-5]] = json.load(handle)
    return play, reports


@pytest.mark.parametrize("value", [["n3", "n1"], "n3, n1", "n1,n3,"])
def test_a_list_or_a_comma_separated_string(runner, value):
    play, reports = select(runner, value)
    assert play.rc == 0, play
    assert reports == {h: {"selected": ["n1", "n3"], "unselected": ["n2"]} for h in ("n1", "n2", "n3")}


@pytest.mark.parametrize("value,says", [
    (None, "my_hosts: must list the inventory names of the hosts to try"),
    ("", "my_hosts: must list the inventory names of the hosts to try"),
    (["n3", "xmpp9"], "my_hosts: xmpp9 is not a host of the cluster (group ejabberd: n1, n2, n3)"),
    ("n1,n2,n3", "my_hosts: names every host of the cluster (n1, n2, n3); one must stay"),
])
def test_bad_input_is_refused_naming_the_variable(runner, value, says):
    play, reports = select(runner, value)
    assert play.rc != 0 and not reports, play
    messages = play.fatal_messages()
    assert messages and all(says in msg and "Nothing was changed" in msg for msg in messages), play


def test_a_run_without_every_host_is_refused(runner):
    play, reports = select(runner, ["n3"], "--limit", "n2,n3")
    assert play.rc != 0 and not reports, play
    assert all("trying needs every host, but n1 of group ejabberd is not in this run" in msg
               for msg in play.fatal_messages()), play
