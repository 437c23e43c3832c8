# Copyright: xmpp.ejabberd contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Run the collection as AWX / Automation Platform does, without AWX.

* ``load_credential_type`` reads the credential type the collection ships
  (extensions/awx/credential_type_erlang_cookie.yml).
* ``render_injectors`` renders a credential type's injectors against a credential's
  inputs as AWX does (CredentialType.inject_credential in awx/main/models/credential).
* ``build_private_data_dir`` lays out the ansible-runner private data dir AWX hands to
  the execution environment: inventory, job extra vars, the injected credential, the SSH
  key, settings, environment and a project whose playbook imports one of the
  collection's playbooks.

Then ``ansible-runner run DIR -p PLAYBOOK --ident ID`` runs the job; ``run_job`` does that
as AWX does (no terminal, no prompts) and ``stats_artifact_data`` reads what the
playbooks published with ``set_stats``.
"""

from __future__ import annotations

import dataclasses
import glob
import json
import os
import shlex
import stat
import subprocess
import sys
import tempfile

import yaml
from jinja2 import sandbox

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.realpath(__file__))))
CREDENTIAL_TYPE_FILE = os.path.join(REPO_ROOT, "extensions", "awx", "credential_type_erlang_cookie.yml")

# AWX stores the environment of a job with secret inputs replaced by this.
HIDDEN = "**********"
# Environment variables AWX refuses in credential types (besides every ANSIBLE_* one).
ENV_BLOCKLIST = frozenset(("PATH", "PYTHONPATH", "VIRTUAL_ENV", "JOB_ID", "INVENTORY_ID",
                           "INVENTORY_SOURCE_ID", "INVENTORY_UPDATE_ID", "AD_HOC_COMMAND_ID",
                           "REST_API_URL", "REST_API_TOKEN", "MAX_EVENT_RES", "CALLBACK_QUEUE",
                           "CALLBACK_CONNECTION", "CACHE", "JOB_CALLBACK_DEBUG",
                           "INVENTORY_HOSTVARS", "AWX_HOST", "PROJECT_REVISION"))


def load_credential_type(path: str = CREDENTIAL_TYPE_FILE) -> dict:
    """The credential type definition: name, description, kind, inputs, injectors."""
    with open(path, encoding="utf-8") as handle:
        return yaml.safe_load(handle)


@dataclasses.dataclass
class Injected:
    """What a credential adds to a job."""
    env: dict            # environment of ansible-playbook
    safe_env: dict       # the same as AWX stores it (secret inputs hidden)
    extra_vars: dict     # the rendered extra_vars injector
    files: dict          # file injector label -> path of the file written
    args: list           # ansible-playbook arguments: -e @FILE for the extra vars


class _UnsafeDumper(yaml.SafeDumper):
    """AWX writes a credential's extra vars with every string tagged !unsafe, so
    Ansible never templates them (a cookie holding "{{" stays as it is)."""

    def represent_data(self, data):
        if isinstance(data, str):
            return self.represent_scalar("!unsafe", data)
        return super().represent_data(data)


def _private_file(directory: str, text: str, mode: int) -> str:
    """A new file of AWX's kind (tempfile.mkstemp in DIRECTORY), then chmod MODE."""
    handle, path = tempfile.mkstemp(dir=directory)
    with os.fdopen(handle, "w", encoding="utf-8") as out:
        out.write(text)
    os.chmod(path, mode)
    return path


