# Copyright: xmpp.ejabberd contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Start real Erlang nodes for integration tests.

Two ways a node is found, as with ejabberd:

* **epmd mode** (``dist_port=None``): the node listens on a random port and registers
  with an epmd. Unless ``epmd_port`` names an epmd that is already running, the
  harness starts its *own* epmd on a free port (never the system one on 4369),
  as a foreground child process, so it can stop exactly that process by PID.
* **fixed-port mode** (``dist_port=N``, or ``0`` for a free port): the node is
  started like ejabberd's ``ERL_DIST_PORT`` setting does it,
  ``-erl_epmd_port N -start_epmd false``: it listens on N and no epmd is
  involved (``ERL_EPMD_PORT`` points at a port where nothing listens, so the
  node cannot register with a system epmd either).

The cookie is written to ``.erlang.cookie`` (mode 0400) in a private temporary
HOME; it never appears on a command line. ``eval`` runs an expression on the
node with ``erl_call``, which reads the same cookie file from that HOME.

Every node listens on its own loopback address only (``host``: ``localhost`` /
``127.0.0.1`` by default; another 127.x.y.z address lets several fixed-port
nodes share one port number, as a real cluster does).

Example::

    with ErlNode("t1") as n:
        assert n.eval("nodes()") == "[]"
        print(n.node, n.port, n.epmd_port)
