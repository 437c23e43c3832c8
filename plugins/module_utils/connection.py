# -*- coding: utf-8 -*-
# Copyright: (c) 2026, xmpp.ejabberd contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The connection options every module shares: spec, defaults, validation, cookie.

Options are documented once in ``plugins/doc_fragments/connection.py``.  All
validation happens here, before any network traffic, with messages that name
the offending option.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type  # pylint: disable=invalid-name

import hashlib
import ipaddress
import os
import pwd
import re
import shlex
import socket
import stat

from ansible_collections.xmpp.ejabberd.plugins.module_utils import erldist

EJABBERDCTL_CFG_PATHS = ('/etc/ejabberd/ejabberdctl.cfg', '/opt/ejabberd/conf/ejabberdctl.cfg')
MAX_COOKIE_LENGTH = 255
MAX_COOKIE_FILE_SIZE = 64 * 1024

CONNECTION_ARGUMENT_SPEC = dict(
    node=dict(type='str'),
    cookie=dict(type='str', no_log=True),
    cookie_file=dict(type='path'),
    cookie_user=dict(type='str', default='ejabberd'),
    dist_port=dict(type='int'),
    epmd_port=dict(type='int', default=erldist.EPMD_DEFAULT_PORT),
    address=dict(type='str'),
    timeout=dict(type='float', default=5.0),
    ejabberdctl_cfg=dict(type='path'),
    tls=dict(type='bool'),
    tls_certfile=dict(type='path'),
    tls_keyfile=dict(type='path'),
    tls_cafile=dict(type='path'),
)
CONNECTION_MUTUALLY_EXCLUSIVE = [('cookie', 'cookie_file')]

_CFG_LINE = re.compile(r'^\s*(?:export\s+)?([A-Z_][A-Z0-9_]*)=(.*)$')
# What an ssl_dist options file may be at most, and the words of its text (a pattern
# for re.S | re.X, compiled on first use: most runs read no Erlang terms).
MAX_OPTFILE_SIZE = 64 * 1024
_TERM_TOKEN = r'''\s*(?:(?P<str>"(?:[^"\\]|\\.)*")
                     |(?P<qatom>'(?:[^'\\]|\\.)*')
                     |(?P<sym>[\[\]{},.]|<<|>>)
                     |(?P<word>[A-Za-z0-9_@.+-]+)
                     |(?P<comment>%[^\n]*))'''


class ConnectionOptionError(ValueError):
    """A connection option is wrong; the message names it. ``reason`` is the module's
    reason code (``bad_parameter``, or ``tls_failed`` with a ``cause`` for TLS files that
    cannot be used)."""

    def __init__(self, message, reason='bad_parameter', cause=None):
        super(ConnectionOptionError, self).__init__(message)
        self.reason = reason
        self.cause = cause

    def result(self):
        """What a module fails with."""
        found = dict(msg=str(self), reason=self.reason)
        if self.cause:
            found['tls_cause'] = self.cause
        return found


def module_kwargs(argument_spec=None, **kwargs):
    """AnsibleModule keyword arguments with the connection options merged in."""
    spec = dict(CONNECTION_ARGUMENT_SPEC)
    spec.update(argument_spec or {})
    exclusive = list(CONNECTION_MUTUALLY_EXCLUSIVE) + list(kwargs.pop('mutually_exclusive', []))
    return dict(argument_spec=spec, mutually_exclusive=exclusive,
                supports_check_mode=True, **kwargs)


def read_ejabberdctl_cfg(path):
    """The ``VAR=value`` settings of an ejabberdctl.cfg (comments ignored)."""
    settings = {}
    with open(path, encoding='utf-8', errors='replace') as handle:
        for line in handle:
            match = _CFG_LINE.match(line)
            if match:
                settings[match.group(1)] = _shell_value(match.group(2))
    return settings


def _shell_value(text):
    """The value of a shell assignment: quotes removed, a trailing comment dropped."""
    try:
        words = shlex.split(text, comments=True)
    except ValueError:  # unbalanced quotes: the shell would fail too; keep the raw text
        return text.strip()
    return words[0] if words else ''


def _find_cfg(path):
    if path:
        if not os.path.isfile(path):
            raise ConnectionOptionError('ejabberdctl_cfg: %s does not exist' % path)
        return path
    for candidate in EJABBERDCTL_CFG_PATHS:
        if os.path.isfile(candidate):
            return candidate
    return None


