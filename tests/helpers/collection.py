# Copyright: xmpp.ejabberd contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The collection as a user gets it (a built tarball, installed), and the older
ansible-core releases it claims (``make ansible-cores``)."""

from __future__ import annotations

import glob
import os
import subprocess
import sys
import tempfile
import threading

import pytest

from ansible_collections.xmpp.ejabberd.tests.helpers.lab import REPO_ROOT

_BUILD_LOCK = threading.Lock()
_TARBALL: list[str] = []


def ansible_core_bin(release: str) -> str:
    """The bin directory of the virtual environment of ansible-core RELEASE (such as 2.16):
    .venv for 2.19, .build/ansible-core-RELEASE for the older ones. Fails (skips outside
    CI) when it is missing."""
    if release == "2.19":
        return os.path.dirname(sys.executable)
    bindir = str(REPO_ROOT / ".build" / ("ansible-core-" + release) / "bin")
    if not os.path.exists(os.path.join(bindir, "ansible-playbook")):
        message = "ansible-core %s is not installed in %s: run `make ansible-cores`" % (release, bindir)
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return bindir


def built_tarball() -> str:
    """``ansible-galaxy collection build`` of this checkout, once per test process."""
    with _BUILD_LOCK:
        if not _TARBALL:
            out = tempfile.mkdtemp(prefix="xmpp-ejabberd-build.")
            subprocess.run([os.path.join(os.path.dirname(sys.executable), "ansible-galaxy"),
                            "collection", "build", "--output-path", out, str(REPO_ROOT)],
                           check=True, capture_output=True, text=True, stdin=subprocess.DEVNULL)
            _TARBALL[:] = glob.glob(os.path.join(out, "xmpp-ejabberd-*.tar.gz"))
        return _TARBALL[0]


def installed_collection(bindir: str, directory: str) -> str:
    """The built tarball installed into DIRECTORY with the ansible-galaxy of BINDIR, offline
    (its dependencies, ansible.posix and community.general, come with that release's
    ``ansible`` package). Returns the collections path to set as ANSIBLE_COLLECTIONS_PATH."""
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=directory)
    proc = subprocess.run([os.path.join(bindir, "ansible-galaxy"), "collection", "install",
                           "--offline", "-p", directory, built_tarball()],
                          capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL,
                          check=False)
    assert proc.returncode == 0, proc
    assert os.path.exists(os.path.join(directory, "ansible_collections", "xmpp", "ejabberd",
                                       "MANIFEST.json")), proc
    return directory
