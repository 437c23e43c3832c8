# -*- coding: utf-8 -*-
# Copyright: (c) 2026, xmpp.ejabberd contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""TLS distribution (``inet_tls_dist``) for the client in erldist.py: the context, TLS on
a connected socket, and what a TLS failure means.

erldist imports this only when TLS is used (or an ssl error must be explained), so a
plain module run does not compile it: under AnsiballZ, modules run from source.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type  # pylint: disable=invalid-name

import errno
import socket

from ansible_collections.xmpp.ejabberd.plugins.module_utils.erldist import (
    DistError, _bad, _is_ssl_error, _public, peer_text)

# The causes of a tls_failed DistError (its ``cause``), and what to fix for each.
TLS_CAUSES = {
    'unknown_ca': 'the certificate was signed by a CA the other side does not trust: give '
                  'both sides the cluster\'s CA certificate (tls_cafile), and certificates '
                  'that CA signed',
    'certificate_expired': 'a certificate has expired (or is not valid yet): renew the '
                           'distribution certificates (rerun the site playbook)',
    'name_mismatch': 'the node\'s certificate does not name the host part of its node name '
                     '(as a DNS name or an IP address): make certificates for the node names',
    'no_client_certificate': 'the node requires a client certificate and got none it '
                             'accepts: give tls_certfile and tls_keyfile',
    'not_tls': 'the node does not speak TLS on its distribution port: it runs plain TCP '
               'distribution, so connect without TLS (or switch the node to TLS)',
    'bad_files': 'the certificate, key or CA file cannot be used: check the paths, that the '
                 'key belongs to the certificate, and that the files are PEM',
    'handshake_failure': 'the TLS handshake failed: check that both sides allow TLS 1.2 or '
                         '1.3 and share a cipher',
}


def _ssl():
    """The ssl module, imported only when TLS is used (its import is a good part of a plain
    module run's own time); None in a Python built without OpenSSL."""
    try:
        import ssl  # pylint: disable=import-outside-toplevel
    except ImportError:
        return None
    return ssl


def _tls_failed(cause, what, detail):
    return DistError('tls_failed', 'TLS with %s failed (%s: %s): %s'
                     % (what, cause, peer_text(detail, 160), TLS_CAUSES[cause]), cause)


def ssl_error(exc, what):
    """The ``tls_failed`` DistError of an ``ssl.SSLError`` on the connection to ``what``."""
    return _tls_failed(_tls_cause(exc), what, exc)


def _tls_cause(exc):
    """The TLS_CAUSES key an ssl error stands for."""
    verify = getattr(exc, 'verify_message', None) or ''
    text = '%s %s %s' % (getattr(exc, 'reason', '') or '', verify, exc)
    lower = text.lower()
    if 'expired' in lower or 'not yet valid' in lower:
        return 'certificate_expired'
    if 'mismatch' in lower and ('hostname' in lower or 'ip address' in lower):
        return 'name_mismatch'
    if 'unknown_ca' in lower or 'unknown ca' in lower or 'local issuer' in lower \
            or 'self-signed' in lower or 'self signed' in lower:
        return 'unknown_ca'
    if 'certificate_required' in lower or 'peer did not return a certificate' in lower:
        return 'no_client_certificate'
    if 'wrong_version_number' in lower or 'wrong version number' in lower \
            or 'unexpected eof' in lower or 'record layer failure' in lower \
            or 'packet length too long' in lower or 'http_request' in lower:
        return 'not_tls'
    return 'handshake_failure'


@_public('making a TLS context')
def tls_context(certfile=None, keyfile=None, cafile=None):
    """An ``ssl.SSLContext`` for TLS distribution: TLS 1.2 or later, the node's
    certificate verified against CAFILE and the host part of its name, and our own
    CERTFILE and KEYFILE presented (the nodes require one: ``fail_if_no_peer_cert``).
    A file that cannot be used raises DistError ``tls_failed`` (cause ``bad_files``)."""
    ssl = _ssl()
    if ssl is None:
        raise DistError('tls_failed', 'this Python has no ssl module, so it cannot speak TLS '
                        'distribution: use a Python built with OpenSSL', 'bad_files')
    if not cafile:
        raise _bad('tls_cafile: TLS distribution needs the CA certificate that signed the '
                   'nodes\' certificates')
    if bool(certfile) != bool(keyfile):
        raise _bad('tls_certfile and tls_keyfile go together: give both or neither')
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.check_hostname = True
    context.verify_mode = ssl.CERT_REQUIRED
    try:
        context.load_verify_locations(cafile=cafile)
        if certfile:
            context.load_cert_chain(certfile, keyfile)
    except (OSError, ValueError) as exc:   # ssl.SSLError is an OSError
        raise DistError('tls_failed', 'the TLS files (certificate %s, key %s, CA %s) cannot be '
                        'used (%s): %s' % (certfile, keyfile, cafile, peer_text(str(exc), 160),
                                           TLS_CAUSES['bad_files']), 'bad_files')
    return context


def start_tls(sock, context, host, deadline, what):
    """TLS on the connected socket, the node's certificate checked against HOST (the
    host part of its name, also sent as SNI, as OTP's client does)."""
    try:
        sock.settimeout(deadline.left())
        tls = context.wrap_socket(sock, server_hostname=host, do_handshake_on_connect=False)
        tls.do_handshake()
        return tls
    except socket.timeout:
        # The port took the connection but nothing came back to our hello: a plain
        # node reads the hello as a handshake message and waits for the rest.
        sock.close()
        raise _tls_failed('not_tls', what, 'no answer to the TLS hello within %.1f s'
                          % deadline.seconds)
    except OSError as exc:   # ssl.SSLError is one
        sock.close()
        if _is_ssl_error(exc):
            raise ssl_error(exc, what)
        if exc.errno in (errno.ECONNRESET, errno.EPIPE, None):
            raise _tls_failed('not_tls', what, exc)
        raise DistError('unreachable', 'connection to %s failed during the TLS handshake: %s'
                        % (what, exc))
