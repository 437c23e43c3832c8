#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, xmpp.ejabberd contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type  # pylint: disable=invalid-name

DOCUMENTATION = r'''
module: ejabberd_cluster_info
short_description: Read an ejabberd node's cluster membership, and check it
version_added: 0.1.0
description:
  - Asks an ejabberd node over the Erlang distribution protocol which nodes of its cluster are
    running and which it knows, and which ejabberd and Erlang/OTP releases it runs.
  - With O(expected_nodes), fails when the running members differ from the expected ones.
  - With O(check_peers=true), also asks every other member for its own view and fails on
    disagreement (split brain) or on a running member that cannot be reached.
  - Fails with reason V(partitioned) when Mnesia is partitioned. After a network split each side's
    Mnesia drops the other side from C(running_db_nodes), although both stay in C(db_nodes), and
    never takes it back by itself, even once the network works again and the nodes reconnect (Mnesia
    then only logs C({inconsistent_database, running_partitioned_network, Node})). Alone, a node
    shows it for members it is connected to but does not run with; with O(check_peers=true) every
    member's word is compared, so a split is found also while the sides are not connected (on
    ejabberd 23.01 they stay apart until something connects them). The message names each side and
    the recovery - restart the nodes of the side whose data is discarded, after a backup.
extends_documentation_fragment:
  - xmpp.ejabberd.connection
  - xmpp.ejabberd.attributes
  - xmpp.ejabberd.attributes.read_only
options:
  expected_nodes:
    description:
      - Node names that must be exactly the running members of the cluster.
      - The order does not matter.
    type: list
    elements: str
  check_peers:
    description:
      - Connect to every other node this node knows (and to every expected node), with the same
        cookie and port settings, and compare each one's view of the running members.
      - A known member that cannot be reached counts as stopped when the node does not list it as
        running; a member listed as running that cannot be reached is a failure.
    type: bool
    default: false
  peer_addresses:
    description:
      - TCP addresses to use for other members, as a mapping of node name to address.
      - Members not listed are reached at the host part of their node name.
    type: dict
    default: {}
  count_user_data:
    description:
      - Also count the records of the Mnesia tables the node keeps on disc that hold user data
        (accounts, rosters, offline messages, archives, rooms, pubsub...), as a join of this node
        would delete them (RV(user_data)). Tables kept in SQL are not counted, as a join does not
        touch them.
    type: bool
    default: false
author:
  - xmpp.ejabberd contributors (@xmpp-ejabberd)
'''

EXAMPLES = r'''
- name: Read the local node's view of its cluster
  xmpp.ejabberd.ejabberd_cluster_info:
  become: true
  register: cluster

- name: Prove that the three nodes form one cluster, as seen from every member
  xmpp.ejabberd.ejabberd_cluster_info:
    node: ejabberd@xmpp1.example.org
    cookie: "{{ vault_erlang_cookie }}"
    dist_port: 5210
    expected_nodes:
      - ejabberd@xmpp1.example.org
      - ejabberd@xmpp2.example.org
      - ejabberd@xmpp3.example.org
    check_peers: true
  delegate_to: localhost
'''

