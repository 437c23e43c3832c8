# Copyright: xmpp.ejabberd contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Connection options (plugins/module_utils/connection.py): validation and defaults.

Every bad input must fail with a message that names the parameter, and BEFORE
any network traffic.  Each case runs twice: through the module the way Ansible
runs it (``python -m ...erlang_node_info args.json``), pointed at recording
listeners that stand where the node and its EPMD would be (they must see no
connection at all), and directly through ``connection.resolve()``.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time

import pytest

from ansible_collections.xmpp.ejabberd.plugins.module_utils import connection
from ansible_collections.xmpp.ejabberd.plugins.modules import erlang_node_info
from ansible_collections.xmpp.ejabberd.tests.helpers import fakepeer as fp

MODULE = 'ansible_collections.xmpp.ejabberd.plugins.modules.erlang_node_info'
# .../collections/ansible_collections/xmpp/ejabberd/plugins/modules/erlang_node_info.py
COLLECTIONS_ROOT = os.path.abspath(os.path.join(os.path.dirname(erlang_node_info.__file__), *['..'] * 5))
COOKIE = 'Unit-Test-Cookie-7d1f3a'


def defaults():
    """The module's parameters as AnsibleModule fills them when nothing is given."""
    return {name: spec.get('default') for name, spec in connection.CONNECTION_ARGUMENT_SPEC.items()}


def run_module(args, workdir):
    """Run the module as Ansible does (args file as argv[1]); return (rc, result, raw stdout)."""
    path = os.path.join(str(workdir), 'args.json')
    with open(path, 'w', encoding='utf-8') as handle:
        json.dump({'ANSIBLE_MODULE_ARGS': args}, handle)
    env = dict(os.environ, PYTHONPATH=COLLECTIONS_ROOT)
    proc = subprocess.run([sys.executable, '-m', MODULE, path], capture_output=True, text=True,
                          env=env, cwd=str(workdir), timeout=60, check=False)
    lines = [line for line in proc.stdout.splitlines() if line.strip().startswith('{')]
    assert lines, 'no JSON result from the module: %r %r' % (proc.stdout, proc.stderr)
    return proc.returncode, json.loads(lines[-1]), proc.stdout + proc.stderr


def assert_no_secret(secret, text):
    """Fail if ``secret`` shows up in ``text``, without printing either."""
    if len(secret) >= 4 and secret in text:
        pytest.fail('a cookie appears in the output at offset %d' % text.index(secret))


def write(path, content, mode=0o400):
    data = content.encode('latin-1') if isinstance(content, str) else content
    if os.path.exists(path):
        os.chmod(path, 0o600)
    with open(path, 'wb') as handle:
        handle.write(data)
    os.chmod(path, mode)
    return str(path)


@pytest.fixture
def recorders():
    """Two listeners that record connections: where the node and its EPMD would be."""
    with fp.FakeServer(fp.record_only) as node, fp.FakeServer(fp.record_only) as epmd:
        yield node, epmd
        assert not node.errors and not epmd.errors


@pytest.fixture
def files(tmp_path):
    """A good cookie file, an empty ejabberdctl.cfg (so no system one is read) and a helper dir."""
    return dict(cookie_file=write(tmp_path / 'good.cookie', COOKIE + '\n'),
                cfg=write(tmp_path / 'empty.cfg', '', 0o644), tmp=tmp_path)


# --------------------------------------------------------------------------- bad input

def _cfg(tmp, text):
    return write(tmp / 'ejabberdctl.cfg', text, 0o644)


