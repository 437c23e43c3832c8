#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, xmpp.ejabberd contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type  # pylint: disable=invalid-name

DOCUMENTATION = r'''
module: ejabberd_cluster_member
short_description: Join an ejabberd node to a cluster, or remove it from one
version_added: 0.1.0
description:
  - With O(state=present), makes O(node) a member of the cluster that O(cluster_node) belongs to,
    through ejabberd's own C(join_cluster), run on O(node) over the Erlang distribution protocol.
  - With O(state=absent), removes O(node) from that cluster through ejabberd's C(leave_cluster),
    run on O(cluster_node).
  - Idempotent; after acting it waits until the change is visible on both nodes (since ejabberd
    24.06 a join returns at once and completes in the background).
  - Joining wipes the joining node's Mnesia database (all its local data). Before a join the module
    reads what the joining node keeps on disc, and refuses unless O(force=true) when the node already
    knows other nodes (it belongs to another cluster, reason V(other_cluster)) or when a table that
    carries user data (accounts, rosters, offline messages, archives, rooms, pubsub...) holds records
    (reason V(user_data)), naming the tables and their record counts. A fresh node (only Mnesia's
    schema and ejabberd's capabilities cache) joins without O(force). Tables kept in SQL are not in
    Mnesia and are not at risk.
  - A forced join that deletes user data also needs O(backup) - the run's output then says exactly
    which tables and how many records are deleted (RV(user_data) and a warning) and where the copy is.
  - With O(backup), ejabberd's own backup of the node (C(mnesia:backup/1), as C(ejabberdctl backup))
    is written before any change (a join, or a running node's leave); when it fails nothing is changed.
extends_documentation_fragment:
  - xmpp.ejabberd.connection
  - xmpp.ejabberd.attributes
attributes:
  check_mode:
    support: full
    details: Reads both nodes and reports what would change; nothing is changed.
  diff_mode:
    support: full
    details: The cluster members known to O(node) before and after.
options:
  cluster_node:
    description:
      - A node of the cluster to join or leave, C(name@host). It uses the same cookie, the same
        kind of names (long or short) and the same O(dist_port) as O(node).
    type: str
    required: true
  cluster_address:
    description:
      - TCP address of O(cluster_node), when it is not the host part of its name.
    type: str
  state:
    description:
      - V(present) makes O(node) a member; V(absent) removes it.
      - A running node that leaves is stopped (its Erlang VM halts, as ejabberd's own leave does) after
        its local database is deleted; started again, it is a standalone node with an empty database.
        The module does that deletion itself, so the result is the same on every ejabberd release
        (since 26.04 ejabberd halts the leaving node without it, and the node would rejoin).
      - A node that is stopped is removed from the cluster's schema only; its own database still
        lists the cluster, and it rejoins when started, unless its Mnesia directory is deleted
        first. The module warns about it.
    type: str
    choices: [present, absent]
    default: present
  force:
    description:
      - Join even when O(node) already belongs to another cluster, or holds user data in Mnesia. Its
        Mnesia data is lost; when that includes user data, O(backup) is required.
    type: bool
    default: false
  backup:
    description:
      - Absolute path, on the host of O(node), where ejabberd's own backup of its Mnesia database is
        written before a join or before a running node leaves (its directory must exist and be
        writable by the service user; an existing file is replaced). Restore it with
        M(xmpp.ejabberd.ejabberd_backup) (O(xmpp.ejabberd.ejabberd_backup#module:state=restored)) or
        C(ejabberdctl restore).
      - Nothing is changed when the backup fails, or when O(node) is stopped (it cannot be backed up
        then; its data is on the running members).
    type: str
  wait_timeout:
    description:
      - Seconds to wait for the join or leave to be complete and visible on both nodes.
    type: float
    default: 120
author:
  - xmpp.ejabberd contributors (@xmpp-ejabberd)
'''

EXAMPLES = r'''
- name: Join this host's node to the cluster of the first host
  xmpp.ejabberd.ejabberd_cluster_member:
    cluster_node: "ejabberd@{{ groups['xmpp'][0] }}"
  become: true

- name: Join a node that holds accounts of its own, knowing they are lost (a copy is kept)
  xmpp.ejabberd.ejabberd_cluster_member:
    cluster_node: "ejabberd@{{ groups['xmpp'][0] }}"
    force: true
    backup: /var/lib/ejabberd/before-join.backup
  become: true

- name: Remove a node from the cluster, from the control machine
  xmpp.ejabberd.ejabberd_cluster_member:
    node: ejabberd@xmpp3.example.org
    cluster_node: ejabberd@xmpp1.example.org
    cookie: "{{ vault_erlang_cookie }}"
    dist_port: 5210
    state: absent
  delegate_to: localhost
'''

