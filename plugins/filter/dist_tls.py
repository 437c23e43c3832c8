# -*- coding: utf-8 -*-
# Copyright: (c) 2026, xmpp.ejabberd contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filter dist_tls_problems: what is wrong with a node's TLS distribution files, checked
on the control machine before anything changes on a host."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type  # pylint: disable=invalid-name

DOCUMENTATION = r'''
name: dist_tls_problems
short_description: What is wrong with a node's certificate, key and CA for TLS distribution
version_added: 0.1.0
description:
  - Checks, with Python's own C(ssl) and no network, what OTP's TLS distribution will check - the
    certificate and the key are PEM and belong together, the CA signed the certificate, the
    certificate names every one of the given names (DNS names or IP addresses), it is valid now,
    and it serves for TLS servers and clients both (a node is each). A TLS handshake is run in
    memory between the certificate and the CA, both ways.
  - Returns a list of sentences, empty when all is well.
positional: names
options:
  _input:
    description: The certificate (PEM text).
    type: str
    required: true
  key:
    description: The private key of the certificate (PEM text).
    type: str
    required: true
  ca:
    description: The CA certificate(s) (PEM text).
    type: str
    required: true
  names:
    description: The names the certificate must name (the host part of the node name).
    type: list
    elements: str
    required: true
  labels:
    description:
      - What to call each file at the start of a sentence about it - keys V(cert), V(key) and
        V(ca), for example the names of the variables the operator set. A file without a label
        is not named.
    type: dict
    default: {}
'''

EXAMPLES = r'''
- name: Check the node's files before anything changes
  ansible.builtin.assert:
    that: _problems | length == 0
    fail_msg: "ejabberd_dist_tls_cert: {{ _problems | join('; ') }}"
  vars:
    _problems: >-
      {{ cert_pem | xmpp.ejabberd.dist_tls_problems(key=key_pem, ca=ca_pem, names=['xmpp1.example.org'],
                                                    labels={'cert': 'cert_pem', 'key': 'key_pem', 'ca': 'ca_pem'}) }}
'''

RETURN = r'''
_value:
  description: One sentence per problem, led by the label of the file it concerns; empty when the files will do.
  type: list
  elements: str
'''

import os
import shutil
import tempfile

try:
    import ssl
except ImportError:  # pragma: no cover - a Python without OpenSSL
    ssl = None

from ansible.errors import AnsibleFilterError


def _handshake(client, server, name):
    """A TLS handshake between two contexts, in memory; returns the client's error or None."""
    to_server, to_client = ssl.MemoryBIO(), ssl.MemoryBIO()
    c_in, s_in = ssl.MemoryBIO(), ssl.MemoryBIO()
    cli = client.wrap_bio(c_in, to_server, server_hostname=name)
    srv = server.wrap_bio(s_in, to_client, server_side=True)
    done = {'c': False, 's': False}
    for dummy in range(50):
        for side, obj in (('c', cli), ('s', srv)):
            if not done[side]:
                try:
                    obj.do_handshake()
                    done[side] = True
                except ssl.SSLWantReadError:
                    pass
                except ssl.SSLError as exc:
                    return exc
        s_in.write(to_server.read())
        c_in.write(to_client.read())
        if done['c'] and done['s']:
            # With TLS 1.3 the server judges the client's certificate after its handshake.
            try:
                srv.read(1)
            except ssl.SSLWantReadError:
                return None
            except ssl.SSLError as exc:
                return exc
    return ssl.SSLError('the TLS handshake did not end')


def _cause(exc):
    """(the file to blame, what is wrong) for a failed handshake."""
    text = ('%s %s' % (getattr(exc, 'verify_message', '') or '', exc)).lower()
    if 'expired' in text or 'not yet valid' in text:
        return 'cert', 'the certificate has expired, or is not valid yet'
    if 'mismatch' in text and ('hostname' in text or 'ip address' in text):
        return 'cert', 'the certificate does not name %s'
    if 'unsupported certificate purpose' in text:
        return 'cert', 'the certificate does not allow TLS server and client use (extended key usage)'
    return 'ca', 'the CA did not sign the certificate (%s)' % (getattr(exc, 'verify_message', '') or exc)


def _problems(cert, key, ca, names):
    """(file, sentence) for each problem of CERT, KEY and CA."""
    unreadable = [(stem, 'the %s is not PEM text' % what)
                  for stem, what, text, marker in (('cert', 'certificate', cert, 'CERTIFICATE'),
                                                   ('key', 'key', key, 'PRIVATE KEY'),
                                                   ('ca', 'CA certificate', ca, 'CERTIFICATE'))
                  if not isinstance(text, str) or '-----BEGIN ' not in text or marker not in text]
    if unreadable:
        return unreadable
    work = tempfile.mkdtemp(prefix='xmpp-ejabberd-tls-check.')
    try:
        paths = {}
        for stem, text in (('cert', cert), ('key', key)):
            paths[stem] = os.path.join(work, stem + '.pem')
            fd = os.open(paths[stem], os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, 'w') as handle:
                handle.write(text)
        server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        try:
            for context in (server, client):
                context.load_cert_chain(paths['cert'], paths['key'])
                context.load_verify_locations(cadata=ca)
                context.verify_mode = ssl.CERT_REQUIRED
        except ssl.SSLError as exc:
            if 'KEY_VALUES_MISMATCH' in str(exc) or 'key values mismatch' in str(exc):
                return [('key', 'the key does not belong to the certificate')]
            return [('cert', 'the certificate, the key or the CA certificate cannot be read (%s)' % exc)]
        problems = []
        for name in names or []:
            error = _handshake(client, server, name)
            if error is not None:
                stem, cause = _cause(error)
                problems.append((stem, cause % name if '%s' in cause else cause))
                if '%s' not in cause:
                    break
        return problems
    finally:
        shutil.rmtree(work, ignore_errors=True)


def dist_tls_problems(cert, key=None, ca=None, names=None, labels=None):
    """Sentences about what is wrong with CERT, KEY and CA for TLS distribution, each led by
    the label (LABELS: cert, key, ca) of the file it concerns."""
    if ssl is None:
        raise AnsibleFilterError('dist_tls_problems: this Python has no ssl module')
    labels = labels or {}
    return ['%s: %s' % (labels[stem], text) if labels.get(stem) else text
            for stem, text in _problems(cert, key, ca, names)]


class FilterModule:  # pylint: disable=too-few-public-methods
    """The collection's filters."""

    def filters(self):
        return {'dist_tls_problems': dist_tls_problems}
