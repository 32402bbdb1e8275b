"""Real components for tests and the demo: a local S3 server and the plugin.

The object store is moto's S3 server on 127.0.0.1. The plugin runs as its
own process group (``python -m plugin``) with every path under one
temporary folder, and ossfs is the wrapper in tests/bin, which runs
Debian's s3fs.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import requests_unixsocket

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OSSFS_WRAPPER = os.path.join(REPO, "tests", "bin", "ossfs")
# The headers Docker's plugin client sends: no Content-Type.
DOCKER_HEADERS = {"Accept": "application/vnd.docker.plugins.v1.2+json", "User-Agent": "Go-http-client/1.1"}


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until(condition, timeout, interval=0.05, message="condition"):
    """Poll ``condition`` until it returns a true value; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"{message} not reached within {timeout} s")
        time.sleep(interval)


def stop_process(process, timeout=15):
    """Stop a process started by the harness: SIGTERM, then SIGKILL."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(5)


def fuse_available():
    return (os.geteuid() == 0 and os.path.exists("/dev/fuse")
            and shutil.which("s3fs") is not None and shutil.which("fusermount") is not None)


def responds(mountpoint):
    """Return True when statvfs of ``mountpoint`` succeeds."""
    try:
        os.statvfs(mountpoint)
        return True
    except OSError:
        return False


def is_mounted(mountpoint):
    return mountpoint in mounts_under(mountpoint)


def ossfs_pids(mountpoint):
    """Return the PIDs of the ossfs processes serving ``mountpoint``."""
    return processes_with_argument_under(mountpoint)


def mounts_under(root):
    """Return the mountpoints in /proc/self/mountinfo at or below ``root``."""
    found = []
    with open("/proc/self/mountinfo", encoding="utf-8") as file:
        for line in file:
            point = line.split()[4].replace("\\040", " ")
            if point == root or point.startswith(root.rstrip("/") + "/"):
                found.append(point)
    return found


def processes_with_argument_under(root):
    """Return PIDs of processes with an argument at or below ``root``."""
    pids = []
    prefix = os.fsencode(root.rstrip("/"))
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as file:
                arguments = file.read().split(b"\0")[1:]
            with open(f"/proc/{entry}/stat", "rb") as file:
                if file.read().rsplit(b")", 1)[1].split()[0] == b"Z":
                    continue
        except (OSError, IndexError):
            continue
        if any(argument == prefix or argument.startswith(prefix + b"/") for argument in arguments):
            pids.append(int(entry))
    return pids


def cleanup_mounts(root):
    """Detach every FUSE mount under ``root`` and end the ossfs processes serving them."""
    for point in sorted(mounts_under(root), reverse=True):
        subprocess.run(["fusermount", "-uz", point], capture_output=True)
    for pid in processes_with_argument_under(root):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


class ObjectStore:
    """moto's S3 server on 127.0.0.1, in its own process.

    With ``auth=True`` moto checks keys: it lets the first three requests
    through unchecked, which ``create_keys`` spends on making an IAM user,
    its access key and a policy that allows S3; from then on only that key
    works.
    """

    UNCHECKED_REQUESTS = 3

    def __init__(self, folder, auth=False):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = os.path.join(folder, "moto.log")
        self.auth = auth
        self.process = None

    def start(self):
        environment = dict(os.environ)
        environment.pop("AWS_CA_BUNDLE", None)
        if self.auth:
            environment["INITIAL_NO_AUTH_ACTION_COUNT"] = str(self.UNCHECKED_REQUESTS)
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
                stdout=log, stderr=subprocess.STDOUT, env=environment,
            )

        def ready():
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return True
            except OSError:
                return False

        wait_until(ready, 30, message=f"moto server on port {self.port}")
        return self

    def client(self, key_id="test-key-id", secret="test-secret", service="s3"):
        import boto3
        os.environ.pop("AWS_CA_BUNDLE", None)
        return boto3.client(service, endpoint_url=self.url, region_name="us-east-1",
                            aws_access_key_id=key_id, aws_secret_access_key=secret)

    def create_keys(self):
        """Return ``(key_id, secret)`` of a new IAM user allowed to use S3 (auth mode only)."""
        iam = self.client(service="iam")
        iam.create_user(UserName="ossfs-test")
        key = iam.create_access_key(UserName="ossfs-test")["AccessKey"]
        policy = '{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}'
        iam.put_user_policy(UserName="ossfs-test", PolicyName="s3", PolicyDocument=policy)
        return key["AccessKeyId"], key["SecretAccessKey"]

    def stop(self):
        if self.process is not None:
            stop_process(self.process)


class PluginProcess:
    """The plugin as Docker uses it: a process serving a unix socket."""

    def __init__(self, folder, ossfs_bin=OSSFS_WRAPPER, environment=None):
        self.folder = folder
        self.socket_path = os.path.join(folder, "ossfs.sock")
        self.state_path = os.path.join(folder, "state", "state.json")
        self.mount_root = os.path.join(folder, "mnt")
        self.log_path = os.path.join(folder, "plugin.log")
        self.environment = {
            "SOCKET_PATH": self.socket_path,
            "STATE_PATH": self.state_path,
            "MOUNT_ROOT": self.mount_root,
            "OSSFS_BIN": ossfs_bin,
            "LOG_LEVEL": "debug",
            "MOUNT_TIMEOUT": "10",
        }
        self.environment.update(environment or {})
        self.process = None
        self.session = requests_unixsocket.Session()

    @property
    def state_dir(self):
        return os.path.dirname(self.state_path)

    def start(self):
        environment = {key: value for key, value in os.environ.items()
                       if key not in ("AK_ID", "AK_SECRET") and not key.startswith("AWS_")}
        environment.update(self.environment)
        environment["PYTHONPATH"] = REPO
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "plugin"], stdout=log, stderr=subprocess.STDOUT,
                env=environment, cwd=self.folder, start_new_session=True,
            )
        wait_until(self._answers, 20, message="plugin socket")
        return self

    def _answers(self):
        if self.process.poll() is not None:
            raise RuntimeError(f"plugin exited with status {self.process.returncode}:\n{self.log_text()[-3000:]}")
        try:
            return self.post("Plugin.Activate")[0] == 200
        except Exception:
            return False

    def post(self, endpoint, body=None, raw=None, timeout=60):
        """POST to /<endpoint> like Docker does; return (HTTP status, JSON reply)."""
        if raw is not None:
            data = raw
        elif body is None:
            data = ""
        else:
            data = json.dumps(body)
        url = "http+unix://" + self.socket_path.replace("/", "%2F") + "/" + endpoint
        reply = self.session.post(url, data=data, headers=DOCKER_HEADERS, timeout=timeout)
        return reply.status_code, reply.json()

    def call(self, endpoint, **body):
        """POST /VolumeDriver.<endpoint> and return the reply; raise on an Err."""
        status, reply = self.post(f"VolumeDriver.{endpoint}", body)
        if reply.get("Err"):
            raise PluginCallError(reply["Err"])
        return reply

    def stop(self):
        """SIGTERM, as Docker and systemd stop the plugin."""
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()

    def kill(self):
        """SIGKILL the plugin's whole process group, as a crash would.

        ossfs daemons run in sessions of their own and survive this, as
        they do when a host service crashes.
        """
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def log_text(self):
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as file:
                return file.read()
        except FileNotFoundError:
            return ""


class PluginCallError(Exception):
    pass


def short_temporary_folder(prefix="ossfs-"):
    """Return a new folder with a short path: unix socket paths hold at most 107 bytes."""
    return tempfile.mkdtemp(prefix=prefix, dir="/tmp")