RETURN = r'''
node:
  description: The node that joined or left.
  returned: always
  type: str
cluster_node:
  description: The member of the cluster used.
  returned: always
  type: str
running_nodes:
  description: Running members of the cluster, as O(cluster_node) sees them at the end, sorted.
  returned: success
  type: list
  elements: str
  sample: [ejabberd@xmpp1.example.org, ejabberd@xmpp2.example.org]
before:
  description: Members (known nodes) of the cluster of O(node) before, sorted.
  returned: success
  type: list
  elements: str
after:
  description: Members (known nodes) of the cluster of O(node) after (predicted in check mode), sorted.
  returned: success
  type: list
  elements: str
message:
  description: What ejabberd answered to the join or leave request.
  returned: when changed and not in check mode
  type: str
elapsed_s:
  description: Seconds from the request until the change was visible on both nodes.
  returned: when changed and not in check mode
  type: float
user_data:
  description:
    - The tables of the joining node that carry user data and hold records, with their record
      counts - what a join deletes (in check mode, what it would delete).
  returned: when O(state=present) and the node is not yet a member
  type: dict
  sample: {passwd: 2, roster: 3}
backup:
  description: Where the backup was written, on the host of O(node).
  returned: when O(backup) was given and the node joined or left
  type: str
  sample: /var/lib/ejabberd/before-join.backup
reason:
  description:
    - The reason code when a node could not be reached (see M(xmpp.ejabberd.erlang_node_info)),
      V(rpc_error) when ejabberd refused the join or leave request, V(other_cluster) or
      V(user_data) when a join would delete data and O(force) is not set, V(bad_parameter) for a
      forced join that deletes user data without O(backup), V(backup_failed) when the backup could
      not be written (nothing was changed).
  returned: on failure
  type: str
'''

import posixpath
import time

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.xmpp.ejabberd.plugins.module_utils import connection, erldist
from ansible_collections.xmpp.ejabberd.plugins.module_utils import ejabberd


class Member(object):
    """Both ends of a membership change, with a connection to each that heals itself."""

    def __init__(self, module, target, cluster_target):
        self.module = module
        self.targets = {'node': target, 'cluster_node': cluster_target}
        self.conns = {}
        self.result = dict(changed=False, node=target['node'], cluster_node=cluster_target['node'])

    def fail(self, msg, **extra):
        self.close()
        self.result.update(extra)
        self.module.fail_json(msg=msg, **self.result)

    def view(self, which):
        """The cluster view of one end; a dropped connection is made again next time."""
        target = self.targets[which]
        try:
            with erldist.only_dist_errors('asking %s for its view' % target['node']):
                if which not in self.conns:
                    self.conns[which] = erldist.connect(**target)
                return ejabberd.cluster_view(self.conns[which])
        except erldist.DistError:
            conn = self.conns.pop(which, None)
            if conn is not None:
                conn.close()
            raise

    def started(self, which):
        with erldist.only_dist_errors('asking %s for its applications'
                                      % self.targets[which]['node']):
            return ejabberd.ejabberd_started(self.conns[which])

    def view_or_fail(self, which, doing):
        try:
            return self.view(which)
        except erldist.DistError as exc:
            self.fail('cannot %s: %s %s: %s' % (doing, which, self.targets[which]['node'], exc),
                      reason=exc.reason)

    def call(self, which, function, arg):
        """``(ok, message)`` of ``ejabberd_admin:function(arg)`` run on one end."""
        target = self.targets[which]
        conn = self.conns[which]
        wait = self.module.params['wait_timeout'] + target['timeout']
        try:
            with erldist.only_dist_errors('running ejabberd_admin:%s' % function):
                return ejabberd.admin_result(
                    conn.rpc('ejabberd_admin', function, [arg.encode('utf-8')], wait))
        except erldist.DistError as exc:
            self.fail('ejabberd_admin:%s on %s failed: %s' % (function, target['node'], exc),
                      reason=exc.reason)
        return None  # not reached: fail() exits

    def local_user_data(self):
        """What a join would delete: the joiner's tables on disc that hold user data,
        ``{table: count}`` (also in the result as ``user_data``)."""
        target = self.targets['node']
        try:
            with erldist.only_dist_errors('reading the tables of %s' % target['node']):
                tables = ejabberd.local_tables(self.conns['node'])
        except erldist.DistError as exc:
            self.fail('cannot read what %s holds, so it is not known what a join would delete: %s'
                      % (target['node'], exc), reason=exc.reason)
        self.result['user_data'] = ejabberd.user_data(tables)
        return self.result['user_data']

    def backup(self, which, path):
        """ejabberd's own backup of one end's database; fails (nothing changed) if it fails."""
        target = self.targets[which]
        try:
            with erldist.only_dist_errors('backing up %s' % target['node']):
                ejabberd.dump(self.conns[which], path)
        except erldist.DistError as exc:
            self.fail('%s; nothing was changed' % exc, reason=exc.reason, changed=False)
        self.result['backup'] = path

    def close(self):
        for conn in self.conns.values():
            conn.close()
        self.conns = {}


