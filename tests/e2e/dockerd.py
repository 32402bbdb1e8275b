"""A private Docker daemon for end-to-end tests.

Starts Debian's ``dockerd`` (20.10) with its own data root, exec root, pid
file, config file and unix socket in one short temporary folder, and talks to
it with Debian's ``/usr/bin/docker`` client of the same version. The daemon
runs without iptables rules or a bridge, so containers get no network, which
these tests do not need.
"""

import http.client
import json
import os
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

DOCKERD = "/usr/sbin/dockerd"
# /usr/local/bin/docker may be a newer client than the Debian daemon, so the
# Debian client is named by its full path.
DOCKER = "/usr/bin/docker"
API_VERSION = "v1.41"

START_TIMEOUT = 60
STOP_TIMEOUT = 30


class DockerError(RuntimeError):
    """A docker client command that exited with a non-zero status."""

    def __init__(self, args, result):
        self.result = result
        super().__init__(
            f"docker {' '.join(args)} failed with exit status {result.returncode}: "
            f"{result.stderr.strip() or result.stdout.strip()}"
        )


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path, timeout):
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self._path)


def unix_http_request(path, method, url, body=None, timeout=60):
    """Send one HTTP request over the unix socket ``path``.

    Returns ``(status, parsed JSON body or None, raw body text)``. ``body``
    is sent as given when it is ``str`` or ``bytes``, so a test can send a
    document byte for byte; other values are JSON-encoded.
    """
    if body is not None and not isinstance(body, (str, bytes)):
        body = json.dumps(body)
    headers = {"Content-Type": "application/json"} if body is not None else {}
    connection = _UnixHTTPConnection(path, timeout)
    try:
        connection.request(method, url, body=body, headers=headers)
        response = connection.getresponse()
        text = response.read().decode("utf-8", "replace")
    finally:
        connection.close()
    try:
        document = json.loads(text) if text else None
    except ValueError:
        document = None
    return response.status, document, text


def mounts_below(folder):
    """List mount points at or below ``folder``, deepest first."""
    folder = os.path.realpath(folder)
    found = []
    with open("/proc/self/mountinfo", encoding="utf-8") as mountinfo:
        for line in mountinfo:
            # The fifth field is the mount point, with space, tab, newline
            # and backslash written as octal escapes.
            target = line.split()[4]
            target = target.encode().decode("unicode_escape")
            if target == folder or target.startswith(folder + "/"):
                found.append(target)
    return sorted(set(found), key=lambda path: path.count("/"), reverse=True)


def unmount_below(folder):
    """Lazily unmount everything at or below ``folder`` and return what remains."""
    for _ in range(5):
        targets = mounts_below(folder)
        if not targets:
            return []
        for target in targets:
            subprocess.run(["umount", "-l", target], capture_output=True, check=False)
    return mounts_below(folder)


def stop_pid(pid, timeout=STOP_TIMEOUT):
    """Send SIGTERM to ``pid``, wait up to ``timeout`` seconds, then SIGKILL.

    Returns True when the process is gone. ``pid`` must be a process that
    this test run started.
    """
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return True
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.2)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return True
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.1)
    return False


