# -*- coding: utf-8 -*-
# Copyright: (c) 2026, xmpp.ejabberd contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filter erlang_ip: an IP address as the Erlang tuple OTP's kernel options take."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type  # pylint: disable=invalid-name

DOCUMENTATION = r'''
name: erlang_ip
short_description: An IP address as an Erlang tuple, for kernel options such as inet_dist_use_interface
version_added: 0.1.0
description:
  - Turns an IPv4 or IPv6 address into the tuple Erlang/OTP's C(inet) writes for it,
    C({127,0,0,1}) or C({64768,0,0,0,0,0,0,17}) for C(fd00::11), as C(-kernel inet_dist_use_interface) takes it.
options:
  _input:
    description: The address.
    type: str
    required: true
  strict:
    description: V(false) returns an empty string for what is not an address, instead of failing.
    type: bool
    default: true
'''

EXAMPLES = r'''
- name: Listen for the distribution on one IPv6 address
  ansible.builtin.set_fact:
    erl_options: "-kernel inet_dist_use_interface {{ 'fd00::11' | xmpp.ejabberd.erlang_ip }} -proto_dist inet6_tcp"
'''

RETURN = r'''
_value:
  description: The tuple, as Erlang text.
  type: str
'''

import ipaddress

from ansible.errors import AnsibleFilterError


def erlang_ip(address, strict=True):
    """'fd00::11' -> '{64768,0,0,0,0,0,0,17}'; '10.0.0.1' -> '{10,0,0,1}'."""
    try:
        addr = ipaddress.ip_address(str(address).strip())
    except ValueError:
        if not strict:
            return ''
        raise AnsibleFilterError('erlang_ip: %r is not an IPv4 or IPv6 address' % (address,))
    packed = addr.packed
    if addr.version == 4:
        parts = list(packed)
    else:
        parts = [int.from_bytes(packed[i:i + 2], 'big') for i in range(0, 16, 2)]
    return '{%s}' % ','.join(str(part) for part in parts)


class FilterModule:  # pylint: disable=too-few-public-methods
    """The collection's filters."""

    def filters(self):
        return {'erlang_ip': erlang_ip}
