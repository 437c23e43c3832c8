# Copyright: xmpp.ejabberd contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Write CHANGELOG.md from changelogs/ with antsibull-changelog, or check it (--check).

    python tools/changelog.py            # rewrite CHANGELOG.md (make docs)
    python tools/changelog.py --check    # fail when CHANGELOG.md is not that output (make lint)

antsibull-changelog renders released versions only (``generate`` refuses to run before a
first release), so this previews the next one: it runs ``antsibull-changelog release
--version <galaxy.yml's version>`` in a temporary copy of the collection and takes the
CHANGELOG.md written there. Nothing in the checkout is released, moved or deleted; no
network is needed. See changelogs/config.yaml.
"""

from __future__ import annotations

import argparse
import difflib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
# What `antsibull-changelog release` reads: galaxy.yml and changelogs/, and what it asks
# ansible-doc about (modules and roles, for its "New Modules" and "New Roles" sections).
COPIED = ("galaxy.yml", "changelogs", "meta", "plugins", "roles")
REGENERATE = "make docs"


def render(root: Path = ROOT) -> str:
    """The CHANGELOG.md that `antsibull-changelog release` would write for the next release."""
    version = str(yaml.safe_load((root / "galaxy.yml").read_text(encoding="utf-8"))["version"])
    with tempfile.TemporaryDirectory(prefix="xmpp-ejabberd-changelog-") as tmp:
        for name in COPIED:
            src = root / name
            if src.is_dir():
                # A stale plugin cache would hide changed module descriptions.
                shutil.copytree(src, Path(tmp, name), symlinks=True,
                                ignore=shutil.ignore_patterns("__pycache__", ".plugin-cache.yaml"))
            elif src.exists():
                shutil.copy2(src, tmp)
        # antsibull-changelog runs ansible-doc, which sits next to this Python in the venv.
        env = dict(os.environ, PATH=os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")]))
        proc = subprocess.run([sys.executable, "-m", "antsibull_changelog", "release", "--version", version],
                              cwd=tmp, env=env, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            sys.exit("antsibull-changelog release failed (rc=%d):\n%s%s" % (proc.returncode, proc.stdout, proc.stderr))
        return Path(tmp, "CHANGELOG.md").read_text(encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check that CHANGELOG.md is up to date")
    args = parser.parse_args(argv)
    wanted = render()
    path = ROOT / "CHANGELOG.md"
    current = path.read_text(encoding="utf-8") if path.exists() else ""
    if not args.check:
        if current != wanted:
            path.write_text(wanted, encoding="utf-8")
            print("changelog: CHANGELOG.md written")
        return 0
    if current == wanted:
        return 0
    diff = difflib.unified_diff(current.splitlines(True), wanted.splitlines(True),
                                "CHANGELOG.md", "CHANGELOG.md (antsibull-changelog)")
    sys.stdout.writelines(list(diff)[:60])
    print("changelog: CHANGELOG.md is not what antsibull-changelog renders from changelogs/;"
          " run `%s`" % REGENERATE, file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
