"""moto's S3 server inside the hub namespace, where every swarm node reaches it."""

import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid

from tests.e2e.dockerd import stop_pid
from tests.e2e.objectstore import s3_client

from .network import HUB_ADDRESS, NamespaceWorker

START_TIMEOUT = 30
# The hub namespace has no other servers, so a fixed port cannot collide.
PORT = 9000


class HubObjectStore:
    """moto's server bound to the hub bridge address, with a boto3 client for checks.

    The test process reaches the server through a NamespaceWorker thread,
    because the host's network has no route into the namespaces.
    """

    def __init__(self, netns_path, log_path):
        self.netns_path = netns_path
        self.url = f"http://{HUB_ADDRESS}:{PORT}"
        self.log_path = log_path
        self.process = None
        self.worker = None
        self._client = None

    def start(self):
        self.worker = NamespaceWorker(self.netns_path)
        argv = [
            "nsenter", f"--net={self.netns_path}", "--",
            sys.executable, "-m", "moto.server", "-H", HUB_ADDRESS, "-p", str(PORT),
        ]
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"moto server exited with status {self.process.returncode}")
            if self.worker.run(self._responds):
                return
            time.sleep(0.2)
        raise TimeoutError(f"moto server did not respond on {self.url} within {START_TIMEOUT} s")

    def _responds(self):
        try:
            with urllib.request.urlopen(self.url + "/", timeout=2):
                return True
        except urllib.error.HTTPError:
            return True
        except OSError:
            return False

    def stop(self):
        # nsenter execs moto without forking, so the PID is moto's.
        if self.process is not None:
            stop_pid(self.process.pid, timeout=10)
            self.process.wait(timeout=10)
            self.process = None
        if self.worker is not None:
            self.worker.close()
            self.worker = None

    def _s3(self):
        if self._client is None:
            self._client = s3_client(self.url)
        return self._client

    def create_bucket(self):
        """Create a bucket with a unique name and return the name."""
        name = f"swarm-{uuid.uuid4().hex[:12]}"
        self.worker.run(lambda: self._s3().create_bucket(Bucket=name))
        return name

    def keys(self, bucket):
        def list_keys():
            listing = self._s3().list_objects_v2(Bucket=bucket)
            return sorted(item["Key"] for item in listing.get("Contents", []))

        return self.worker.run(list_keys)

    def read(self, bucket, key):
        def get():
            return self._s3().get_object(Bucket=bucket, Key=key)["Body"].read().decode()

        return self.worker.run(get)