# id, function(files) -> overrides, text the message must contain
BAD_INPUT = [
    ('node-without-at', lambda f: dict(node='ejabberd'), 'node:'),
    ('node-two-at', lambda f: dict(node='a@b@c'), 'node:'),
    ('node-no-host', lambda f: dict(node='ejabberd@'), 'node:'),
    ('cookie-empty', lambda f: dict(cookie='', cookie_file=None), 'cookie:'),
    ('cookie-256-chars', lambda f: dict(cookie='c' * 256, cookie_file=None), 'cookie:'),
    ('cookie-tab', lambda f: dict(cookie='abc\tdef', cookie_file=None), 'cookie:'),
    ('cookie-newline-inside', lambda f: dict(cookie='abc\ndef', cookie_file=None), 'cookie:'),
    ('cookie-trailing-newline', lambda f: dict(cookie='abcdef\n', cookie_file=None), 'cookie:'),
    ('cookie-not-latin1', lambda f: dict(cookie='abc\u20acdef', cookie_file=None), 'cookie:'),
    ('cookie_file-missing', lambda f: dict(cookie_file=str(f['tmp'] / 'nope')), 'cookie_file:'),
    ('cookie_file-0640', lambda f: dict(cookie_file=write(f['tmp'] / 'c640', COOKIE, 0o640)), 'cookie_file:'),
    ('cookie_file-0604', lambda f: dict(cookie_file=write(f['tmp'] / 'c604', COOKIE, 0o604)), 'cookie_file:'),
    ('cookie_file-0644', lambda f: dict(cookie_file=write(f['tmp'] / 'c644', COOKIE, 0o644)), 'cookie_file:'),
    ('cookie_file-0401', lambda f: dict(cookie_file=write(f['tmp'] / 'c401', COOKIE, 0o401)), 'cookie_file:'),
    ('cookie_file-empty', lambda f: dict(cookie_file=write(f['tmp'] / 'c0', '')), 'cookie_file'),
    ('cookie_file-only-newline', lambda f: dict(cookie_file=write(f['tmp'] / 'cn', '\n')), 'cookie_file'),
    ('cookie_file-tab', lambda f: dict(cookie_file=write(f['tmp'] / 'ct', 'abc\tdef\n')), 'cookie_file'),
    ('cookie_file-newline-inside', lambda f: dict(cookie_file=write(f['tmp'] / 'cni', 'abc\ndef\n')), 'cookie_file'),
    ('cookie_file-256-chars', lambda f: dict(cookie_file=write(f['tmp'] / 'c256', 'c' * 256 + '\n')), 'cookie_file'),
    ('cookie_file-directory', lambda f: dict(cookie_file=str(f['tmp'])), 'cookie_file:'),
    ('cookie_user-unknown', lambda f: dict(cookie_file=None, cookie_user='no_such_user_xyz'), 'cookie_user:'),
    ('cookie_user-without-cookie', lambda f: dict(cookie_file=None, cookie_user='nobody'), 'cookie_user:'),
    ('dist_port-0', lambda f: dict(dist_port=0), 'dist_port:'),
    ('dist_port-70000', lambda f: dict(dist_port=70000), 'dist_port:'),
    ('dist_port-negative', lambda f: dict(dist_port=-1), 'dist_port:'),
    ('epmd_port-0', lambda f: dict(epmd_port=0), 'epmd_port:'),
    ('epmd_port-70000', lambda f: dict(epmd_port=70000), 'epmd_port:'),
    ('timeout-0', lambda f: dict(timeout=0), 'timeout:'),
    ('timeout-negative', lambda f: dict(timeout=-1), 'timeout:'),
    ('timeout-huge', lambda f: dict(timeout=100000), 'timeout:'),
    ('ejabberdctl_cfg-missing', lambda f: dict(ejabberdctl_cfg=str(f['tmp'] / 'nope.cfg')), 'ejabberdctl_cfg:'),
    ('cfg-ERL_DIST_PORT-text', lambda f: dict(ejabberdctl_cfg=_cfg(f['tmp'], 'ERL_DIST_PORT=fast\n')), 'ERL_DIST_PORT'),
    ('cfg-ERL_DIST_PORT-70000', lambda f: dict(ejabberdctl_cfg=_cfg(f['tmp'], 'ERL_DIST_PORT=70000\n')), 'ERL_DIST_PORT'),
    ('cfg-ERLANG_NODE-bad', lambda f: dict(node=None, ejabberdctl_cfg=_cfg(f['tmp'], 'ERLANG_NODE=a@b@c\n')), 'ERLANG_NODE'),
]


