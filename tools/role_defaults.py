# Copyright: xmpp.ejabberd contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Check that each role's defaults/main.yml and meta/argument_specs.yml agree (make lint).

    python tools/role_defaults.py [ROLES_DIR]

- Every variable of defaults/main.yml is an option of some entry point of the role.
- Every option with a ``default:`` in the spec has that value in defaults/main.yml: the spec's
  default is documentation only (Ansible takes the value from defaults/main.yml), so a
  different one misleads. A Jinja expression is documented in words in the description,
  without a ``default:`` key (or as the same expression).
- An option without ``default:`` whose variable defaults/main.yml sets to a literal value
  (not null, not an expression) is reported too: ansible-doc would show no default.

defaults/main.yml applies to every entry point (tasks_from), so every entry point is
checked. Variables starting with ``_`` are internal and exempt.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def _load(path: Path) -> dict:
    return (yaml.safe_load(path.read_text(encoding="utf-8")) if path.exists() else None) or {}


def _is_expression(value) -> bool:
    return isinstance(value, str) and ("{{" in value or "{%" in value)


def _same(a, b) -> bool:
    # JSON keeps the types apart: true is not 1, "5" is not 5.
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def check_role(role_dir: Path) -> list[str]:
    """The mismatches of one role, as sentences naming the file, entry point and variable."""
    defaults = _load(role_dir / "defaults" / "main.yml")
    specs = _load(role_dir / "meta" / "argument_specs.yml").get("argument_specs") or {}
    role = role_dir.name
    problems = []
    documented = {name for entry in specs.values() for name in (entry.get("options") or {})}
    for name in defaults:
        if not name.startswith("_") and name not in documented:
            problems.append("%s: %s is in defaults/main.yml but no entry point of meta/argument_specs.yml "
                            "documents it" % (role, name))
    for entry_name, entry in specs.items():
        for name, option in (entry.get("options") or {}).items():
            if name.startswith("_"):
                continue
            where = "%s: entry point %s, option %s" % (role, entry_name, name)
            if "default" in option:
                if name not in defaults:
                    problems.append("%s: the spec says default %s, defaults/main.yml does not set it"
                                    % (where, json.dumps(option["default"])))
                elif not _same(option["default"], defaults[name]):
                    hint = (" (an expression: say it in the description and drop default:)"
                            if _is_expression(defaults[name]) else "")
                    problems.append("%s: the spec says default %s, defaults/main.yml %s%s"
                                    % (where, json.dumps(option["default"]), json.dumps(defaults[name]), hint))
            elif name in defaults and defaults[name] is not None and not _is_expression(defaults[name]):
                problems.append("%s: defaults/main.yml sets %s, the spec has no default:"
                                % (where, json.dumps(defaults[name])))
    return problems


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    roles_dir = Path(argv[0]) if argv else ROOT / "roles"
    problems = [p for role in sorted(roles_dir.iterdir()) if role.is_dir() for p in check_role(role)]
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        print("role_defaults: %d mismatch(es) between defaults/main.yml and meta/argument_specs.yml"
              % len(problems), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
