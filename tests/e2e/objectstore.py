"""A local S3-compatible object store (moto's server) on 127.0.0.1."""

import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid

import boto3
import botocore.config

from .dockerd import stop_pid

START_TIMEOUT = 30
# moto accepts any key pair.
ACCESS_KEY_ID = "e2e-access-key"
SECRET_ACCESS_KEY = "e2e-secret-value-4c1d"


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]



def s3_client(url):
    """Return a boto3 S3 client for the moto server at ``url``, with path-style addressing."""
    session = boto3.session.Session(
        aws_access_key_id=ACCESS_KEY_ID,
        aws_secret_access_key=SECRET_ACCESS_KEY,
        region_name="us-east-1",
    )
    return session.client("s3", endpoint_url=url, config=botocore.config.Config(s3={"addressing_style": "path"}))

class ObjectStore:
    """moto's S3 server run as a child process, with a boto3 client for checks."""

    def __init__(self, log_path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self.process = None
        self._client = None

    def start(self):
        log = open(self.log_path, "ab")
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        finally:
            log.close()
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"moto server exited with status {self.process.returncode}")
            try:
                with urllib.request.urlopen(self.url + "/", timeout=2):
                    return
            except urllib.error.HTTPError:
                return
            except OSError:
                time.sleep(0.2)
        raise TimeoutError(f"moto server did not respond on {self.url} within {START_TIMEOUT} s")

    def stop(self):
        if self.process is not None:
            stop_pid(self.process.pid, timeout=10)
            self.process.wait(timeout=10)
            self.process = None

    @property
    def client(self):
        if self._client is None:
            self._client = s3_client(self.url)
        return self._client

    def create_bucket(self):
        """Create a bucket with a unique name and return the name."""
        name = f"e2e-{uuid.uuid4().hex[:12]}"
        self.client.create_bucket(Bucket=name)
        return name

    def read(self, bucket, key):
        return self.client.get_object(Bucket=bucket, Key=key)["Body"].read().decode()

    def keys(self, bucket):
        listing = self.client.list_objects_v2(Bucket=bucket)
        return sorted(item["Key"] for item in listing.get("Contents", []))

    def volume_options(self, bucket):
        """Return the plugin's volume options for ``bucket`` on this store."""
        return {
            "bucket": bucket,
            "url": self.url,
            "ak_id": ACCESS_KEY_ID,
            "ak_secret": SECRET_ACCESS_KEY,
        }

