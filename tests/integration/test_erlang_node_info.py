# Copyright: xmpp.ejabberd contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""xmpp.ejabberd.erlang_node_info run through Ansible itself, against real nodes.

Every run is an ad-hoc ``ansible localhost -m xmpp.ejabberd.erlang_node_info``
with the collection found through ANSIBLE_COLLECTIONS_PATH.  Cookies never go on
a command line: they come from a cookie file, or from an extra-vars FILE
(``-e @vars.json``) referenced by a template in the module arguments.  The facts
the module returns are compared with what the node reports about itself
(erl_call through the harness).
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys

import pytest

from ansible_collections.xmpp.ejabberd.plugins.modules import erlang_node_info
from ansible_collections.xmpp.ejabberd.tests.helpers.erlnode import ErlNode, erlang_available, free_port

COLLECTIONS_ROOT = os.path.abspath(os.path.join(os.path.dirname(erlang_node_info.__file__), *['..'] * 5))
MODULE = 'ansible_collections.xmpp.ejabberd.plugins.modules.erlang_node_info'
RESULT_RE = re.compile(r'^localhost \| ([A-Z!]+) => (\{.*?^\})', re.M | re.S)


def _ansible():
    beside = os.path.join(os.path.dirname(sys.executable), 'ansible')
    return beside if os.access(beside, os.X_OK) else shutil.which('ansible')


def run_ansible(work, module_args, extra_vars=None, flags=()):
    """One ad-hoc run in the new directory ``work``; returns (rc, result, whole output)."""
    ansible = _ansible()
    if ansible is None:
        pytest.skip('ansible is not installed (make venv)')
    work.mkdir()
    cmd = [ansible, 'localhost', '-m', 'xmpp.ejabberd.erlang_node_info', '-a', json.dumps(module_args)]
    if extra_vars is not None:
        vars_file = work / 'vars.json'
        fd = os.open(str(vars_file), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, 'w') as handle:
            json.dump(extra_vars, handle)
        cmd += ['-e', '@' + str(vars_file)]
    cmd += list(flags)
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=COLLECTIONS_ROOT, ANSIBLE_NOCOLOR='1',
               ANSIBLE_HOME=str(work / 'home'), ANSIBLE_LOCAL_TEMP=str(work / 'local'),
               ANSIBLE_REMOTE_TMP=str(work / 'remote'), ANSIBLE_LOCALHOST_WARNING='False',
               ANSIBLE_INVENTORY_UNPARSED_WARNING='False', ANSIBLE_PYTHON_INTERPRETER=sys.executable)
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=str(work), timeout=120, check=False)
    output = proc.stdout + proc.stderr
    match = RESULT_RE.search(proc.stdout)
    assert match, 'no result in the ansible output:\n%s' % output
    result = json.loads(match.group(2))
    # the status the callback printed (SUCCESS / FAILED!); 2.19 drops "failed" from the JSON
    result['_status'] = match.group(1)
    assert (match.group(1) == 'SUCCESS') == (proc.returncode == 0), output
    return proc.returncode, result, output


def assert_no_secret(secret, output):
    """Fail if ``secret`` shows up in ``output``, without printing either."""
    assert secret and len(secret) >= 8
    if secret in output:
        pytest.fail('a cookie appears in the ansible output at offset %d' % output.index(secret))


def run_module_directly(tmp_path, module_args):
    """The module the way Ansible executes it, minus Ansible (fast): args file as argv[1]."""
    path = tmp_path / 'args.json'
    path.write_text(json.dumps({'ANSIBLE_MODULE_ARGS': module_args}))
    proc = subprocess.run([sys.executable, '-m', MODULE, str(path)], capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=COLLECTIONS_ROOT), timeout=60, check=False)
    return proc.returncode, json.loads(proc.stdout.strip().splitlines()[-1])


def node_facts(node):
    """What the node says about itself."""
    return dict(
        node=node.eval('node()').strip("'"),
        otp_release=json.loads(node.eval('erlang:system_info(otp_release)')),
        nodes=sorted(json.loads(node.eval('[atom_to_list(N) || N <- nodes()]'))),
    )


def short_hostname_on_loopback():
    host = socket.gethostname().split('.')[0]
    try:
        if not socket.gethostbyname(host).startswith('127.'):
            return None
    except OSError:
        return None
    return host


@pytest.fixture(scope='module')
def cluster():
    """Two short-name nodes on one private epmd, connected to each other: the second one
    named after the short host name (as ejabberdctl names a node without '@')."""
    if not erlang_available():
        pytest.skip('Erlang is not installed: make deps')
    host = short_hostname_on_loopback()
    cookie = secrets.token_hex(16)
    with ErlNode('info1', cookie=cookie) as first:
        second_host = host or 'localhost'
        with ErlNode('info2', cookie=cookie, host=second_host, epmd_port=first.epmd_port) as second:
            assert first.connect(second)
            yield first, second, host