def validate_node(node, option='node'):
    try:
        erldist.split_node(node)
    except ValueError:
        raise ConnectionOptionError('%s: %r is not a node name; it must look like name@host '
                                    '(for example ejabberd@xmpp1.example.org)' % (option, node))
    return node


def validate_port(port, option):
    if port is not None and not 1 <= port <= 65535:
        raise ConnectionOptionError('%s: %d is not a TCP port (1-65535)' % (option, port))
    return port


def validate_cookie(cookie, source='cookie'):
    """What a cookie file may hold: 1..255 printable ASCII characters."""
    if not cookie:
        raise ConnectionOptionError('%s: the Erlang cookie is empty' % source)
    if len(cookie) > MAX_COOKIE_LENGTH:
        raise ConnectionOptionError('%s: the Erlang cookie has %d characters; Erlang allows at '
                                    'most %d' % (source, len(cookie), MAX_COOKIE_LENGTH))
    if any(not 32 <= ord(c) <= 126 for c in cookie):
        raise ConnectionOptionError('%s: the Erlang cookie contains control characters (a tab or '
                                    'newline?) or characters outside ASCII; Erlang refuses such a '
                                    'cookie in .erlang.cookie' % source)
    return cookie


def parse_cookie_file(raw):
    """The cookie in the bytes of a cookie file, as OTP's auth module reads it.

    The cookie is the leading run of printable ASCII; after it only newlines,
    carriage returns and spaces may follow.  Returns None if Erlang would refuse.
    """
    end = 0
    while end < len(raw) and 32 <= raw[end] <= 126:
        end += 1
    if raw[end:].strip(b'\r\n ') or end == 0:
        return None
    return raw[:end].decode('ascii')


def read_cookie_file(path, option='cookie_file'):
    """The cookie in ``path``, checked as Erlang checks it (owner-only, no bad characters)."""
    try:
        info = os.stat(path)
    except OSError as exc:
        raise ConnectionOptionError('%s: cannot read %s (%s); give the path of the cluster\'s '
                                    '.erlang.cookie' % (option, path, exc.strerror))
    if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConnectionOptionError('%s: %s has mode %04o; Erlang refuses a cookie file that group '
                                    'or others can access: chmod 0400 it'
                                    % (option, path, stat.S_IMODE(info.st_mode)))
    try:
        with open(path, 'rb') as handle:
            raw = handle.read(MAX_COOKIE_FILE_SIZE + 1)
    except OSError as exc:
        raise ConnectionOptionError('%s: cannot read %s (%s); run as its owner or root'
                                    % (option, path, exc.strerror))
    source = '%s (%s)' % (option, path)
    if len(raw) > MAX_COOKIE_FILE_SIZE:
        raise ConnectionOptionError('%s: the file is larger than %d bytes; it is not an Erlang '
                                    'cookie file' % (source, MAX_COOKIE_FILE_SIZE))
    cookie = parse_cookie_file(raw)
    if cookie is None:
        raise ConnectionOptionError('%s: the file is empty or holds characters Erlang refuses in a '
                                    'cookie (only printable ASCII, then line breaks or spaces)'
                                    % source)
    return validate_cookie(cookie, source)


def user_cookie_path(user, option='cookie_user'):
    """``$HOME/.erlang.cookie`` of ``user``, HOME from the passwd database."""
    try:
        home = pwd.getpwnam(user).pw_dir
    except KeyError:
        raise ConnectionOptionError('%s: there is no user %r here, so there is no cookie to read; '
                                    'set cookie or cookie_file, or the service user' % (option, user))
    if not home:
        raise ConnectionOptionError('%s: user %r has no HOME in the passwd database' % (option, user))
    return os.path.join(home, '.erlang.cookie')


def cookie_source(params):
    """``(path, option)`` of the cookie file the parameters name (``cookie_file``, else the
    ``cookie_user``'s HOME), or None when the cookie is given as a value."""
    if params.get('cookie') is not None:
        return None
    if params.get('cookie_file'):
        return params['cookie_file'], 'cookie_file'
    return user_cookie_path(params.get('cookie_user') or 'ejabberd'), 'cookie_user'


def cookie_file_facts(params):
    """Where the cookie came from, when from a file: its path, mode and SHA-256 (so that a
    play can tell that every node holds the same cookie without a second read of the file).
    None when the cookie was given as a value. Call after :func:`resolve` read the file."""
    source = cookie_source(params)
    if source is None:
        return None
    path = source[0]
    try:
        with open(path, 'rb') as handle:
            digest = hashlib.sha256(handle.read(MAX_COOKIE_FILE_SIZE + 1)).hexdigest()
            mode = stat.S_IMODE(os.fstat(handle.fileno()).st_mode)
    except OSError as exc:  # removed since resolve() read it
        raise ConnectionOptionError('cookie file %s: cannot read it again (%s)' % (path, exc.strerror))
    return dict(path=path, mode='%04o' % mode, sha256=digest)


