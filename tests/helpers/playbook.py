# Copyright: xmpp.ejabberd contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""ansible-playbook against lab containers, for the role and playbook tests.

Cookies travel in private vars files only (never in an argv), and a failing test's report
masks every cookie the runner handed out.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import secrets
import shutil
import string
import subprocess
import sys
import tempfile
import threading
import time
from typing import Callable, Iterator

from ansible_collections.xmpp.ejabberd.tests.helpers.common import (
    COLLECTIONS_ROOT, require_docker, write_private)
from ansible_collections.xmpp.ejabberd.tests.helpers.lab import LabCluster


RECAP_RE = re.compile(r"^(\S+)\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+"
                      r"failed=(\d+)\s+skipped=(\d+)", re.M)
FATAL_RE = re.compile(r"^fatal: \[([^\]]+)\]: FAILED! => (\{.*\})\s*$", re.M)
# What set_stats published for the whole run (per_host: false), as the default callback
# prints it with ANSIBLE_SHOW_CUSTOM_STATS (one line of JSON).
RUN_STATS_RE = re.compile(r"^\s*RUN: (\{.*\})\s*$", re.M)


def new_cookie(length: int = 32) -> str:
    return "".join(secrets.choice(string.ascii_uppercase + string.digits) for dummy in range(length))


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


class Play:
    """Result of one ansible-playbook run."""

    def __init__(self, proc: subprocess.CompletedProcess[str], wall: float,
                 secrets_: list[str]) -> None:
        self.rc = proc.returncode
        self.out = proc.stdout + proc.stderr
        self.wall = wall
        self.recap = {m.group(1): {"ok": int(m.group(2)), "changed": int(m.group(3)),
                                   "unreachable": int(m.group(4)), "failed": int(m.group(5))}
                      for m in RECAP_RE.finditer(proc.stdout)}
        self.secrets = secrets_

    def changed(self, host: str) -> int:
        return self.recap[host]["changed"]

    def failed(self, host: str) -> int:
        return self.recap[host]["failed"]

    def fatal_messages(self) -> list[str]:
        """The ``msg`` of every ``fatal:`` line."""
        msgs = []
        for match in FATAL_RE.finditer(self.out):
            try:
                msgs.append(str(json.loads(match.group(2)).get("msg", "")))
            except ValueError:
                msgs.append(match.group(2))
        return msgs

    def run_stats(self) -> dict:
        """What the playbook published with set_stats (per_host: false), as AWX reads it."""
        match = RUN_STATS_RE.search(self.out)
        return json.loads(match.group(1)) if match else {}

    def shows(self, secret: str) -> bool:
        return secret in self.out

    def shows_a_secret(self) -> bool:
        return any(secret in self.out for secret in self.secrets)

    def __repr__(self) -> str:
        out = self.out
        for secret in self.secrets:     # never let a failing test print a cookie
            out = out.replace(secret, "<COOKIE>")
        return "Play(rc=%d, wall=%.1f, recap=%r)\n%s" % (self.rc, self.wall, self.recap, out[-8000:])