# Also run through the module (each run costs a Python start-up with ansible's imports);
# resolve() gets every case.
THROUGH_THE_MODULE = [
    'node-without-at', 'cookie-empty', 'cookie-256-chars', 'cookie-tab', 'cookie-newline-inside',
    'cookie_file-missing', 'cookie_file-0640', 'cookie_file-0604', 'cookie_user-unknown',
    'dist_port-0', 'dist_port-70000', 'epmd_port-0', 'epmd_port-70000', 'timeout-0',
    'ejabberdctl_cfg-missing', 'cfg-ERL_DIST_PORT-text', 'cfg-ERLANG_NODE-bad',
]


def _bad_args(case, files, recorders):
    """Module arguments for one bad-input case: everything else valid, and pointed at the
    recording listeners (dist_port = the node recorder, epmd_port = the EPMD recorder)."""
    node, epmd = recorders
    case_id, make, expected = case
    args = dict(node='x@127.0.0.1', address='127.0.0.1', dist_port=node.port, epmd_port=epmd.port,
                cookie_file=files['cookie_file'], ejabberdctl_cfg=files['cfg'], timeout=3)
    if case_id.startswith('cfg-ERL_DIST_PORT'):
        del args['dist_port']  # the port under test comes from the cfg
    args.update(make(files))
    return {k: v for k, v in args.items() if v is not None}, expected


def _make_files(tmp):
    return dict(cookie_file=write(tmp / 'good.cookie', COOKIE + '\n'),
                cfg=write(tmp / 'empty.cfg', '', 0o644), tmp=tmp)


@pytest.fixture(scope='module')
def module_runs(tmp_path_factory):
    """Every bad-input case run through the module, concurrently (a module run costs
    ~0.5 s of Python start-up), each with its own pair of recording listeners."""
    runs = {}
    with contextlib.ExitStack() as stack:
        jobs = []
        for case in BAD_INPUT:
            if case[0] not in THROUGH_THE_MODULE:
                continue
            workdir = tmp_path_factory.mktemp(case[0])
            pair = (stack.enter_context(fp.FakeServer(fp.record_only)),
                    stack.enter_context(fp.FakeServer(fp.record_only)))
            args, expected = _bad_args(case, _make_files(workdir), pair)
            jobs.append((case[0], args, expected, workdir, pair))
        with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
            futures = [(job, pool.submit(run_module, job[1], job[3])) for job in jobs]
            outcomes = [(job, future.result()) for job, future in futures]
        time.sleep(0.2)  # a connection attempt, had there been one, has landed by now
        for (case_id, args, expected, _workdir, pair), outcome in outcomes:
            runs[case_id] = dict(args=args, expected=expected, outcome=outcome,
                                 accepted=sum(r.accepted for r in pair),
                                 errors=[e for r in pair for e in r.errors])
    return runs


@pytest.mark.parametrize('case_id', THROUGH_THE_MODULE)
def test_bad_input_fails_in_the_module_before_any_traffic(case_id, module_runs):
    run = module_runs[case_id]
    args, expected = run['args'], run['expected']
    rc, result, output = run['outcome']
    assert rc == 1 and result['failed'] is True
    assert result['reason'] == 'bad_parameter'
    assert result['reachable'] is False
    assert expected in result['msg'], result['msg']
    assert run['accepted'] == 0, 'the module connected before validating'
    assert not run['errors']
    if args.get('cookie'):
        assert_no_secret(args['cookie'], output)  # no_log holds even for a bad cookie
    assert_no_secret(COOKIE, output)


