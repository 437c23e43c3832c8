# -*- coding: utf-8 -*-
# Copyright: (c) 2026, xmpp.ejabberd contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The connection options shared by every module of xmpp.ejabberd."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type  # pylint: disable=invalid-name


class ModuleDocFragment:  # pylint: disable=too-few-public-methods
    DOCUMENTATION = r'''
options:
  node:
    description:
      - Full Erlang node name to talk to, C(name@host).
      - A host part with a dot (a FQDN or an IP address) means long names (C(-name)), without
        one short names (C(-sname)); it must match how the node was started.
      - When omitted, C(ERLANG_NODE) of the local ejabberdctl.cfg is used (a name without
        C(@) gets the short host name, as ejabberdctl does), so a bare call checks the local node.
    type: str
  cookie:
    description:
      - The Erlang cookie (shared secret) of the node.
      - Mutually exclusive with O(cookie_file). When neither is given, the cookie is read from
        the home directory of O(cookie_user).
      - Never logged. Prefer a vaulted variable or an AWX credential.
    type: str
  cookie_file:
    description:
      - Path of a file holding the cookie, such as C(/var/lib/ejabberd/.erlang.cookie).
      - Checked as Erlang checks it; a file that group or others can access is refused.
    type: path
  cookie_user:
    description:
      - Read the cookie from C($HOME/.erlang.cookie) of this user, with HOME taken from the
        passwd database (not from the environment of the Ansible connection).
      - Used only when neither O(cookie) nor O(cookie_file) is given.
    type: str
    default: ejabberd
  dist_port:
    description:
      - Fixed distribution port of the node (ejabberd's C(ERL_DIST_PORT); C(-erl_epmd_port)).
        The node is reached directly on this port and EPMD is not asked.
      - When omitted, C(ERL_DIST_PORT) of the local ejabberdctl.cfg is used if set; otherwise
        the port is looked up in EPMD.
    type: int
  epmd_port:
    description:
      - Port of EPMD on the node's host, used when no O(dist_port) applies.
    type: int
    default: 4369
  address:
    description:
      - TCP address (IP or host name) to connect to instead of the host part of O(node).
      - When O(node) comes from the local ejabberdctl.cfg, C(INET_DIST_INTERFACE) is used.
    type: str
  timeout:
    description:
      - Seconds allowed for each step against a node (connect and handshake, each call).
    type: float
    default: 5.0
  ejabberdctl_cfg:
    description:
      - ejabberdctl.cfg to read the defaults from.
      - Default is the first of C(/etc/ejabberd/ejabberdctl.cfg) (Debian package) and
        C(/opt/ejabberd/conf/ejabberdctl.cfg) (ProcessOne installers) that exists.
    type: path
  tls:
    description:
      - Speak OTP's TLS distribution (C(-proto_dist inet_tls)) - TLS right after the TCP connect,
        the node's certificate verified against O(tls_cafile) and the host part of its node name
        (as a DNS name or an IP address), this client's certificate O(tls_certfile) presented.
        EPMD stays plain TCP.
      - When omitted, on when C(ERL_OPTIONS) of the local ejabberdctl.cfg says
        C(-proto_dist inet_tls) (or C(inet6_tls)), so a bare call checks the local node as it runs.
      - A TLS failure has reason V(tls_failed); the message names the cause (V(unknown_ca),
        V(certificate_expired), V(name_mismatch), V(no_client_certificate), V(not_tls), V(bad_files),
        V(handshake_failure)) and what to fix.
    type: bool
  tls_certfile:
    description:
      - PEM certificate this client presents (nodes that verify peers require one).
      - When omitted, C(certfile) of the C(client) (else C(server)) options in the local node's
        C(-ssl_dist_optfile) (from C(ERL_OPTIONS) of ejabberdctl.cfg); reading that file and the key
        needs root or the service user.
    type: path
  tls_keyfile:
    description:
      - PEM private key of O(tls_certfile). Default as for O(tls_certfile) (C(keyfile)).
    type: path
  tls_cafile:
    description:
      - PEM certificate(s) of the CA that signed the nodes' certificates. Default as for
        O(tls_certfile) (C(cacertfile)); required with O(tls).
    type: path
notes:
  - The module talks to the node over the Erlang distribution protocol itself, as a hidden
    node; it needs neither ejabberdctl nor Erlang where it runs, only Python 3.9 or later.
  - It connects under one of 16 node names, C(-xmpp_ejabberd_0@HOST) to
    C(-xmpp_ejabberd_15@HOST) (HOST is this host's short name, or for long names its FQDN or
    else the address it connects from). A node keeps every name that ever connected as an atom,
    so the set is small and fixed; a node restricted with C(net_kernel:allow/1) must list them.
  - Supports nodes of Erlang/OTP 23 and later; tested against OTP 25, 27 and 29 (Debian 12, 13 and
    testing). OTP 26 and 28 are not packaged in any Debian suite reachable here.
'''
