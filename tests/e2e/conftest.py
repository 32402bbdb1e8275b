"""Fixtures for end-to-end tests against a private dockerd.

One daemon, one object store and one managed plugin serve the whole test
session, because building the plugin's rootfs and creating the plugin take
about a minute when the debootstrap cache is empty. Each test creates its own buckets, volumes and containers
with unique names and removes them at teardown, so tests may run in any
order. Tests that restart the plugin or the daemon leave both running again.

With CI=true a missing prerequisite (root, dockerd, /dev/fuse, ...) fails
the test, so a broken CI machine cannot pass by skipping everything.
"""

import dataclasses
import io
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from .dockerd import DOCKER, DOCKERD, Dockerd, stop_pid, unix_http_request, unmount_below
from .objectstore import ObjectStore
from .support import (
    BUSYBOX_IMAGE,
    LEGACY_DRIVER,
    LEGACY_PLUGIN_FOLDER,
    PLUGIN_DIR,
    PLUGIN_NAME,
    PLUGIN_REF,
    PLUGIN_TARGETS,
    REPO_ROOT,
    TEST_OSSFS_IN_PLUGIN,
    require,
    unique_name,
    wait_until,
)

@pytest.fixture(scope="session")
def e2e_host():
    """Check once that this machine can run a Docker daemon with FUSE."""
    require(os.geteuid() == 0, "must run as root to start dockerd")
    require(os.access(DOCKERD, os.X_OK), f"{DOCKERD} not found (Debian package docker.io)")
    require(os.access(DOCKER, os.X_OK), f"{DOCKER} not found (Debian package docker.io)")
    require(os.path.exists("/dev/fuse"), "/dev/fuse not found")
    require(shutil.which("debootstrap") is not None, "debootstrap not found")
    require(shutil.which("s3fs") is not None, "s3fs not found (the host service mounts with it)")
    require(shutil.which("make") is not None, "make not found")
    require(find_static_busybox() is not None, "static busybox not found (busybox-static)")


@pytest.fixture(scope="session")
def dockerd(e2e_host):
    daemon = Dockerd()
    try:
        daemon.start()
    except Exception:
        daemon.stop()
        daemon.cleanup()
        raise
    yield daemon
    daemon.stop()
    daemon.cleanup()


def find_static_busybox():
    for path in ("/bin/busybox", "/usr/bin/busybox"):
        if not os.access(path, os.X_OK):
            continue
        result = subprocess.run(["ldd", path], capture_output=True, text=True, check=False)
        if "not a dynamic executable" in result.stdout + result.stderr:
            return path
    return None


def busybox_image_tar():
    """Return a tar archive of a root filesystem with busybox and its applets."""
    busybox = find_static_busybox()
    applets = subprocess.run(
        [busybox, "--list"], capture_output=True, text=True, check=True
    ).stdout.split()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for folder, mode in (("bin", 0o755), ("tmp", 0o1777), ("etc", 0o755)):
            info = tarfile.TarInfo(folder)
            info.type, info.mode = tarfile.DIRTYPE, mode
            archive.addfile(info)
        archive.add(busybox, arcname="bin/busybox")
        for applet in applets:
            if applet == "busybox":
                continue
            info = tarfile.TarInfo(f"bin/{applet}")
            info.type, info.linkname, info.mode = tarfile.SYMTYPE, "busybox", 0o777
            archive.addfile(info)
    return buffer.getvalue()


@pytest.fixture(scope="session")
def busybox_image(dockerd):
    dockerd.docker(
        "import", "--change", "ENV PATH=/bin", "-", BUSYBOX_IMAGE, input=busybox_image_tar()
    )
    return BUSYBOX_IMAGE


@pytest.fixture(scope="session")
def object_store(tmp_path_factory):
    store = ObjectStore(tmp_path_factory.mktemp("moto") / "moto.log")
    store.start()
    yield store
    store.stop()


@pytest.fixture
def bucket(object_store):
    return object_store.create_bucket()


@dataclasses.dataclass
class ManagedPlugin:
    name: str
    ref: str
    id: str
    state_dir: Path
    dockerd: Dockerd

    @property
    def propagated_mount(self):
        """Host folder that shows the mounts made below the plugin's MOUNT_ROOT."""
        return self.dockerd.data_root / "plugins" / self.id / "propagated-mount"

    def restart(self, *settings):
        """Disable the plugin (forced), apply ``settings`` and enable it again."""
        self.dockerd.docker("plugin", "disable", "-f", self.ref)
        if settings:
            self.dockerd.docker("plugin", "set", self.ref, *settings)
        self.dockerd.docker("plugin", "enable", self.ref)