"""

from __future__ import annotations

import errno
import ipaddress
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time

from ansible_collections.xmpp.ejabberd.tests.helpers.common import write_private

__all__ = [
    "ErlNode",
    "ErlNodeError",
    "ErlEvalError",
    "Epmd",
    "free_port",
    "port_is_listening",
    "erlang_available",
]

_NAME_RE = re.compile(r"^[A-Za-z0-9_-]+$")


class ErlNodeError(RuntimeError):
    """A node or epmd could not be started, reached or stopped."""


class ErlEvalError(ErlNodeError):
    """The expression given to ErlNode.eval failed on the node."""


def _which(prog):
    path = shutil.which(prog)
    if path is None and os.path.exists("/usr/bin/" + prog):
        path = "/usr/bin/" + prog
    return path


def erlang_available():
    """Return True if erl, epmd and erl_call are installed."""
    return all(_which(p) for p in ("erl", "epmd", "erl_call"))


def free_port(host="127.0.0.1"):
    """Return a TCP port that was free on ``host`` a moment ago (bind to 0, read, close)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def port_is_listening(port, host="127.0.0.1", timeout=0.5):
    """Return True if a TCP connect to host:port succeeds."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _wait_for(predicate, timeout, interval=0.05, proc=None, what="condition"):
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return
        if proc is not None and proc.poll() is not None:
            raise ErlNodeError("%s: process exited with status %s" % (what, proc.returncode))
        if time.monotonic() > deadline:
            raise ErlNodeError("%s: not reached after %.1f s" % (what, timeout))
        time.sleep(interval)


def _stop_process(proc, timeout=5.0):
    """SIGTERM, wait, then SIGKILL the process and its own process group."""
    if proc is None:
        return
    if proc.poll() is None:
        try:
            proc.terminate()
        except OSError:
            pass
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pass
    # The process was started with start_new_session=True: its group id is its
    # PID, and the group holds only its own helpers (inet_gethost, erl_child_setup).
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except OSError as exc:
        if exc.errno not in (errno.ESRCH, errno.EPERM):
            raise
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise ErlNodeError("process %d did not exit" % proc.pid) from exc


class Epmd:
    """A private epmd, run in the foreground as a child process (not ``-daemon``)."""

    def __init__(self, port=None, address="127.0.0.1", start_timeout=10.0):
        # address: what epmd's -address takes (comma-separated IPs); the first
        # one is used to check that it listens.
        self.address = address
        self.port = port or free_port(self.check_address)
        self.start_timeout = start_timeout
        self.proc = None
        self._log = None

    @property
    def check_address(self):
        """The address used to check that epmd listens."""
        return self.address.split(",")[0]

    @property
    def pid(self):
        """PID of the epmd process (None before start)."""
        return self.proc.pid if self.proc else None

    def start(self):
        """Start epmd and wait until it accepts connections."""
        epmd = _which("epmd")
        if epmd is None:
            raise ErlNodeError("epmd not found: install erlang-base (make deps)")
        if port_is_listening(self.port, self.check_address):
            raise ErlNodeError("something already listens on %s:%d" % (self.check_address, self.port))
        self._log = tempfile.TemporaryFile()  # pylint: disable=consider-using-with
        # pylint: disable-next=consider-using-with
        self.proc = subprocess.Popen(
            [epmd, "-port", str(self.port), "-address", self.address],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=dict(os.environ, ERL_EPMD_PORT=str(self.port)),
        )
        try:
            _wait_for(lambda: port_is_listening(self.port, self.check_address), self.start_timeout,
                      proc=self.proc, what="epmd on port %d" % self.port)
        except ErlNodeError:
            self.stop()
            raise
        return self

    def names(self):
        """Return {name: port} of the nodes registered with this epmd."""
        return epmd_names(self.port)

    def stop(self):
        """Stop this epmd (and only this one) by PID."""
        try:
            _stop_process(self.proc)
        finally:
            if self._log is not None:
                self._log.close()
                self._log = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def epmd_names(epmd_port, timeout=5.0):
    """Return {name: port} as listed by ``epmd -port N -names``."""
    epmd = _which("epmd")
    if epmd is None:
        raise ErlNodeError("epmd not found: install erlang-base (make deps)")
    res = subprocess.run(
        [epmd, "-port", str(epmd_port), "-names"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if res.returncode != 0:
        raise ErlNodeError("no epmd on port %d: %s" % (epmd_port, (res.stdout + res.stderr).strip()))
    names = {}
    for line in res.stdout.splitlines():
        match = re.match(r"^name (\S+) at port (\d+)$", line.strip())
        if match:
            names[match.group(1)] = int(match.group(2))
    return names


def _loopback_ip(host):
    """The loopback address the node should listen on, or None to leave it unbound."""
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        try:
            addr = ipaddress.ip_address(socket.gethostbyname(host))
        except (OSError, ValueError):
            return None
    return str(addr) if addr.is_loopback else None


def _erlang_ip(address):
    """An IP address as an Erlang tuple ({127,0,0,1}; {0,0,0,0,0,0,0,1} for ::1)."""
    addr = ipaddress.ip_address(address)
    if addr.version == 4:
        return "{%s}" % address.replace(".", ",")
    return "{%s}" % ",".join(str(int(addr.exploded[i:i + 4], 16)) for i in range(0, 39, 5))


class ErlNode:  # pylint: disable=too-many-instance-attributes
    """A real Erlang node in a private HOME; use as a context manager.

    Attributes once started:

    * ``node``: full node name, e.g. ``t1@localhost`` or ``t1@127.0.0.1``
    * ``port``: the distribution port the node listens on
    * ``epmd_port``: the epmd it registered with (None in fixed-port mode)
    * ``cookie``: the cookie (in ``home/.erlang.cookie``, mode 0400)
    * ``pid``: PID of the node's beam process
    * ``home``: the private HOME directory
    * ``fixed_port``: True in fixed-port mode (no epmd)
    """

    def __init__(self, name="t1", longnames=False, dist_port=None, cookie=None, host=None,
                 epmd_port=None, extra_args=(), start_timeout=30.0, stop_timeout=10.0):
        # pylint: disable=too-many-arguments,too-many-positional-arguments
        if not _NAME_RE.match(name):
            raise ValueError("node name part must be letters, digits, '_' or '-': %r" % name)
        self.name = name
        self.longnames = longnames
        self.host = host or ("127.0.0.1" if longnames else "localhost")
        if not longnames and "." in self.host:
            raise ValueError("short names (-sname) need a host without dots, got %r" % self.host)
        self.node = "%s@%s" % (name, self.host)
        self.cookie = cookie if cookie is not None else secrets.token_hex(16).upper()
        self.fixed_port = dist_port is not None
        self._dist_port_arg = dist_port
        self._epmd_port_arg = epmd_port
        self.extra_args = list(extra_args)
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self.listen_ip = _loopback_ip(self.host)

        self.port = None
        self.epmd_port = None
        self.epmd = None  # our own Epmd, if we started one
        self.home = None
        self.proc = None
        self._tmp = None
        self._log_path = None
        self._dead_epmd_port = None

    # -- properties ---------------------------------------------------------
    @property
    def pid(self):
        """PID of the beam process (None before start)."""
        return self.proc.pid if self.proc else None

    @property
    def cookie_file(self):
        """Path of the cookie file in the private HOME."""
        return os.path.join(self.home, ".erlang.cookie") if self.home else None

    @property
    def alive(self):
        """True while the beam process runs."""
        return self.proc is not None and self.proc.poll() is None

    @property
    def address(self):
        """The IP address (or host name) clients connect to."""
        return self.listen_ip or self.host

    def log(self):
        """What the node printed on stdout/stderr so far."""
        if not self._log_path or not os.path.exists(self._log_path):
            return ""
        with open(self._log_path, encoding="utf-8", errors="replace") as handle:
            return handle.read()

    def __repr__(self):
        mode = "fixed port" if self.fixed_port else "epmd %s" % self.epmd_port
        return "<ErlNode %s port=%s %s pid=%s>" % (self.node, self.port, mode, self.pid)

    # -- start / stop -------------------------------------------------------
    def _env(self):
        env = {k: v for k, v in os.environ.items() if not k.startswith(("ERL_", "ERLANG_"))}
        env["HOME"] = self.home
        if self.fixed_port:
            env["ERL_EPMD_PORT"] = str(self.epmd_port or self._dead_epmd_port)
        else:
            env["ERL_EPMD_PORT"] = str(self.epmd_port)
        return env

    def _setup_epmd(self):
        if self._epmd_port_arg is not None:
            self.epmd_port = int(self._epmd_port_arg)
            if not port_is_listening(self.epmd_port):
                self.epmd = Epmd(self.epmd_port).start()
        elif not self.fixed_port:
            address = "127.0.0.1"
            if self.listen_ip and self.listen_ip != address:
                address += "," + self.listen_ip
            self.epmd = Epmd(address=address).start()
            self.epmd_port = self.epmd.port
        if self.fixed_port and self.epmd_port is None:
            # ERL_EPMD_PORT must point somewhere: a port nothing listens on, so
            # the node cannot register with a system epmd on 4369.
            self._dead_epmd_port = free_port()

    def _command(self, ready_file):
        erl = _which("erl")
        if erl is None:
            raise ErlNodeError("erl not found: install erlang-base (make deps)")
        cmd = [erl, "-name" if self.longnames else "-sname", self.node,
               "-noshell", "-noinput",
               # no busy-waiting schedulers: the CI machine has 2 cores
               "+sbwt", "none", "+sbwtdcpu", "none", "+sbwtdio", "none"]
        if self.listen_ip:
            cmd += ["-kernel", "inet_dist_use_interface", _erlang_ip(self.listen_ip)]
        if self.fixed_port:
            cmd += ["-erl_epmd_port", str(self.port), "-start_epmd", "false"]
        else:
            cmd += ["-start_epmd", "false"]  # our epmd runs already
        if self.listen_ip and ":" in self.listen_ip and "-proto_dist" not in self.extra_args:
            cmd += ["-proto_dist", "inet6_tcp"]  # an IPv6 node: its distribution over IPv6
        cmd += self.extra_args
        cmd += ["-eval", 'ok = file:write_file("%s", atom_to_list(node())).' % ready_file]
        return cmd

    def start(self):
        """Start the node and wait until it answers; returns self."""
        if self.proc is not None:
            raise ErlNodeError("%s already started" % self.node)
        self._tmp = tempfile.mkdtemp(prefix="erlnode-%s-" % self.name)
        try:
            self.home = os.path.join(self._tmp, "home")
            os.mkdir(self.home, 0o700)
            write_private(self.home, ".erlang.cookie", self.cookie, 0o400)
            self._log_path = os.path.join(self._tmp, "node.log")
            ready_file = os.path.join(self._tmp, "ready")
            if self.fixed_port:
                self.port = int(self._dist_port_arg) or free_port(self.listen_ip or "127.0.0.1")
            self._setup_epmd()
            with open(self._log_path, "wb") as log:
                # pylint: disable-next=consider-using-with
                self.proc = subprocess.Popen(
                    self._command(ready_file),
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=self._env(),
                    cwd=self._tmp,
                    start_new_session=True,
                )
            self._wait_ready(ready_file)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self, ready_file):
        what = "node %s" % self.node
        try:
            _wait_for(lambda: os.path.exists(ready_file), self.start_timeout, proc=self.proc, what=what)
            if self.fixed_port:
                _wait_for(lambda: port_is_listening(self.port, self.address), self.start_timeout,
                          proc=self.proc, what=what + " on port %d" % self.port)
            else:
                found = {}

                def registered():
                    found.update(epmd_names(self.epmd_port))
                    return self.name in found

                _wait_for(registered, self.start_timeout, proc=self.proc,
                          what=what + " in epmd on port %d" % self.epmd_port)
                self.port = found[self.name]
        except ErlNodeError as exc:
            raise ErlNodeError("%s\n--- node output ---\n%s" % (exc, self.log())) from exc

    def terminate(self):
        """Send SIGTERM without waiting (stop() then waits); lets callers stop many nodes at once."""
        if self.alive:
            try:
                self.proc.terminate()
            except OSError:
                pass

    def stop(self):
        """Stop the node (SIGTERM, then SIGKILL), our epmd, and remove the temp dirs."""
        errors = []
        try:
            _stop_process(self.proc, self.stop_timeout)
        except ErlNodeError as exc:
            errors.append(str(exc))
        if self.epmd is not None:
            try:
                self.epmd.stop()
            except ErlNodeError as exc:
                errors.append(str(exc))
            self.epmd = None
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None
        if errors:
            raise ErlNodeError("; ".join(errors))

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # -- talking to the node ------------------------------------------------
    def erl_call_args(self):
        """The erl_call arguments that address this node."""
        if self.fixed_port:
            return ["-address", "%s:%d" % (self.address, self.port)]
        return ["-name" if self.longnames else "-sname", self.node]

    def eval(self, expr, timeout=15):
        """Evaluate Erlang expressions ON THE NODE; return the printed result.

        ``expr`` is one or more comma-separated expressions (the final ``.`` is
        optional). The value of the last one is returned as erl_call prints it
        (``~p``), e.g. ``"[]"`` for ``nodes()`` or ``"'t1@localhost'"``.
        Raises ErlEvalError if the expression fails on the node.
        """
        if not self.alive:
            raise ErlNodeError("%s is not running" % self.node)
        erl_call = _which("erl_call")
        if erl_call is None:
            raise ErlNodeError("erl_call not found: install erlang-base (make deps)")
        text = expr.strip()
        if not text.endswith("."):
            text += "."
        cmd = [erl_call] + self.erl_call_args() + ["-timeout", str(int(timeout)), "-e"]
        try:
            res = subprocess.run(cmd, input=text + "\n", capture_output=True, text=True,
                                 env=self._env(), timeout=timeout + 5, check=False)
        except subprocess.TimeoutExpired as exc:
            raise ErlNodeError("erl_call to %s timed out" % self.node) from exc
        out = res.stdout.strip()
        if res.returncode != 0:
            raise ErlNodeError("erl_call to %s failed (status %d): %s %s"
                               % (self.node, res.returncode, out, res.stderr.strip()))
        if out.startswith("{ok,") and out.endswith("}"):
            return out[len("{ok,"):-1].strip()
        if out.startswith("{error,"):
            raise ErlEvalError("%s on %s: %s" % (expr, self.node, out))
        raise ErlNodeError("unexpected erl_call output from %s: %r %r" % (self.node, out, res.stderr))

    def connect(self, other):
        """Connect this node to ``other`` (an ErlNode or node name); return True on success."""
        name = other.node if isinstance(other, ErlNode) else str(other)
        return self.eval("net_kernel:connect_node('%s')" % name) == "true"