def describe(tables):
    return ', '.join('%s (%d)' % item for item in sorted(tables.items()))


def join(member, force, backup):
    node, seed = member.result['node'], member.result['cluster_node']
    mine = member.view_or_fail('node', 'read the cluster of the joining node')
    member.result['before'] = mine['known_nodes']
    if seed in mine['known_nodes']:
        member.result['after'] = mine['known_nodes']
        if seed not in mine['running_nodes']:
            member.module.warn('%s is a member of the cluster of %s, but that node is not running'
                               % (node, seed))
        return
    theirs = member.view_or_fail('cluster_node', 'reach the cluster to join')
    lost = member.local_user_data()
    others = sorted(set(mine['known_nodes']) - {node})
    if others and not force:
        member.fail('%s already belongs to a cluster with %s. Joining the cluster of %s would wipe '
                    'its Mnesia database (all its local data%s). Remove it from its cluster first, '
                    'or set force: true (with backup) if losing that data is intended.'
                    % (node, ', '.join(others), seed, ': ' + describe(lost) if lost else ''),
                    reason='other_cluster')
    if lost and not force:
        member.fail('the Mnesia database of %s holds user data: %s. Joining the cluster of %s would '
                    'delete it, so nothing was changed. Move that data into the cluster first '
                    '(ejabberd_backup on %s, restore on a member), or set force: true with backup '
                    'if losing it is intended.' % (node, describe(lost), seed, node),
                    reason='user_data')
    if lost and not backup:
        # The run's output must say what is lost, and a copy must exist: force alone
        # is not enough for data (issue 10, "bad input").
        member.fail('backup: required with force when the joining node holds user data (%s); set '
                    'backup to a path on the host of %s, where ejabberd\'s own backup is written '
                    'before the join; nothing was changed' % (describe(lost), node),
                    reason='bad_parameter')
    member.result.update(changed=True, after=sorted(set(theirs['known_nodes']) | {node}))
    if member.module.check_mode:
        if lost:
            member.module.warn('joining the cluster of %s would delete the Mnesia data of %s: %s'
                               % (seed, node, describe(lost)))
        return

    started = time.monotonic()
    if backup:
        member.backup('node', backup)
    if lost:
        member.module.warn('joining the cluster of %s deletes the Mnesia data of %s: %s (backed up '
                           'to %s first)' % (seed, node, describe(lost), backup))
    ok, message = member.call('node', 'join_cluster', seed)
    if not ok:
        member.fail('ejabberd on %s refused to join the cluster of %s: %s' % (node, seed, message),
                    reason='rpc_error')
    member.result['message'] = message

    def joined():
        # Since 24.06 Mnesia sees the seed before the tables are copied and
        # ejabberd is started again: wait for all of it.
        return (seed in member.view('node')['running_nodes']
                and node in member.view('cluster_node')['running_nodes']
                and member.started('node'))
    wait_for(member, joined, 'join')
    member.result['elapsed_s'] = round(time.monotonic() - started, 2)
    member.result['after'] = member.view('node')['known_nodes']


def leave(member, backup):
    node, seed = member.result['node'], member.result['cluster_node']
    theirs = member.view_or_fail('cluster_node', 'reach the cluster to leave')
    member.result['before'] = theirs['known_nodes']
    member.result['after'] = sorted(set(theirs['known_nodes']) - {node})
    if node not in theirs['known_nodes']:
        return
    running = node in theirs['running_nodes']
    if backup and not running:
        member.fail('backup: %s is stopped, so its data cannot be backed up before it is removed; '
                    'nothing was changed. Its data is also on the running members: back up one of '
                    'them with ejabberd_backup and run again without backup, or start %s first.'
                    % (node, node), reason='backup_failed')
    member.result['changed'] = True
    if not running:
        member.module.warn('%s is stopped, so it is removed from the cluster without knowing it: its '
                           'own Mnesia database still lists the cluster and it rejoins when started. '
                           'Delete its Mnesia directory (SPOOL_DIR) before starting it again.' % node)
    if member.module.check_mode:
        return

    started = time.monotonic()
    if running:
        stop_leaving(member, backup)
    ok, message = member.call('cluster_node', 'leave_cluster', node)
    if not ok:
        member.fail('ejabberd on %s refused to remove %s from the cluster: %s'
                    % (seed, node, message), reason='rpc_error')
    member.result['message'] = message

    def left():
        return node not in member.view('cluster_node')['known_nodes']
    wait_for(member, left, 'leave')
    member.result['elapsed_s'] = round(time.monotonic() - started, 2)
    member.result['after'] = member.view('cluster_node')['known_nodes']


