"""Fixtures for the ossfs-volume command: running it, and an object store that checks keys."""

import json
import os
import shutil
import subprocess
import sys

import boto3
import pytest
import requests

from tests import harness

# Variables the command reads; the tests set them explicitly or not at all.
ADMIN_VARIABLES = ("SOCKET_PATH", "STATE_PATH", "MOUNT_ROOT", "OSSFS_BIN", "FUSERMOUNT_BIN", "CREDENTIALS_FILE",
                   "MOUNT_TIMEOUT", "AK_ID", "AK_SECRET")
AUTH_BUCKET = "auth-bucket"
AUTH_USER = "ossfs-check"
ALLOW_ALL_POLICY = {"Version": "2012-10-17",
                    "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}


def run_admin(*arguments, env=None, timeout=120):
    """Run ``python -m plugin.admin ARGUMENTS`` and return the CompletedProcess (text)."""
    environment = {key: value for key, value in os.environ.items() if key not in ADMIN_VARIABLES}
    environment["PYTHONPATH"] = harness.REPO
    environment.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "plugin.admin", *arguments], capture_output=True, text=True,
        env=environment, cwd=harness.REPO, stdin=subprocess.DEVNULL, timeout=timeout,
    )


def plugin_environment(plugin):
    """Environment that points the command at ``plugin``, as the plugin's own settings do."""
    return {"SOCKET_PATH": plugin.socket_path, "STATE_PATH": plugin.state_path,
            "OSSFS_BIN": harness.OSSFS_WRAPPER}


class AuthStore:
    """A moto S3 server that accepts only the keys of one IAM user."""

    def __init__(self, store, key_id, secret):
        self.store = store
        self.url = store.url
        self.key_id = key_id
        self.secret = secret

    def client(self, key_id, secret):
        return boto3.client("s3", endpoint_url=self.url, region_name="us-east-1",
                            aws_access_key_id=key_id, aws_secret_access_key=secret)


@pytest.fixture(scope="session")
def auth_store():
    """A second moto server with authentication on, and one IAM user allowed everything.

    With INITIAL_NO_AUTH_ACTION_COUNT=0 moto checks the keys of every
    request, IAM calls included, so no key could ever be created. A POST of
    "3" to /moto-api/reset-auth lets the next three requests through
    unchecked: the user, its access key and its policy. Every request after
    them is checked.
    """
    folder = harness.short_temporary_folder("ossfs-s3auth-")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("INITIAL_NO_AUTH_ACTION_COUNT", "0")
        store = harness.ObjectStore(folder).start()
    try:
        requests.post(f"{store.url}/moto-api/reset-auth", data=b"3", timeout=10).raise_for_status()
        iam = boto3.client("iam", endpoint_url=store.url, region_name="us-east-1",
                           aws_access_key_id="unchecked", aws_secret_access_key="unchecked")
        iam.create_user(UserName=AUTH_USER)
        key = iam.create_access_key(UserName=AUTH_USER)["AccessKey"]
        iam.put_user_policy(UserName=AUTH_USER, PolicyName="allow-all",
                            PolicyDocument=json.dumps(ALLOW_ALL_POLICY))
        auth = AuthStore(store, key["AccessKeyId"], key["SecretAccessKey"])
        auth.client(auth.key_id, auth.secret).create_bucket(Bucket=AUTH_BUCKET)
        yield auth
    finally:
        store.stop()
        shutil.rmtree(folder, ignore_errors=True)
