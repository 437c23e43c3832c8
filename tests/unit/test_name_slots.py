# Copyright: xmpp.ejabberd contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The client's bounded set of node names (issue 9): what a process holds, and a fork."""

from __future__ import annotations

import os

from ansible_collections.xmpp.ejabberd.plugins.module_utils import erldist


def test_a_fork_starts_holding_no_name():
    """A child process (Ansible forks) must not inherit the names its parent holds: it
    would skip them for ever, and its own lock state could be a copy mid-use."""
    parent = erldist._SLOTS  # pylint: disable=protected-access
    assert parent.claim("ejabberd@n1", 3)
    try:
        pid = os.fork()
        if pid == 0:   # the child: exit 0 only with a fresh, empty set of names
            child = erldist._SLOTS  # pylint: disable=protected-access
            os._exit(0 if child is not parent and not child.held else 1)
        dummy, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert ("ejabberd@n1", 3) in parent.held      # the parent keeps its own
    finally:
        parent.release("ejabberd@n1", 3)


def test_a_round_offers_every_slot_once_and_starts_further_each_time():
    slots = erldist._Slots()  # pylint: disable=protected-access
    first, second = slots.round(), slots.round()
    assert sorted(first) == sorted(second) == list(range(erldist.NAME_SLOTS))
    assert second[0] == (first[0] + 1) % erldist.NAME_SLOTS
