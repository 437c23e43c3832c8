# Copyright: xmpp.ejabberd contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Role ejabberd_cluster's knowledge of the cluster (entry point ``facts``) and its choice of
the seed (tasks/seed.yml), run by ansible-playbook on this machine with the nodes' views
given (no node involved): --limit does not narrow the cluster, node names and addresses of
hosts outside the limit come from inventory variables, the seed is a member of the largest
existing cluster whatever the inventory order, and two clusters holding data stop the play.
The lab tests (tests/integration/test_cluster_changes.py) run the same tasks on real nodes.
"""

from __future__ import annotations

import json
import os
import shutil
import sys

import pytest

from ansible_collections.xmpp.ejabberd.tests.helpers.playbook import PlaybookRunner

PLAYBOOK = """\
---
- name: Know the cluster, then choose the seed from the given views
  hosts: "{{ ejabberd_hosts | default('ejabberd') }}"
  gather_facts: false
  tasks:
    - name: Know the cluster
      ansible.builtin.include_role:
        name: xmpp.ejabberd.ejabberd_cluster
        tasks_from: facts
    - name: Take the given view
      ansible.builtin.set_fact:
        __ejabberd_cluster_view: "{{ views[inventory_hostname] }}"
    - name: Choose the seed
      ansible.builtin.include_role:
        name: xmpp.ejabberd.ejabberd_cluster
        tasks_from: seed
    - name: Report
      ansible.builtin.copy:
        dest: "{{ out_dir }}/{{ inventory_hostname }}.json"
        mode: "0600"
        content: "{{ {'hosts': __ejabberd_cluster_hosts, 'names': __ejabberd_cluster_node_names,
                      'addresses': __ejabberd_cluster_addresses, 'outside': __ejabberd_cluster_outside,
                      'seed': __ejabberd_cluster_seed, 'members': __ejabberd_cluster_seed_members} | to_json }}"