def stop_leaving(member, backup):
    """Delete the leaving node's database (after ejabberd's own backup to ``backup``,
    if given) and stop it, before the cluster drops it.

    What ejabberd's leave_cluster did itself up to 24.12; since 26.04 it halts the node
    without, and the node rejoins when started again. Done here, the result is the same
    on every release: the node is stopped, and started again it stands alone, empty.
    """
    target = member.targets['node']
    try:
        with erldist.only_dist_errors('stopping %s' % target['node']):
            conn = member.conns.pop('node', None) or erldist.connect(**target)
            with conn:
                ejabberd.delete_database(conn, backup=backup)
    except erldist.DistError as exc:
        if exc.reason == 'backup_failed':
            member.fail('%s; nothing was changed' % exc, reason=exc.reason, changed=False)
        member.fail('cannot stop %s before it leaves: %s' % (target['node'], exc),
                    reason=exc.reason)
    if backup:
        member.result['backup'] = backup
    if not ejabberd.wait_stopped(target, member.module.params['wait_timeout']):
        member.fail('%s was told to stop before leaving but still answers after wait_timeout '
                    '(%s s); stop its service, then run again' % (target['node'],
                                                                  member.module.params['wait_timeout']),
                    reason='timeout')


def wait_for(member, check, what):
    timeout = member.module.params['wait_timeout']
    try:
        done = ejabberd.poll(check, timeout)
    except erldist.DistError as exc:
        member.fail('the %s did not complete within wait_timeout (%s s): %s'
                    % (what, timeout, exc), reason=exc.reason)
    if not done:
        member.fail('the %s was accepted but is not visible on both %s and %s after wait_timeout '
                    '(%s s); check both nodes\' logs, or raise wait_timeout'
                    % (what, member.result['node'], member.result['cluster_node'], timeout))


def main():
    module = AnsibleModule(**connection.module_kwargs(dict(
        cluster_node=dict(type='str', required=True),
        cluster_address=dict(type='str'),
        state=dict(type='str', choices=['present', 'absent'], default='present'),
        force=dict(type='bool', default=False),
        backup=dict(type='str'),
        wait_timeout=dict(type='float', default=120.0),
    )))
    params = module.params
    try:
        target = connection.resolve(params)
        seed = connection.validate_node(params['cluster_node'], 'cluster_node')
    except connection.ConnectionOptionError as exc:
        module.fail_json(**exc.result())
    if seed == target['node']:
        module.fail_json(msg='cluster_node: %s is the node itself; name another member of the '
                         'cluster' % seed, reason='bad_parameter')
    if erldist.is_long_name(seed) != erldist.is_long_name(target['node']):
        module.fail_json(msg='cluster_node: %s and node %s mix long and short node names; a '
                         'cluster cannot do that. Start every node with the same kind of name'
                         % (seed, target['node']), reason='name_type_mismatch')
    if params['backup'] is not None and not posixpath.isabs(params['backup']):
        module.fail_json(msg='backup: %s is relative; give an absolute path on the host of %s'
                         % (params['backup'], target['node']), reason='bad_parameter')
    if not 0 < params['wait_timeout'] <= 3600:
        module.fail_json(msg='wait_timeout: must be between 0 and 3600 seconds',
                         reason='bad_parameter')

    member = Member(module, target, dict(target, node=seed, address=params['cluster_address']))
    if params['state'] == 'present':
        join(member, params['force'], params['backup'])
    else:
        leave(member, params['backup'])
    try:
        member.result['running_nodes'] = member.view('cluster_node')['running_nodes']
    except erldist.DistError as exc:
        member.fail('cannot read the cluster at the end: %s' % exc, reason=exc.reason)
    member.close()
    result = member.result
    result['diff'] = dict(before=dict(members=result.get('before', [])),
                          after=dict(members=result.get('after', [])))
    module.exit_json(**result)


if __name__ == '__main__':
    main()