@pytest.fixture
def empty_cfg(tmp_path):
    """An empty ejabberdctl.cfg, so no system one changes what a test means."""
    path = tmp_path / 'empty.cfg'
    path.write_text('')
    return str(path)


def assert_facts_match(result, node):
    facts = node_facts(node)
    assert result['reachable'] is True
    assert result['changed'] is False
    assert result['node'] == facts['node'] == node.node
    assert result['otp_release'] == facts['otp_release']
    assert sorted(result['nodes']) == facts['nodes']
    assert result['port'] == node.port
    assert result['elapsed_ms'] > 0
    assert 'reason' not in result and result['_status'] == 'SUCCESS'


@pytest.fixture(scope='module')
def runs(cluster, fixed_port_node, tmp_path_factory):
    """Every ad-hoc run of this file, started together (an ansible run is mostly Python
    start-up; run one after the other they would take most of the time budget).

    Returns ``{name: (rc, result, output)}`` plus ``secrets`` (the wrong cookies used)
    and ``ports`` (the closed port used)."""
    first, second, host = cluster
    fixed = fixed_port_node
    tmp = tmp_path_factory.mktemp('adhoc')
    empty = tmp / 'empty.cfg'
    empty.write_text('')
    empty = str(empty)
    wrong = {'no_fail': 'Wrong-%s' % secrets.token_hex(8), 'fail': 'Wrong-%s' % secrets.token_hex(8)}
    closed = free_port()
    cfg_fixed = tmp / 'fixed.cfg'
    cfg_fixed.write_text('# written by the test\n'
                         '#ERLANG_NODE=commented@out\n'
                         'ERLANG_NODE="%s"\n'
                         'export ERL_DIST_PORT=%d\n'
                         "INET_DIST_INTERFACE='127.0.0.1'\n"
                         % (fixed.node, fixed.port))
    cfg_short = tmp / 'short.cfg'
    cfg_short.write_text('ERLANG_NODE=%s\n' % second.name)  # ejabberdctl appends @$(hostname -s)
    fixed_args = dict(node=fixed.node, dist_port=fixed.port, ejabberdctl_cfg=empty)
    specs = {
        'epmd_vvv': (dict(node=first.node, cookie='{{ cluster_cookie }}', epmd_port=first.epmd_port,
                          ejabberdctl_cfg=empty), dict(cluster_cookie=first.cookie), ['-vvv']),
        'fixed': (dict(fixed_args, cookie_file=fixed.cookie_file), None, []),
        'check': (dict(fixed_args, cookie_file=fixed.cookie_file), None, ['--check']),
        'wrong_no_fail': (dict(fixed_args, cookie='{{ c }}', fail_on_error=False), dict(c=wrong['no_fail']), []),
        'wrong_fail_vvv': (dict(fixed_args, cookie='{{ c }}'), dict(c=wrong['fail']), ['-vvv']),
        'unreachable': (dict(node='gone@127.0.0.1', dist_port=closed, cookie_file=fixed.cookie_file,
                             ejabberdctl_cfg=empty), None, []),
        'unknown_user': (dict(node='x@127.0.0.1', dist_port=closed, cookie_user='no_such_user_xyz',
                              ejabberdctl_cfg=empty), None, []),
        'cfg_fixed': (dict(ejabberdctl_cfg=str(cfg_fixed), cookie_file=fixed.cookie_file), None, []),
    }
    if host is not None:
        specs['cfg_short'] = (dict(ejabberdctl_cfg=str(cfg_short), epmd_port=second.epmd_port,
                                   cookie_file=second.cookie_file), None, [])
    with concurrent.futures.ThreadPoolExecutor(max_workers=len(specs)) as pool:
        futures = {name: pool.submit(run_ansible, tmp / name, *spec) for name, spec in specs.items()}
        done = {name: future.result() for name, future in futures.items()}
    done['secrets'] = wrong
    done['ports'] = dict(closed=closed)
    return done


# --------------------------------------------------------------------------- facts

def test_epmd_mode_facts_with_cookie_from_vars_file_and_no_log(runs, cluster):
    first, second, _host = cluster
    rc, result, output = runs['epmd_vvv']
    assert rc == 0, output
    assert_facts_match(result, first)
    assert result['nodes'] == [second.node]  # the visible peer, not our hidden client
    assert result['via_epmd'] is True
    # -vvv shows the module arguments; the cookie is masked there and nowhere in the output
    assert result['invocation']['module_args']['cookie'] == 'VALUE_SPECIFIED_IN_NO_LOG_PARAMETER'
    assert_no_secret(first.cookie, output)


