# Copyright: xmpp.ejabberd contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""xmpp.ejabberd.site on single VM-like hosts (Debian 12, systemd as PID 1, SSH as ``admin``
with sudo) that are not the usual package host: one without ejabberd (installed through apt
from the lab's own package source), and hosts where the play cannot or must not go on.

Each host is a cluster of its own (its own inventory), so all runs go side by side:

* ``bare``, ``bare24``, ``bare26``: ejabberd purged (Debian 12, 13 and forky: ejabberd 23.01,
  24.12 and 26.07, each from its release's own package source); ``ejabberd_install:
  package`` installs it, the package starts its own node, and the role takes it over right
  after the install: the node runs under the configured name, a rerun changes nothing;
* ``nosrc``: ejabberd purged, its only package source unreachable (a closed port on this
  machine): the install fails, naming the host and the cause;
* ``data``: the package's node holds a registered account: renaming would delete it, so
  the play stops before any change and names the table; with
  ``ejabberd_rename_discard_data: true`` it goes on;
* ``nosudo``: admin may not sudo: the first task fails, naming the host;
* ``masked``: ejabberd.service stopped and masked: stops before any change, naming the cause;
* ``degraded``: an unrelated unit failed (systemd "degraded"): the play says so and works.

"Nothing changed" is checked on the host itself (ejabberdctl.cfg, cookie file, firewall
table, the running node), not only in Ansible's recap.
"""

from __future__ import annotations

import concurrent.futures
import re

import pytest

from ansible_collections.xmpp.ejabberd.tests.helpers.playbook import (
    PlaybookRunner, lab_session, start_lab)
from ansible_collections.xmpp.ejabberd.tests.helpers.lab import LabCluster

pytestmark = pytest.mark.lab

PREFIX = "xsif"
HOSTS = {"bare": False, "nosrc": False, "data": True, "nosudo": True, "masked": True,
         "degraded": True, "bare24": False, "bare26": False}  # host -> ejabberd installed at boot
# The hosts of another release than the lab's (Debian 12), and the ejabberd each installs.
SUITE_OF = {"bare24": "trixie", "bare26": "forky"}
RELEASE = {"bare": "23.01", "bare24": "24.12", "bare26": "26.07"}
CTL_CFG = "/etc/default/ejabberd"
COOKIE_FILE = "/var/lib/ejabberd/.erlang.cookie"
STATE_SCRIPT = (
    "sha256sum %s 2>&1; stat -c '%%U %%a %%y' %s 2>&1; sha256sum %s 2>&1; "
    "nft list table inet xmpp_ejabberd 2>&1 | head -n 1; pgrep -a beam.smp | grep -o -- '-s\\?name [^ ]*'; "
    "dpkg-query -W -f='${Status}' ejabberd 2>&1"
) % (CTL_CFG, COOKIE_FILE, COOKIE_FILE)


def sh(lab, ref, script: str):
    return lab.exec(ref, ["sh", "-c", script], check=False)


def prepare(lab: LabCluster) -> None:
    with concurrent.futures.ThreadPoolExecutor(max_workers=len(HOSTS)) as pool:
        for job in [pool.submit(lab.add_container, host, installed=installed, suite=SUITE_OF.get(host))
                    for host, installed in HOSTS.items()]:
            job.result()
    # The only package source of nosrc: a port of this machine where nothing listens.
    sh(lab, "nosrc", "echo 'deb [trusted=yes] http://%s:9/debian ./' "
                     ">/etc/apt/sources.list.d/xmpp-ejabberd-lab.list && rm -rf /var/lib/apt/lists/*"
       % lab.gateway)
    # An account in the package node's database (Mnesia table passwd).
    assert sh(lab, "data", "runuser -u ejabberd -- /usr/sbin/ejabberdctl register alice localhost "
                           "'not-a-real-secret'").returncode == 0
    sh(lab, "nosudo", "rm -f /etc/sudoers.d/xmpp-ejabberd-lab-admin")
    # Masked as an operator does it: stopped first (a running Type=notify unit that gets
    # masked is killed by its own watchdog half a minute later).
    sh(lab, "masked", "systemctl stop ejabberd && systemctl mask ejabberd")
    sh(lab, "degraded", "systemd-run --unit=xmpp-lab-broken --property=Type=oneshot /bin/false")


@pytest.fixture(scope="module")
def env(request):
    def start() -> LabCluster:
        return start_lab(LabCluster(suite="bookworm", size=0, prefix=PREFIX, start=False,
                                    vm=True), prepare)

    with lab_session(request, "install and faults lab", start) as session:
        lab = session["lab"]
        runner = PlaybookRunner(session["workdir"])
        inventories = {}
        for host in HOSTS:
            ip = lab.node(host)["ip"]
            inventories[host] = runner.ssh_inventory(
                lab, {host: (host, {"ejabberd_node_name": "ejabberd@" + ip,
                                    "ejabberd_inet_dist_interface": ip, "ejabberd_address": ip})},
                {"ejabberd_firewall_peers": [ip, lab.gateway]}, name="inventory-" + host)
        cookie = runner.cookie()
        before = {host: sh(lab, host, STATE_SCRIPT).stdout for host in HOSTS}

        def site(host, **extra):
            return runner.play("xmpp.ejabberd.site", inventories[host],
                               {"ejabberd_cookie": cookie, **extra})

        with concurrent.futures.ThreadPoolExecutor(max_workers=len(HOSTS)) as pool:
            # "false" as an AWX survey gives it (a string): still false
            jobs = {host: pool.submit(site, host, **({"ejabberd_rename_discard_data": "false"}
                                                     if host == "data" else {}))
                    for host in HOSTS}
            first = {host: job.result() for host, job in jobs.items()}
        after = {host: sh(lab, host, STATE_SCRIPT).stdout for host in HOSTS}
        yield {"lab": lab, "site": site, "first": first, "before": before, "after": after,
               "timings": session["timings"]}


def assert_stopped_before_any_change(env, host: str) -> None:
    play = env["first"][host]
    assert play.rc != 0, play
    assert play.recap[host]["changed"] == 0, play
    assert env["after"][host] == env["before"][host]
    assert not play.shows_a_secret()


@pytest.mark.parametrize("host", sorted(RELEASE))
def test_package_installed_from_the_source(env, host):
    play = env["first"][host]
    assert play.rc == 0, play
    assert "not-installed" in env["before"][host] or "no packages found" in env["before"][host]
    assert "install ok installed" in env["after"][host]
    ip = env["lab"].node(host)["ip"]
    assert "-name ejabberd@%s" % ip in env["after"][host]
    version = sh(env["lab"], host, "dpkg-query -W -f='${Version}' ejabberd").stdout
    assert version.startswith(RELEASE[host]), version
    # the package started its own node at the install: the role took it over (deleted its
    # empty database, so that the node starts under the configured name)
    assert re.search(r"^TASK \[[^\]]*: Delete the database of the node under its former name\][^\n]*\n"
                     r"changed: \[%s\]" % host, play.out, re.M), play
    again = env["site"](host)
    assert again.rc == 0 and again.recap[host]["changed"] == 0, again


def test_unreachable_package_source(env):
    assert_stopped_before_any_change(env, "nosrc")
    play = env["first"]["nosrc"]
    fatal = re.search(r"^fatal: \[nosrc\].*$", play.out, re.M)
    assert fatal, play
    assert "TASK [xmpp.ejabberd.ejabberd : Install the ejabberd package]" in play.out.split(fatal.group(0))[0]
    assert ":9" in fatal.group(0) or "update" in fatal.group(0).lower(), fatal.group(0)


def test_user_data_stops_the_rename(env):
    assert_stopped_before_any_change(env, "data")
    play = env["first"]["data"]
    messages = " ".join(play.fatal_messages())
    assert "passwd: 1" in messages and "ejabberd_rename_discard_data" in messages, play
    assert "Nothing was changed" in messages, play
    assert "-sname ejabberd@localhost" in env["after"]["data"]      # the package's node still runs


def test_user_data_discarded_when_the_operator_says_so(env, request):
    lab = env["lab"]
    play = env["site"]("data", ejabberd_rename_discard_data="true")   # a survey's string
    assert play.rc == 0, play
    ip = lab.node("data")["ip"]
    assert "-name ejabberd@%s" % ip in sh(lab, "data", "pgrep -a beam.smp").stdout
    users = sh(lab, "data", "runuser -u ejabberd -- /usr/sbin/ejabberdctl registered_users localhost")
    assert users.returncode == 0 and users.stdout.strip() == "", users


def test_host_without_sudo(env):
    assert_stopped_before_any_change(env, "nosudo")
    play = env["first"]["nosudo"]
    assert re.search(r"^fatal: \[nosudo\].*sudo", play.out, re.M | re.I), play


def test_masked_service(env):
    assert_stopped_before_any_change(env, "masked")
    messages = " ".join(env["first"]["masked"].fatal_messages())
    assert "ejabberd.service is masked on masked" in messages, messages


def test_degraded_systemd_is_reported_and_the_play_works(env):
    play = env["first"]["degraded"]
    assert play.rc == 0, play
    assert "systemd on degraded is degraded" in play.out, play