def _alive(pid):
    """Tell whether ``pid`` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as stat:
            state = stat.read().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


class Dockerd:
    """One ``dockerd`` process with all of its state below ``self.root``.

    The folder name is kept short because the daemon puts each managed
    plugin's socket at ``<exec root>/plugins/<64-hex id>/<socket>``, and a
    unix socket path has at most 107 bytes.
    """

    def __init__(self, root=None):
        self.root = Path(root or tempfile.mkdtemp(prefix="e2e", dir="/tmp"))
        self.data_root = self.root / "d"
        self.exec_root = self.root / "x"
        self.pidfile = self.root / "pid"
        self.socket = self.root / "docker.sock"
        self.config_file = self.root / "daemon.json"
        self.log_path = self.root / "dockerd.log"
        self.process = None

    @property
    def host(self):
        return f"unix://{self.socket}"

    def start(self, timeout=START_TIMEOUT):
        """Start the daemon and wait until ``/_ping`` returns OK."""
        self.root.mkdir(parents=True, exist_ok=True)
        self.config_file.write_text(json.dumps(self.config()))
        log = open(self.log_path, "ab")
        try:
            self.process = subprocess.Popen(
                self.command(), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
            )
        finally:
            log.close()
        self._wait_ready(timeout)

    def config(self):
        """Return the settings written to the daemon's own config file.

        A config file of its own keeps the host's /etc/docker/daemon.json
        out, and its key path keeps dockerd 20.10 from writing
        /etc/docker/key.json.
        """
        return {"deprecated-key-path": str(self.root / "key.json")}

    def command(self):
        """Return the argv that starts the daemon.

        The process it starts must be dockerd itself, because stop() signals
        that PID.
        """
        return [
            DOCKERD,
            "--iptables=false",
            "--ip6tables=false",
            "--bridge=none",
            "--storage-driver=vfs",
            f"--data-root={self.data_root}",
            f"--exec-root={self.exec_root}",
            f"--pidfile={self.pidfile}",
            f"--config-file={self.config_file}",
            f"--host={self.host}",
        ]

    def _wait_ready(self, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"dockerd exited with status {self.process.returncode}:\n{self.log_tail()}"
                )
            try:
                status, _, _ = unix_http_request(str(self.socket), "GET", "/_ping", timeout=5)
                if status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise TimeoutError(f"dockerd did not respond to /_ping within {timeout} s:\n{self.log_tail()}")

    def stop(self, timeout=STOP_TIMEOUT):
        """Stop the daemon with SIGTERM, then SIGKILL after ``timeout`` seconds.

        A daemon killed with SIGKILL may leave its containerd running, so
        that one is stopped by the PID in its own pid file as well.
        """
        if self.process is None:
            return
        stop_pid(self.process.pid, timeout)
        self.process.wait(timeout=10)
        self.process = None
        containerd_pidfile = self.exec_root / "containerd" / "containerd.pid"
        if containerd_pidfile.exists():
            try:
                pid = int(containerd_pidfile.read_text().strip())
            except ValueError:
                pid = None
            if pid and _alive(pid) and "containerd" in _command_name(pid):
                stop_pid(pid, timeout)

    def restart(self):
        self.stop()
        self.start()

    def cleanup(self):
        """Remove the daemon's folder, unless a mount below it is still there.

        Deleting across a bind mount would delete the files it shows, so a
        mount that cannot be removed stops the cleanup with an error.
        """
        remaining = unmount_below(self.root)
        if remaining:
            raise RuntimeError(f"not removing {self.root}: still mounted: {remaining}")
        subprocess.run(["rm", "-rf", "--one-file-system", str(self.root)], check=True)

    def log_tail(self, lines=40):
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return "(no dockerd log)"
        return "\n".join(text.splitlines()[-lines:])

    def log_text(self):
        return self.log_path.read_text(errors="replace")

    def docker(self, *args, check=True, timeout=180, input=None):
        """Run the Debian docker client against this daemon.

        Returns the CompletedProcess, with text output unless ``input`` is
        bytes. Raises DockerError when ``check`` is true and the command fails.
        """
        argv = [DOCKER, "--host", self.host, *args]
        result = subprocess.run(
            argv,
            input=input,
            capture_output=True,
            text=isinstance(input, str) or input is None,
            timeout=timeout,
            check=False,
            env=self.client_environment(),
        )
        if check and result.returncode != 0:
            raise DockerError(args, result)
        return result

    def client_environment(self):
        """Return an environment that points docker clients at this daemon only."""
        environment = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith("DOCKER_") and not key.startswith("COMPOSE_")
        }
        environment["DOCKER_HOST"] = self.host
        return environment

    def api(self, method, path, body=None, timeout=120):
        """Send a request to the Engine API and return (status, JSON body, text)."""
        return unix_http_request(
            str(self.socket), method, f"/{API_VERSION}{path}", body=body, timeout=timeout
        )


def _command_name(pid):
    try:
        with open(f"/proc/{pid}/comm", encoding="utf-8") as comm:
            return comm.read().strip()
    except FileNotFoundError:
        return ""