def short_hostname():
    return socket.gethostname().split('.')[0]


def resolve(params):
    """Turn module parameters into :func:`erldist.connect` keyword arguments.

    Missing ``node``, ``dist_port`` and ``address`` come from the local
    ejabberdctl.cfg; the cookie from ``cookie``, ``cookie_file`` or the
    ``cookie_user``'s HOME, in that order.  Raises ConnectionOptionError.
    """
    for option in ('dist_port', 'epmd_port'):
        validate_port(params.get(option), option)
    if params.get('timeout') is not None and not 0 < params['timeout'] <= 3600:
        raise ConnectionOptionError('timeout: %s is not a number of seconds between 0 and 3600'
                                    % params['timeout'])
    cfg_path = _find_cfg(params.get('ejabberdctl_cfg'))
    cfg = read_ejabberdctl_cfg(cfg_path) if cfg_path else {}

    node, address = params.get('node'), params.get('address')
    if node is None:
        if cfg_path is None:
            raise ConnectionOptionError('node: not given and no ejabberdctl.cfg found (looked in %s)'
                                        '; set node' % ', '.join(EJABBERDCTL_CFG_PATHS))
        node = cfg.get('ERLANG_NODE') or 'ejabberd@localhost'
        if '@' not in node:
            node = '%s@%s' % (node, short_hostname())  # as ejabberdctl does
        if address is None:
            address = _dist_interface(cfg)
    validate_node(node, 'node' if params.get('node') is not None else 'ERLANG_NODE in %s' % cfg_path)

    dist_port = params.get('dist_port')
    if dist_port is None and cfg.get('ERL_DIST_PORT'):
        try:
            dist_port = validate_port(int(cfg['ERL_DIST_PORT']), 'ERL_DIST_PORT')
        except ValueError:
            raise ConnectionOptionError('ERL_DIST_PORT in %s is %r, not a port number'
                                        % (cfg_path, cfg['ERL_DIST_PORT']))

    source = cookie_source(params)
    cookie = validate_cookie(params['cookie']) if source is None else read_cookie_file(*source)
    return dict(node=node, cookie=cookie, address=address, dist_port=dist_port,
                epmd_port=params.get('epmd_port') or erldist.EPMD_DEFAULT_PORT,
                timeout=params.get('timeout') or 5.0, tls=tls_from_options(params, cfg, cfg_path))


def parse_erlang_terms(text):
    """The first term of an Erlang consult file (such as OTP's ssl_dist options file):
    lists, tuples, atoms, strings and binaries (as str), integers. ValueError if the text
    is not such a term."""
    token = re.compile(_TERM_TOKEN, re.S | re.X)  # re caches it after the first call
    tokens, pos = [], 0
    while pos < len(text):
        match = token.match(text, pos)
        if not match:
            if text[pos:].strip():
                raise ValueError('unexpected %r' % text[pos:pos + 20])
            break
        pos = match.end()
        kind = match.lastgroup
        if kind != 'comment':
            tokens.append((kind, match.group(kind)))

    def term(i):
        kind, value = tokens[i]
        if kind == 'sym' and value in '[{':
            close, items, i = (']' if value == '[' else '}'), [], i + 1
            while tokens[i] != ('sym', close):
                item, i = term(i)
                items.append(item)
                if tokens[i] == ('sym', ','):
                    i += 1
            return (items if close == ']' else tuple(items)), i + 1
        if kind == 'sym' and value == '<<':
            inner, i = term(i + 1)
            if tokens[i] != ('sym', '>>'):
                raise ValueError('a binary must be <<"text">>')
            return inner, i + 1
        if kind in ('str', 'qatom'):
            return re.sub(r'\\(.)', r'\1', value[1:-1]), i + 1
        if kind == 'word':
            return (int(value) if re.match(r'^-?[0-9]+$', value) else value), i + 1
        raise ValueError('unexpected %r' % value)

    try:
        result, end = term(0)
    except IndexError:
        raise ValueError('the text ends in the middle of a term')
    if tokens[end:] not in ([], [('sym', '.')]):
        raise ValueError('more than one term')
    return result


