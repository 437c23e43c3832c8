#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, xmpp.ejabberd contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type  # pylint: disable=invalid-name

DOCUMENTATION = r'''
module: erlang_node_info
short_description: Check that an Erlang node answers, and gather its facts
version_added: 0.1.0
description:
  - Connects to an Erlang node (such as an ejabberd node) over the Erlang distribution protocol,
    as a hidden node, proves the cookie in both directions and asks the node for its OTP
    release and the nodes it is connected to.
  - Reports how the node was reached and how long that took.
  - With O(fail_on_error=false) an unreachable node is a result, not a failure, for probing loops.
extends_documentation_fragment:
  - xmpp.ejabberd.connection
  - xmpp.ejabberd.attributes
  - xmpp.ejabberd.attributes.read_only
options:
  fail_on_error:
    description:
      - When V(false), a node that cannot be reached returns RV(reachable=false) with
        RV(reason) and RV(msg) instead of failing the task.
      - Bad parameters always fail.
    type: bool
    default: true
author:
  - xmpp.ejabberd contributors (@xmpp-ejabberd)
'''

EXAMPLES = r'''
- name: Check the local ejabberd node (settings from ejabberdctl.cfg, cookie of user ejabberd)
  xmpp.ejabberd.erlang_node_info:
  become: true
  register: node

- name: Check a node in ERL_DIST_PORT mode from the control machine
  xmpp.ejabberd.erlang_node_info:
    node: ejabberd@xmpp1.example.org
    dist_port: 5210
    cookie: "{{ vault_erlang_cookie }}"
  delegate_to: localhost

- name: Wait until a node answers
  xmpp.ejabberd.erlang_node_info:
    node: ejabberd@xmpp2.example.org
    cookie_file: /var/lib/ejabberd/.erlang.cookie
    fail_on_error: false
  register: probe
  until: probe.reachable
  retries: 30
  delay: 2
'''

RETURN = r'''
reachable:
  description: Whether the handshake succeeded and the node answered.
  returned: always
  type: bool
  sample: true
node:
  description: The node name that was asked for.
  returned: always
  type: str
  sample: ejabberd@xmpp1.example.org
otp_release:
  description: The node's Erlang/OTP release.
  returned: when reachable
  type: str
  sample: "27"
nodes:
  description: The node's visible connected nodes (C(erlang:nodes())), sorted.
  returned: when reachable
  type: list
  elements: str
  sample: [ejabberd@xmpp2.example.org]
address:
  description: The TCP address connected to.
  returned: when reachable
  type: str
  sample: xmpp1.example.org
port:
  description: The distribution port connected to.
  returned: when reachable
  type: int
  sample: 5210
via_epmd:
  description: Whether the port was looked up in EPMD (V(false) in ERL_DIST_PORT mode).
  returned: when reachable
  type: bool
  sample: false
tls:
  description: Whether the node was reached over TLS distribution.
  returned: when reachable
  type: bool
  sample: false
tls_certificate:
  description:
    - The node's certificate as it presented it over TLS - C(subject), C(not_after), C(days_left)
      (whole days until it expires) and the TLS C(version).
  returned: when reached over TLS
  type: dict
  sample: {subject: commonName=xmpp1.example.org, not_after: "Dec  3 12:00:00 2027 GMT", days_left: 364, version: TLSv1.3}
elapsed_ms:
  description: Time for connect, handshake and the queries, in milliseconds.
  returned: always
  type: float
  sample: 2.4
reason:
  description:
    - Why the node could not be reached, one of V(unreachable), V(epmd_unreachable),
      V(not_registered), V(not_allowed), V(cookie_rejected), V(name_type_mismatch),
      V(timeout), V(protocol_error), V(rpc_error) or V(tls_failed) (the message names the cause and
      the fix); V(bad_parameter) for a bad option.
  returned: when not reachable
  type: str
  sample: cookie_rejected
msg:
  description: What went wrong and the likely fix.
  returned: when not reachable
  type: str
'''

import time

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.xmpp.ejabberd.plugins.module_utils import connection, erlang_node, erldist


def node_facts(conn):
    """OTP release and visible nodes of the node behind ``conn``."""
    return dict(otp_release=erlang_node.otp_release(conn), nodes=erlang_node.visible_nodes(conn))


def main():
    module = AnsibleModule(**connection.module_kwargs(dict(
        fail_on_error=dict(type='bool', default=True),
    )))
    try:
        target = connection.resolve(module.params)
    except connection.ConnectionOptionError as exc:
        module.fail_json(reachable=False, **exc.result())

    result = dict(changed=False, reachable=False, node=target['node'])
    started = time.monotonic()
    try:
        with erldist.only_dist_errors('checking node %s' % target['node']):
            with erldist.connect(**target) as conn:
                result.update(connection.connection_facts(conn))
                result.update(node_facts(conn))
                result['reachable'] = True
    except erldist.DistError as exc:
        result.update(reason=exc.reason, msg=str(exc))
    result['elapsed_ms'] = round((time.monotonic() - started) * 1000, 2)

    if not result['reachable'] and module.params['fail_on_error']:
        module.fail_json(**result)
    module.exit_json(**result)


if __name__ == '__main__':
    main()