@pytest.mark.parametrize('case', BAD_INPUT, ids=[c[0] for c in BAD_INPUT])
def test_bad_input_fails_in_resolve(case, files, recorders):
    args, expected = _bad_args(case, files, recorders)
    params = defaults()
    params.update(args)
    with pytest.raises(connection.ConnectionOptionError) as info:
        connection.resolve(params)
    message = str(info.value)
    assert expected in message, message
    if args.get('cookie'):
        assert_no_secret(args['cookie'], message)
    assert_no_secret(COOKIE, message)
    assert all(r.accepted == 0 for r in recorders)


def test_the_option_is_named_first(files, recorders):
    """Messages start with the option, so a playbook author sees at once what to fix."""
    for case in BAD_INPUT:
        args, expected = _bad_args(case, files, recorders)
        params = defaults()
        params.update(args)
        with pytest.raises(connection.ConnectionOptionError) as info:
            connection.resolve(params)
        assert str(info.value).startswith(expected.rstrip(':')), (case[0], str(info.value))


def test_empty_node_names_the_node_option(files, recorders):
    args, _expected = _bad_args(('node-empty', lambda f: dict(node=''), 'node:'), files, recorders)
    args['node'] = ''
    rc, result, _output = run_module(args, files['tmp'])
    assert rc == 1 and result['reason'] == 'bad_parameter'
    assert all(r.accepted == 0 for r in recorders)
    assert result['msg'].startswith('node:'), result['msg']


def test_cookie_and_cookie_file_are_mutually_exclusive(files, recorders):
    args, _expected = _bad_args(BAD_INPUT[0], files, recorders)
    args.update(node='x@127.0.0.1', cookie='another-cookie')
    rc, result, output = run_module(args, files['tmp'])
    assert rc == 1 and 'mutually exclusive' in result['msg']
    assert 'cookie' in result['msg'] and 'cookie_file' in result['msg']
    assert_no_secret('another-cookie', output)
    assert all(r.accepted == 0 for r in recorders)


def test_no_node_and_no_ejabberdctl_cfg(monkeypatch, tmp_path):
    monkeypatch.setattr(connection, 'EJABBERDCTL_CFG_PATHS', (str(tmp_path / 'a.cfg'), str(tmp_path / 'b.cfg')))
    params = defaults()
    params.update(cookie=COOKIE)
    with pytest.raises(connection.ConnectionOptionError) as info:
        connection.resolve(params)
    assert str(info.value).startswith('node:')
    assert str(tmp_path / 'a.cfg') in str(info.value)


def test_overlong_cookie_file_reports_its_real_length(tmp_path):
    path = write(tmp_path / 'long', 'c' * 300 + '\n')
    with pytest.raises(connection.ConnectionOptionError) as info:
        connection.read_cookie_file(path)
    assert 'at most 255' in str(info.value)
    assert '300' in str(info.value), str(info.value)


# --------------------------------------------------------------------------- cookie files that work

@pytest.mark.parametrize('content, cookie', [
    ('secret-cookie\n', 'secret-cookie'),                  # one trailing newline is dropped
    ('secret-cookie', 'secret-cookie'),                    # none is fine too
    ('two words here\n', 'two words here'),                # spaces inside are kept
    ('  padded  \n', '  padded  '),                        # leading/trailing spaces kept
    ('c' * 255 + '\n', 'c' * 255),                         # the longest Erlang allows
    ('~!#$%&()*+,-./:;<=>?@[]^_`{|}\n', '~!#$%&()*+,-./:;<=>?@[]^_`{|}'),
], ids=['newline', 'no-newline', 'inner-spaces', 'outer-spaces', '255-chars', 'punctuation'])
@pytest.mark.parametrize('mode', [0o400, 0o600], ids=['0400', '0600'])
def test_cookie_file_accepted(tmp_path, content, cookie, mode):
    path = write(tmp_path / 'cookie', content, mode)
    assert connection.read_cookie_file(path) == cookie
    params = defaults()
    params.update(node='x@127.0.0.1', cookie_file=path, ejabberdctl_cfg=write(tmp_path / 'e.cfg', '', 0o644))
    assert connection.resolve(params)['cookie'] == cookie