RETURN = r'''
node:
  description: The node asked.
  returned: always
  type: str
running_nodes:
  description: Running members of the cluster as the node sees them (C(ejabberd_cluster:get_nodes())), sorted.
  returned: success, or when the membership check fails
  type: list
  elements: str
  sample: [ejabberd@xmpp1.example.org, ejabberd@xmpp2.example.org]
known_nodes:
  description: All members the node knows, running or not (C(ejabberd_cluster:get_known_nodes())), sorted.
  returned: success, or when the membership check fails
  type: list
  elements: str
stopped_nodes:
  description: Known members that are not running, sorted.
  returned: success, or when the membership check fails
  type: list
  elements: str
ejabberd_version:
  description: ejabberd release of the node, without a package revision.
  returned: success, or when the membership check fails
  type: str
  sample: "24.12"
ejabberd_vsn:
  description: ejabberd's version as its application says, with a distribution package's revision.
  returned: success, or when the membership check fails
  type: str
  sample: "24.12-3+deb13u2"
otp_release:
  description: Erlang/OTP release of the node.
  returned: success, or when the membership check fails
  type: str
  sample: "27"
missing:
  description: Expected nodes that are not running members.
  returned: when O(expected_nodes) is given
  type: list
  elements: str
unexpected:
  description: Running members that are not expected.
  returned: when O(expected_nodes) is given
  type: list
  elements: str
db_nodes:
  description: The members of the node's Mnesia schema (C(mnesia:system_info(db_nodes))), sorted.
  returned: when the node was reached
  type: list
  elements: str
running_db_nodes:
  description: The members Mnesia on the node shares the database with now, sorted.
  returned: when the node was reached
  type: list
  elements: str
connected_nodes:
  description: The node's connected (visible) Erlang nodes, C(erlang:nodes()), sorted.
  returned: when the node was reached
  type: list
  elements: str
partitioned_from:
  description:
    - Members of C(db_nodes) that run, but that Mnesia on the node runs without (a partition), sorted.
    - Without O(check_peers), only the members the node is connected to can be told from stopped ones.
  returned: when the node was reached
  type: list
  elements: str
user_data:
  description:
    - The node's Mnesia tables on disc that hold records of user data, with their record counts
      (Mnesia's own schema and ejabberd's capabilities cache are not user data).
  returned: when O(count_user_data=true) and the node was reached
  type: dict
  sample: {passwd: 12, roster: 40}
partitions:
  description:
    - Each side of a Mnesia partition, as the members of that side see it (their C(running_db_nodes)),
      largest first.
  returned: when Mnesia is partitioned
  type: list
  elements: list
  sample: [[ejabberd@xmpp1.example.org, ejabberd@xmpp2.example.org], [ejabberd@xmpp3.example.org]]
views:
  description:
    - Each member's own view (running_nodes, known_nodes, stopped_nodes, db_nodes, running_db_nodes,
      connected_nodes, partitioned_from), keyed by node name; a member that could not be reached has
      C(reachable=false), C(reason) and C(msg) instead; one whose Mnesia answers but whose ejabberd
      does not has its Mnesia view with C(reason) and C(msg).
  returned: when O(check_peers=true)
  type: dict
cookie_file:
  description:
    - The cookie file the module read (from O(cookie_file) or O(cookie_user)'s HOME) - C(path),
      C(mode) (octal) and C(sha256), the digest of its content, so that a play can check that every
      node holds the same cookie without reading the file again. The cookie itself is never returned.
  returned: when the cookie came from a file
  type: dict
  sample: {path: /var/lib/ejabberd/.erlang.cookie, mode: "0400", sha256: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08}
tls_certificate:
  description:
    - Over TLS distribution, the node's certificate as it presented it - C(subject), C(not_after),
      C(days_left) (whole days until it expires) and the TLS C(version); also in each member's
      RV(views) entry with O(check_peers=true).
  returned: when the node was reached over TLS
  type: dict
  sample: {subject: commonName=xmpp1.example.org, not_after: "Dec  3 12:00:00 2027 GMT", days_left: 364, version: TLSv1.3}
split_brain:
  description: Whether reachable members disagree on the running members.
  returned: when O(check_peers=true)
  type: bool
reason:
  description:
    - The reason code when a node could not be reached (see M(xmpp.ejabberd.erlang_node_info)),
      V(partitioned) when Mnesia is partitioned, V(split_brain) when members disagree otherwise,
      V(membership) when the running members are not O(expected_nodes).
  returned: on failure
  type: str
  sample: cookie_rejected
'''

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.xmpp.ejabberd.plugins.module_utils import connection, erldist
from ansible_collections.xmpp.ejabberd.plugins.module_utils import ejabberd, erlang_node


VIEW_KEYS = ('running_nodes', 'known_nodes', 'stopped_nodes', 'db_nodes', 'running_db_nodes',
             'connected_nodes')


def own_view(target, facts, count_user_data=False):
    """Facts of the node asked, into ``facts`` (Mnesia's view first: it answers even
    when ejabberd does not); raises DistError."""
    with erldist.only_dist_errors('asking %s for its view' % target['node']):
        with erldist.connect(**target) as conn:
            facts.update(ejabberd.mnesia_view(conn))
            if count_user_data:
                facts['user_data'] = ejabberd.user_data(ejabberd.local_tables(conn))
            # A connected member Mnesia does not run with may be restarting: its own word decides.
            facts['partitioned_from'] = ejabberd.partitioned_from(
                target['node'], facts, ejabberd.mnesia_views_through(conn, facts))
            facts.update(ejabberd.cluster_view(conn))
            facts['ejabberd_version'], facts['ejabberd_vsn'] = ejabberd.ejabberd_version(conn)
            facts['otp_release'] = erlang_node.otp_release(conn)
            if conn.tls is not None:
                facts['tls_certificate'] = conn.tls
    return facts


def peer_views(target, facts, expected, peer_addresses):
    """Every other member's view; unreachable ones carry reason and msg (and Mnesia's
    view, when the node answers but ejabberd does not: a partition can keep ejabberd
    from starting, waiting for its tables)."""
    peers = set(facts['known_nodes']) | set(expected) | set(facts['running_nodes']) \
        | set(facts['db_nodes'])
    peers.discard(target['node'])
    views = {target['node']: {k: facts[k] for k in VIEW_KEYS}}
    for peer in sorted(peers):
        options = dict(target, node=peer, address=peer_addresses.get(peer))
        view = {}
        try:
            with erldist.only_dist_errors('asking %s for its view' % peer):
                with erldist.connect(**options) as conn:
                    view.update(ejabberd.mnesia_view(conn))
                    view.update(ejabberd.cluster_view(conn))
                    if conn.tls is not None:
                        view['tls_certificate'] = conn.tls
        except erldist.DistError as exc:
            view.update(reason=exc.reason, msg=str(exc))
            if 'db_nodes' not in view:
                view['reachable'] = False
        views[peer] = view
    # Now with every member's own word: who runs without whom.
    mnesia = {name: view for name, view in views.items() if 'db_nodes' in view}
    for name, view in mnesia.items():
        view['partitioned_from'] = ejabberd.partitioned_from(name, view, mnesia)
    return views


