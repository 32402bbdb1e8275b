"""Starting the three servers under test, each in its own process group.

All three listen on unix sockets in one temporary folder and use the same
local moto S3 server from tests/harness.py.
"""

import os
import shutil
import signal
import socket
import subprocess
import sys

from tests import harness

from .client import Client

REPO = harness.REPO
ACCESS_KEY_ID = "bench-key-id"
SECRET_ACCESS_KEY = "bench-secret-key"


def ensure_rclone():
    """Install Debian's rclone when it is missing; return its version line."""
    if shutil.which("rclone") is None:
        print("bench: installing Debian's rclone package with apt-get", flush=True)
        environment = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=environment)
        subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", "rclone"],
                       check=True, env=environment)
    output = subprocess.run(["rclone", "version"], capture_output=True, text=True, check=True).stdout
    return output.splitlines()[0]


def process_tree_rss(pid):
    """Return the resident memory in bytes of ``pid`` and all its descendants."""
    total = 0
    pending = [pid]
    while pending:
        current = pending.pop()
        try:
            with open(f"/proc/{current}/status", encoding="ascii") as file:
                for line in file:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
            for task in os.listdir(f"/proc/{current}/task"):
                with open(f"/proc/{current}/task/{task}/children", encoding="ascii") as file:
                    pending += [int(child) for child in file.read().split()]
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total


def socket_accepts(path):
    """Return True when a unix socket at ``path`` accepts a connection."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(1.0)
        try:
            probe.connect(path)
            return True
        except OSError:
            return False


class Server:
    """A server under test: its name, process, client and volume options."""

    name = ""

    def __init__(self, folder):
        self.folder = folder
        self.socket_path = os.path.join(folder, f"{self.name}.sock")
        self.process = None
        self.client = Client(self.socket_path)

    @property
    def pid(self):
        return self.process.pid

    def rss(self):
        return process_tree_rss(self.pid)

    def volume_options(self, bucket):
        return {}

    def wait_ready(self, timeout=30):
        def answers():
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with status {self.process.returncode}")
            if not socket_accepts(self.socket_path):
                return False
            return self.client.timed_post("Plugin.Activate")[1] == 200

        harness.wait_until(answers, timeout, interval=0.01, message=f"{self.name} socket")

    def stop(self):
        self.client.close()
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)


class FloorServer(Server):
    name = "floor"

    def start(self):
        environment = dict(os.environ, PYTHONPATH=REPO)
        with open(os.path.join(self.folder, "floor.log"), "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "bench.floor", self.socket_path], stdout=log,
                stderr=subprocess.STDOUT, env=environment, cwd=REPO, start_new_session=True)
        self.wait_ready()
        return self


class PluginServer(Server):
    """The plugin as harness.PluginProcess runs it, at its default log level and limits."""

    name = "plugin"

    def __init__(self, folder, store, environment=None):
        super().__init__(folder)
        self.store = store
        self.harness = harness.PluginProcess(folder, environment={
            "SOCKET_PATH": self.socket_path, "LOG_LEVEL": "info", "MOUNT_TIMEOUT": "20",
            **(environment or {})})
        self.harness.socket_path = self.socket_path
        self.mount_root = self.harness.mount_root
        self.state_path = self.harness.state_path

    @property
    def process(self):
        return self.harness.process

    @process.setter
    def process(self, value):
        # harness.PluginProcess starts and owns the process; Server.__init__
        # only resets the attribute.
        pass

    def start(self):
        self.harness.start()
        self.wait_ready()
        return self

    def volume_options(self, bucket):
        return {"bucket": bucket, "url": self.store.url, "ak_id": ACCESS_KEY_ID,
                "ak_secret": SECRET_ACCESS_KEY}

    def stop(self):
        self.client.close()
        self.harness.stop()


class RcloneServer(Server):
    """``rclone serve docker`` with an S3 remote named ``moto`` on the local store."""

    name = "rclone"

    def __init__(self, folder, store):
        super().__init__(folder)
        self.store = store
        self.mount_root = os.path.join(folder, "rclone-mnt")
        self.cache_dir = os.path.join(folder, "rclone-cache")
        self.config_path = os.path.join(folder, "rclone.conf")

    def start(self):
        with open(self.config_path, "w", encoding="utf-8") as file:
            file.write("[moto]\ntype = s3\nprovider = Other\n"
                       f"endpoint = {self.store.url}\nforce_path_style = true\n"
                       f"access_key_id = {ACCESS_KEY_ID}\nsecret_access_key = {SECRET_ACCESS_KEY}\n")
        os.makedirs(self.mount_root, exist_ok=True)
        # The machine may export AWS_CA_BUNDLE, which rclone's S3 client
        # tries to load and fails on; the local store speaks plain HTTP.
        environment = {key: value for key, value in os.environ.items() if not key.startswith("AWS_")}
        with open(os.path.join(self.folder, "rclone.log"), "ab") as log:
            self.process = subprocess.Popen(
                ["rclone", "serve", "docker", "--socket-addr", self.socket_path,
                 "--base-dir", self.mount_root, "--config", self.config_path,
                 "--cache-dir", self.cache_dir],
                stdout=log, stderr=subprocess.STDOUT, env=environment, cwd=self.folder,
                start_new_session=True)
        self.wait_ready()
        return self

    def volume_options(self, bucket):
        return {"remote": f"moto:{bucket}"}


def start_object_store(folder):
    return harness.ObjectStore(folder).start()


def wait_for(condition, timeout, message):
    return harness.wait_until(condition, timeout, interval=0.01, message=message)

