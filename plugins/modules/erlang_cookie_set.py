#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, xmpp.ejabberd contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type  # pylint: disable=invalid-name

DOCUMENTATION = r'''
module: erlang_cookie_set
short_description: Change the cookie of a running Erlang node without restarting it
version_added: 0.1.0
description:
  - Connects to a running node with its current cookie and switches it to O(new_cookie) with
    C(erlang:set_cookie/1), and for every node it is connected to with C(erlang:set_cookie/2),
    so that the node accepts and makes new connections with the new cookie. Connections that are
    up stay up (Erlang/OTP 24.1 or later).
  - Idempotent, a node that already accepts O(new_cookie) is left alone.
  - Run it on every member of a cluster, then write the new cookie file, to rotate a cluster's
    cookie without splitting it (the playbook C(xmpp.ejabberd.rotate_cookie) does this).
extends_documentation_fragment:
  - xmpp.ejabberd.connection
  - xmpp.ejabberd.attributes
attributes:
  check_mode:
    support: full
    details: Tells whether the node would be switched; changes nothing.
  diff_mode:
    support: none
    details: The cookie is a secret and is never shown.
options:
  new_cookie:
    description:
      - The cookie to switch to. Never logged.
      - The current cookie is given with O(cookie), O(cookie_file) or O(cookie_user).
    type: str
    required: true
author:
  - xmpp.ejabberd contributors (@xmpp-ejabberd)
'''

EXAMPLES = r'''
- name: Switch the running local node to the new cookie
  xmpp.ejabberd.erlang_cookie_set:
    cookie_user: ejabberd
    new_cookie: "{{ vault_new_erlang_cookie }}"
  become: true
'''

RETURN = r'''
node:
  description: The node switched.
  returned: always
  type: str
peers:
  description: Connected nodes whose cookie was switched on this node as well, sorted.
  returned: when changed
  type: list
  elements: str
'''

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.xmpp.ejabberd.plugins.module_utils import connection, erlang_node, erldist
from ansible_collections.xmpp.ejabberd.plugins.module_utils.etf import Atom


def accepts(target, cookie):
    """Whether the node accepts ``cookie``; other failures propagate."""
    try:
        erldist.connect(**dict(target, cookie=cookie)).close()
        return True
    except erldist.DistError as exc:
        if exc.reason != 'cookie_rejected':
            raise
        return False


def main():
    module = AnsibleModule(**connection.module_kwargs(dict(
        new_cookie=dict(type='str', required=True, no_log=True),
    )))
    try:
        target = connection.resolve(module.params)
        new_cookie = connection.validate_cookie(module.params['new_cookie'], 'new_cookie')
    except connection.ConnectionOptionError as exc:
        module.fail_json(**exc.result())

    result = dict(changed=False, node=target['node'])
    try:
        with erldist.only_dist_errors('switching the cookie of %s' % target['node']):
            if accepts(target, new_cookie):
                module.exit_json(**result)
            result['changed'] = True
            if module.check_mode:
                module.exit_json(**result)
            with erldist.connect(**target) as conn:
                peers = erlang_node.visible_nodes(conn)
                # secret=True: a node may echo the arguments (the new cookie) in an
                # error; such an answer is never rendered into a message.
                for peer in peers:
                    conn.rpc('erlang', 'set_cookie', [Atom(peer), Atom(new_cookie)], secret=True)
                conn.rpc('erlang', 'set_cookie', [Atom(new_cookie)], secret=True)
            result['peers'] = peers
            if not accepts(target, new_cookie):
                module.fail_json(msg='node %s was switched but still refuses the new cookie; '
                                 'check its log' % target['node'], **result)
    except erldist.DistError as exc:
        hint = (' The current cookie (cookie, cookie_file or cookie_user) must be the one the node '
                'runs with.' if exc.reason == 'cookie_rejected' else '')
        msg = 'cannot switch the cookie of %s: %s.%s' % (target['node'], exc, hint)
        module.fail_json(msg=connection.without_secrets(msg, (new_cookie, target['cookie'])),
                         reason=exc.reason, **result)
    module.exit_json(**result)


if __name__ == '__main__':
    main()
