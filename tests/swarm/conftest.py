"""A Docker Swarm of three dockerd nodes on this machine, for the tests in this folder.

Each node runs in its own network, UTS and mount namespace (see
network.py and cluster.py). It has the busybox test image and the managed
plugin, built from the same rootfs as in the end-to-end tests. The
plugin's ossfs is the s3fs test wrapper, which reaches moto in the hub
namespace. The plugin gets its keys from its AK_ID and AK_SECRET settings,
so services give only bucket and url.

The swarm serves every test in this folder and is taken down after the
last one. Teardown fails the run if it leaves a process, a namespace, a
folder or a FUSE mount behind. With CI=true a missing prerequisite fails
the tests instead of skipping them.
"""

import dataclasses
import os
import shutil
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.e2e.conftest import busybox_image_tar, find_static_busybox
from tests.e2e.dockerd import DOCKER, DOCKERD, mounts_below, stop_pid
from tests.e2e.objectstore import ACCESS_KEY_ID, SECRET_ACCESS_KEY
from tests.e2e.support import (
    BUSYBOX_IMAGE,
    PLUGIN_REF,
    PLUGIN_TARGETS,
    TEST_OSSFS_IN_PLUGIN,
    require,
)

from .cluster import SWARM_PORT, SwarmNode, wait_for
from .network import OVERLAY_POOL, POOL_MASK_LENGTH, SwarmNetwork
from .objectstore import HubObjectStore

NODE_COUNT = 3
JOIN_TIMEOUT = 60
LEAVE_TIMEOUT = 30


@pytest.fixture(scope="package")
def swarm_host():
    """Check once that this machine can run the swarm nodes."""
    require(os.geteuid() == 0, "must run as root to create namespaces and start dockerd")
    require(os.access(DOCKERD, os.X_OK), f"{DOCKERD} not found (Debian package docker.io)")
    require(os.access(DOCKER, os.X_OK), f"{DOCKER} not found (Debian package docker.io)")
    require(os.path.exists("/dev/fuse"), "/dev/fuse not found")
    require(shutil.which("ip") is not None, "ip not found (Debian package iproute2)")
    for program in ("nsenter", "unshare", "mount"):
        require(shutil.which(program) is not None,
                f"{program} not found (Debian package util-linux)")
    require(shutil.which("hostname") is not None, "hostname not found (Debian package hostname)")
    require(shutil.which("debootstrap") is not None, "debootstrap not found")
    require(shutil.which("make") is not None, "make not found")
    require(find_static_busybox() is not None, "static busybox not found (busybox-static)")
    require(os.path.isdir("/run/docker/plugins"),
            "/run/docker/plugins not found; each node mounts its own folder over it")


@dataclasses.dataclass
class Swarm:
    manager: SwarmNode
    workers: list
    store: HubObjectStore
    network: SwarmNetwork

    @property
    def nodes(self):
        return [self.manager, *self.workers]

    def node_named(self, hostname):
        return next(node for node in self.nodes if node.hostname == hostname)


def build_plugin_folder(folder):
    """Build config.json and rootfs/ of the managed plugin in ``folder``.

    The folder is private to this run, so a concurrent end-to-end run that
    rebuilds its own plugin folder cannot change it. The debootstrap cache
    in build/cache is shared.
    """
    argv = [
        "make", "--no-print-directory", "-f", str(PLUGIN_TARGETS),
        "rootfs", "PLUGIN_ROOTFS=debootstrap", f"PLUGIN_DIR={folder}",
    ]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=900, check=False)
    if result.returncode != 0:
        pytest.fail(
            f"make rootfs failed with exit status {result.returncode}:\n"
            f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}",
            pytrace=False,
        )


def install_plugin(node, plugin_folder):
    """Create, configure and enable the managed plugin on ``node``, as the README shows."""
    node.docker("plugin", "create", PLUGIN_REF, str(plugin_folder))
    node.docker(
        "plugin", "set", PLUGIN_REF,
        f"state.source={node.plugin_state}",
        f"OSSFS_BIN={TEST_OSSFS_IN_PLUGIN}",
        f"AK_ID={ACCESS_KEY_ID}",
        f"AK_SECRET={SECRET_ACCESS_KEY}",
        "LOG_LEVEL=debug",
    )
    node.docker("plugin", "enable", PLUGIN_REF)


def load_busybox_image(nodes, folder):
    """Import the busybox image on the first node and copy it to the others."""
    first, *others = nodes
    first.docker("import", "--change", "ENV PATH=/bin", "-", BUSYBOX_IMAGE,
                 input=busybox_image_tar())
    archive = folder / "busybox.tar"
    first.docker("save", "--output", str(archive), BUSYBOX_IMAGE)
    for node in others:
        node.docker("load", "--input", str(archive))
    archive.unlink()


