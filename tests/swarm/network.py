"""Network namespaces that connect the swarm nodes and the object store.

One hub namespace contains a bridge. Each node namespace has one veth whose
peer is a port of that bridge. Every interface is created inside the
namespaces (``ip link add ... netns``), so the host's own network never
gets an interface, an address or a route. The namespaces have no default
route, so no packet can leave them.

The addresses come from 198.18.0.0/15, which RFC 2544 reserves for network
benchmark tests, because they exist only inside these namespaces.
"""

import ctypes
import os
import subprocess
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

NETNS_FOLDER = Path("/run/netns")
SUBNET_PREFIX = "198.18.0"
PREFIX_LENGTH = 24
HUB_ADDRESS = f"{SUBNET_PREFIX}.1"
# Address pool for the swarm's overlay networks and each daemon's local
# networks (docker_gwbridge), so that they stay out of the RFC 1918 ranges
# that Docker picks by default.
OVERLAY_POOL = "198.19.0.0/17"
LOCAL_POOL = "198.19.128.0/17"
POOL_MASK_LENGTH = 24

# From <sched.h>: setns() with this flag changes the network namespace.
CLONE_NEWNET = 0x40000000


class NetworkError(RuntimeError):
    """An ``ip`` command that exited with a non-zero status."""


def ip(*arguments):
    result = subprocess.run(["ip", *arguments], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise NetworkError(f"ip {' '.join(arguments)} failed: {result.stderr.strip()}")
    return result.stdout


def namespace_inode(path):
    """Return the inode that identifies the network namespace at ``path``."""
    return os.stat(path).st_ino


def processes_in_namespace(inode):
    """Return the PIDs whose network namespace has the inode ``inode``."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if os.stat(f"/proc/{entry}/ns/net").st_ino == inode:
                pids.append(int(entry))
        except OSError:
            continue
    return pids


class SwarmNetwork:
    """The hub namespace with its bridge, and one namespace per node.

    Names carry a random suffix, so runs on the same machine do not collide.
    Interface names only need to be unique inside their namespace.
    """

    def __init__(self, node_count):
        suffix = uuid.uuid4().hex[:6]
        self.hub = f"ossfs-swarm-{suffix}-hub"
        self.nodes = [f"ossfs-swarm-{suffix}-n{index}" for index in range(1, node_count + 1)]
        self.node_addresses = [
            f"{SUBNET_PREFIX}.{10 + index}" for index in range(1, node_count + 1)
        ]
        self.created = []

    def path(self, namespace):
        return NETNS_FOLDER / namespace

    def create(self):
        """Create the namespaces, the bridge and the veth pairs, and bring them up."""
        self._add_namespace(self.hub)
        ip("-n", self.hub, "link", "set", "lo", "up")
        ip("-n", self.hub, "link", "add", "br0", "type", "bridge")
        ip("-n", self.hub, "addr", "add", f"{HUB_ADDRESS}/{PREFIX_LENGTH}", "dev", "br0")
        ip("-n", self.hub, "link", "set", "br0", "up")
        for index, (node, address) in enumerate(zip(self.nodes, self.node_addresses), start=1):
            port = f"n{index}"
            self._add_namespace(node)
            ip("-n", node, "link", "set", "lo", "up")
            ip("-n", node, "link", "add", "eth0", "type", "veth", "peer", "name", port,
               "netns", self.hub)
            ip("-n", node, "addr", "add", f"{address}/{PREFIX_LENGTH}", "dev", "eth0")
            ip("-n", node, "link", "set", "eth0", "up")
            ip("-n", self.hub, "link", "set", port, "master", "br0")
            ip("-n", self.hub, "link", "set", port, "up")

    def _add_namespace(self, namespace):
        ip("netns", "add", namespace)
        self.created.append(namespace)

    def inodes(self):
        """Return the namespace inode of each namespace created so far, by name."""
        return {namespace: namespace_inode(self.path(namespace)) for namespace in self.created}

    def remaining_processes(self):
        """Return the PIDs still running in any of the namespaces, by namespace name."""
        found = {}
        for namespace, inode in self.inodes().items():
            pids = processes_in_namespace(inode)
            if pids:
                found[namespace] = pids
        return found

    def delete(self):
        """Delete the namespaces and return the errors. The kernel removes the veths with them."""
        errors = []
        for namespace in reversed(self.created):
            try:
                ip("netns", "del", namespace)
            except NetworkError as error:
                errors.append(str(error))
        self.created = [name for name in self.created if self.path(name).exists()]
        return errors


def _enter_namespace(path):
    libc = ctypes.CDLL(None, use_errno=True)
    descriptor = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        if libc.setns(descriptor, CLONE_NEWNET) != 0:
            error = ctypes.get_errno()
            raise OSError(error, f"setns({path}) failed: {os.strerror(error)}")
    finally:
        os.close(descriptor)


class NamespaceWorker:
    """One thread that has joined a network namespace, to run calls there.

    setns() moves only the calling thread, and a socket stays in the
    namespace it was created in, so clients called through ``run`` (boto3,
    urllib) connect from inside the namespace while the rest of the test
    process stays in the host's.
    """

    def __init__(self, path):
        self._executor = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="netns", initializer=_enter_namespace,
            initargs=(str(path),),
        )

    def run(self, function, *arguments, timeout=60):
        return self._executor.submit(function, *arguments).result(timeout)

    def close(self):
        self._executor.shutdown(wait=True)