"""

# Inventory order: new host n4 first, then the cluster n1..n3.
HOSTS = {
    "n4": {"ejabberd_node_name": "ejabberd@10.0.0.4", "ansible_host": "10.0.0.4"},
    "n1": {"ejabberd_node_name": "ejabberd@10.0.0.1", "ejabberd_address": "10.0.0.1"},
    "n2": {"ejabberd_inet_dist_interface": "10.0.0.2"},
    "n3": {},
}
NAMES = {"n4": "ejabberd@10.0.0.4", "n1": "ejabberd@10.0.0.1", "n2": "ejabberd@n2", "n3": "ejabberd@n3"}
OLD = sorted(NAMES[h] for h in ("n1", "n2", "n3"))


@pytest.fixture(scope="module")
def runner(tmp_path_factory):
    work = tmp_path_factory.mktemp("seed")
    (work / "tmp").mkdir()
    run = PlaybookRunner(str(work))
    run.playbook = run.write("seed.yml", PLAYBOOK)
    hosts = {h: {"ansible_connection": "local", **v} for h, v in HOSTS.items()}
    run.inventory = run.write("inventory.json", json.dumps({"ejabberd": {"hosts": hosts}}))
    return run


def choose(runner, views: dict, *args: str, user_data: dict | None = None,
           nodes: dict | None = None, **variables):
    """Run facts + seed with ``views`` ({host: known nodes}); ``user_data`` ({host: {table:
    count}}) and ``nodes`` ({host: the node that answered}, default the host's own name)
    complete each host's view as module ejabberd_cluster_info returns it."""
    out = runner.workdir + "/out-%d" % len(views)
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    given = {h: {"node": (nodes or {}).get(h, NAMES[h]), "known_nodes": v,
                 "user_data": (user_data or {}).get(h, {})} for h, v in views.items()}
    play = runner.play(runner.playbook, runner.inventory,
                       {"views": given,
                        "out_dir": out, "ansible_python_interpreter": sys.executable, **variables},
                       *args, timeout=300)
    reports = {}
    for host in views:
        path = os.path.join(out, host + ".json")
        if os.path.exists(path):
            with open(path, encoding="utf-8") as handle:
                reports[host] = json.load(handle)
    return play, reports


def test_new_host_first_in_the_inventory_joins_the_existing_cluster(runner):
    play, reports = choose(runner, {"n4": [NAMES["n4"]], "n1": OLD, "n2": OLD, "n3": OLD})
    assert play.rc == 0, play
    assert {r["seed"] for r in reports.values()} == {"n1"}, reports
    assert reports["n4"]["members"] == OLD


def test_the_cluster_comes_from_the_inventory_under_limit(runner):
    play, reports = choose(runner, {"n3": OLD}, "--limit", "n3")
    assert play.rc == 0, play
    report = reports["n3"]
    assert report["hosts"] == ["n4", "n1", "n2", "n3"]
    assert report["outside"] == ["n4", "n1", "n2"]
    assert report["names"] == NAMES
    assert report["addresses"] == {"n4": "10.0.0.4", "n1": "10.0.0.1", "n2": "10.0.0.2", "n3": "n3"}
    assert report["seed"] == "n1" and report["members"] == OLD


def test_new_cluster_seed_is_the_first_host_of_the_inventory(runner):
    play, reports = choose(runner, {h: [n] for h, n in NAMES.items()})
    assert play.rc == 0, play
    assert {r["seed"] for r in reports.values()} == {"n4"}, reports


def test_operator_seed_is_taken(runner):
    play, reports = choose(runner, {"n4": [NAMES["n4"]], "n1": OLD, "n2": OLD, "n3": OLD},
                           ejabberd_cluster_seed="n2")
    assert play.rc == 0, play
    assert {r["seed"] for r in reports.values()} == {"n2"}, reports


def test_seed_outside_the_cluster_is_rejected_naming_the_variable(runner):
    play, reports = choose(runner, {"n1": OLD}, ejabberd_cluster_seed="n9")
    assert play.rc != 0 and not reports, play
    assert all("ejabberd_cluster_seed" in msg and "n9" in msg for msg in play.fatal_messages()), play


def test_two_clusters_holding_data_stop_the_play_naming_both(runner):
    left, right = sorted([NAMES["n4"], NAMES["n1"]]), sorted([NAMES["n2"], NAMES["n3"]])
    play, reports = choose(runner, {"n4": left, "n1": left, "n2": right, "n3": right})
    assert play.rc != 0 and not reports, play
    messages = play.fatal_messages()
    assert len(messages) == 4, play
    for msg in messages:
        assert "[%s]" % ", ".join(left) in msg and "[%s]" % ", ".join(right) in msg, msg
        assert "nothing was changed" in msg, msg


def test_a_single_node_with_user_data_and_a_cluster_stop_the_play(runner):
    alone = [NAMES["n4"]]
    play, reports = choose(runner, {"n4": alone, "n1": OLD, "n2": OLD, "n3": OLD},
                           user_data={"n4": {"passwd": 2, "roster": 5}})
    assert play.rc != 0 and not reports, play
    messages = play.fatal_messages()
    assert len(messages) == 4, play
    for msg in messages:
        assert "[%s]" % ", ".join(OLD) in msg and "[%s]" % alone[0] in msg, msg
        assert "n4:passwd 2" in msg and "n4:roster 5" in msg, msg


def test_a_single_node_without_user_data_joins(runner):
    play, reports = choose(runner, {"n4": [NAMES["n4"]], "n1": OLD, "n2": OLD, "n3": OLD},
                           user_data={"n4": {}, "n1": {"passwd": 7}})
    assert play.rc == 0, play
    assert {r["seed"] for r in reports.values()} == {"n1"}, reports


def test_a_node_under_another_name_belongs_to_no_cluster(runner):
    """The package's own ejabberd@localhost (with its own data: the takeover guards it)."""
    play, reports = choose(runner, {"n4": ["ejabberd@localhost"], "n1": OLD, "n2": OLD, "n3": OLD},
                           user_data={"n4": {"passwd": 1}}, nodes={"n4": "ejabberd@localhost"})
    assert play.rc == 0, play
    assert {r["seed"] for r in reports.values()} == {"n1"}, reports


def test_force_without_a_backup_dir_is_rejected_naming_both_variables(runner):
    play, reports = choose(runner, {"n1": OLD}, ejabberd_cluster_force=True)
    assert play.rc != 0 and not reports, play
    messages = play.fatal_messages()
    assert messages, play
    for msg in messages:
        assert "ejabberd_cluster_force" in msg and "ejabberd_cluster_backup_dir" in msg, msg
        assert "Nothing was changed" in msg, msg


def test_force_with_a_backup_dir_is_accepted(runner):
    play, reports = choose(runner, {"n4": [NAMES["n4"]], "n1": OLD, "n2": OLD, "n3": OLD},
                           ejabberd_cluster_force=True,
                           ejabberd_cluster_backup_dir="/var/backups/ejabberd")
    assert play.rc == 0, play
    assert {r["seed"] for r in reports.values()} == {"n1"}, reports


def test_force_with_a_backup_dir_joins_a_node_holding_user_data(runner):
    """The two-clusters stop gives way to ejabberd_cluster_force (the survey's string "true"
    too): the seed is in the largest cluster, and the run says what the joins delete."""
    play, reports = choose(runner, {"n4": [NAMES["n4"]], "n1": OLD, "n2": OLD, "n3": OLD},
                           user_data={"n4": {"passwd": 2}}, ejabberd_cluster_force="true",
                           ejabberd_cluster_backup_dir="/var/backups/ejabberd")
    assert play.rc == 0, play
    assert {r["seed"] for r in reports.values()} == {"n1"}, reports
    assert "lose their databases" in play.out and "n4:passwd 2" in play.out, play
    assert "/var/backups/ejabberd" in play.out, play
