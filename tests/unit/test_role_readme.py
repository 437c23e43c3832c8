# Copyright: xmpp.ejabberd contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""tools/role_readme.py: the variables section of a role's README is rendered from its
argument specs between the markers, --check reports a stale one (naming the role and the
command that rewrites it), and the collection's READMEs are up to date."""

from __future__ import annotations

from ansible_collections.xmpp.ejabberd.tools import role_readme

SPECS = """\
---
argument_specs:
  main:
    short_description: A fake role
    options: &opts
      fake_port:
        description: ["The port, see O(fake_mode=fast).", "V(0) for I(none) | C(a<b>)."]
        type: int
        default: 5210
      fake_mode: {type: str, choices: [fast, slow], required: true, description: A mode.}
      fake_peers: {type: list, elements: str, description: Peers.}
  validate:
    short_description: Only check
    options: *opts
"""
README = "# fake\n\nHand-written.\n\n## Variables\n\n%s\nold text\n%s\n\nMore prose.\n" % (role_readme.BEGIN, role_readme.END)


def make_role(tmp_path, readme=README):
    role = tmp_path / "fake"
    (role / "meta").mkdir(parents=True)
    (role / "meta" / "argument_specs.yml").write_text(SPECS)
    (role / "README.md").write_text(readme)
    return role


def test_markup():
    assert role_readme.markup("O(a=b), V(x|y), I(it), B(bold), M(ns.c.mod) and <tags> *") == (
        "`a=b`, `x\\|y`, *it*, **bold**, `ns.c.mod` and &lt;tags&gt; \\*")
    assert role_readme.markup("L(the docs,https://example.org) U(https://example.org)") == (
        "[the docs](https://example.org) <https://example.org>")


def test_stale_readme_is_reported_then_rewritten(tmp_path, capsys):
    role = make_role(tmp_path)
    args = ["--roles-dir", str(tmp_path), "fake"]
    assert role_readme.main(["--check"] + args) == 1
    err = capsys.readouterr().err
    assert "role fake:" in err and "run `make docs`" in err
    assert role_readme.main(args) == 0
    text = (role / "README.md").read_text()
    assert text.startswith("# fake\n\nHand-written.\n") and text.endswith(role_readme.END + "\n\nMore prose.\n")
    assert "old text" not in text
    assert ("| `fake_port` | int | `5210` | no | The port, see `fake_mode=fast`.<br>"
            "`0` for *none* \\| `a<b>`. |") in text
    assert "| `fake_mode` | str |  | yes | A mode.<br>Choices: `fast`, `slow`. |" in text
    assert "| `fake_peers` | list of str |  | no | Peers. |" in text
    assert "### Entry point `validate`\n\nRun with `tasks_from: validate`." in text
    assert "The options of entry point `main`." in text
    assert role_readme.main(["--check"] + args) == 0


def test_missing_markers_fail(tmp_path, capsys):
    make_role(tmp_path, readme="# fake\n")
    assert role_readme.main(["--roles-dir", str(tmp_path)]) == 1
    assert "role fake:" in capsys.readouterr().err


def test_collection_readmes_are_up_to_date():
    assert role_readme.main(["--check"]) == 0
