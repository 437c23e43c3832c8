"""Lab harness: real ejabberd clusters in local Docker containers.

Python 3.11 standard library only. Used by the integration tests and the
benchmarks, and runnable by hand (``python3 tests/helpers/lab.py --help``).

    with LabCluster(suite="trixie", size=3, prefix="xejt") as lab:
        lab.join_cluster(2, 1)
        assert lab.list_cluster(1) == sorted(lab.node(i)["name"] for i in (1, 2))

Images come from ``lab/build-image.sh`` (debootstrap + ``docker import``), the
daemon from ``lab/dockerd.sh``. Every container and network carries the labels
``xmpp-ejabberd-lab=1`` and ``xmpp-ejabberd-lab.prefix=<prefix>``; a new cluster
removes what a stale run with the same prefix left behind, and ``close()``
removes only what this object created. The Erlang cookie is passed to the
containers on stdin only: it never appears in an argv, an exception or a repr.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import fcntl
import ipaddress
import json
import os
import re
import secrets
import shutil
import socket
import string
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

DOCKER = os.environ.get("XMPP_EJABBERD_DOCKER", "/usr/bin/docker")
REPO_ROOT = Path(__file__).resolve().parents[2]
LAB_DIR = REPO_ROOT / "lab"
IMAGE_REPO = os.environ.get("XMPP_EJABBERD_IMAGE_REPO", "xmpp-ejabberd-lab")
LABEL = "xmpp-ejabberd-lab"
LABEL_PREFIX = "xmpp-ejabberd-lab.prefix"
SUITES = ("bookworm", "trixie", "forky")

EJABBERDCTL = "/usr/sbin/ejabberdctl"
SPOOL_DIR = "/var/lib/ejabberd"  # Debian: the service user's HOME and Mnesia's directory
ADMIN_USER = "admin"             # VM mode: the unprivileged SSH user with passwordless sudo
# VM mode: what docker needs to run systemd as PID 1 here (the host is cgroup v1 hybrid;
# forky's systemd needs v2, so the host's unified hierarchy becomes the container's).
SYSTEMD_RUN_ARGS = ("--cap-add", "SYS_ADMIN", "--tmpfs", "/run", "--tmpfs", "/run/lock",
                    "-v", "/sys/fs/cgroup/unified:/sys/fs/cgroup:rw", "--cgroupns=host",
                    "-e", "container=docker", "--stop-signal", "SIGRTMIN+3")
CTL_CFG = "/etc/default/ejabberd"  # target of the /etc/ejabberd/ejabberdctl.cfg symlink
SERVICE_USER = "ejabberd"
NODE_OFFSET = 10      # node i gets host address .(10 + i): .11, .12, ...
# Labs without a fixed subnet take the first free /24 from 172.30.100.0 on; below that
# stay the fixed ones (the demo 172.30.94.0/24, the molecule scenarios 95 and 96).
SUBNET_POOL = ipaddress.ip_network("172.30.0.0/16")
SUBNET_POOL_FIRST = 100
EXTRA_OFFSET = 100    # extra containers get .101, .102, ... unless told otherwise

_PREFIX_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,30}$")
_NODE_LINE_RE = re.compile(r"'?([^'\s]+@[^'\s]+)'?")


class LabError(RuntimeError):
    """A lab operation failed. The message never contains the cookie."""


def random_cookie(length: int = 20) -> str:
    """A cookie shaped like the ones Erlang generates (upper-case letters)."""
    return "".join(secrets.choice(string.ascii_uppercase) for dummy in range(length))


def docker(args: Sequence[str], *, input: str | None = None, check: bool = True,
           timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run Debian's docker client. ``input`` goes to stdin (never to argv)."""
    argv = [DOCKER, *args]
    try:
        proc = subprocess.run(argv, input=input, capture_output=True, text=True,
                              timeout=timeout, check=False,
                              stdin=None if input is not None else subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise LabError(f"timed out after {timeout}s: {' '.join(argv)}") from None
    if check and proc.returncode != 0:
        raise LabError(f"{' '.join(argv)} exited {proc.returncode}: "
                       f"{(proc.stderr or proc.stdout).strip()[-2000:]}")
    return proc


def ensure_docker() -> None:
    """Start dockerd if needed (lab/dockerd.sh is idempotent)."""
    _run_script("dockerd.sh")


def ensure_image(suite: str) -> str:
    """Build xmpp-ejabberd-lab:<suite> if missing; return the image name."""
    if suite not in SUITES:
        raise LabError(f"suite must be one of {SUITES}, not {suite!r}")
    _run_script("build-image.sh", suite, timeout=1800)
    return f"{IMAGE_REPO}:{suite}"


def _run_script(name: str, *args: str, timeout: float = 300) -> None:
    script = LAB_DIR / name
    try:
        proc = subprocess.run([str(script), *args], capture_output=True, text=True,
                              timeout=timeout, stdin=subprocess.DEVNULL, check=False)
    except subprocess.TimeoutExpired:
        raise LabError(f"{script} {' '.join(args)} timed out after {timeout}s") from None
    if proc.returncode != 0:
        raise LabError(f"{script} {' '.join(args)} exited {proc.returncode}: "
                       f"{(proc.stderr + proc.stdout).strip()[-3000:]}")


def remove_prefix(prefix: str) -> list[str]:
    """Remove every container and the network a run with ``prefix`` left behind.

    Only objects carrying this harness's prefix label (and the exact network name
    ``<prefix>-net``) are touched. Returns what was removed.
    """
    _check_prefix(prefix)
    removed: list[str] = []
    out = docker(["ps", "-a", "-q", "--filter", f"label={LABEL_PREFIX}={prefix}"]).stdout
    ids = out.split()
    if ids:
        names = docker(["inspect", "--format", "{{.Name}}", *ids]).stdout.split()
        docker(["rm", "-f", "-v", *ids])
        removed += [n.lstrip("/") for n in names]
    net = f"{prefix}-net"
    proc = docker(["network", "inspect", "--format",
                   '{{index .Labels "' + LABEL_PREFIX + '"}}', net], check=False)
    if proc.returncode == 0:
        if proc.stdout.strip() != prefix:
            raise LabError(f"network {net} exists but was not made by this harness; "
                           "choose another prefix")
        _remove_network(net)
        removed.append(net)
    return removed


def run_prefix(base: str) -> str:
    """``<base>-<pid>``: a prefix of this run only, so that concurrent runs of the
    same tests (a developer and ``make test``) never remove each other's labs."""
    return "%s-%d" % (base, os.getpid())


def remove_stale_runs(base: str) -> list[str]:
    """Remove the labs ``<base>-<pid>`` (containers and networks) whose process is gone
    (killed runs); returns what was removed."""
    prefixes = set(docker(["ps", "-a", "--filter", f"label={LABEL_PREFIX}", "--format",
                           '{{.Label "%s"}}' % LABEL_PREFIX], check=False).stdout.split())
    prefixes |= {net[:-len("-net")] for net in docker(
        ["network", "ls", "--filter", f"label={LABEL_PREFIX}", "--format", "{{.Name}}"],
        check=False).stdout.split() if net.endswith("-net")}
    removed = []
    for prefix in sorted(prefixes):
        head, sep, pid = prefix.rpartition("-")
        if head != base or not sep or not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            with open("/proc/%s/cmdline" % pid, "rb") as handle:
                alive = b"python" in handle.read()
        except OSError:
            alive = False
        if not alive:
            removed += remove_prefix(prefix)
    return removed


def _remove_network(net: str) -> None:
    """``docker network rm``, after forcing off endpoints that outlived their containers
    (left when dockerd stopped while the lab ran: "has active endpoints")."""
    for attempt in range(5):
        proc = docker(["network", "rm", net], check=False)
        if proc.returncode == 0 or "not found" in proc.stderr or "No such network" in proc.stderr:
            return
        if "active endpoints" not in proc.stderr or attempt == 4:
            raise LabError(f"docker network rm {net} exited {proc.returncode}: {proc.stderr.strip()}")
        endpoints = docker(["network", "inspect", "--format",
                            "{{range $id, $c := .Containers}}{{$c.Name}} {{end}}", net],
                           check=False).stdout.split()
        for endpoint in endpoints:
            docker(["network", "disconnect", "-f", net, endpoint], check=False)
        time.sleep(0.5)


def _check_prefix(prefix: str) -> None:
    if not _PREFIX_RE.match(prefix):
        raise LabError(f"prefix {prefix!r} must match {_PREFIX_RE.pattern}")


def _docker_subnets() -> list[tuple[str, ipaddress.IPv4Network | ipaddress.IPv6Network]]:
    """(network name, subnet) of every docker network."""
    names = docker(["network", "ls", "-q"], check=False).stdout.split()
    if not names:
        return []
    out = docker(["network", "inspect", "--format",
                  "{{.Name}}{{range .IPAM.Config}} {{.Subnet}}{{end}}", *names],
                 check=False).stdout
    found = []
    for line in out.splitlines():
        name, *nets = line.split()
        for net in nets:
            try:
                found.append((name, ipaddress.ip_network(net, strict=False)))
            except (ValueError, TypeError):
                pass
    return found


def _networks_overlapping(subnet: ipaddress.IPv4Network | ipaddress.IPv6Network) -> list[str]:
    return [f"{name} ({net})" for name, net in _docker_subnets() if net.overlaps(subnet)]


def free_subnet() -> ipaddress.IPv4Network:
    """A /24 of SUBNET_POOL that no docker network overlaps. Call it under
    :func:`subnet_lock` and create the network before the lock is released."""
    used = [net for dummy, net in _docker_subnets() if net.version == 4]
    for candidate in SUBNET_POOL.subnets(new_prefix=24):
        if candidate.network_address.packed[2] >= SUBNET_POOL_FIRST and \
                not any(candidate.overlaps(net) for net in used):
            return candidate
    raise LabError(f"no free /24 left in {SUBNET_POOL} from 172.30.{SUBNET_POOL_FIRST}.0: "
                   "remove stale labs (python3 tests/helpers/lab.py down --prefix ...)")


@contextlib.contextmanager
def subnet_lock() -> Iterator[None]:
    """One process at a time picks a subnet and creates its network (test workers,
    the demo and the benchmarks run side by side)."""
    os.makedirs("/run/lock", exist_ok=True)
    with open("/run/lock/xmpp-ejabberd-lab-subnets.lock", "w", encoding="ascii") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def wait_tcp(host: str, port: int, timeout: float = 10.0) -> float:
    """Connect to host:port until it works; return the seconds it took."""
    start = time.monotonic()
    last: OSError | None = None
    while time.monotonic() - start < timeout:
        try:
            with socket.create_connection((host, port), timeout=1.0):
                return time.monotonic() - start
        except OSError as exc:
            last = exc
            time.sleep(0.1)
    raise LabError(f"no TCP connection to {host}:{port} within {timeout}s: {last}")


def parse_node_list(text: str) -> list[str]:
    """Node names from ejabberdctl list_cluster output, sorted."""
    return sorted(m.group(1) for line in text.splitlines()
                  if (m := _NODE_LINE_RE.fullmatch(line.strip())))


class LabCluster:
    """``size`` containers ``<prefix>-n1..nN`` running ejabberd on one internal network.

    Node i has hostname ``n<i>.lab``, address ``<subnet>.(10+i)`` and Erlang node
    name ``ejabberd@<address>`` (long names). ``dist_port`` sets ERL_DIST_PORT
    (no epmd); ``dist_port=None`` leaves epmd mode (port 4369). ``start=False``
    creates and configures the containers without starting ejabberd.
    ``extra_cfg`` adds ejabberdctl.cfg variables on every node (None removes one).

    ``vm=True`` makes each container behave like a VM: systemd is PID 1, sshd runs and
    the user ``admin`` (passwordless sudo) accepts this lab's own SSH key
    (:meth:`ssh_vars` gives Ansible's connection variables). After boot, the package's
    own node runs as ``ejabberd@localhost`` with its own random cookie and a Mnesia
    schema for that name, as on a server where the package was installed earlier.
    ``start=True`` then makes it the lab's node (the package's empty database reset,
    ejabberdctl.cfg and cookie written, restarted by systemd); ``start=False`` leaves
    the package's node as it is, for the roles to take over. ``installed=False`` purges
    ejabberd and Erlang at boot (a host without ejabberd; the image's local package
    source can install it again).

    ``ipv6=True`` gives the network an IPv6 subnet beside the IPv4 one,
    ``fd00:30:<third octet of the IPv4 subnet>::/64``: node i also gets the address
    ``<that subnet>::(10+i)`` (``node(i)["ip6"]``), and its names ``n<i>.lab`` and
    ``n<i>`` resolve to both addresses through docker's DNS. SSH stays on IPv4.
    """

    def __init__(self, suite: str = "bookworm", size: int = 3, prefix: str = "xejt",
                 subnet: str | None = None, cookie: str | None = None,
                 dist_port: int | None = 5210, *, start: bool = True,
                 extra_cfg: Mapping[str, str | None] | None = None,
                 start_timeout: float = 120.0, parallel: bool = True,
                 vm: bool = False, installed: bool = True, reuse: bool = False,
                 ssh_dir: str | None = None, ipv6: bool = False) -> None:
        _check_prefix(prefix)
        if suite not in SUITES:
            raise LabError(f"suite must be one of {SUITES}, not {suite!r}")
        if not 0 <= size <= 80:
            raise LabError("size must be between 0 and 80")
        self.suite = suite
        self.size = size
        self.prefix = prefix
        # None: a free /24 is taken when the network is made (see free_subnet)
        self.subnet = ipaddress.ip_network(subnet) if subnet is not None else None
        self._cookie = cookie if cookie is not None else random_cookie()
        self.dist_port = dist_port
        self.start = start
        self.extra_cfg = dict(extra_cfg or {})
        self.start_timeout = start_timeout
        self.parallel = parallel
        self.vm = vm
        self.installed = installed
        if not installed and not vm:
            raise LabError("installed=False needs vm=True (apt-get purge runs under systemd)")
        if not installed and start:
            raise LabError("installed=False and start=True contradict each other")
        self.reuse = reuse
        self.ipv6 = ipv6
        self._ssh_dir: str | None = None
        self._keep_ssh_dir = ssh_dir     # a key kept there survives close() (the demo's)
        self._lock = threading.Lock()    # add_container may run in threads
        self._reserved: set[str] = set()
        self.image = f"{IMAGE_REPO}:{suite}"
        self.network = f"{prefix}-net"
        self.timings: dict[str, float] = {}
        self._nodes: list[dict[str, Any]] = []
        self._extras: dict[str, dict[str, Any]] = {}
        self._created_containers: list[str] = []
        self._created_network = False

    # -- lifecycle ---------------------------------------------------------------

    def __repr__(self) -> str:  # no cookie here
        return (f"LabCluster(suite={self.suite!r}, size={self.size}, "
                f"prefix={self.prefix!r}, subnet='{self.subnet}', "
                f"dist_port={self.dist_port!r}, vm={self.vm!r})")

    def __enter__(self) -> "LabCluster":
        return self.up()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def gateway(self) -> str:
        """The host's address on the lab network (the bridge): it reaches every node."""
        if self.subnet is None:
            raise LabError("the lab's subnet is chosen when it comes up")
        return str(self.subnet.network_address + 1)

    @property
    def subnet6(self) -> ipaddress.IPv6Network | None:
        """The IPv6 subnet of an ``ipv6`` lab (None otherwise): one per IPv4 /24."""
        if not self.ipv6 or self.subnet is None:
            return None
        return ipaddress.ip_network("fd00:30:%x::/64" % self.subnet.network_address.packed[2])

    @property
    def gateway6(self) -> str:
        """The host's IPv6 address on an ``ipv6`` lab's network."""
        if self.subnet6 is None:
            raise LabError("not an IPv6 lab, or not up")
        return str(self.subnet6.network_address + 1)

    @property
    def cookie(self) -> str:
        """The cluster cookie (pass it on stdin or to Python code, never to argv)."""
        return self._cookie

    def up(self) -> "LabCluster":
        """Create and start everything; on failure remove what was created."""
        try:
            return self._up()
        except BaseException:
            self.close()
            raise

    def _up(self) -> "LabCluster":
        t = time.monotonic()
        ensure_docker()
        ensure_image(self.suite)
        self.timings["ensure_lab"] = time.monotonic() - t

        if self.reuse and self._adopt():
            return self

        t = time.monotonic()
        remove_prefix(self.prefix)
        self.timings["remove_stale"] = time.monotonic() - t

        t = time.monotonic()
        with subnet_lock():
            if self.subnet is None:
                self.subnet = free_subnet()
            inet6 = (["--ipv6", "--subnet", str(self.subnet6), "--gateway", self.gateway6]
                     if self.ipv6 else [])
            proc = docker(["network", "create", "--internal", "--subnet", str(self.subnet),
                           "--gateway", self.gateway, *inet6, "--label", f"{LABEL}=1",
                           "--label", f"{LABEL_PREFIX}={self.prefix}", self.network],
                          check=False)
        if proc.returncode != 0:
            raise LabError(f"cannot create network {self.network} on {self.subnet}: "
                           f"{proc.stderr.strip()} (networks using it: "
                           f"{', '.join(_networks_overlapping(self.subnet)) or 'none'})")
        self._created_network = True
        self.timings["network"] = time.monotonic() - t

        t = time.monotonic()
        if self.vm:
            self._make_ssh_key()
        for i in range(1, self.size + 1):
            ip = self._host(NODE_OFFSET + i)
            node = self._run_container(f"n{i}", ip, f"n{i}.lab")
            self._nodes.append(node)
        self.timings["containers"] = time.monotonic() - t

        if self.vm:
            t = time.monotonic()
            self._each(self._boot)
            self.timings["boot"] = time.monotonic() - t

        # A VM left as the package made it keeps its own node; otherwise the node is ours.
        if self.start or not self.vm:
            t = time.monotonic()
            if self.vm:
                self._each(self.reset_package_node)
            self._each(self.configure_node)
            self.timings["configure"] = time.monotonic() - t

        if self.start:
            t = time.monotonic()
            self._each(self.start_node)
            self.timings["ejabberd_start"] = time.monotonic() - t
            # The host (gateway) reaches every node directly over the bridge.
            port = self.dist_port or 4369
            for node in self._nodes:
                wait_tcp(node["ip"], port, timeout=10)
        return self

    def close(self) -> None:
        """Remove the containers and the network this object created."""
        errors = []
        if self._created_containers:
            proc = docker(["rm", "-f", "-v", *self._created_containers], check=False)
            if proc.returncode != 0 and "No such container" not in proc.stderr:
                errors.append(proc.stderr.strip())
            self._created_containers.clear()
        if self._created_network:
            try:
                _remove_network(self.network)
            except LabError as exc:
                errors.append(str(exc))
            self._created_network = False
        if self._ssh_dir and self._ssh_dir != self._keep_ssh_dir:
            shutil.rmtree(self._ssh_dir, ignore_errors=True)
        self._ssh_dir = None
        if errors:
            raise LabError("cleanup failed: " + "; ".join(errors))

    def _each(self, func: Any, indexes: Iterable[int] | None = None) -> None:
        idx = list(indexes) if indexes is not None else list(range(1, self.size + 1))
        if not self.parallel or len(idx) < 2:
            for i in idx:
                func(i)
            return
        with concurrent.futures.ThreadPoolExecutor(max_workers=len(idx)) as pool:
            for fut in [pool.submit(func, i) for i in idx]:
                fut.result()

    # -- containers --------------------------------------------------------------

    def _host(self, offset: int) -> str:
        addr = self.subnet.network_address + offset
        if addr not in self.subnet or addr == self.subnet.broadcast_address:
            raise LabError(f"host offset {offset} is outside {self.subnet}")
        return str(addr)

    def _run_container(self, short: str, ip: str, hostname: str,
                       image: str | None = None) -> dict[str, Any]:
        name = f"{self.prefix}-{short}"
        alias = hostname.split(".")[0]
        image = image or self.image
        init = ([*SYSTEMD_RUN_ARGS, image, "/lib/systemd/systemd"] if self.vm
                else [image, "/usr/bin/tini", "--", "sleep", "infinity"])
        # the same host offset in the IPv6 subnet
        ip6 = (str(self.subnet6.network_address + (int(ipaddress.ip_address(ip)) -
                                                   int(self.subnet.network_address)))
               if self.ipv6 else None)
        docker(["run", "-d", "--name", name, "--hostname", hostname,
                "--network", self.network, "--ip", ip, *(["--ip6", ip6] if ip6 else []),
                "--network-alias", hostname, "--network-alias", alias,
                "--cap-add", "NET_ADMIN",
                "--label", f"{LABEL}=1", "--label", f"{LABEL_PREFIX}={self.prefix}",
                *init])
        self._created_containers.append(name)
        return {"name": f"ejabberd@{ip}", "ip": ip, "container": name,
                "hostname": hostname, **({"ip6": ip6} if ip6 else {})}

    def add_container(self, short: str, ip: str | None = None, *,
                      hostname: str | None = None, configure: bool = False,
                      start: bool = False, cookie: str | None = None,
                      dist_port: int | None | str = "same",
                      installed: bool | None = None,
                      suite: str | None = None) -> dict[str, Any]:
        """Start one more container ``<prefix>-<short>`` on the lab network.

        By default an "outsider": same image, ejabberd installed but neither
        configured nor started. ``configure=True`` writes ejabberdctl.cfg and a
        cookie (the cluster's unless ``cookie`` is given); ``start=True`` also
        starts ejabberd. Address the container by ``short`` in the other methods.
        ``installed=False`` (VM mode) purges ejabberd at boot; default: as the lab.
        ``suite`` runs another release's image (with its own package source).
        """
        with self._lock:
            if short in self._extras or short in self._reserved or re.fullmatch(r"n\d+", short):
                raise LabError(f"container name {short!r} is taken or reserved")
            if ip is None:
                used = ({n["ip"] for n in self._nodes} | {n["ip"] for n in self._extras.values()}
                        | self._reserved)
                k = EXTRA_OFFSET + 1
                while self._host(k) in used:
                    k += 1
                ip = self._host(k)
            self._reserved |= {short, ip}
        node = self._run_container(short, ip, hostname or f"{short}.lab",
                                   ensure_image(suite) if suite else None)
        with self._lock:
            self._extras[short] = node
        if self.vm:
            self._boot(short, self.installed if installed is None else installed)
        if configure or start:
            if self.vm:
                self.reset_package_node(short)
            port = self.dist_port if dist_port == "same" else dist_port
            self.configure_node(short, cookie=cookie, dist_port=port)
        if start:
            self.start_node(short)
        return dict(node)

    def _node(self, ref: int | str) -> dict[str, Any]:
        if isinstance(ref, int):
            if not 1 <= ref <= len(self._nodes):
                raise LabError(f"no node {ref} (cluster has {len(self._nodes)})")
            return self._nodes[ref - 1]
        if ref in self._extras:
            return self._extras[ref]
        raise LabError(f"unknown container {ref!r}")

    def node(self, ref: int | str) -> dict[str, Any]:
        """{'name': 'ejabberd@IP', 'ip', 'container', 'hostname'} of node i (1-based)
        or of an extra container by its short name."""
        return dict(self._node(ref))

    def nodes(self) -> list[dict[str, Any]]:
        return [dict(n) for n in self._nodes]

    def exec(self, ref: int | str, argv: Sequence[str], input: str | None = None, *,
             check: bool = True, user: str | None = None,
             timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """Run argv in a container; ``input`` is sent on stdin."""
        args = ["exec"]
        if input is not None:
            args.append("-i")
        if user:
            args += ["-u", user]
        return docker([*args, self._node(ref)["container"], *argv], input=input,
                      check=check, timeout=timeout)

    def ejabberdctl(self, ref: int | str, *args: str, check: bool = True,
                    timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """/usr/sbin/ejabberdctl ARGS as the ejabberd user (full path: su - loses /usr/sbin)."""
        return self.exec(ref, ["runuser", "-u", SERVICE_USER, "--", EJABBERDCTL, *args],
                         check=check, timeout=timeout)

    # -- VM mode -----------------------------------------------------------------

    def _adopt(self) -> bool:
        """``reuse``: take the containers of an earlier run with this prefix, when all are
        there on this subnet (started again if stopped). False: start from scratch."""
        if self.ipv6:
            return False  # the IPv6 addresses are not kept between runs: start afresh
        names = [f"{self.prefix}-n{i}" for i in range(1, self.size + 1)]
        subnet = docker(["network", "inspect", "--format", "{{range .IPAM.Config}}{{.Subnet}}{{end}}",
                         self.network], check=False).stdout.strip()
        found = docker(["ps", "-a", "--filter", f"label={LABEL_PREFIX}={self.prefix}",
                        "--format", "{{.Names}}"]).stdout.split()
        if subnet != str(self.subnet) or sorted(found) != sorted(names):
            return False
        docker(["start", *names])
        if self.vm:
            self._make_ssh_key()
        for i, name in enumerate(names, 1):
            self._nodes.append({"name": f"ejabberd@{self._host(NODE_OFFSET + i)}",
                                "ip": self._host(NODE_OFFSET + i), "container": name,
                                "hostname": f"n{i}.lab"})
        if self.vm:
            self._each(lambda ref: self._boot(ref, installed=True))
        return True

    def _make_ssh_key(self) -> None:
        if self._keep_ssh_dir:
            os.makedirs(self._keep_ssh_dir, mode=0o700, exist_ok=True)
            self._ssh_dir = self._keep_ssh_dir
            if os.path.exists(os.path.join(self._ssh_dir, "id_ed25519")):
                return
        else:
            self._ssh_dir = tempfile.mkdtemp(prefix=f"xmpp-ejabberd-lab.{self.prefix}.ssh.")
        key = os.path.join(self._ssh_dir, "id_ed25519")
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C",
                        f"xmpp-ejabberd-lab {self.prefix}", "-f", key],
                       check=True, capture_output=True, stdin=subprocess.DEVNULL)

    @property
    def ssh_key(self) -> str:
        """The private key that logs in as ``admin`` on every node (VM mode)."""
        if not self._ssh_dir:
            raise LabError("no SSH key: this lab is not in VM mode, or not up")
        return os.path.join(self._ssh_dir, "id_ed25519")

    def ssh_vars(self, ref: int | str) -> dict[str, Any]:
        """Ansible's connection variables for node ``ref``: SSH as admin, sudo to root."""
        return {"ansible_host": self._node(ref)["ip"], "ansible_user": ADMIN_USER,
                "ansible_ssh_private_key_file": self.ssh_key,
                "ansible_ssh_common_args": "-o StrictHostKeyChecking=no "
                                           "-o UserKnownHostsFile=/dev/null -o LogLevel=ERROR",
                "ansible_become": True, "ansible_python_interpreter": "/usr/bin/python3"}

    def wait_booted(self, ref: int | str, timeout: float = 120) -> float:
        """Wait until systemd says the system is running; LabError naming the failed units
        when it ends degraded. Returns the seconds waited."""
        t = time.monotonic()
        while True:  # until systemd's bus is up ("offline" before); then --wait waits for the boot
            proc = self.exec(ref, ["systemctl", "is-system-running", "--wait"], check=False,
                             timeout=timeout)
            state = proc.stdout.strip()
            if state not in ("", "offline") or time.monotonic() - t > timeout:
                break
            time.sleep(0.2)
        if state != "running":
            failed = self.exec(ref, ["systemctl", "--failed", "--no-legend", "--plain"],
                               check=False).stdout.strip()
            raise LabError(f"{self._node(ref)['container']}: systemd is {state or proc.stderr.strip()}"
                           f" after boot; failed units: {failed or 'none'}")
        return time.monotonic() - t

    def _boot(self, ref: int | str, installed: bool | None = None) -> None:
        self.wait_booted(ref)
        pub = Path(self.ssh_key + ".pub").read_text(encoding="ascii")
        home = f"/home/{ADMIN_USER}"
        self.exec(ref, ["sh", "-c", f"install -d -m 0700 -o {ADMIN_USER} -g {ADMIN_USER} {home}/.ssh"
                        f" && cat > {home}/.ssh/authorized_keys && chown {ADMIN_USER}: "
                        f"{home}/.ssh/authorized_keys && chmod 0600 {home}/.ssh/authorized_keys"],
                  input=pub)
        if not (self.installed if installed is None else installed):
            self.exec(ref, ["sh", "-c", "DEBIAN_FRONTEND=noninteractive apt-get purge -qq -y "
                            "ejabberd erlang-base >/dev/null && rm -rf " + SPOOL_DIR],
                      timeout=300)

    def reboot(self, ref: int | str, timeout: float = 120) -> float:
        """Restart the container (systemd shuts down, then boots again); returns the
        seconds until systemd runs again."""
        t = time.monotonic()
        docker(["restart", "-t", "60", self._node(ref)["container"]], timeout=timeout)
        self.wait_booted(ref, timeout)
        return time.monotonic() - t

    def reset_package_node(self, ref: int | str) -> None:
        """Stop the node the package started at boot and delete its Mnesia files (the
        package's database of ``ejabberd@localhost`` holds no data yet)."""
        self.exec(ref, ["systemctl", "stop", "ejabberd"], timeout=120)
        self.exec(ref, ["sh", "-c", f"cd {SPOOL_DIR} && rm -f -- *.DAT *.DCD *.DCL *.LOG"])

    # -- configuration -----------------------------------------------------------

    def read_ctl_cfg(self, ref: int | str) -> str:
        return self.exec(ref, ["cat", CTL_CFG]).stdout

    def set_ctl_cfg(self, ref: int | str, values: Mapping[str, str | int | None]) -> None:
        """Set (or, with None, remove) variables in ejabberdctl.cfg.

        Edits /etc/default/ejabberd in place (same inode), so the
        /etc/ejabberd/ejabberdctl.cfg symlink stays a symlink. Commented defaults
        are left alone; active assignments of the same variables are replaced.
        """
        lines = self.read_ctl_cfg(ref).splitlines()
        names = set(values)
        kept = [ln for ln in lines
                if not any(re.match(rf"\s*{re.escape(k)}\s*=", ln) for k in names)]
        for key, value in values.items():
            if value is not None:
                if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
                    raise LabError(f"bad variable name {key!r}")
                kept.append(f"{key}={value}")
        self.exec(ref, ["sh", "-c", f"cat > {CTL_CFG}"], input="\n".join(kept) + "\n")

    def set_cookie_file(self, ref: int | str, cookie: str | None = None) -> None:
        """Write the service user's $HOME/.erlang.cookie (ejabberd:ejabberd, 0400).

        The cookie travels on stdin only. Does not restart the node.
        """
        value = self._cookie if cookie is None else cookie
        if not value or any(c.isspace() for c in value):
            raise LabError("cookie must be non-empty and contain no whitespace")
        script = (
            'set -e; h=$(getent passwd ' + SERVICE_USER + ' | cut -d: -f6); '
            'f="$h/.erlang.cookie"; umask 077; rm -f "$f"; cat > "$f"; '
            'chown ' + SERVICE_USER + ':' + SERVICE_USER + ' "$f"; chmod 0400 "$f"')
        self.exec(ref, ["sh", "-c", script], input=value)

    def configure_node(self, ref: int | str, *, cookie: str | None = None,
                       dist_port: int | None | str = "same") -> None:
        """ERLANG_NODE=ejabberd@IP, ERL_DIST_PORT, INET_DIST_INTERFACE=IP, cookie."""
        node = self._node(ref)
        port = self.dist_port if dist_port == "same" else dist_port
        values: dict[str, str | int | None] = {
            "ERLANG_NODE": node["name"],
            "ERL_DIST_PORT": port,
            "INET_DIST_INTERFACE": node["ip"],
        }
        values.update(self.extra_cfg)
        self.set_ctl_cfg(ref, values)
        self.set_cookie_file(ref, cookie)

    # -- ejabberd service --------------------------------------------------------

    def status(self, ref: int | str) -> tuple[int, str]:
        """(exit code, output) of ejabberdctl status: 0 started, 3 not running."""
        proc = self.ejabberdctl(ref, "status", check=False, timeout=60)
        return proc.returncode, (proc.stdout + proc.stderr).strip()

    def is_started(self, ref: int | str) -> bool:
        rc, out = self.status(ref)
        return rc == 0 and "started" in out

    def start_node(self, ref: int | str, timeout: float | None = None) -> float:
        """/etc/init.d/ejabberd start, then poll ejabberdctl status; return seconds."""
        limit = timeout or self.start_timeout
        t = time.monotonic()
        self.exec(ref, self._service_cmd("start"), timeout=limit)
        while True:
            rc, out = self.status(ref)
            if rc == 0 and "started" in out:
                return time.monotonic() - t
            if time.monotonic() - t > limit:
                log = self.exec(ref, ["sh", "-c", "tail -n 20 /var/log/ejabberd/*.log"],
                                check=False).stdout
                raise LabError(f"{self._node(ref)['container']}: ejabberd not started "
                               f"after {limit}s (status {rc}: {out}); log:\n{log}")
            time.sleep(0.5)

    def stop_node(self, ref: int | str, timeout: float = 90) -> float:
        """/etc/init.d/ejabberd stop, then wait until status says not running."""
        t = time.monotonic()
        self.exec(ref, self._service_cmd("stop"), timeout=timeout)
        while True:
            rc, out = self.status(ref)
            if rc == 3:
                return time.monotonic() - t
            if time.monotonic() - t > timeout:
                raise LabError(f"{self._node(ref)['container']}: ejabberd still running "
                               f"after {timeout}s (status {rc}: {out})")
            time.sleep(0.5)

    def _service_cmd(self, action: str) -> list[str]:
        return ["systemctl", action, "ejabberd"] if self.vm else ["/etc/init.d/ejabberd", action]

    def restart_node(self, ref: int | str) -> float:
        return self.stop_node(ref) + self.start_node(ref)

    # -- cluster helpers ---------------------------------------------------------

    def list_cluster(self, ref: int | str) -> list[str]:
        """Running cluster members as node i sees them (sorted node names)."""
        return parse_node_list(self.ejabberdctl(ref, "list_cluster").stdout)

    def wait_members(self, refs: Iterable[int | str], want: Iterable[str],
                     timeout: float = 60) -> None:
        """Poll until every node of ``refs`` lists exactly ``want`` as running members
        (ejabberdctl list_cluster, which reads the cookie file); LabError naming what
        each node saw after ``timeout`` seconds."""
        refs, want = list(refs), sorted(want)
        deadline = time.monotonic() + timeout
        while True:
            got: dict[int | str, list[str] | str] = {}
            for ref in refs:
                try:
                    got[ref] = self.list_cluster(ref)
                except LabError as exc:
                    got[ref] = str(exc)[-200:]
            if all(v == want for v in got.values()):
                return
            if time.monotonic() > deadline:
                raise LabError(f"the cluster is not {want} after {timeout}s: {got}")
            time.sleep(1)

    def join_cluster(self, ref: int | str, seed: int | str, timeout: float = 120) -> float:
        """ejabberdctl join_cluster on ``ref`` through ``seed``; wait until ``ref``
        lists the seed (join is asynchronous since ejabberd 24.06). Returns seconds."""
        seed_name = self._node(seed)["name"]
        me = self._node(ref)["name"]
        t = time.monotonic()
        self.ejabberdctl(ref, "join_cluster", seed_name, timeout=timeout)
        while True:
            try:
                members = self.list_cluster(ref)
            except LabError:
                members = []  # the node restarts its mnesia during the join
            if seed_name in members and me in members:
                if self.vm:
                    self._end_notified_stop(ref, timeout)
                    self.wait_members([ref], members, timeout)
                return time.monotonic() - t
            if time.monotonic() - t > timeout:
                raise LabError(f"{me} did not join {seed_name} within {timeout}s "
                               f"(list_cluster: {members})")
            time.sleep(0.25)

    def _unit_state(self, ref: int | str) -> str:
        return self.exec(ref, ["systemctl", "show", "-P", "ActiveState", "ejabberd"]).stdout.strip()

    def _end_notified_stop(self, ref: int | str, timeout: float) -> None:
        """A join restarts ejabberd inside the node, and ejabberd tells systemd it is
        stopping (STOPPING=1); systemd then waits for the process to end and kills it when
        its stop timeout runs out. As role ejabberd_cluster does: end it cleanly, start again."""
        deadline = time.monotonic() + 30
        while self._unit_state(ref) != "deactivating":
            if time.monotonic() > deadline:
                return          # systemd was not told: nothing to end
            time.sleep(0.25)
        self.exec(ref, ["systemctl", "kill", "--signal=SIGTERM", "ejabberd"])
        deadline = time.monotonic() + timeout
        while self._unit_state(ref) not in ("inactive", "failed"):
            if time.monotonic() > deadline:
                raise LabError(f"{self._node(ref)['container']}: ejabberd did not stop after the join")
            time.sleep(0.25)
        self.start_node(ref)

    def leave_cluster(self, ref: int | str, via: int | str | None = None,
                      timeout: float = 120) -> float:
        """ejabberdctl leave_cluster <node ref>, run on ``via`` (default: ref itself).

        ejabberd (23.01 and 24.12) stops the node that leaves; wait for that and,
        when ``via`` is another node, until ``via`` no longer lists it."""
        me = self._node(ref)["name"]
        via = ref if via is None else via
        t = time.monotonic()
        self.ejabberdctl(via, "leave_cluster", me, timeout=timeout)
        while True:
            gone = not self.is_started(ref)
            if gone and via != ref:
                gone = me not in self.list_cluster(via)
            if gone:
                return time.monotonic() - t
            if time.monotonic() - t > timeout:
                raise LabError(f"{me} still in the cluster {timeout}s after leave_cluster")
            time.sleep(0.25)

    def wait_tcp(self, ref: int | str, port: int | None = None,
                 timeout: float = 10) -> float:
        return wait_tcp(self._node(ref)["ip"], port or self.dist_port or 4369, timeout)


# -- command line ------------------------------------------------------------------

def _main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name, text in (("up", "start a cluster and leave it running"),
                       ("demo", "start a cluster, join all nodes to n1, list, remove")):
        p = sub.add_parser(name, help=text)
        p.add_argument("--suite", default="bookworm", choices=SUITES)
        p.add_argument("--size", type=int, default=3)
        p.add_argument("--prefix", default="xejdemo")
        p.add_argument("--subnet", help="default: the first free /24 from 172.30.100.0")
        p.add_argument("--dist-port", type=int, default=5210,
                       help="ERL_DIST_PORT; 0 for epmd mode")
        p.add_argument("--vm", action="store_true",
                       help="VM-like hosts: systemd, sshd, admin with sudo (see LabCluster)")
        p.add_argument("--no-start", action="store_true",
                       help="leave ejabberd as the image has it (VM: the package's node runs)")
    p = sub.choices["up"]
    p.add_argument("--reuse", action="store_true",
                   help="keep the containers of an earlier run with this prefix if all are there")
    p.add_argument("--ssh-dir", help="VM: keep the SSH key here (made once), not in a temporary directory")
    p = sub.add_parser("down", help="remove what a run with this prefix left")
    p.add_argument("--prefix", default="xejdemo")
    args = ap.parse_args(argv)

    if args.cmd == "down":
        print(json.dumps({"removed": remove_prefix(args.prefix)}))
        return 0
    lab = LabCluster(suite=args.suite, size=args.size, prefix=args.prefix,
                     subnet=args.subnet, dist_port=args.dist_port or None, vm=args.vm,
                     start=not args.no_start, reuse=getattr(args, "reuse", False),
                     ssh_dir=getattr(args, "ssh_dir", None))
    with lab if args.cmd == "demo" else _Keep(lab):
        out: dict[str, Any] = {"nodes": lab.nodes()}
        if lab.vm:
            out["ssh"] = {k: v for k, v in lab.ssh_vars(1).items() if k != "ansible_host"}
        if args.cmd == "demo":
            joins = {}
            for i in range(2, lab.size + 1):
                joins[lab.node(i)["name"]] = round(lab.join_cluster(i, 1), 2)
            out["join_seconds"] = joins
            out["list_cluster"] = lab.list_cluster(1)
        out["timings"] = {k: round(v, 2) for k, v in lab.timings.items()}
        print(json.dumps(out, indent=2))
    return 0


class _Keep:
    """Context manager for `up`: start, and keep the cluster on success."""

    def __init__(self, lab: LabCluster) -> None:
        self.lab = lab

    def __enter__(self) -> LabCluster:
        try:
            return self.lab.up()
        except BaseException:
            self.lab.close()
            raise

    def __exit__(self, *exc: object) -> None:
        pass


if __name__ == "__main__":
    sys.exit(_main())
