# xmpp.ejabberd: the one entry point for developers and CI.
#
#   make test         everything: deps + venv + collection + lint + sanity + pytest + molecule
#   make demo         deploy the 3-node demo cluster on local lab containers
#   make demo-clean   remove the demo containers
#   make docs         rewrite the generated docs (CHANGELOG.md, roles' variables) from their sources
#   make venv | deps | ansible-cores | collection | lint | sanity | pytest (= pytest-local + pytest-lab) | molecule | bench | clean
#
# Every recipe is one bash script (.ONESHELL) that stops at the first error.

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.ONESHELL:
.SILENT:
.DEFAULT_GOAL := help
MAKEFLAGS += --no-print-directory

ROOT := $(CURDIR)
VENV := $(ROOT)/.venv
BUILD := $(ROOT)/.build
COLLECTIONS := $(BUILD)/collections
COLLECTION_LINK := $(COLLECTIONS)/ansible_collections/xmpp/ejabberd
SANITY_ROOT := $(BUILD)/sanity/ansible_collections/xmpp/ejabberd
PYBIN := $(BUILD)/pybin
VENV_STAMP := $(VENV)/.installed-dev

# Python 3.11 for the virtual environment: Debian 12's /usr/bin/python3 when it is
# 3.11, else whatever `python3` is first on PATH.
PYTHON ?= $(shell if /usr/bin/python3 -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null; \
	then echo /usr/bin/python3; else command -v python3; fi)
PIP_VERSION := 26.3

# OS packages the tests and the lab need (Debian/Ubuntu names).
# shellcheck: for the shellcheck sanity test. openssh-client: ssh and ssh-keygen for the VM-like lab.
# erlang-ssl: local nodes of TLS distribution (tests/integration/test_tls_distribution.py).
# tcpdump: the capture of the lab network in tests/integration/test_dist_tls.py.
DEB_PACKAGES := erlang-base erlang-dev erlang-ssl docker.io debootstrap nftables hyperfine iproute2 python3-venv shellcheck openssh-client tcpdump

# Sanity: the Python versions to byte-compile the plugins with (target code supports >= 3.9).
SANITY_PYTHON := 3.11
COMPILE_PYTHONS := 3.9 3.10 3.11 3.12 3.13
# Sanity tests that cannot run here (see the `sanity` target for why).
SANITY_SKIP := pslint

# Recipes see the collection under its import name and the venv's tools first.
export ANSIBLE_COLLECTIONS_PATH := $(COLLECTIONS)
export PATH := $(VENV)/bin:$(PATH)
export ANSIBLE_NOCOLOR := 1
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: help
help:
	sed -n '1,9p' $(firstword $(MAKEFILE_LIST)) | sed 's/^# \{0,1\}//'

