# Copyright: xmpp.ejabberd contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""tools/role_defaults.py: a role whose defaults/main.yml and meta/argument_specs.yml disagree is
reported, naming the role, entry point and variable; the collection's own roles agree."""

from __future__ import annotations

import textwrap

from ansible_collections.xmpp.ejabberd.tools import role_defaults

SPECS = """\
---
argument_specs:
  main:
    short_description: A fake role
    options:
      fake_port: {type: int, default: 5210, description: A port.}
      fake_name: {type: str, default: "x@{{ inventory_hostname }}", description: A name.}
      fake_peers: {type: list, elements: str, description: Default is every host, in words.}
      fake_mode: {type: str, description: A mode.}
  other:
    short_description: Another entry point
    options:
      fake_dir: {type: str, default: /srv, description: A directory.}
"""


def make_role(tmp_path, defaults, specs=SPECS):
    role = tmp_path / "roles" / "fake"
    (role / "defaults").mkdir(parents=True)
    (role / "meta").mkdir()
    (role / "defaults" / "main.yml").write_text(textwrap.dedent(defaults))
    (role / "meta" / "argument_specs.yml").write_text(specs)
    return role


def test_agreeing_role_passes(tmp_path):
    role = make_role(tmp_path, """\
        ---
        fake_port: 5210
        fake_name: "x@{{ inventory_hostname }}"
        fake_peers: "{{ ansible_play_hosts_all }}"
        fake_mode: null
        fake_dir: /srv
        _fake_internal: 1
        """)
    assert role_defaults.check_role(role) == []
    assert role_defaults.main([str(role.parent)]) == 0


def test_mismatches_are_reported(tmp_path, capsys):
    role = make_role(tmp_path, """\
        ---
        fake_port: "5210"
        fake_name: "y@{{ inventory_hostname }}"
        fake_mode: fast
        fake_undocumented: 1
        """)
    problems = role_defaults.check_role(role)
    assert problems == [
        "fake: fake_undocumented is in defaults/main.yml but no entry point of meta/argument_specs.yml documents it",
        'fake: entry point main, option fake_port: the spec says default 5210, defaults/main.yml "5210"',
        'fake: entry point main, option fake_name: the spec says default "x@{{ inventory_hostname }}",'
        ' defaults/main.yml "y@{{ inventory_hostname }}" (an expression: say it in the description and drop default:)',
        'fake: entry point main, option fake_mode: defaults/main.yml sets "fast", the spec has no default:',
        'fake: entry point other, option fake_dir: the spec says default "/srv", defaults/main.yml does not set it',
    ]
    assert role_defaults.main([str(role.parent)]) == 1
    err = capsys.readouterr().err
    assert "fake_undocumented" in err and "5 mismatch(es)" in err


def test_collection_roles_pass():
    roles = role_defaults.ROOT / "roles"
    for role in sorted(roles.iterdir()):
        assert role_defaults.check_role(role) == [], role.name