def render_injectors(credential_type: dict, inputs: dict, private_data_dir: str,
                     container_root: str | None = None) -> Injected:
    """Render CREDENTIAL_TYPE's injectors against a credential's INPUTS as AWX does.

    Faithful to AWX: templates are rendered by jinja2's ImmutableSandboxedEnvironment with
    the inputs as variables (an empty input is left undefined, so it renders as ""; a
    missing boolean field is False; an ssh_private_key input gets its final newline);
    each ``file`` injector (``template``, or ``template.NAME`` for several) is written to a
    new file in PRIVATE_DATA_DIR/env (mode 0600) and named by ``{{ tower.filename }}``
    (``{{ tower.filename.NAME }}``), then ``env`` and ``extra_vars`` are rendered; the
    extra vars go to another new file there (mode 0400, strings tagged !unsafe) passed
    with ``-e @FILE``. Paths are as seen in the EE: PRIVATE_DATA_DIR moved to
    CONTAINER_ROOT (AWX: /runner) when given. Where AWX logs and skips a forbidden
    environment variable, this raises ValueError.
    """
    fields = credential_type.get("inputs", {}).get("fields", [])
    secret = {field["id"] for field in fields if field.get("secret")}
    injectors = credential_type.get("injectors", {})
    env_dir = os.path.join(private_data_dir, "env")
    os.makedirs(env_dir, mode=0o700, exist_ok=True)

    def in_container(path: str) -> str:
        if container_root is None:
            return path
        return os.path.join(container_root, os.path.relpath(path, private_data_dir))

    class Tower:  # pylint: disable=too-few-public-methods
        """AWX's ``tower`` namespace (filename)."""

    tower = Tower()
    namespace: dict = {"tower": tower}
    safe_namespace: dict = {"tower": tower}
    for name, value in inputs.items():
        if isinstance(value, bool):
            namespace[name] = safe_namespace[name] = value
            continue
        if name in secret:
            safe_namespace[name] = HIDDEN
        elif value:
            safe_namespace[name] = value
        if value:
            namespace[name] = value
    for field in fields:
        if field.get("type") == "boolean" and field["id"] not in inputs:
            namespace[field["id"]] = safe_namespace[field["id"]] = False
        if field.get("format") == "ssh_private_key" and not namespace.get(field["id"], "\n").endswith("\n"):
            namespace[field["id"]] += "\n"

    jinja = sandbox.ImmutableSandboxedEnvironment()
    files = {}
    for label, template in injectors.get("file", {}).items():
        path = _private_file(env_dir, jinja.from_string(template).render(**namespace),
                             stat.S_IRUSR | stat.S_IWUSR)
        files[label] = path
        if "." not in label:
            tower.filename = in_container(path)
        else:
            if not hasattr(tower, "filename"):
                tower.filename = Tower()
            setattr(tower.filename, label.split(".", 1)[1], in_container(path))

    env, safe_env = {}, {}
    for name, template in injectors.get("env", {}).items():
        if name.startswith("ANSIBLE_") or name in ENV_BLOCKLIST:
            raise ValueError("AWX does not allow the environment variable %s in credentials" % name)
        env[name] = jinja.from_string(template).render(**namespace)
        safe_env[name] = jinja.from_string(template).render(**safe_namespace)

    def render(node):
        if isinstance(node, dict):
            return {render(key): render(value) for key, value in node.items()}
        if isinstance(node, list):
            return [render(item) for item in node]
        return jinja.from_string(node).render(**namespace)

    extra_vars = render(injectors.get("extra_vars", {}))
    args = []
    if extra_vars:
        path = _private_file(env_dir, yaml.dump(extra_vars, Dumper=_UnsafeDumper), stat.S_IRUSR)
        args = ["-e", "@" + in_container(path)]
    return Injected(env=env, safe_env=safe_env, extra_vars=extra_vars, files=files, args=args)


def _write(path: str, text: str, mode: int = 0o600) -> None:
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text)