# ---------------------------------------------------------------------------
# OS packages
# Installs only what is missing. A policy-rc.d that answers 101 ("action not
# allowed") keeps apt from starting services (docker, nftables...) during the
# install; an existing policy-rc.d is put back afterwards, whatever happens.
.PHONY: deps
deps:
	missing=()
	for p in $(DEB_PACKAGES); do
	  dpkg-query -W -f='$${Status}' "$$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$$p")
	done
	if [ $${#missing[@]} -eq 0 ]; then echo "deps: all OS packages present"; exit 0; fi
	echo "deps: installing $${missing[*]}"
	if [ "$$(id -u)" -ne 0 ]; then echo "deps: need root to run apt-get" >&2; exit 1; fi
	policy=/usr/sbin/policy-rc.d
	backup=
	if [ -e "$$policy" ]; then backup=$$(mktemp); cp -p "$$policy" "$$backup"; fi
	restore() {
	  if [ -n "$$backup" ]; then cp -p "$$backup" "$$policy"; rm -f "$$backup"; else rm -f "$$policy"; fi
	}
	trap restore EXIT
	printf '#!/bin/sh\n# written by xmpp.ejabberd make deps; removed afterwards\nexit 101\n' > "$$policy"
	chmod 0755 "$$policy"
	export DEBIAN_FRONTEND=noninteractive
	# needrestart (if installed) would offer to restart services after the install
	export NEEDRESTART_SUSPEND=1 NEEDRESTART_MODE=l
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "$${missing[@]}"

# ---------------------------------------------------------------------------
# Python tools
.PHONY: venv
venv: $(VENV_STAMP)

$(VENV_STAMP): requirements/dev.txt
	if [ ! -x "$(VENV)/bin/python" ]; then
	  echo "venv: creating $(VENV) with $(PYTHON) ($$($(PYTHON) --version))"
	  "$(PYTHON)" -m venv "$(VENV)"
	fi
	"$(VENV)/bin/python" -m pip install -q "pip==$(PIP_VERSION)"
	"$(VENV)/bin/python" -m pip install -q -r requirements/dev.txt
	"$(VENV)/bin/python" -m pip check
	touch "$@"

# ---------------------------------------------------------------------------
# The collection under its import path: .build/collections/ansible_collections/xmpp/ejabberd
# is a symlink to this checkout, so ansible (ANSIBLE_COLLECTIONS_PATH) and pytest
# (tests/conftest.py) import ansible_collections.xmpp.ejabberd.* from here.
.PHONY: collection
collection:
	mkdir -p "$(dir $(COLLECTION_LINK))"
	ln -sfn "$(ROOT)" "$(COLLECTION_LINK)"

# ---------------------------------------------------------------------------
# Lint: yamllint (.yamllint) and ansible-lint, production profile (.ansible-lint); the
# changelog fragments, changelogs/changelog.yaml, and CHANGELOG.md against what
# antsibull-changelog renders from them (changelogs/config.yaml); each role's defaults/main.yml
# against its meta/argument_specs.yml (tools/role_defaults.py), and the READMEs' variables
# sections against them (tools/role_readme.py).
.PHONY: lint
lint: venv collection
	yamllint --strict .
	ansible-lint --nocolor --profile production
	antsibull-changelog lint
	antsibull-changelog lint-changelog-yaml changelogs/changelog.yaml
	python tools/changelog.py --check
	python tools/role_defaults.py
	python tools/role_readme.py --check

# Docs: rewrites what is generated - CHANGELOG.md from changelogs/ (antsibull-changelog), and
# the variables section of each role's README.md from its meta/argument_specs.yml.
.PHONY: docs
docs: venv collection
	python tools/changelog.py
	python tools/role_readme.py

# ---------------------------------------------------------------------------
# Sanity: ansible-test insists on running from a directory whose path ends in
# ansible_collections/xmpp/ejabberd and does not accept one reached through a
# symlink, so the tracked and untracked-but-not-ignored files are copied to
# .build/sanity/ansible_collections/xmpp/ejabberd first.
#
# ansible-test runs --local (this venv's Python 3.11 as controller). Each sanity
# test still gets its own virtual environment under ~/.ansible/test/venv, with
# ansible-test's pinned requirements (pylint, pycodestyle, voluptuous, yamllint...)
# installed from PyPI on first use; later runs reuse them. No docker is used.
#
# Skipped (SANITY_SKIP):
#   pslint      PowerShell only: needs pwsh and PSScriptAnalyzer, which come from
#               neither Debian nor PyPI, and the collection has no .ps1/.psm1.
#
# compile and import run once more for every other Python in COMPILE_PYTHONS found
# on this machine (plain PATH, /usr/bin, or pyenv's versions directory, which
# pyenv's shims hide); .build/pybin holds links to them so ansible-test finds them.
.PHONY: sanity
sanity: venv
	rm -rf "$(SANITY_ROOT)"
	mkdir -p "$(SANITY_ROOT)"
	list_files() {
	  if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
	    git ls-files -z -co --exclude-standard
	  else  # not a git checkout (e.g. an unpacked archive)
	    find . \( -name .git -o -name .venv -o -name .build -o -name __pycache__ -o -name .cache \
	              -o -name .pytest_cache -o -name .hypothesis -o -path ./tests/output \) -prune \
	           -o \( -type f -o -type l \) -printf '%P\0'
	  fi
	}
	list_files | while IFS= read -r -d '' f; do
	  if [ -e "$$f" ] || [ -L "$$f" ]; then printf '%s\0' "$$f"; fi
	done | xargs -0 -r cp -P --parents -t "$(SANITY_ROOT)"
	rm -rf "$(PYBIN)"; mkdir -p "$(PYBIN)"
	found=()
	for v in $(COMPILE_PYTHONS); do
	  for c in "$$(command -v python$$v || true)" /usr/bin/python$$v \
	           "$${PYENV_ROOT:-$$HOME/.pyenv}"/versions/$$v.*/bin/python$$v; do
	    if [ -n "$$c" ] && [ -x "$$c" ] && "$$c" -c 'import sys' >/dev/null 2>&1; then
	      ln -sfn "$$c" "$(PYBIN)/python$$v"; found+=("$$v"); break
	    fi
	  done
	done
	echo "sanity: Python versions found for compile: $${found[*]}"
	# ansible-test bootstraps pip into its venvs with a get-pip.py downloaded from
	# its own file host (unreachable here): put an offline stand-in and the pip
	# wheel (from PyPI) where ansible-test looks first. See tests/helpers/get_pip_offline.py.
	pipv=$$(python -c 'import types; from ansible_test._internal.python_requirements import get_venv_packages as g; print(g(types.SimpleNamespace(version="$(SANITY_PYTHON)"))["pip"])')
	cache="$$HOME/.ansible/test/cache"
	getpip="$$cache/get_pip_$${pipv//./_}.py"
	if [ ! -e "$$getpip" ] || grep -q get_pip_offline "$$getpip"; then
	  mkdir -p "$$cache"
	  [ -e "$$cache/pip-$$pipv-py3-none-any.whl" ] || python -m pip download -q --no-deps -d "$$cache" "pip==$$pipv"
	  cp tests/helpers/get_pip_offline.py "$$getpip"
	fi
	skip=(); for t in $(SANITY_SKIP); do skip+=(--skip-test "$$t"); done
	cd "$(SANITY_ROOT)"
	export PATH="$(PYBIN):$$PATH"
	# walk=False: without it ansible-test finds /work/main/.git above the copy and
	# lists only git-tracked paths below it, i.e. none (.build is ignored).
	export ANSIBLE_TEST_CONTENT_ROOT="$(SANITY_ROOT)"
	ansible-test sanity --local --python $(SANITY_PYTHON) --color no "$${skip[@]}"
	for v in "$${found[@]}"; do
	  [ "$$v" = "$(SANITY_PYTHON)" ] && continue
	  echo "sanity: compile and import on Python $$v"
	  ansible-test sanity --local --python "$$v" --color no --test compile --test import
	done

# ---------------------------------------------------------------------------
# The lab images, built side by side (a minute or two each; the tests would build
# them one after the other). bookworm and trixie are required; forky (Debian testing,
# OTP 29) is a moving target: if it cannot be built, the OTP 29 tests skip and say why.
.PHONY: images
images: deps
	lab/dockerd.sh
	declare -A pids
	for suite in bookworm trixie forky; do lab/build-image.sh "$$suite" & pids[$$suite]=$$!; done
	rc=0
	for suite in "$${!pids[@]}"; do
	  if ! wait "$${pids[$$suite]}"; then
	    if [ "$$suite" = forky ]; then echo "images: forky could not be built (OTP 29 tests will skip)" >&2
	    else echo "images: $$suite could not be built" >&2; rc=1; fi
	  fi
	done
	exit $$rc

# ---------------------------------------------------------------------------
# The older ansible-core releases the collection claims (meta/runtime.yml: >= 2.16), each
# in a virtual environment of its own with the collections of its `ansible` package:
# .build/ansible-core-2.16, -2.17, -2.18 (2.19 is .venv). 2.20 and later need Python
# >= 3.12; this machine has 3.11, so they are not tested here.
ANSIBLE_CORE_OLDER := 2.16 2.17 2.18
ANSIBLE_CORE_STAMPS := $(foreach v,$(ANSIBLE_CORE_OLDER),$(BUILD)/ansible-core-$(v)/.installed)

.PHONY: ansible-cores
ansible-cores: $(ANSIBLE_CORE_STAMPS)

$(BUILD)/ansible-core-%/.installed: requirements/ansible-%.txt
	dir="$(BUILD)/ansible-core-$*"
	[ -x "$$dir/bin/python" ] || "$(PYTHON)" -m venv "$$dir"
	"$$dir/bin/python" -m pip install -q "pip==$(PIP_VERSION)"
	"$$dir/bin/python" -m pip install -q -r "$<"
	"$$dir/bin/python" -m pip check
	echo "ansible-cores: $$("$$dir/bin/ansible" --version | sed -n 1p) in $${dir#$(ROOT)/}"
	touch "$@"

# pytest = pytest-local (unit tests, integration tests against real Erlang nodes on
# loopback), then pytest-lab (real ejabberd in lab containers, the roles and playbooks
# on VM-like lab hosts). The lab files run three at a time (pytest-xdist, a file, or a
# file's release, per worker; longest first: LAB_UNITS in tests/conftest.py): they mostly
# wait for containers, and each uses its own names and subnets.
PYTEST_ARGS ?=
PYTEST_WORKERS ?= 3

.PHONY: pytest pytest-local pytest-lab
pytest: pytest-local pytest-lab

# Unit tests and the integration tests without containers (real `erl` nodes and fake
# peers on loopback). Some of them hold the client to time bounds (a call ends within
# its timeout + 0.25 s), so `make test` runs them alone, before the labs load the machine.
pytest-local: venv collection
	failed=()
	python -m pytest $(PYTEST_ARGS) tests/unit || failed+=(tests/unit)
	python -m pytest -n 2 -m "not lab" $(PYTEST_ARGS) tests/integration \
	  || failed+=("tests/integration (not lab)")
	if [ $${#failed[@]} -gt 0 ]; then echo "pytest: failures in $${failed[*]}" >&2; exit 1; fi

# The integration tests against lab containers (marker `lab`), PYTEST_WORKERS files at once.
pytest-lab: venv collection images ansible-cores
	python -m pytest -n $(PYTEST_WORKERS) --no-loadscope-reorder --durations=40 -m lab $(PYTEST_ARGS) tests/integration

# Every step runs even when an earlier one fails, so one run reports every problem; the
# exit status is non-zero if any of them failed. The lab tests and molecule run side by
# side (their lines prefixed "pytest |" and "molecule |"): both mostly wait for
# containers to boot and for ejabberd to start, so together they take little more than
# the longer of the two. The images are built first, once, for both; the tests with time
# bounds (pytest-local) run before, alone.
.PHONY: test
test: deps venv collection
	failed=()
	start=$$(date +%s)
	$(MAKE) -k lint sanity || failed+=(lint/sanity)
	$(MAKE) -j2 images ansible-cores || failed+=(images/ansible-cores)
	$(MAKE) pytest-local || failed+=(pytest-local)
	( $(MAKE) pytest-lab 2>&1 | sed -u 's/^/pytest | /' ) & pytest_pid=$$!
	( $(MAKE) molecule 2>&1 | sed -u 's/^/molecule | /' ) & molecule_pid=$$!
	wait "$$pytest_pid" || failed+=(pytest-lab)
	wait "$$molecule_pid" || failed+=(molecule)
	echo "make test: $$(( $$(date +%s) - start ))s"
	if [ $${#failed[@]} -eq 0 ]; then
	  echo "make test: all steps passed"
	else
	  echo "make test: FAILED in $${failed[*]} (see the errors above)" >&2; exit 1
	fi

# ---------------------------------------------------------------------------
.PHONY: bench
bench: venv collection
	bash benchmarks/run.sh

# ---------------------------------------------------------------------------
# The demo: 3 lab containers (xejdemo-n1..3, internal network xejdemo-net,
# 172.30.94.0/24) made one ejabberd cluster by xmpp.ejabberd.site, then the verify
# table. Builds what is missing (OS packages, venv, dockerd, the lab image); a
# second run reuses the containers. See lab/demo.sh.
.PHONY: demo
demo: deps venv collection
	lab/demo.sh up

# Removes the demo containers and their network (nothing else).
.PHONY: demo-clean
demo-clean:
	lab/demo.sh clean

# Molecule scenarios on the VM-like lab images (systemd, sshd, Ansible over SSH as
# admin with sudo), each merged onto molecule/shared/base.yml: create, prepare,
# converge (playbook site), idempotence (changed=0), testinfra verify with real packets
# from an outsider, destroy.
#   default: bookworm, fixed-port mode (ERL_DIST_PORT 5210, no epmd), nftables
#   epmd:    forky, epmd mode bound to each node's address, port window, firewalld
# The scenarios run one after the other (`make test` runs them beside pytest's lab
# files, which is enough load for a 2-core machine). Each builds the lab image its
# molecule.yml names, if missing.
# MOLECULE_SCENARIOS: which ones (default: all). MOLECULE_ARGS: e.g.
# MOLECULE_ARGS=--destroy=never to keep the containers.
MOLECULE_SCENARIOS ?= default epmd
MOLECULE_ARGS ?=
.PHONY: molecule
molecule: deps venv collection
	lab/dockerd.sh
	for s in $(MOLECULE_SCENARIOS); do
	  for suite in $$(sed -n 's/^ *image: xmpp-ejabberd-lab:\([a-z]*\).*/\1/p' "molecule/$$s/molecule.yml" | sort -u); do
	    lab/build-image.sh "$$suite"
	  done
	done
	# Debian's docker client first: community.docker's modules and testinfra take `docker` from PATH.
	export PATH="$(VENV)/bin:/usr/bin:$$PATH"
	all=$$(date +%s)
	for s in $(MOLECULE_SCENARIOS); do
	  start=$$(date +%s)
	  molecule --base-config molecule/shared/base.yml test --scenario-name "$$s" $(MOLECULE_ARGS)
	  echo "molecule: scenario $$s passed in $$(( $$(date +%s) - start ))s"
	done
	echo "molecule: $(MOLECULE_SCENARIOS) passed in $$(( $$(date +%s) - all ))s"

.PHONY: clean
clean:
	rm -rf "$(BUILD)" tests/output .pytest_cache .hypothesis
	find . -path ./.venv -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +

.PHONY: distclean
distclean: clean
	rm -rf "$(VENV)"
