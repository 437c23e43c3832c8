# Copyright: xmpp.ejabberd contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Stand-in for ``get-pip.py`` when ansible-test cannot download it.

``ansible-test sanity`` creates one virtual environment per test without pip and
bootstraps pip into it with a ``get-pip.py`` it downloads from its own file host,
which is not reachable here (only PyPI is). ``make sanity`` copies this file to
``~/.ansible/test/cache/get_pip_<version>.py`` (the path ansible-test looks at
first) together with the matching pip wheel, fetched from PyPI with ``pip download``.

ansible-test runs it through its ``quiet_pip.py`` exactly like ``get-pip.py``::

    python quiet_pip.py --disable-pip-version-check pip==24.2 --no-setuptools --no-wheel

and this script does what ``get-pip.py`` does: it imports pip from the wheel and
runs ``pip install --upgrade --force-reinstall`` with those arguments.
"""

from __future__ import annotations

import glob
import os
import sys


def _pip_version(args):
    for arg in args:
        if arg.startswith('pip=='):
            return arg[len('pip=='):]
    return '*'


def main():
    """Install pip (and the requested packages) into the running interpreter."""
    here = os.path.dirname(os.path.abspath(__file__))
    args = [arg for arg in sys.argv[1:] if arg not in ('--no-setuptools', '--no-wheel')]
    wheels = sorted(glob.glob(os.path.join(here, 'pip-%s-py3-none-any.whl' % _pip_version(args))))
    if not wheels:
        sys.stderr.write('get_pip_offline: no pip wheel for %s next to %s\n' % (_pip_version(args), here))
        sys.exit(1)
    sys.path.insert(0, wheels[-1])
    from pip._internal.cli.main import main as pip_main  # pylint: disable=import-outside-toplevel

    sys.exit(pip_main(['install', '--upgrade', '--force-reinstall'] + args))


if __name__ == '__main__':
    main()
