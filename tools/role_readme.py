# Copyright: xmpp.ejabberd contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Write the variables section of each role's README.md from its meta/argument_specs.yml.

    python tools/role_readme.py [--check] [ROLE ...]     (make docs; --check in make lint)

The section lies between the markers below in roles/<role>/README.md; the rest of the README
is written by hand. For every entry point it gives the short description, the description
and a table of the options (name, type, default, required, description), so that the README
says what ansible-doc says. --check changes nothing and fails when a section is stale.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
BEGIN = "<!-- BEGIN ARGUMENT SPECS -->"
END = "<!-- END ARGUMENT SPECS -->"
REGENERATE = "make docs"
NOTE = "<!-- Generated from meta/argument_specs.yml by tools/role_readme.py (`%s`); do not edit by hand. -->" % REGENERATE

# Ansible's markup (https://docs.ansible.com/ansible/latest/dev_guide/ansible_markup.html);
# the argument ends at the first ")", as for ansible-doc.
MARKUP = re.compile(r"(?<![\w])(RV|[IBMULRCOVEP])\(([^)]*)\)")


def code(text: str) -> str:
    """A Markdown code span (in a table cell, "|" only escaped)."""
    text = text.replace("|", "\\|")
    return "`` %s ``" % text if "`" in text else "`%s`" % text


def plain(text: str) -> str:
    """Plain text that Markdown would otherwise take for HTML, emphasis or a table cell end."""
    for char, escaped in (("\\", "\\\\"), ("|", "\\|"), ("*", "\\*"), ("`", "\\`"), ("<", "&lt;"), (">", "&gt;")):
        text = text.replace(char, escaped)
    return text


def markup(text: str) -> str:
    """Ansible markup to Markdown: C(), O(), V()... as code, I() and B() as emphasis, links."""
    out, pos = [], 0
    for match in MARKUP.finditer(text):
        out.append(plain(text[pos:match.start()]))
        kind, arg = match.groups()
        if kind == "I":
            out.append("*%s*" % plain(arg))
        elif kind == "B":
            out.append("**%s**" % plain(arg))
        elif kind == "U":
            out.append("<%s>" % arg)
        elif kind in ("L", "R"):
            label, target = arg.split(",", 1)[0], arg.split(",", 1)[-1]
            out.append("[%s](%s)" % (plain(label.strip()), target.strip()) if kind == "L" else plain(label.strip()))
        else:  # C, O, V, E, RV, M, P: names and values
            out.append(code(arg))
        pos = match.end()
    out.append(plain(text[pos:]))
    return "".join(out)


def paragraphs(description) -> list[str]:
    if description is None:
        return []
    return [markup(" ".join(str(p).split())) for p in ([description] if isinstance(description, str) else description)]


def default_cell(option: dict) -> str:
    if "default" not in option:
        return ""
    value = option["default"]
    return code(value) if isinstance(value, str) and value else code(json.dumps(value))


def option_rows(options: dict, prefix: str = "") -> list[str]:
    rows = []
    for name, option in options.items():
        kind = option.get("type", "str")
        if option.get("elements"):
            kind = "%s of %s" % (kind, option["elements"])
        text = paragraphs(option.get("description"))
        if option.get("choices"):
            text.append("Choices: %s." % ", ".join(code(str(c)) for c in option["choices"]))
        rows.append("| %s | %s | %s | %s | %s |" % (
            code(prefix + name), kind, default_cell(option), "yes" if option.get("required") else "no",
            "<br>".join(text)))
        rows += option_rows(option.get("options") or {}, prefix + name + ".")  # suboptions
    return rows


def render(specs: dict) -> str:
    """The generated section (without the markers) for a role's argument_specs."""
    blocks = [NOTE]
    seen = {}
    for name, entry in specs.items():
        blocks.append("### Entry point `%s`" % name)
        if name != "main":
            blocks.append("Run with `tasks_from: %s`." % name)
        blocks += paragraphs(entry.get("short_description")) + paragraphs(entry.get("description"))
        options = entry.get("options") or {}
        same = next((other for other, opts in seen.items() if opts == options), None)
        if not options:
            blocks.append("No options.")
        elif same:
            # A YAML alias of another entry point's options: not the same table twice.
            blocks.append("The options of entry point `%s`." % same)
        else:
            blocks.append("\n".join(["| Variable | Type | Default | Required | Description |",
                                     "|---|---|---|---|---|"] + option_rows(options)))
            seen[name] = options
    return "\n\n".join(blocks) + "\n"


def updated(readme: str, section: str) -> str:
    """The README text with the section between the markers replaced."""
    start, end = readme.find(BEGIN), readme.find(END)
    if start < 0 or end < start:
        raise ValueError("has no %s ... %s markers" % (BEGIN, END))
    return readme[:start + len(BEGIN)] + "\n" + section + readme[end:]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="change nothing; fail when a README is stale")
    parser.add_argument("--roles-dir", type=Path, default=ROOT / "roles")
    parser.add_argument("roles", nargs="*", help="default: every role")
    args = parser.parse_args(argv)
    names = args.roles or sorted(p.name for p in args.roles_dir.iterdir() if (p / "meta" / "argument_specs.yml").exists())
    failed = 0
    for name in names:
        role = args.roles_dir / name
        readme_path = role / "README.md"
        shown = readme_path.relative_to(ROOT) if readme_path.is_relative_to(ROOT) else readme_path
        specs = yaml.safe_load((role / "meta" / "argument_specs.yml").read_text(encoding="utf-8"))["argument_specs"]
        readme = readme_path.read_text(encoding="utf-8") if readme_path.exists() else ""
        try:
            wanted = updated(readme, render(specs))
        except ValueError as exc:
            print("role_readme: role %s: %s %s; add them where the variables go" % (name, shown, exc), file=sys.stderr)
            failed += 1
            continue
        if wanted == readme:
            continue
        if args.check:
            print("role_readme: role %s: the variables section of %s is not what meta/argument_specs.yml gives;"
                  " run `%s`" % (name, shown, REGENERATE), file=sys.stderr)
            failed += 1
        else:
            readme_path.write_text(wanted, encoding="utf-8")
            print("role_readme: %s written" % shown)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