class PlaybookRunner:
    """Runs ansible-playbook from this checkout's collection, one private vars file per run."""

    def __init__(self, workdir: str) -> None:
        self.workdir = workdir
        venv_bin = os.path.dirname(sys.executable)
        venv_tool = os.path.join(venv_bin, "ansible-playbook")
        self.ansible_playbook = venv_tool if os.path.exists(venv_tool) else shutil.which("ansible-playbook")
        self.env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=COLLECTIONS_ROOT,
                        ANSIBLE_PIPELINING="1", ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0",
                        ANSIBLE_RETRY_FILES_ENABLED="0", ANSIBLE_DEPRECATION_WARNINGS="0",
                        ANSIBLE_LOCAL_TEMP=os.path.join(workdir, "tmp"),
                        ANSIBLE_STDOUT_CALLBACK="default", ANSIBLE_SHOW_CUSTOM_STATS="1",
                        # Debian's docker client first: community.docker takes `docker` from PATH
                        PATH=os.pathsep.join([venv_bin, "/usr/bin", os.environ.get("PATH", "")]))
        for name in ("ANSIBLE_CONFIG", "ANSIBLE_CALLBACK_RESULT_FORMAT", "ANSIBLE_INVENTORY"):
            self.env.pop(name, None)
        self.secrets: list[str] = []
        self._count = 0
        self._lock = threading.Lock()

    def write(self, name: str, content: str) -> str:
        """A file in the work directory (a playbook or an inventory); returns its path."""
        path = os.path.join(self.workdir, name)
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(content)
        return path

    def role_playbook(self, role: str) -> str:
        """A playbook that includes the role on every host, as the ejabberd role does
        (as root: over SSH that is sudo, with docker exec it is root already)."""
        return self.write("play.yml", (
            "---\n- name: Apply xmpp.ejabberd.%s\n  hosts: all\n  gather_facts: false\n"
            "  become: true\n"
            "  tasks:\n    - name: Include the role as the ejabberd role does\n"
            "      ansible.builtin.include_role:\n        name: xmpp.ejabberd.%s\n") % (role, role))

    def ssh_inventory(self, lab: LabCluster, hosts: dict, group_vars: dict | None = None,
                      name: str = "inventory", group: str = "ejabberd") -> str:
        """A YAML (JSON) inventory of VM-like lab hosts reached over SSH as admin with sudo:
        ``hosts`` maps each inventory name to ``(lab ref, host vars)``."""
        members = {host: {**lab.ssh_vars(ref), **variables}
                   for host, (ref, variables) in hosts.items()}
        return self.write("%s.json" % name, json.dumps(
            {group: {"hosts": members, "vars": dict(group_vars or {})}}, indent=1))

    def docker_inventory(self, host_lines: list[str]) -> str:
        """An INI inventory of lab containers (one line per host), reached with docker exec."""
        lines = [*host_lines, "", "[all:vars]", "ansible_connection=community.docker.docker",
                 "ansible_python_interpreter=/usr/bin/python3"]
        return self.write("hosts.ini", "\n".join(lines) + "\n")

    def cookie(self) -> str:
        """A new random cookie, remembered so that no report ever shows it."""
        value = new_cookie()
        self.secrets.append(value)
        return value

    def play(self, playbook: str, inventory: str, variables: dict | None = None,
             *args: str, timeout: float = 900) -> Play:
        """ansible-playbook -i INVENTORY [-e @private vars file] ARGS PLAYBOOK."""
        with self._lock:
            self._count += 1
            count = self._count
        argv = [self.ansible_playbook, "-i", inventory]
        varfile = None
        if variables is not None:
            varfile = write_private(self.workdir, "vars-%d.json" % count, json.dumps(variables))
            argv += ["-e", "@" + varfile]
        argv += [*args, playbook]
        start = time.monotonic()
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, env=self.env, timeout=timeout,
                                  stdin=subprocess.DEVNULL, cwd=self.workdir, check=False)
        finally:
            if varfile:
                os.unlink(varfile)
        return Play(proc, time.monotonic() - start, self.secrets)


def start_lab(lab: LabCluster, prepare: Callable[[LabCluster], None]) -> LabCluster:
    """``lab`` up (on a free subnet unless it names one), then ``prepare(lab)``; on any
    failure nothing of it is left."""
    lab.up()
    try:
        prepare(lab)
    except BaseException:
        lab.close()
        raise
    return lab


@contextlib.contextmanager
def lab_session(request, what: str, start: Callable[[], LabCluster]) -> Iterator[dict]:
    """A module's lab and work directory, removed at the end; timings and notes reported."""
    require_docker()
    began = time.monotonic()
    lab = start()
    timings = {"lab_up": time.monotonic() - began}
    notes: list[str] = []
    workdir = tempfile.mkdtemp(prefix="xmpp-ejabberd-%s." % what.split()[0])
    try:
        yield {"lab": lab, "workdir": workdir, "timings": timings, "notes": notes}
    finally:
        try:
            lab.close()
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
            reporter = request.config.pluginmanager.getplugin("terminalreporter")
            if reporter is not None:
                reporter.write_line("%s: %s" % (what, ", ".join(
                    "%s %.1f s" % item for item in timings.items())))
                for note in notes:
                    reporter.write_line("%s: %s" % (what, note))
