# Copyright: xmpp.ejabberd contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Small pieces the integration test files share."""

from __future__ import annotations

import os
import time
from typing import Callable

import pytest

from ansible_collections.xmpp.ejabberd.plugins.module_utils import erldist
from ansible_collections.xmpp.ejabberd.tests.helpers.lab import DOCKER, REPO_ROOT

# Where `make collection` links this checkout as ansible_collections/xmpp/ejabberd.
COLLECTIONS_ROOT = str(REPO_ROOT / ".build" / "collections")


def write_private(directory: str, name: str, text: str, mode: int = 0o600) -> str:
    """DIRECTORY/NAME, a new file (never an existing one, nor a symlink planted there) that
    only this user can read, from its creation on: cookies, vars files, module arguments.
    latin-1 is how Erlang reads a cookie; JSON from json.dumps is ASCII."""
    path = os.path.join(directory, name)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "w", encoding="latin-1") as handle:
        handle.write(text)
    return path


def require_docker() -> None:
    """Skip (fail under CI) when docker is missing and this user cannot install it;
    as root the lab installs and starts it itself (lab/dockerd.sh)."""
    if os.access(DOCKER, os.X_OK) or os.geteuid() == 0:
        return
    message = "docker (%s) is missing and only root can install it: run `make deps`" % DOCKER
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def wait_until(predicate: Callable[[], object], seconds: float = 5.0) -> bool:
    """Poll ``predicate`` every 0.1 s for up to ``seconds``; its last answer, as a bool."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.1)
    return bool(predicate())


def node_accepts(node: dict, cookie: str, dist_port: int) -> bool:
    """Whether the running node (``name`` and ``ip``) accepts ``cookie``: a handshake from
    this machine. Any failure other than a rejected cookie fails the test."""
    try:
        erldist.connect(node["name"], cookie, address=node["ip"], dist_port=dist_port,
                        timeout=5).close()
        return True
    except erldist.DistError as exc:
        if exc.reason != "cookie_rejected":
            raise AssertionError("%s: %s" % (node["name"], exc.reason)) from None
        return False
