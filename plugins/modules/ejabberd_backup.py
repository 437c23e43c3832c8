#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, xmpp.ejabberd contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type  # pylint: disable=invalid-name

DOCUMENTATION = r'''
module: ejabberd_backup
short_description: Back up an ejabberd node's Mnesia database, or restore such a backup
version_added: 0.1.0
description:
  - With O(state=dumped), writes ejabberd's own backup of the node's Mnesia database (what
    C(ejabberdctl backup) writes, C(mnesia:backup/1)) to O(path) on the node's host, over the Erlang
    distribution protocol. The backup holds every table of the node's cluster, not only the copies
    the node keeps itself.
  - With O(state=restored), restores such a backup as C(ejabberdctl restore) does
    (C(ejabberd_admin:restore/1), that is C(mnesia:restore/2) with ejabberd's options) - the tables
    ejabberd uses (accounts, and those of its loaded modules) get the backup's records added to the
    records they hold, every other table of the backup is skipped. On a cluster, Mnesia restores on
    every member that holds those tables.
  - Use it before anything that discards a node's data (a forced join, a partition recovery, a
    removal); M(xmpp.ejabberd.ejabberd_cluster_member) and M(xmpp.ejabberd.ejabberd_database_reset)
    also take a O(xmpp.ejabberd.ejabberd_cluster_member#module:backup) path themselves.
  - Tables kept in SQL are not in Mnesia and are neither backed up nor restored.
extends_documentation_fragment:
  - xmpp.ejabberd.connection
  - xmpp.ejabberd.attributes
attributes:
  check_mode:
    support: full
    details: Reads the node's tables (and, to restore, checks that the file is there); nothing is written.
  diff_mode:
    support: none
options:
  path:
    description:
      - Absolute path of the backup file on the node's host. To back up, its directory must exist and
        be writable by the service user (an existing file is replaced once the new backup is
        complete); to restore, the service user must be able to read it.
    type: str
    required: true
  state:
    description:
      - V(dumped) writes a new backup on every run (it always reports a change).
      - V(restored) restores the backup at O(path) on every run (it always reports a change; records
        already there are kept, so a second restore of the same backup adds nothing).
    type: str
    choices: [dumped, restored]
    default: dumped
author:
  - xmpp.ejabberd contributors (@xmpp-ejabberd)
'''

EXAMPLES = r'''
- name: Back up the local node before it is removed from the cluster
  xmpp.ejabberd.ejabberd_backup:
    path: /var/lib/ejabberd/before-removal.backup
  become: true
  register: backup

- name: Restore that backup into the cluster, through another member
  xmpp.ejabberd.ejabberd_backup:
    node: ejabberd@xmpp1.example.org
    path: /var/lib/ejabberd/before-removal.backup
    state: restored
  become: true
  delegate_to: xmpp1.example.org
'''

RETURN = r'''
node:
  description: The node asked.
  returned: always
  type: str
path:
  description: The backup file, on the node's host.
  returned: always
  type: str
  sample: /var/lib/ejabberd/before-removal.backup
size:
  description: Size of the backup file in bytes (after the backup; before the restore).
  returned: success, when the file is there (not in check mode for V(dumped))
  type: int
tables:
  description: Record count of every table the node keeps on disc, before the backup or restore.
  returned: when the node was reached
  type: dict
  sample: {passwd: 2, roster: 3, muc_room: 0}
user_data:
  description: The tables of RV(tables) that carry user data and hold records.
  returned: when the node was reached
  type: dict
  sample: {passwd: 2, roster: 3}
restored_tables:
  description: The tables the restore wrote into (the others of the backup were skipped), sorted.
  returned: when O(state=restored), changed and not in check mode
  type: list
  elements: str
  sample: [passwd, roster]
elapsed_s:
  description: Seconds the backup or restore took.
  returned: when changed and not in check mode
  type: float
reason:
  description:
    - The reason code when the node could not be reached (see M(xmpp.ejabberd.erlang_node_info)),
      V(bad_parameter) for a relative O(path), V(not_found) when the file to restore is not there,
      V(backup_failed) or V(restore_failed) when Mnesia refused.
  returned: on failure
  type: str
'''

import posixpath
import time

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.xmpp.ejabberd.plugins.module_utils import connection, erldist
from ansible_collections.xmpp.ejabberd.plugins.module_utils import ejabberd

# What the operator can do after each failure, added to the message.
ADVICE = {
    'backup_failed': 'Create the directory on the node\'s host, owned by the service user, or '
                     'choose another path; nothing was changed.',
    'restore_failed': 'Mnesia restores in one transaction, so nothing was restored; check that the '
                      'file is an ejabberd (Mnesia) backup and that the node\'s cluster runs.',
    'rpc_error': 'Check that ejabberd runs on the node (ejabberdctl status).',
}


def main():
    module = AnsibleModule(**connection.module_kwargs(dict(
        path=dict(type='str', required=True),
        state=dict(type='str', choices=['dumped', 'restored'], default='dumped'),
    )))
    params = module.params
    try:
        target = connection.resolve(params)
    except connection.ConnectionOptionError as exc:
        module.fail_json(**exc.result())
    path = params['path']
    result = dict(changed=False, node=target['node'], path=path)
    # Mnesia would take a relative path from the node's working directory, which
    # differs between packages: say where the file goes.
    if not posixpath.isabs(path):
        module.fail_json(msg='path: %s is relative; give an absolute path on the node\'s host'
                         % path, reason='bad_parameter', **result)
    try:
        with erldist.only_dist_errors('the backup on %s' % target['node']), \
                erldist.connect(**target) as conn:
            result['tables'] = ejabberd.local_tables(conn)
            result['user_data'] = ejabberd.user_data(result['tables'])
            if params['state'] == 'restored':
                size = ejabberd.file_size(conn, path)
                if size is None:
                    module.fail_json(msg='there is no backup file %s on the host of %s (or the node '
                                     'cannot read it): copy it there first' % (path, target['node']),
                                     reason='not_found', **result)
                result['size'] = size
            result['changed'] = True
            if module.check_mode:
                module.exit_json(**result)
            started = time.monotonic()
            if params['state'] == 'dumped':
                result['size'] = ejabberd.dump(conn, path)
            else:
                result['restored_tables'] = ejabberd.restore(conn, path)
            result['elapsed_s'] = round(time.monotonic() - started, 2)
    except erldist.DistError as exc:
        result['changed'] = False
        module.fail_json(msg=('%s. %s' % (exc, ADVICE.get(exc.reason, ''))).strip(),
                         reason=exc.reason, **result)
    module.exit_json(**result)


if __name__ == '__main__':
    main()
