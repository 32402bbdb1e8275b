"""Constants and helpers shared by the end-to-end fixtures and tests."""

import json
import os
import time
import uuid
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
PLUGIN_TARGETS = REPO_ROOT / "packaging" / "plugin-targets.mk"
# The e2e plugin folder is rebuilt each session, but the debootstrap cache
# beside it (build/cache) is kept between sessions.
PLUGIN_DIR = REPO_ROOT / "build" / "e2e-plugin"
PLUGIN_NAME = "ossfs"
PLUGIN_REF = f"{PLUGIN_NAME}:latest"
# Where packaging/build-rootfs --test-ossfs installs the s3fs wrapper.
TEST_OSSFS_IN_PLUGIN = "/usr/local/lib/ossfs-test/ossfs"
BUSYBOX_IMAGE = "e2e-busybox:latest"
# Docker finds a legacy plugin by its socket in this folder. The driver
# name is the socket's file name without ".sock".
LEGACY_PLUGIN_FOLDER = Path("/run/docker/plugins")
LEGACY_DRIVER = "ossfs-e2e-host"

IN_CI = os.environ.get("CI") == "true"


def require(condition, reason):
    """Skip the test when ``condition`` is false, or fail it under CI=true."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"end-to-end prerequisite missing under CI: {reason}", pytrace=False)
    pytest.skip(reason)


def unique_name(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def wait_until(predicate, timeout, interval=0.2, message="condition"):
    """Call ``predicate`` until it returns a true value, and return that value.

    Raises TimeoutError after ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{message} not reached within {timeout} s")
        time.sleep(interval)


def create_volume(dockerd, driver, name, options):
    """Run ``docker volume create -d driver -o key=value ... name``."""
    arguments = ["volume", "create", "--driver", driver]
    for key, value in options.items():
        arguments += ["--opt", f"{key}={value}"]
    dockerd.docker(*arguments, name)


def inspect_volume(dockerd, name):
    return json.loads(dockerd.docker("volume", "inspect", name).stdout)[0]


def run_container(dockerd, image, volume, script, name=None, detach=False, timeout=180):
    """Run ``sh -c script`` in a container with ``volume`` mounted at /data.

    A detached container is left running; otherwise the container is removed
    when it exits and its output is returned.
    """
    arguments = ["run", "--volume", f"{volume}:/data"]
    arguments += ["--detach"] if detach else ["--rm"]
    if name:
        arguments += ["--name", name]
    result = dockerd.docker(*arguments, image, "sh", "-c", script, timeout=timeout)
    return result.stdout


# A container command that runs until it is stopped: busybox sh as PID 1
# ignores SIGTERM unless a handler is set.
LONG_RUNNING = "trap 'exit 0' TERM; while true; do sleep 1; done"


class LogWatch:
    """Text that a log file gained since this object was made."""

    def __init__(self, path):
        self.path = Path(path)
        self.offset = self.path.stat().st_size if self.path.exists() else 0

    def text(self):
        with open(self.path, "rb") as log:
            log.seek(self.offset)
            return log.read().decode("utf-8", "replace")

    def plugin_lines(self, plugin_id):
        """Lines that dockerd logged for the plugin ``plugin_id``."""
        return [line for line in self.text().splitlines() if f"plugin={plugin_id}" in line]