@pytest.mark.parametrize('mode', [0o400, 0o600], ids=['0400', '0600'])
def test_cookie_file_facts_name_the_file_its_mode_and_digest_never_the_cookie(tmp_path, mode):
    """What verify compares between nodes, read by the module that already read the file."""
    path = write(tmp_path / 'cookie', COOKIE + '\n', mode)
    params = defaults()
    params.update(node='x@127.0.0.1', cookie_file=path, ejabberdctl_cfg=write(tmp_path / 'e.cfg', '', 0o644))
    connection.resolve(params)
    facts = connection.cookie_file_facts(params)
    assert facts == {'path': path, 'mode': '%04o' % mode,
                     'sha256': hashlib.sha256((COOKIE + '\n').encode()).hexdigest()}
    assert COOKIE not in json.dumps(facts)
    params.update(cookie=COOKIE, cookie_file=None)
    assert connection.cookie_file_facts(params) is None   # a cookie given as a value: no file


@pytest.mark.parametrize('content', ['abc\n\n', 'abc\r\n', 'abc\n \r\n'], ids=['two-newlines', 'crlf', 'mixed'])
def test_cookie_file_trailing_whitespace_like_erlang(tmp_path, content):
    assert connection.read_cookie_file(write(tmp_path / 'cookie', content)) == 'abc'


def test_cookie_file_with_non_ascii_is_refused_like_erlang(tmp_path):
    path = write(tmp_path / 'cookie', b'h\xe9llo\n')
    try:
        connection.read_cookie_file(path)
    except connection.ConnectionOptionError as exc:
        assert str(exc).startswith('cookie_file')
        return
    raise AssertionError('a cookie file Erlang refuses was accepted')


def test_cookie_option_wins_and_is_returned_as_given(files):
    params = defaults()
    params.update(node='x@127.0.0.1', cookie='  given cookie ', ejabberdctl_cfg=files['cfg'])
    assert connection.resolve(params)['cookie'] == '  given cookie '


def test_cookie_user_reads_home_from_the_passwd_database(monkeypatch):
    import pwd  # pylint: disable=import-outside-toplevel
    monkeypatch.setenv('HOME', '/definitely/not/here')
    entry = pwd.getpwnam('nobody') if 'nobody' in [p.pw_name for p in pwd.getpwall()] else None
    if entry is None:
        pytest.skip('no user nobody here')
    assert connection.user_cookie_path('nobody') == os.path.join(entry.pw_dir, '.erlang.cookie')
    with pytest.raises(connection.ConnectionOptionError) as info:
        connection.user_cookie_path('no_such_user_xyz')
    assert str(info.value).startswith('cookie_user:') and 'no_such_user_xyz' in str(info.value)


# --------------------------------------------------------------------------- ejabberdctl.cfg

def resolve_with_cfg(tmp_path, text, **params):
    base = defaults()
    base.update(cookie=COOKIE, ejabberdctl_cfg=write(tmp_path / 'ejabberdctl.cfg', text, 0o644))
    base.update(params)
    return connection.resolve(base)


def short_hostname():
    if shutil.which('hostname') is None:
        pytest.skip('no hostname command to compare with')
    return subprocess.run(['hostname', '-s'], capture_output=True, text=True, check=True).stdout.strip()


CFG_DEBIAN_STYLE = '''#
# In this file you can configure options that are passed to ejabberd.
#
#ERLANG_NODE=wrong@commented.out
#ERL_DIST_PORT=1

#.
#' INET_DIST_INTERFACE: IP address where this Erlang node listens
INET_DIST_INTERFACE=127.0.0.7

  # indented comment
ERLANG_NODE="ejabberd@xmpp1.example.org"
export ERL_DIST_PORT=5210
FIREWALL_WINDOW=
'''


