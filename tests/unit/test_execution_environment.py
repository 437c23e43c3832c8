# Copyright: xmpp.ejabberd contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The execution environment (EE) definitions, with ansible-builder and no image build.

``ansible-builder create`` writes the build context of execution-environment.yml; the
collection is then installed from that context as the image's galaxy stage does, and
``ansible-builder introspect`` (what the image's builder stage runs) must list what the
collection declares in meta/ee-requirements.txt and meta/ee-bindep.txt. Builder reads
those files only from an installed collection, and lists nothing for empty ones, exactly
as for a collection it did not find: so meta/ee-bindep.txt has entries of its own.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tarfile

import pytest
import yaml

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.realpath(__file__))))
BIN = os.path.dirname(sys.executable)
FROM_US = "  # from collection xmpp.ejabberd"


def _galaxy() -> dict:
    with open(os.path.join(REPO_ROOT, "galaxy.yml"), encoding="utf-8") as handle:
        return yaml.safe_load(handle)


def _declared(name: str) -> list:
    """The entries of meta/NAME as introspect reads them (no comments, no blank lines)."""
    with open(os.path.join(REPO_ROOT, "meta", name), encoding="utf-8") as handle:
        return [line.strip() for line in handle if line.strip() and not line.startswith("#")]


def _run(*args: str, cwd: str | None = None, env: dict | None = None) -> str:
    proc = subprocess.run([os.path.join(BIN, args[0]), *args[1:]], cwd=cwd, capture_output=True,
                          text=True, stdin=subprocess.DEVNULL, check=False, timeout=300,
                          env=dict(os.environ, PATH=BIN + os.pathsep + os.environ["PATH"], **(env or {})))
    assert proc.returncode == 0, "%s failed:\n%s\n%s" % (" ".join(args), proc.stdout, proc.stderr)
    return proc.stdout


@pytest.fixture(scope="module")
def context(tmp_path_factory) -> str:
    """execution-environment.yml's build context (``ansible-builder create``), with the
    collection tarball built where the definition expects it (.build/ee, relative to it)."""
    root = tmp_path_factory.mktemp("ee")
    shutil.copy(os.path.join(REPO_ROOT, "execution-environment.yml"), root)
    _run("ansible-galaxy", "collection", "build", "--force", "--output-path", str(root / ".build" / "ee"), REPO_ROOT)
    _run("ansible-builder", "create", "-f", str(root / "execution-environment.yml"),
         "--context", str(root / "context"), "--output-filename", "Containerfile")
    return str(root / "context")


def test_containerfile_installs_the_collection(context):
    with open(os.path.join(context, "Containerfile"), encoding="utf-8") as handle:
        containerfile = handle.read()
    # The requirements file and the tarball reach /build, where the collections are installed.
    assert "COPY _build /build\nWORKDIR /build" in containerfile
    assert re.search(r"^RUN .*ansible-galaxy collection install .*-r requirements\.yml", containerfile, re.M)
    # Then introspection gathers the installed collections' own requirements.
    assert "introspect.py introspect" in containerfile
    # The base image is the documented placeholder, ansible-core and ansible-runner the dev pins.
    assert 'ARG EE_BASE_IMAGE="registry.example.invalid/' in containerfile
    with open(os.path.join(REPO_ROOT, "requirements", "dev.txt"), encoding="utf-8") as handle:
        pins = dict(re.findall(r"^(ansible-core|ansible-runner)==(\S+)", handle.read(), re.M))
    assert 'ARG ANSIBLE_INSTALL_REFS="ansible-core==%s ansible-runner==%s"' % (
        pins["ansible-core"], pins["ansible-runner"]) in containerfile


def test_requirements_name_the_tarball_and_the_dependencies(context):
    galaxy = _galaxy()
    with open(os.path.join(context, "_build", "requirements.yml"), encoding="utf-8") as handle:
        collections = {entry["name"]: entry for entry in yaml.safe_load(handle)["collections"]}
    tarball = "collections/xmpp-ejabberd-%s.tar.gz" % galaxy["version"]
    assert collections.pop(tarball)["type"] == "file", "galaxy.yml's version and execution-environment.yml's tarball differ"
    assert os.path.isfile(os.path.join(context, "_build", tarball))
    assert collections == {name: {"name": name, "version": galaxy["dependencies"][name]}
                           for name in ("ansible.posix", "community.crypto", "community.general")}


def test_tarball_keeps_the_ee_metadata(context):
    with tarfile.open(os.path.join(context, "_build", "collections", "xmpp-ejabberd-%s.tar.gz" % _galaxy()["version"])) as tar:
        names = set(tar.getnames())
    assert {"meta/execution-environment.yml", "meta/ee-requirements.txt", "meta/ee-bindep.txt",
            "extensions/awx/credential_type_erlang_cookie.yml"} <= names
    assert "execution-environment.yml" not in names  # for building EEs, not part of the collection


def test_introspect_lists_what_the_collection_declares(context, tmp_path):
    # As the image's galaxy stage: from /build, into the (only) collections path. Offline:
    # ansible.posix, community.crypto and community.general are already there, in the `ansible` package.
    dest = str(tmp_path / "collections")
    _run("ansible-galaxy", "collection", "install", "-r", "requirements.yml", "--collections-path", dest,
         "--offline", cwd=os.path.join(context, "_build"), env={"ANSIBLE_COLLECTIONS_PATH": dest})
    assert os.path.isfile(os.path.join(dest, "ansible_collections", "xmpp", "ejabberd", "meta", "ee-bindep.txt"))

    found = yaml.safe_load(_run("ansible-builder", "introspect", "--sanitize", dest))
    ours = {kind: [entry[:-len(FROM_US)] for entry in found[kind] if entry.endswith(FROM_US)]
            for kind in ("python", "system")}
    assert ours["system"] == _declared("ee-bindep.txt")
    assert {"openssh-clients [platform:rpm]", "openssh-client [platform:dpkg]"} <= set(ours["system"])
    # Nothing beyond ansible-core (which builder would drop anyway): see the file's comment.
    assert ours["python"] == _declared("ee-requirements.txt") == []
