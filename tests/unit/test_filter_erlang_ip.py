# Copyright: xmpp.ejabberd contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filter erlang_ip: the tuple it writes is the one Erlang's own inet:parse_address/1
gives for the same address (checked with a real `erl` when it is installed)."""

from __future__ import annotations

import shutil
import subprocess

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.xmpp.ejabberd.plugins.filter.erlang_ip import erlang_ip

ADDRESSES = ["127.0.0.1", "10.20.30.40", "::1", "fd00:30:fa::11", "2001:db8::ffff:1", "::ffff:10.0.0.1"]


def test_known_tuples():
    assert erlang_ip("127.0.0.1") == "{127,0,0,1}"
    assert erlang_ip("fd00::11") == "{64768,0,0,0,0,0,0,17}"
    assert erlang_ip(" ::1 ") == "{0,0,0,0,0,0,0,1}"


@pytest.mark.skipif(shutil.which("erl") is None, reason="erl is not installed (make deps)")
def test_the_tuple_is_erlangs_own():
    expr = "".join('{ok, A%d} = inet:parse_address("%s"), io:format("~w~n", [A%d]), ' % (i, a, i)
                   for i, a in enumerate(ADDRESSES))
    out = subprocess.run(["erl", "-noshell", "-eval", expr + "halt()."], capture_output=True,
                         text=True, check=True, timeout=60).stdout.split()
    assert out == [erlang_ip(address) for address in ADDRESSES]


@pytest.mark.parametrize("bad", ["", "n1.lab", "10.0.0.256", "fd00::11::2"])
def test_not_an_address_is_refused(bad):
    with pytest.raises(AnsibleFilterError, match="not an IPv4 or IPv6 address"):
        erlang_ip(bad)


def test_not_strict_gives_an_empty_string():
    assert erlang_ip("n1.lab", strict=False) == ""
    assert erlang_ip("fd00::11", strict=False) == "{64768,0,0,0,0,0,0,17}"