def _erl_options(cfg):
    """ERL_OPTIONS of ejabberdctl.cfg as {word: the word after it}."""
    try:
        words = shlex.split(cfg.get('ERL_OPTIONS', ''))
    except ValueError:
        words = cfg.get('ERL_OPTIONS', '').split()
    return dict(zip(words, words[1:]))


def _dist_interface(cfg):
    """The address the local node's distribution listens on, as ejabberdctl.cfg sets it:
    INET_DIST_INTERFACE, else ``-kernel inet_dist_use_interface {...}`` in ERL_OPTIONS
    (how role ejabberd sets an IPv6 interface, the same way on every release); None
    when the node listens on every interface."""
    if cfg.get('INET_DIST_INTERFACE') not in (None, '', '0.0.0.0', '::'):
        return cfg['INET_DIST_INTERFACE']
    try:
        parts = parse_erlang_terms(_erl_options(cfg).get('inet_dist_use_interface', ''))
        if len(parts) == 4:
            return str(ipaddress.ip_address(bytes(parts)))
        if len(parts) == 8:
            return str(ipaddress.ip_address(b''.join(part.to_bytes(2, 'big') for part in parts)))
        return None
    except (ValueError, TypeError, IndexError, OverflowError, AttributeError):
        return None


def _tls_defaults(cfg, cfg_path):
    """``(tls, certfile, keyfile, cafile)`` as the local ejabberdctl.cfg sets the node up:
    TLS when ERL_OPTIONS says ``-proto_dist inet_tls`` (or ``inet6_tls``), the files
    from the ``client`` part of its ``-ssl_dist_optfile`` (else the ``server`` part)."""
    options = _erl_options(cfg)
    if options.get('-proto_dist') not in ('inet_tls', 'inet6_tls'):
        return False, None, None, None
    optfile = options.get('-ssl_dist_optfile')
    if not optfile:
        return True, None, None, None
    where = '-ssl_dist_optfile %s (ERL_OPTIONS in %s)' % (optfile, cfg_path)
    try:
        with open(optfile, encoding='utf-8', errors='replace') as handle:
            parsed = parse_erlang_terms(handle.read(MAX_OPTFILE_SIZE))
        sides = {side: dict(opt for opt in opts if isinstance(opt, tuple) and len(opt) == 2)
                 for side, opts in parsed if isinstance(opts, list)}
    except OSError as exc:
        raise ConnectionOptionError('%s cannot be read (%s): run as root, or give tls_certfile, '
                                    'tls_keyfile and tls_cafile' % (where, exc.strerror))
    except (ValueError, TypeError):
        raise ConnectionOptionError('%s is not a list of {server, Options} and {client, Options} '
                                    'terms: fix it, or give tls_certfile, tls_keyfile and tls_cafile'
                                    % where)

    def pick(key):
        for side in ('client', 'server'):
            value = sides.get(side, {}).get(key)
            if isinstance(value, str) and value:
                return value
        return None
    return True, pick('certfile'), pick('keyfile'), pick('cacertfile')


def tls_from_options(params, cfg, cfg_path):
    """The TLS context of the connection options (None for plain TCP); the defaults
    come from the local node's own TLS settings."""
    tls, certfile, keyfile, cafile = _tls_defaults(cfg, cfg_path)
    if params.get('tls') is not None:
        tls = params['tls']
    if not tls:
        return None
    certfile = params.get('tls_certfile') or certfile
    keyfile = params.get('tls_keyfile') or keyfile
    cafile = params.get('tls_cafile') or cafile
    if not cafile:
        raise ConnectionOptionError('tls_cafile: TLS distribution needs the CA certificate that '
                                    'signed the nodes\' certificates (not given, and no '
                                    'cacertfile in the local node\'s ssl_dist options)')
    if bool(certfile) != bool(keyfile):
        raise ConnectionOptionError('tls_certfile and tls_keyfile go together: give both or neither')
    try:
        return erldist.tls_context(certfile, keyfile, cafile)
    except erldist.DistError as exc:
        raise ConnectionOptionError(str(exc), exc.reason, exc.cause)


def without_secrets(text, secrets):
    """``text`` with every secret in it replaced: a safety net for messages built
    from what a node sent, which may echo a secret sent to it."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, '(secret)')
    return text


def connection_facts(conn):
    """How a connection was made, for module results (with the node's certificate over
    TLS distribution)."""
    facts = dict(node=conn.node, address=conn.address, port=conn.port, via_epmd=conn.via_epmd,
                 tls=conn.tls is not None)
    if conn.tls is not None:
        facts['tls_certificate'] = conn.tls
    return facts