def build_private_data_dir(path: str, *, inventory: dict, extra_vars: dict, injected: Injected | None,
                           ssh_key: str | None, collections_path: str, playbook: str,
                           project_files: dict | None = None, envvars: dict | None = None,
                           job_timeout: int = 600, job_args: tuple = ()) -> str:
    """Lay out an AWX-style ansible-runner private data dir at PATH; returns PATH.

    * inventory/hosts.json: INVENTORY, a YAML-inventory structure ({"all": {"hosts": ...}}).
    * env/extravars: the job's EXTRA_VARS (job template, survey, launch).
    * env/cmdline: JOB_ARGS (what the job template and its machine credential add, such as
      ``-u admin --become``), then INJECTED's arguments (``-e @FILE`` of the credential's
      extra vars; runner puts them before env/extravars, so job extra vars win, as in AWX).
      INJECTED comes from ``render_injectors`` on the same PATH (its files are already
      under PATH/env).
    * env/ssh_key: the content of the private key file SSH_KEY (runner feeds it to ssh-agent).
    * env/settings: output not suppressed, JOB_TIMEOUT seconds.
    * env/envvars: ANSIBLE_COLLECTIONS_PATH=COLLECTIONS_PATH, INJECTED's env, then ENVVARS.
    * project/NAME.yml for PLAYBOOK (``xmpp.ejabberd.NAME``): imports it. PROJECT_FILES
      (relative name -> text) adds files, e.g. a playbook of the test's own.
    """
    _write(os.path.join(path, "inventory", "hosts.json"), json.dumps(inventory, indent=2))
    _write(os.path.join(path, "env", "extravars"), json.dumps(extra_vars, indent=2))
    cmdline = [*job_args, *(injected.args if injected is not None else [])]
    if cmdline:
        _write(os.path.join(path, "env", "cmdline"), shlex.join(cmdline))
    if ssh_key is not None:
        with open(ssh_key, encoding="utf-8") as handle:
            _write(os.path.join(path, "env", "ssh_key"), handle.read())
    _write(os.path.join(path, "env", "settings"),
           json.dumps({"suppress_ansible_output": False, "job_timeout": job_timeout}))
    environment = {"ANSIBLE_COLLECTIONS_PATH": collections_path}
    environment.update(injected.env if injected is not None else {})
    environment.update(envvars or {})
    _write(os.path.join(path, "env", "envvars"), json.dumps(environment, indent=2))
    short = playbook.rsplit(".", 1)[-1]
    _write(os.path.join(path, "project", short + ".yml"),
           "---\n- name: Run %s\n  ansible.builtin.import_playbook: %s\n" % (playbook, playbook), 0o644)
    for name, text in (project_files or {}).items():
        _write(os.path.join(path, "project", name), text, 0o644)
    return path


def run_job(private_data_dir: str, playbook: str, ident: str,
            timeout: float = 600, bindir: str | None = None) -> subprocess.CompletedProcess:
    """``ansible-runner run PRIVATE_DATA_DIR -p PLAYBOOK --ident IDENT`` with no terminal and
    no input (stdin /dev/null), as AWX runs a job; the tools of BINDIR (default: this
    venv's) first on PATH."""
    bindir = bindir or os.path.dirname(sys.executable)
    env = dict(os.environ, PATH=bindir + os.pathsep + os.environ.get("PATH", ""))
    return subprocess.run([os.path.join(bindir, "ansible-runner"), "run", private_data_dir,
                           "-p", playbook, "--ident", ident],
                          stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          env=env, timeout=timeout, check=False)


def job_events(private_data_dir: str, ident: str) -> list:
    """The job events runner wrote (artifacts/IDENT/job_events/*.json), in order."""
    events = []
    for name in glob.glob(os.path.join(private_data_dir, "artifacts", ident, "job_events", "*.json")):
        with open(name, encoding="utf-8") as handle:
            events.append(json.load(handle))
    return sorted(events, key=lambda event: event["counter"])


def stats_artifact_data(private_data_dir: str, ident: str) -> dict:
    """What the job published with set_stats (per_host: false): ``event_data.artifact_data``
    of its ``playbook_on_stats`` event, where AWX takes a job's artifacts from."""
    for event in job_events(private_data_dir, ident):
        if event.get("event") == "playbook_on_stats":
            return event["event_data"].get("artifact_data", {})
    raise LookupError("no playbook_on_stats event in %s/artifacts/%s" % (private_data_dir, ident))


def job_recap(private_data_dir: str, ident: str) -> dict:
    """``{host: {'changed': n, 'failures': n, ...}}`` from the job's ``playbook_on_stats``
    event (what AWX shows as the job's host summary)."""
    for event in job_events(private_data_dir, ident):
        if event.get("event") == "playbook_on_stats":
            data = event["event_data"]
            hosts = set()
            for key in ("ok", "changed", "failures", "dark", "skipped"):
                hosts.update(data.get(key) or {})
            return {host: {key: (data.get(key) or {}).get(host, 0)
                           for key in ("ok", "changed", "failures", "dark")} for host in hosts}
    raise LookupError("no playbook_on_stats event in %s/artifacts/%s" % (private_data_dir, ident))
