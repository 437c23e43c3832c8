# Copyright: xmpp.ejabberd contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Shared pytest set-up for xmpp.ejabberd.

* Makes ``ansible_collections.xmpp.ejabberd`` importable: ``.build/collections``
  goes on sys.path, with the symlink ``.build/collections/ansible_collections/
  xmpp/ejabberd -> <repo>`` created if missing (``make collection`` does the same).
* Registers the markers ``lab`` and ``slow``.
* Fixtures that start real Erlang nodes (tests/helpers/erlnode.py):
  ``erl_node_factory``, ``epmd_node``, ``fixed_port_node``.
"""

from __future__ import annotations

import os
import sys

import pytest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COLLECTIONS_ROOT = os.path.join(REPO_ROOT, ".build", "collections")
COLLECTION_LINK = os.path.join(COLLECTIONS_ROOT, "ansible_collections", "xmpp", "ejabberd")


def _ensure_collection_path():
    parts = REPO_ROOT.split(os.sep)
    if parts[-3:-1] == ["ansible_collections", "xmpp"]:
        # Already at .../ansible_collections/xmpp/<name> (e.g. ansible-test's copy).
        root = os.sep.join(parts[:-3]) or os.sep
    else:
        if not os.path.islink(COLLECTION_LINK):
            os.makedirs(os.path.dirname(COLLECTION_LINK), exist_ok=True)
            try:
                os.symlink(REPO_ROOT, COLLECTION_LINK)
            except FileExistsError:
                pass
        root = COLLECTIONS_ROOT
    if root not in sys.path:
        sys.path.insert(0, root)


_ensure_collection_path()

# pylint: disable-next=wrong-import-position
from ansible_collections.xmpp.ejabberd.tests.helpers.erlnode import ErlNode, erlang_available  # noqa: E402


def pytest_configure(config):
    """Register the markers and the hypothesis profiles."""
    config.addinivalue_line("markers", "lab: needs the docker lab containers (see lab/); run by make test")
    config.addinivalue_line("markers", "slow: takes more than a few seconds")
    try:
        from hypothesis import HealthCheck, settings  # pylint: disable=import-outside-toplevel
    except ImportError:
        return
    # CI runs on a shared 2-core machine: no per-example deadline there.
    settings.register_profile("ci", deadline=None, print_blob=True,
                              suppress_health_check=[HealthCheck.too_slow])
    settings.register_profile("dev", deadline=None)
    settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))


def _require_erlang():
    if not erlang_available():
        message = "Erlang (erl, epmd, erl_call) is not installed: run `make deps`"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


class _Factory:
    """Starts ErlNode objects and stops them all at teardown."""

    def __init__(self):
        self.nodes = []

    def __call__(self, name="t1", **kwargs):
        _require_erlang()
        node = ErlNode(name, **kwargs)
        node.start()
        self.nodes.append(node)
        return node

    def close(self):
        """Stop every node started through this factory (last first)."""
        errors = []
        for node in self.nodes:
            node.terminate()  # a node takes about 1 s to stop on SIGTERM: all at once
        while self.nodes:
            try:
                self.nodes.pop().stop()
            except Exception as exc:  # pylint: disable=broad-exception-caught
                errors.append(exc)
        if errors:
            raise errors[0]


@pytest.fixture
def erl_node_factory():
    """``erl_node_factory(name, **ErlNode kwargs)`` -> started ErlNode; all stopped at teardown."""
    factory = _Factory()
    yield factory
    factory.close()


@pytest.fixture(scope="module")
def epmd_node():
    """A short-name node (``<name>@localhost``) registered with its own private epmd."""
    factory = _Factory()
    yield factory("epmdnode", longnames=False)
    factory.close()


@pytest.fixture(scope="module")
def fixed_port_node():
    """A long-name node (``<name>@127.0.0.1``) on a fixed port, without any epmd."""
    factory = _Factory()
    yield factory("fixednode", longnames=True, dist_port=0)
    factory.close()


# How `make pytest-lab` spreads the lab files over its workers (pytest-xdist, one file per
# worker, --no-loadscope-reorder): the longest first, so that none starts last, and the
# files whose module-scoped lab is parametrized by release (the first part of the test id)
# as one unit per release, each on a worker of its own. Minutes: about how long a unit's
# labs take on a quiet 2-core machine.
LAB_UNITS = {
    "test_cluster_changes.py": (10, True),
    "test_ejabberd_cluster.py": (11, False),
    "test_playbooks.py": (11, False),
    "test_cluster_shrink_and_partition.py": (6, True),
    "test_site_releases.py": (3, True),
    "test_ansible_core_releases.py": (3, True),
    "test_dist_tls.py": (7, True),
    "test_site_ipv6.py": (4, True),
    "test_role_erlang_firewall.py": (4, False),
    "test_awx_jobs.py": (4, False),
    "test_site_install_and_faults.py": (3, False),
    "test_site_without_systemd.py": (2, False),
    "test_role_erlang_cookie.py": (3, False),
    "test_otp_matrix.py": (2, False),
}


def _unit(nodeid: str) -> str:
    """The scheduling unit of a test: its file, or file and release for LAB_UNITS' split ones."""
    path, _sep, rest = nodeid.partition("::")
    split = LAB_UNITS.get(os.path.basename(path), (0, False))[1]
    if split and "[" in rest:
        return "%s::[%s]" % (path, rest.split("[", 1)[1].split("-", 1)[0].rstrip("]"))
    return path


def pytest_collection_modifyitems(config, items):  # pylint: disable=unused-argument
    """The lab units in LAB_UNITS' order, longest first; the rest keeps its order."""
    order = {}
    for item in items:
        minutes = LAB_UNITS.get(os.path.basename(str(item.fspath)), (0, False))[0]
        order.setdefault(_unit(item.nodeid), (-minutes, len(order)))
    items.sort(key=lambda item: order[_unit(item.nodeid)])


def pytest_xdist_make_scheduler(config, log):
    """pytest-xdist's file scheduling, with LAB_UNITS' units instead of whole files."""
    from xdist.scheduler import LoadFileScheduling  # pylint: disable=import-outside-toplevel

    class LabUnitScheduling(LoadFileScheduling):
        def _split_scope(self, nodeid):
            return _unit(nodeid)

    return LabUnitScheduling(config, log)