def run_make(dockerd, *arguments, timeout=900):
    """Run a target of packaging/plugin-targets.mk against ``dockerd``."""
    argv = [
        "make", "--no-print-directory", "-f", str(PLUGIN_TARGETS),
        f"DOCKER={DOCKER} --host {dockerd.host}", f"PLUGIN_NAME={PLUGIN_NAME}",
        f"PLUGIN_DIR={PLUGIN_DIR}", *arguments,
    ]
    result = subprocess.run(
        argv, capture_output=True, text=True, timeout=timeout, check=False,
        env=dockerd.client_environment(),
    )
    if result.returncode != 0:
        pytest.fail(
            f"{' '.join(arguments)} failed with exit status {result.returncode}:\n"
            f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}",
            pytrace=False,
        )
    return result


@pytest.fixture(scope="session")
def plugin(dockerd, object_store, tmp_path_factory):
    """The managed plugin, built with Debian packages only and enabled.

    OSSFS_BIN points at the s3fs wrapper, which the default "ossfs" does not
    find, so every successful mount proves that the setting took effect.
    """
    state_dir = tmp_path_factory.mktemp("plugin-state")
    run_make(dockerd, "plugin", "PLUGIN_ROOTFS=debootstrap")
    dockerd.docker(
        "plugin", "set", PLUGIN_REF,
        f"state.source={state_dir}", f"OSSFS_BIN={TEST_OSSFS_IN_PLUGIN}", "LOG_LEVEL=debug",
    )
    run_make(dockerd, "enable", timeout=120)
    plugin_id = dockerd.docker("plugin", "inspect", "--format", "{{.Id}}", PLUGIN_REF).stdout.strip()
    yield ManagedPlugin(PLUGIN_NAME, PLUGIN_REF, plugin_id, state_dir, dockerd)


@dataclasses.dataclass
class LegacyService:
    driver: str
    socket_path: Path
    mount_root: Path
    state_path: Path
    log_path: Path


@pytest.fixture(scope="session")
def legacy_service(dockerd, tmp_path_factory):
    """The package served on the host as a legacy plugin, like the systemd unit does."""
    root = tmp_path_factory.mktemp("legacy")
    service = LegacyService(
        driver=LEGACY_DRIVER,
        socket_path=LEGACY_PLUGIN_FOLDER / f"{LEGACY_DRIVER}.sock",
        mount_root=root / "mnt",
        state_path=root / "state" / "state.json",
        log_path=root / "service.log",
    )
    environment = dict(
        os.environ,
        SOCKET_PATH=str(service.socket_path),
        STATE_PATH=str(service.state_path),
        MOUNT_ROOT=str(service.mount_root),
        OSSFS_BIN=str(REPO_ROOT / "tests" / "bin" / "ossfs"),
        LOG_LEVEL="debug",
        PYTHONPATH=str(REPO_ROOT),
    )
    with open(service.log_path, "ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "plugin"], cwd=REPO_ROOT, env=environment,
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
        )

    def answers():
        if process.poll() is not None:
            raise RuntimeError(
                f"host service exited with status {process.returncode}:\n"
                f"{service.log_path.read_text(errors='replace')[-3000:]}"
            )
        try:
            status, _, _ = unix_http_request(
                str(service.socket_path), "POST", "/Plugin.Activate", body="", timeout=5
            )
        except OSError:
            return False
        return status == 200

    try:
        wait_until(answers, timeout=30, message="host service socket")
        yield service
    finally:
        stop_pid(process.pid, timeout=15)
        process.wait(timeout=10)
        unmount_below(service.mount_root)
        service.socket_path.unlink(missing_ok=True)


class DockerResources:
    """Names of containers and volumes a test made, removed at teardown."""

    def __init__(self, dockerd):
        self.dockerd = dockerd
        self.containers = []
        self.volumes = []

    def container_name(self):
        name = unique_name("c")
        self.containers.append(name)
        return name

    def volume_name(self):
        name = unique_name("v")
        self.volumes.append(name)
        return name

    def remove_all(self):
        for name in self.containers:
            self.dockerd.docker("rm", "-f", name, check=False)
        for name in self.volumes:
            self.dockerd.docker("volume", "rm", "-f", name, check=False)


@pytest.fixture
def resources(dockerd):
    tracked = DockerResources(dockerd)
    yield tracked
    tracked.remove_all()
