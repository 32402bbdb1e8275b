"""Docker daemons that act as swarm nodes, each in its own namespaces.

Each node is a Dockerd (see tests/e2e/dockerd.py) started through
``nsenter --net`` and ``unshare --uts --mount``. ``ip netns exec`` is not
used because it remounts /sys, and dockerd 20.10 started through it stops
with "Devices cgroup isn't mounted". The node
gets its own hostname, which becomes its swarm node name, and a private
mount namespace in which a per-node folder is bind-mounted on
/run/docker/plugins. So a node finds no legacy plugin socket of the host
or of another node, and the FUSE mounts of its plugin stay inside its
mount namespace.
"""

import json
import time

from tests.e2e.dockerd import Dockerd

from .network import LOCAL_POOL, POOL_MASK_LENGTH, namespace_inode, processes_in_namespace

LEGACY_PLUGIN_FOLDER = "/run/docker/plugins"
SWARM_PORT = 2377

# Runs as the node's first process: set the hostname, hide the host's
# legacy plugin folder, then exec dockerd so that its PID stays the one
# that the test started. $0 is the hostname and $1 the plugin folder.
NODE_SETUP = (
    'hostname "$0" && mount --bind "$1" ' + LEGACY_PLUGIN_FOLDER + " && "
    # With this set, dockerd neither pins a service's image to a registry
    # digest nor pulls it for a task, and no registry is reachable here.
    # moby's own integration tests start their daemons with it too.
    "DOCKER_SERVICE_PREFER_OFFLINE_IMAGE=1 && export DOCKER_SERVICE_PREFER_OFFLINE_IMAGE && "
    'shift && exec "$@"'
)


class SwarmNode(Dockerd):
    """A dockerd in the network namespace ``netns`` with the hostname ``hostname``."""

    def __init__(self, root, hostname, netns_path, address):
        super().__init__(root)
        self.hostname = hostname
        self.netns_path = netns_path
        self.address = address
        self.plugin_folder = self.root / "p"
        self.plugin_state = self.root / "s"

    def start(self, **keywords):
        self.root.mkdir(parents=True, exist_ok=True)
        self.plugin_folder.mkdir(exist_ok=True)
        self.plugin_state.mkdir(exist_ok=True)
        super().start(**keywords)

    def config(self):
        settings = super().config()
        settings["default-address-pools"] = [{"base": LOCAL_POOL, "size": POOL_MASK_LENGTH}]
        return settings

    def command(self):
        return [
            "nsenter", f"--net={self.netns_path}", "--",
            "unshare", "--uts", "--mount", "--propagation", "private", "--",
            "sh", "-c", NODE_SETUP, self.hostname, str(self.plugin_folder),
            *super().command(),
        ]

    def swarm_state(self):
        return self.docker("info", "--format", "{{.Swarm.LocalNodeState}}").stdout.strip()

    def fuse_devices(self):
        """Return the device numbers of the FUSE filesystems mounted below the node's folder.

        The node's mount namespace is read through /proc/PID/mountinfo of its
        dockerd, because the host's mount table does not show it. One ossfs
        mount shows up at more than one mount point (the plugin's propagated
        mount is shared), but always with the same device number. Mounts
        outside the node's folder are copies of the host's, made when the
        namespace was created.
        """
        devices = set()
        with open(f"/proc/{self.process.pid}/mountinfo", encoding="utf-8") as mountinfo:
            for line in mountinfo:
                fields = line.split()
                filesystem = fields[fields.index("-") + 1]
                mount_point = fields[4].encode().decode("unicode_escape")
                if filesystem.startswith("fuse") and mount_point.startswith(f"{self.root}/"):
                    devices.add(fields[2])
        return devices

    def ossfs_processes(self):
        """Return the PIDs of ossfs processes (the s3fs test wrapper execs s3fs) on this node."""
        pids = []
        for pid in processes_in_namespace(namespace_inode(self.netns_path)):
            try:
                with open(f"/proc/{pid}/comm", encoding="utf-8") as comm:
                    if comm.read().strip() == "s3fs":
                        pids.append(pid)
            except OSError:
                continue
        return pids

    def volume_details(self, name):
        """Return ``docker volume inspect`` of ``name``. Its Status comes from the plugin's Get."""
        return json.loads(self.docker("volume", "inspect", name).stdout)[0]

    def mount_ids(self, name):
        return self.volume_details(name)["Status"]["mount_ids"]

    def task_containers(self, service, stopped=False):
        """Return the IDs of this node's containers of ``service``: running ones, or all."""
        arguments = ["ps", "--quiet", "--filter", f"label=com.docker.swarm.service.name={service}"]
        if stopped:
            arguments.append("--all")
        return self.docker(*arguments).stdout.split()


def wait_for(probe, accept, timeout, interval=0.3, message="condition"):
    """Call ``probe`` until ``accept`` is true for its value, and return that value.

    Unlike tests.e2e.support.wait_until, a timeout error shows the last
    value, so a failed wait shows what the swarm looked like.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if accept(value):
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{message} not reached within {timeout} s; last value: {value!r}")
        time.sleep(interval)