def partition_problem(views):
    """``(sides, sentence)`` when Mnesia is partitioned, else ``([], None)``."""
    split = {name: view['partitioned_from'] for name, view in views.items()
             if view.get('partitioned_from')}
    if not split:
        return [], None
    sides = ejabberd.partitions({name: view for name, view in views.items() if 'db_nodes' in view})
    if len(sides) > 1:
        what = ' and '.join('[%s]' % ', '.join(side) for side in sides) + ' each run without the other'
    else:
        what = '; '.join('%s runs without %s' % (name, ', '.join(apart))
                         for name, apart in sorted(split.items()))
    return sides, (
        'Mnesia is partitioned: %s, so their data diverge, and Mnesia does not merge them again by '
        'itself, even once the network works. Choose the side whose data is kept, back up the other '
        'side (ejabberd_backup), then restart the nodes of the other side: they copy the kept '
        'side\'s data and lose what was written on them since the split (the collection\'s partition '
        'recovery playbook does these steps)' % what)


def peer_problems(target, facts, views):
    """``(disagreements, unreachable)``: sentences about members that see another
    cluster, and about running members that cannot be reached."""
    disagreements, unreachable = [], []
    for peer, view in sorted(views.items()):
        if 'reason' in view:
            if peer in facts['running_nodes']:
                unreachable.append('running member %s cannot be reached: %s' % (peer, view['msg']))
        elif view['running_nodes'] != facts['running_nodes']:
            disagreements.append('%s sees running members %s, but %s sees %s'
                                 % (peer, view['running_nodes'], target['node'],
                                    facts['running_nodes']))
    return disagreements, unreachable


def main():
    module = AnsibleModule(**connection.module_kwargs(dict(
        expected_nodes=dict(type='list', elements='str'),
        check_peers=dict(type='bool', default=False),
        peer_addresses=dict(type='dict', default={}),
        count_user_data=dict(type='bool', default=False),
    )))
    params = module.params
    try:
        target = connection.resolve(params)
        cookie_file = connection.cookie_file_facts(params)
        expected = sorted(set(connection.validate_node(n, 'expected_nodes')
                              for n in params['expected_nodes'] or []))
    except connection.ConnectionOptionError as exc:
        module.fail_json(**exc.result())

    result = dict(changed=False, node=target['node'])
    if cookie_file:
        result['cookie_file'] = cookie_file
    facts = {}
    try:
        own_view(target, facts, params['count_user_data'])
    except erldist.DistError as exc:
        result.update(facts)
        sides, partitioned = partition_problem({target['node']: facts})
        if partitioned:
            # ejabberd waits for its tables from the other side (seen on 26.07)
            module.fail_json(msg='%s; and ejabberd does not answer: %s' % (partitioned, exc),
                             reason='partitioned', partitions=sides, **result)
        module.fail_json(msg=str(exc), reason=exc.reason, **result)
    result.update(facts)

    failures = []
    if params['expected_nodes'] is not None:
        result['missing'] = sorted(set(expected) - set(facts['running_nodes']))
        result['unexpected'] = sorted(set(facts['running_nodes']) - set(expected))
        if result['missing'] or result['unexpected']:
            failures.append('the running members of the cluster are not the expected ones '
                            '(missing: %s; unexpected: %s)'
                            % (', '.join(result['missing']) or 'none',
                               ', '.join(result['unexpected']) or 'none'))
    views = {target['node']: facts}
    if params['check_peers']:
        views = peer_views(target, facts, expected, params['peer_addresses'])
        result['partitioned_from'] = views[target['node']]['partitioned_from']
        disagreements, unreachable = peer_problems(target, facts, views)
        result.update(views=views, split_brain=bool(disagreements))
        reasons = [v['reason'] for n, v in sorted(views.items())
                   if 'reason' in v and n in facts['running_nodes']]
        if reasons:
            result['reason'] = reasons[0]
        failures.extend(disagreements + unreachable)
    sides, partitioned = partition_problem(views)
    if partitioned:
        # The first thing to say: it explains the disagreements above.
        result.update(partitions=sides, reason='partitioned')
        failures.insert(0, partitioned)
    if failures:
        if 'reason' not in result:
            result['reason'] = 'split_brain' if result.get('split_brain') else 'membership'
        module.fail_json(msg='; '.join(failures), **result)
    module.exit_json(**result)


if __name__ == '__main__':
    main()