def form_swarm(manager, workers):
    """Initialize the swarm on ``manager`` and join ``workers`` to it."""
    manager.docker(
        "swarm", "init",
        "--advertise-addr", manager.address,
        "--listen-addr", f"{manager.address}:{SWARM_PORT}",
        "--default-addr-pool", OVERLAY_POOL,
        "--default-addr-pool-mask-length", str(POOL_MASK_LENGTH),
    )
    token = manager.docker("swarm", "join-token", "--quiet", "worker").stdout.strip()
    for worker in workers:
        worker.docker(
            "swarm", "join", "--token", token,
            "--advertise-addr", worker.address,
            "--listen-addr", f"{worker.address}:{SWARM_PORT}",
            f"{manager.address}:{SWARM_PORT}",
        )

    def ready_nodes():
        output = manager.docker("node", "ls", "--format", "{{.Hostname}} {{.Status}}").stdout
        return sorted(line.split()[0] for line in output.splitlines() if line.endswith(" Ready"))

    expected = sorted(node.hostname for node in [manager, *workers])
    wait_for(ready_nodes, lambda ready: ready == expected, timeout=JOIN_TIMEOUT,
             message="every node Ready in docker node ls")


def in_parallel(function, items):
    """Call ``function`` on every item at once and return the results in order."""
    with ThreadPoolExecutor(max_workers=len(items)) as pool:
        return list(pool.map(function, items))


class Teardown:
    """Steps that take the swarm down. A failed step is recorded, and the next ones still run."""

    def __init__(self):
        self.problems = []

    def attempt(self, description, function, *arguments):
        try:
            function(*arguments)
        except Exception as error:  # noqa: BLE001 - every step must run
            self.problems.append(f"{description}: {error}")


def leave_swarm(swarm):
    """Make the workers leave, then the manager. Raise if a node is still in a swarm."""
    for worker in swarm.workers:
        worker.docker("swarm", "leave", check=False, timeout=LEAVE_TIMEOUT)
    swarm.manager.docker("swarm", "leave", "--force", check=False, timeout=LEAVE_TIMEOUT)
    states = {node.hostname: node.swarm_state() for node in swarm.nodes if node.process}
    active = {hostname: state for hostname, state in states.items() if state != "inactive"}
    if active:
        raise RuntimeError(f"nodes still in the swarm: {active}")


def check_no_fuse_mounts(swarm):
    """Raise if a node still has an ossfs mount, which the tests' services must release."""
    mounted = {node.hostname: node.fuse_devices() for node in swarm.nodes if node.process}
    mounted = {hostname: devices for hostname, devices in mounted.items() if devices}
    if mounted:
        raise RuntimeError(f"FUSE mounts left on nodes (device numbers): {mounted}")


def check_nothing_left(swarm, root, teardown):
    """Record what the nodes, their namespaces or their folders left behind."""
    remaining = swarm.network.remaining_processes()
    if remaining:
        teardown.problems.append(f"processes still in the swarm namespaces: {remaining}")
        # Every process in these namespaces was started by this run's
        # daemons or moto, so it is stopped here by its PID.
        for pids in remaining.values():
            for pid in pids:
                stop_pid(pid, timeout=5)
    leftover_mounts = mounts_below(root)
    if leftover_mounts:
        teardown.problems.append(f"mounts left below {root}: {leftover_mounts}")


def take_down(swarm, nodes, root):
    """Take the swarm down and return a list of what failed or was left behind."""
    teardown = Teardown()
    teardown.attempt("check for FUSE mounts", check_no_fuse_mounts, swarm)
    teardown.attempt("leave the swarm", leave_swarm, swarm)
    teardown.attempt("stop the nodes", in_parallel, lambda node: node.stop(), nodes)
    teardown.attempt("stop moto", swarm.store.stop)
    teardown.attempt("check for leftovers", check_nothing_left, swarm, root, teardown)
    teardown.problems.extend(swarm.network.delete())
    if swarm.network.created:
        teardown.problems.append(f"namespaces not deleted: {swarm.network.created}")
    teardown.attempt("remove the node folders", in_parallel, lambda node: node.cleanup(), nodes)
    teardown.attempt("remove the run folder", shutil.rmtree, root)
    return teardown.problems


@pytest.fixture(scope="package")
def swarm(swarm_host):
    root = Path(tempfile.mkdtemp(prefix="sw", dir="/tmp"))
    network = SwarmNetwork(NODE_COUNT)
    store = HubObjectStore(network.path(network.hub), root / "moto.log")
    nodes = [
        SwarmNode(root / str(index), f"swarm-node-{index}", network.path(namespace), address)
        for index, (namespace, address) in enumerate(
            zip(network.nodes, network.node_addresses), start=1
        )
    ]
    built = Swarm(nodes[0], nodes[1:], store, network)
    try:
        plugin_folder = root / "plugin"
        build_plugin_folder(plugin_folder)
        network.create()
        store.start()
        in_parallel(lambda node: node.start(), nodes)
        load_busybox_image(nodes, root)
        in_parallel(lambda node: install_plugin(node, plugin_folder), nodes)
        form_swarm(built.manager, built.workers)
    except BaseException as error:
        for problem in take_down(built, nodes, root):
            error.add_note(f"teardown: {problem}")
        raise

    yield built

    problems = take_down(built, nodes, root)
    if problems:
        pytest.fail("swarm teardown left things behind:\n" + "\n".join(problems), pytrace=False)
