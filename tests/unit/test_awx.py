# Copyright: xmpp.ejabberd contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The AWX credential type of the collection, rendered as AWX renders it, and a job run
as AWX runs one: ansible-runner on a private data dir, on localhost (no containers)."""

from __future__ import annotations

import hashlib
import os
import secrets
import shutil
import stat
import subprocess
import sys

import pytest
import yaml

from ansible_collections.xmpp.ejabberd.tests.helpers import awx
from ansible_collections.xmpp.ejabberd.tests.helpers.common import COLLECTIONS_ROOT

# A random token (searched for in the artifacts: it survives any quoting), then quotes, a
# backslash and Jinja markers: AWX must pass them through untouched, and Ansible must not
# template them (AWX tags credential extra vars !unsafe). Printable ASCII, 1..255
# characters, as role erlang_cookie accepts.
TOKEN = secrets.token_hex(12)
COOKIE = TOKEN + "-{{ lookup('env', 'HOME') }}-{% raw %}-\"'\\"


class _Loader(yaml.SafeLoader):  # pylint: disable=too-many-ancestors
    """Reads AWX's !unsafe tags as plain strings."""


_Loader.add_constructor("!unsafe", lambda loader, node: loader.construct_scalar(node))


def test_the_credential_type_injects_what_the_playbooks_read():
    credential_type = awx.load_credential_type()
    assert credential_type["kind"] == "cloud"  # the kinds AWX allows for custom types: cloud, net
    (field,) = credential_type["inputs"]["fields"]
    assert field["id"] == "cookie" and field["secret"] is True and field["help_text"]
    assert credential_type["inputs"]["required"] == ["cookie"]
    # ejabberd_cookie: the variable role ejabberd (and so every playbook) takes the cookie from.
    with open(os.path.join(awx.REPO_ROOT, "roles", "ejabberd", "meta", "argument_specs.yml"), encoding="utf-8") as handle:
        spec = yaml.safe_load(handle)["argument_specs"]["main"]["options"]["ejabberd_cookie"]
    assert spec["no_log"] is True
    assert credential_type["injectors"] == {"extra_vars": {"ejabberd_cookie": "{{ cookie }}"}}


def test_rendered_as_awx_does(tmp_path):
    injected = awx.render_injectors(awx.load_credential_type(), {"cookie": COOKIE}, str(tmp_path))
    assert injected.extra_vars == {"ejabberd_cookie": COOKIE}
    assert injected.env == injected.safe_env == {} and injected.files == {}
    # -e @FILE, a file of its own under env/, readable by its owner only, every string !unsafe.
    option, argument = injected.args
    path = argument[1:]
    assert option == "-e" and argument.startswith("@") and os.path.dirname(path) == str(tmp_path / "env")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o400
    with open(path, encoding="utf-8") as handle:
        text = handle.read()
    assert text.startswith("!unsafe 'ejabberd_cookie': !unsafe ")
    assert yaml.load(text, Loader=_Loader) == {"ejabberd_cookie": COOKIE}  # nosec B506 - a SafeLoader


def test_file_and_env_injectors_rendered_as_awx_does(tmp_path):
    # The other injector kinds, as the lab tests may use them: a file named by tower.filename,
    # secrets hidden in the environment AWX stores, ANSIBLE_* refused.
    credential_type = {"inputs": {"fields": [{"id": "cookie", "type": "string", "secret": True},
                                             {"id": "label", "type": "string"},
                                             {"id": "flag", "type": "boolean"}]},
                       "injectors": {"file": {"template.cookie": "{{ cookie }}"},
                                     "env": {"COOKIE_FILE": "{{ tower.filename.cookie }}",
                                             "COOKIE": "{{ cookie }}", "LABEL": "{{ label }}/{{ flag }}"}}}
    injected = awx.render_injectors(credential_type, {"cookie": COOKIE, "label": "lab"}, str(tmp_path),
                                    container_root="/runner")
    path = injected.files["template.cookie"]
    with open(path, encoding="utf-8") as handle:
        assert handle.read() == COOKIE
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert injected.env == {"COOKIE_FILE": "/runner/env/" + os.path.basename(path), "COOKIE": COOKIE, "LABEL": "lab/False"}
    assert injected.safe_env == dict(injected.env, COOKIE=awx.HIDDEN)
    assert injected.args == []
    with pytest.raises(ValueError, match="ANSIBLE_CONFIG"):
        awx.render_injectors({"injectors": {"env": {"ANSIBLE_CONFIG": "x"}}}, {}, str(tmp_path))


CHECK_PLAYBOOK = """---
# verify.yml imports xmpp.ejabberd.verify: here no host is in group ejabberd, so it only
# shows that the job finds the collection's playbooks.
- name: Import a playbook of the collection
  ansible.builtin.import_playbook: verify.yml

- name: Check what the credential injected, and publish a summary
  hosts: localhost
  gather_facts: false
  tasks:
    - name: The cookie came in ejabberd_cookie, as given
      ansible.builtin.assert:
        that:
          - ejabberd_cookie | ansible.builtin.hash('sha256') == cookie_sha256
        quiet: true

    - name: Publish the cluster-level summary
      ansible.builtin.set_stats:
        data:
          ejabberd_summary:
            cookie_injected: true
            nodes: "{{ ansible_play_hosts_all | length }}"
        per_host: false
"""


def _ssh_key(directory) -> str:
    if not (shutil.which("ssh-keygen") and shutil.which("ssh-agent")):
        message = "ssh-keygen and ssh-agent (openssh-client) are missing: run `make deps`"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    key = str(directory / "id_ed25519")
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "awx-test", "-f", key],
                   check=True, stdin=subprocess.DEVNULL)
    return key


def test_job_under_ansible_runner(tmp_path):
    data = str(tmp_path / "job")
    injected = awx.render_injectors(awx.load_credential_type(), {"cookie": COOKIE}, data)
    awx.build_private_data_dir(
        data,
        inventory={"all": {"hosts": {"localhost": {"ansible_connection": "local",
                                                   "ansible_python_interpreter": sys.executable}}}},
        extra_vars={"cookie_sha256": hashlib.sha256(COOKIE.encode()).hexdigest()},
        injected=injected, ssh_key=_ssh_key(tmp_path), collections_path=COLLECTIONS_ROOT,
        playbook="xmpp.ejabberd.verify", project_files={"check.yml": CHECK_PLAYBOOK}, job_timeout=300)

    proc = awx.run_job(data, "check.yml", "t1", timeout=300)
    artifacts = os.path.join(data, "artifacts", "t1")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    with open(os.path.join(artifacts, "status"), encoding="utf-8") as handle:
        assert handle.read() == "successful"
    assert "skipping: no hosts matched" in proc.stdout  # the collection's verify, imported
    assert awx.stats_artifact_data(data, "t1") == {"ejabberd_summary": {"cookie_injected": True, "nodes": 1}}

    # The cookie is nowhere in what runner leaves (stdout, job events, command with the
    # environment...) nor in its output; the same search finds it in the credential's file.
    def holding_the_cookie(top):
        found = []
        for directory, dummy, names in os.walk(top):
            for name in names:
                with open(os.path.join(directory, name), "rb") as handle:
                    if TOKEN.encode() in handle.read():
                        found.append(os.path.relpath(os.path.join(directory, name), data))
        return found

    assert os.listdir(os.path.join(artifacts, "job_events"))
    assert holding_the_cookie(artifacts) == []
    assert TOKEN not in proc.stdout + proc.stderr
    assert holding_the_cookie(os.path.join(data, "env")) == [os.path.relpath(injected.args[1][1:], data)]