def test_fixed_port_mode_facts(runs, fixed_port_node):
    rc, result, output = runs['fixed']
    assert rc == 0, output
    assert_facts_match(result, fixed_port_node)
    assert result['via_epmd'] is False
    assert result['address'] == '127.0.0.1'
    assert_no_secret(fixed_port_node.cookie, output)


def test_check_mode_returns_the_same_facts(runs, fixed_port_node):
    rc, result, output = runs['check']
    assert rc == 0, output
    assert 'skipped' not in result  # the module supports check mode; it is not skipped
    assert_facts_match(result, fixed_port_node)


# --------------------------------------------------------------------------- failures

def test_wrong_cookie_with_fail_on_error_false_is_a_result(runs):
    rc, result, output = runs['wrong_no_fail']
    assert rc == 0, output
    assert result['reachable'] is False
    assert result['reason'] == 'cookie_rejected'
    assert 'cookie' in result['msg']
    assert 'otp_release' not in result and result['_status'] == 'SUCCESS'
    assert result['elapsed_ms'] > 0
    assert_no_secret(runs['secrets']['no_fail'], output)


def test_a_failing_run_gives_reason_and_msg_and_never_the_cookie(runs, fixed_port_node):
    rc, result, output = runs['wrong_fail_vvv']
    assert rc != 0
    assert result['_status'] == 'FAILED!' and result['reachable'] is False
    assert result['reason'] == 'cookie_rejected'
    assert fixed_port_node.node in result['msg']
    assert result['invocation']['module_args']['cookie'] == 'VALUE_SPECIFIED_IN_NO_LOG_PARAMETER'
    assert_no_secret(runs['secrets']['fail'], output)
    assert_no_secret(fixed_port_node.cookie, output)


def test_nothing_listening_fails_as_unreachable(runs, fixed_port_node):
    rc, result, output = runs['unreachable']
    assert rc != 0 and result['_status'] == 'FAILED!'
    assert result['reason'] == 'unreachable' and str(runs['ports']['closed']) in result['msg']
    assert_no_secret(fixed_port_node.cookie, output)


def test_unknown_cookie_user_fails_clearly(runs):
    rc, result, output = runs['unknown_user']
    assert rc != 0 and result['_status'] == 'FAILED!'
    assert result['reason'] == 'bad_parameter'
    assert result['msg'].startswith('cookie_user:') and 'no_such_user_xyz' in result['msg']
    assert 'Traceback' not in output


# --------------------------------------------------------------------------- ejabberdctl.cfg

def test_defaults_from_ejabberdctl_cfg_fixed_port(runs, fixed_port_node):
    rc, result, output = runs['cfg_fixed']
    assert rc == 0, output
    assert_facts_match(result, fixed_port_node)
    assert result['via_epmd'] is False and result['address'] == '127.0.0.1'


def test_defaults_from_ejabberdctl_cfg_name_without_host(runs, cluster):
    _first, second, host = cluster
    if host is None:
        pytest.skip('the short host name does not resolve to a loopback address here')
    rc, result, output = runs['cfg_short']
    assert rc == 0, output
    assert result['node'] == '%s@%s' % (second.name, host)
    assert_facts_match(result, second)
    assert result['via_epmd'] is True


# --------------------------------------------------------------------------- cookie files as the node reads them

def test_cookie_file_with_spaces_and_a_trailing_newline_works(erl_node_factory, tmp_path, empty_cfg):
    node = erl_node_factory('spaces', longnames=True, dist_port=0,
                            cookie='  two words %s  \n' % secrets.token_hex(6))
    rc, result = run_module_directly(tmp_path, dict(node=node.node, dist_port=node.port,
                                                    cookie_file=node.cookie_file, ejabberdctl_cfg=empty_cfg))
    assert rc == 0, result.get('msg')
    assert result['reachable'] is True and result['node'] == node.node


def test_cookie_file_with_crlf_works_like_on_the_node(erl_node_factory, tmp_path, empty_cfg):
    node = erl_node_factory('crlf', longnames=True, dist_port=0, cookie='%s\r\n' % secrets.token_hex(8))
    rc, result = run_module_directly(tmp_path, dict(node=node.node, dist_port=node.port,
                                                    cookie_file=node.cookie_file, ejabberdctl_cfg=empty_cfg))
    assert rc == 0, result.get('msg')
    assert result['reachable'] is True