def test_cfg_debian_style(tmp_path):
    target = resolve_with_cfg(tmp_path, CFG_DEBIAN_STYLE)
    assert target['node'] == 'ejabberd@xmpp1.example.org'
    assert target['dist_port'] == 5210
    assert target['address'] == '127.0.0.7'
    assert target['cookie'] == COOKIE


@pytest.mark.parametrize('line, node', [
    ('ERLANG_NODE=ejabberd@host1', 'ejabberd@host1'),
    ('ERLANG_NODE="ejabberd@host1"', 'ejabberd@host1'),
    ("ERLANG_NODE='ejabberd@host1'", 'ejabberd@host1'),
    ('export ERLANG_NODE=ejabberd@host1', 'ejabberd@host1'),
    ('  export   ERLANG_NODE="ejabberd@host1"  ', 'ejabberd@host1'),
    ('ERLANG_NODE=ejabberd@host1\r', 'ejabberd@host1'),
], ids=['plain', 'double-quotes', 'single-quotes', 'export', 'export-spaces-quotes', 'crlf'])
def test_cfg_erlang_node_forms(tmp_path, line, node):
    assert resolve_with_cfg(tmp_path, line + '\n')['node'] == node


def test_cfg_node_without_at_gets_the_short_hostname(tmp_path):
    assert resolve_with_cfg(tmp_path, 'ERLANG_NODE=ejabberd\n')['node'] == 'ejabberd@' + short_hostname()


def test_cfg_without_erlang_node_means_ejabberd_at_localhost(tmp_path):
    target = resolve_with_cfg(tmp_path, '# nothing set\nFIREWALL_WINDOW=4200-4210\n')
    assert target['node'] == 'ejabberd@localhost'
    assert target['dist_port'] is None and target['address'] is None
    assert target['epmd_port'] == 4369 and target['timeout'] == 5.0


def test_cfg_last_assignment_wins_as_in_the_shell(tmp_path):
    text = 'ERLANG_NODE=first@host\nERLANG_NODE=second@host\n'
    assert resolve_with_cfg(tmp_path, text)['node'] == 'second@host'


@pytest.mark.parametrize('interface', ['0.0.0.0', '::', ''])
def test_cfg_wildcard_interface_is_not_an_address(tmp_path, interface):
    target = resolve_with_cfg(tmp_path, 'ERLANG_NODE=e@h\nINET_DIST_INTERFACE=%s\n' % interface)
    assert target['address'] is None


@pytest.mark.parametrize('options, address', [
    # how role ejabberd writes an IPv6 interface (INET_DIST_INTERFACE left empty)
    ('$ERL_OPTIONS -kernel inet_dist_use_interface {64768,48,250,0,0,0,0,17} -proto_dist inet6_tcp',
     'fd00:30:fa::11'),
    ('-kernel inet_dist_use_interface {10,0,0,7}', '10.0.0.7'),
    ('-kernel inet_dist_use_interface {1,2}', None),          # neither IPv4 nor IPv6
    ('-kernel inet_dist_use_interface {300,0,0,1}', None),
    ('-kernel inet_dist_use_interface', None),
    ('-proto_dist inet6_tcp', None),
])
def test_cfg_interface_from_erl_options(tmp_path, options, address):
    target = resolve_with_cfg(tmp_path, 'ERLANG_NODE=e@h\nERL_OPTIONS="%s"\n' % options)
    assert target['address'] == address


def test_cfg_interface_wins_over_erl_options(tmp_path):
    target = resolve_with_cfg(tmp_path, 'ERLANG_NODE=e@h\nINET_DIST_INTERFACE=10.0.0.8\n'
                              'ERL_OPTIONS="-kernel inet_dist_use_interface {10,0,0,7}"\n')
    assert target['address'] == '10.0.0.8'


