#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, xmpp.ejabberd contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type  # pylint: disable=invalid-name

DOCUMENTATION = r'''
module: ejabberd_database_reset
short_description: Delete the local Mnesia database of an ejabberd node, never its user data silently
version_added: 0.1.0
description:
  - Deletes the Mnesia database of a running ejabberd node the way ejabberd itself does before a
    node joins a cluster (ejabberd and Mnesia stopped, then C(mnesia:delete_schema/1)), over the
    Erlang distribution protocol. Then the node stops itself (C(init:stop/0); without its
    application, C(ejabberdctl stop) could not reach it) and the module waits until it is down.
    Started again, it makes a new, empty database under whatever node name it is given.
  - Needed when a node is renamed, for example the node Debian's package starts at install time as
    C(ejabberd@localhost), whose database is made for that name.
  - Before anything changes, it counts the records of every table the node keeps on disc. When a
    table that carries user data (accounts, rosters, offline messages, archives, rooms, pubsub...)
    holds records, it refuses unless O(force=true), naming the tables and their counts. Tables kept
    in SQL are not in Mnesia and are not touched.
  - A node left running with Mnesia stopped and no database on disc is left alone (no change).
    After a reset the node is down, so a second run cannot reach it (reason V(unreachable));
    call it for a node that runs, as the role C(xmpp.ejabberd.ejabberd) does.
extends_documentation_fragment:
  - xmpp.ejabberd.connection
  - xmpp.ejabberd.attributes
attributes:
  check_mode:
    support: full
    details: Reads the tables and reports what would be deleted; nothing is changed.
  diff_mode:
    support: full
    details: The record count of each table on disc, before and after.
options:
  force:
    description:
      - Delete the database even when it holds user data. That data is lost unless O(backup) is
        given.
    type: bool
    default: false
  backup:
    description:
      - Path, on the node's host, where ejabberd's own Mnesia backup (C(mnesia:backup/1)) is written
        before the database is deleted. Its directory must exist and be writable by the service
        user. Restore it with C(ejabberdctl restore).
    type: str
author:
  - xmpp.ejabberd contributors (@xmpp-ejabberd)
'''

EXAMPLES = r'''
- name: Delete the empty database of the node the package started (refuses if it holds data)
  xmpp.ejabberd.ejabberd_database_reset:
    node: ejabberd@localhost
  become: true

- name: Delete it even with data, after a backup
  xmpp.ejabberd.ejabberd_database_reset:
    node: ejabberd@localhost
    force: true
    backup: /var/backups/ejabberd-before-rename.backup
  become: true
'''

RETURN = r'''
node:
  description: The node whose database was (or would be) deleted.
  returned: always
  type: str
directory:
  description: Mnesia's directory on the node.
  returned: when the node was reached
  type: str
  sample: /var/lib/ejabberd
tables:
  description: Record count of every table the node keeps on disc, before the reset.
  returned: when the node was reached and Mnesia runs
  type: dict
  sample: {passwd: 2, roster: 3, muc_room: 0}
user_data:
  description: The tables of RV(tables) that carry user data and hold records.
  returned: when the node was reached and Mnesia runs
  type: dict
  sample: {passwd: 2, roster: 3}
backup:
  description: Where the backup was written.
  returned: when O(backup) was given and the database was deleted
  type: str
reason:
  description: The reason code when the node could not be reached (see M(xmpp.ejabberd.erlang_node_info)),
    or V(user_data) when the database holds user data and O(force) is not set.
  returned: on failure
  type: str
'''

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.xmpp.ejabberd.plugins.module_utils import connection, erldist
from ansible_collections.xmpp.ejabberd.plugins.module_utils import ejabberd


def describe(tables):
    return ', '.join('%s (%d)' % item for item in sorted(tables.items()))


def main():
    module = AnsibleModule(**connection.module_kwargs(dict(
        force=dict(type='bool', default=False),
        backup=dict(type='str'),
    )))
    try:
        target = connection.resolve(module.params)
    except connection.ConnectionOptionError as exc:
        module.fail_json(**exc.result())
    result = dict(changed=False, node=target['node'])
    try:
        with erldist.only_dist_errors('reading the database of %s' % target['node']), \
                erldist.connect(**target) as conn:
            running, has_schema, result['directory'] = ejabberd.mnesia_state(conn)
            if not running:
                if has_schema:
                    module.fail_json(msg='Mnesia is stopped on %s but its database is still in %s, '
                                     'so what it holds cannot be read: start ejabberd there, then '
                                     'run again' % (target['node'], result['directory']),
                                     reason='rpc_error', **result)
                module.exit_json(**result)
            result['tables'] = ejabberd.local_tables(conn)
            result['user_data'] = ejabberd.user_data(result['tables'])
            result['diff'] = dict(before=dict(tables=result['tables']), after=dict(tables={}))
            if result['user_data'] and not module.params['force']:
                module.fail_json(
                    msg='the Mnesia database of %s holds user data: %s. Deleting it would lose that '
                        'data, so nothing was changed. Keep it by renaming the database with '
                        'ejabberd\'s own means (ejabberdctl backup, mnesia_change_nodename, '
                        'install_fallback), or set force (with backup) if losing it is intended.'
                        % (target['node'], describe(result['user_data'])),
                    reason='user_data', **result)
            result['changed'] = True
            if not module.check_mode:
                ejabberd.delete_database(conn, backup=module.params['backup'])
                if module.params['backup']:
                    result['backup'] = module.params['backup']
        if result['changed'] and not module.check_mode and not ejabberd.wait_stopped(target):
            module.fail_json(msg='the database of %s was deleted, but the node still answers a '
                             'minute after it was told to stop: stop its service' % target['node'],
                             reason='timeout', **result)
    except erldist.DistError as exc:
        module.fail_json(msg='cannot reset the database of %s: %s' % (target['node'], exc),
                         reason=exc.reason, **result)
    module.exit_json(**result)


if __name__ == '__main__':
    main()