def test_explicit_options_win_over_the_cfg(tmp_path):
    target = resolve_with_cfg(tmp_path, CFG_DEBIAN_STYLE, node='other@host2.example.org',
                              dist_port=4370, address='127.0.0.9')
    assert (target['node'], target['dist_port'], target['address']) == \
        ('other@host2.example.org', 4370, '127.0.0.9')


def test_explicit_node_does_not_take_the_cfg_interface(tmp_path):
    # INET_DIST_INTERFACE belongs to the local node; an explicit node is reached by its own host
    target = resolve_with_cfg(tmp_path, CFG_DEBIAN_STYLE, node='other@host2.example.org')
    assert target['address'] is None
    assert target['dist_port'] == 5210  # documented: ERL_DIST_PORT of the local cfg still applies


def test_the_first_existing_default_cfg_is_used(monkeypatch, tmp_path):
    found = write(tmp_path / 'found.cfg', 'ERLANG_NODE=from-default@host\n', 0o644)
    monkeypatch.setattr(connection, 'EJABBERDCTL_CFG_PATHS', (str(tmp_path / 'missing.cfg'), found))
    params = defaults()
    params.update(cookie=COOKIE)
    assert connection.resolve(params)['node'] == 'from-default@host'


def test_cfg_inline_comment_as_in_the_shell(tmp_path):
    target = resolve_with_cfg(tmp_path, 'ERLANG_NODE=ejabberd@host1  # this node\n'
                              'ERL_DIST_PORT=5210  # fixed port\n')
    assert (target['node'], target['dist_port']) == ('ejabberd@host1', 5210)


# --------------------------------------------------------------------------- TLS defaults

SSL_DIST = """%% written by hand
[{server, [{certfile, "/etc/d/node.pem"}, {keyfile, "/etc/d/node.key"},
           {cacertfile, "/etc/d/ca.pem"}, {verify, verify_peer}, {fail_if_no_peer_cert, true}]},
 {client, [{certfile, "/etc/d/client.pem"}, {keyfile, "/etc/d/client.key"},
           {cacertfile, "/etc/d/ca.pem"}, {versions, ['tlsv1.3', 'tlsv1.2']}]}].
"""


def test_erlang_terms_of_an_ssl_dist_file():
    parsed = connection.parse_erlang_terms(SSL_DIST)
    assert parsed[1] == ("client", [("certfile", "/etc/d/client.pem"), ("keyfile", "/etc/d/client.key"),
                                    ("cacertfile", "/etc/d/ca.pem"), ("versions", ["tlsv1.3", "tlsv1.2"])])
    assert connection.parse_erlang_terms('{a, <<"x\\"y">>, -3, \'q a\'}') == ("a", 'x"y', -3, "q a")
    for bad in ("[{a, b}", "[a] [b].", "{a, #}", ""):
        with pytest.raises(ValueError):
            connection.parse_erlang_terms(bad)


def test_tls_defaults_come_from_the_local_node(tmp_path):
    optfile = tmp_path / "ssl_dist.conf"
    optfile.write_text(SSL_DIST)
    cfg = {"ERL_OPTIONS": "$ERL_OPTIONS -proto_dist inet_tls -ssl_dist_optfile %s" % optfile}
    assert connection._tls_defaults(cfg, "cfg") == (  # pylint: disable=protected-access
        True, "/etc/d/client.pem", "/etc/d/client.key", "/etc/d/ca.pem")
    assert connection._tls_defaults({"ERL_OPTIONS": "-env X 0"}, "cfg")[0] is False  # pylint: disable=protected-access
    optfile.write_text("not erlang")
    with pytest.raises(connection.ConnectionOptionError) as caught:
        connection._tls_defaults(cfg, "cfg")  # pylint: disable=protected-access
    assert "-ssl_dist_optfile" in str(caught.value) and "tls_certfile" in str(caught.value)
