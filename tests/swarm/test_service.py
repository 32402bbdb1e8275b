"""A swarm service whose tasks on three nodes share one bucket through the plugin.

The service gives the volume in its ``--mount`` with ``volume-opt`` values
for bucket and url only, and each node's plugin uses its own AK_ID and
AK_SECRET settings. Every node creates the volume from those options and
mounts it with its own ossfs, so files written on one node reach the
others only through the bucket, once their ossfs stops serving what it
cached before.
"""

import functools
import json
import time
import uuid

import pytest

from tests.e2e.support import BUSYBOX_IMAGE, LONG_RUNNING, unique_name

from .cluster import wait_for

VOLUME = "shared"
COPY_CHECK_VOLUME = "copy-check"
MISSING_TARGET_VOLUME = "missing-target"
OPTIONS_CHECK_VOLUME = "options-check"
ALL_VOLUMES = (VOLUME, COPY_CHECK_VOLUME, MISSING_TARGET_VOLUME, OPTIONS_CHECK_VOLUME)
# Each task writes a file named after itself that contains its node's name.
TASK_SCRIPT = f'echo "$NODE" > "/data/$TASK.txt"; {LONG_RUNNING}'
# Seconds that a change on one node may take to show on another node,
# through the bucket and ossfs's metadata cache.
CACHE_TIMEOUT = 30
# Seconds that the swarm may take to start, move or stop tasks.
SCHEDULE_TIMEOUT = 60


def volume_mount(bucket, url, source=VOLUME, target="/data", nocopy=True):
    """Return a ``--mount`` value for a plugin volume with only bucket and url as options."""
    fields = [
        "type=volume", f"source={source}", f"target={target}", "volume-driver=ossfs",
        f"volume-opt=bucket={bucket}", f"volume-opt=url={url}",
    ]
    if nocopy:
        fields.insert(4, "volume-nocopy=true")
    return ",".join(fields)


def create_service(manager, name, mount, replicas=3, max_per_node=1, command=TASK_SCRIPT):
    manager.docker(
        "service", "create", "--detach", "--no-resolve-image", "--name", name,
        "--replicas", str(replicas), "--replicas-max-per-node", str(max_per_node),
        "--mount", mount,
        "--env", "NODE={{.Node.Hostname}}", "--env", "TASK={{.Task.Name}}",
        BUSYBOX_IMAGE, "sh", "-c", command,
    )


def containers_by_node(swarm, service):
    """Return the running task containers of ``service`` on each node, by hostname."""
    return {node.hostname: node.task_containers(service) for node in swarm.nodes}


def task_counts(placement):
    return {hostname: len(containers) for hostname, containers in placement.items()}


def run_in(node, container, script):
    return node.docker("exec", container, "sh", "-c", script).stdout


def read_in(node, container, path):
    """Return the content of ``path`` in the container, or None while it is missing."""
    result = node.docker("exec", container, "cat", path, check=False)
    return result.stdout if result.returncode == 0 else None


def task_files(swarm, bucket, service):
    """Return the keys of the files that the tasks of ``service`` wrote (<task name>.txt)."""
    return [key for key in swarm.store.keys(bucket) if key.startswith(f"{service}.")]


def wait_until_unmounted(node, volume=VOLUME):
    """Wait until the node's plugin has no mount ID for ``volume`` and no ossfs mount is left."""
    def state():
        return {
            "mount_ids": node.mount_ids(volume),
            "fuse_devices": sorted(node.fuse_devices()),
            "ossfs_processes": node.ossfs_processes(),
        }

    return wait_for(state, lambda found: not any(found.values()), timeout=SCHEDULE_TIMEOUT,
                    message=f"volume {volume} unmounted on {node.hostname}")


@pytest.fixture
def service(swarm):
    """Yield a service name and a fresh bucket, then remove the service and its volumes.

    Each test uses volume names of its own all the same: a node that still
    had a volume of that name would reuse it with its old options.
    """
    name = unique_name("share")
    bucket = swarm.store.create_bucket()
    yield name, bucket
    swarm.manager.docker("service", "rm", name, check=False)
    for node in swarm.nodes:
        wait_for(lambda node=node: node.task_containers(name, stopped=True),
                 lambda found: not found, timeout=SCHEDULE_TIMEOUT,
                 message=f"no container of {name} on {node.hostname}")
        for volume in ALL_VOLUMES:
            node.docker("volume", "rm", volume, check=False)


def test_service_tasks_share_bucket(swarm, service):
    name, bucket = service
    manager = swarm.manager
    hostnames = sorted(node.hostname for node in swarm.nodes)
    timings = {}

    # One task per node, each with the volume mounted by its own node's plugin.
    create_service(manager, name, volume_mount(bucket, swarm.store.url))
    placement = wait_for(
        lambda: containers_by_node(swarm, name),
        lambda found: sorted(task_counts(found).values()) == [1, 1, 1],
        timeout=SCHEDULE_TIMEOUT, message="one running task per node",
    )

    keys = wait_for(lambda: task_files(swarm, bucket, name), lambda found: len(found) == 3,
                    timeout=CACHE_TIMEOUT, message="a file from every task in the bucket")
    writers = sorted(swarm.store.read(bucket, key).strip() for key in keys)
    assert writers == hostnames

    # The service spec keeps the volume options, and every node creates its
    # volume from them. So keys belong in the plugin settings, not in here.
    spec = json.loads(manager.docker("service", "inspect", name).stdout)[0]["Spec"]
    mount = spec["TaskTemplate"]["ContainerSpec"]["Mounts"][0]
    assert mount["VolumeOptions"]["DriverConfig"]["Options"] == {
        "bucket": bucket, "url": swarm.store.url,
    }
    for node in swarm.nodes:
        details = node.volume_details(VOLUME)
        assert details["Driver"] == "ossfs:latest"
        assert details["Options"] == {"bucket": bucket, "url": swarm.store.url}
        assert details["Scope"] == "local"
        assert details["Status"]["credentials"] == "plugin settings"
        assert len(details["Status"]["mount_ids"]) == 1
        assert len(node.fuse_devices()) == 1
        assert len(node.ossfs_processes()) == 1

    # A token written in the manager's task shows in the tasks of the other
    # nodes. Then a longer token replaces it, which the other nodes see only
    # once their ossfs stops using the metadata it cached for the first one.
    writer = swarm.manager
    first_token = uuid.uuid4().hex
    token = first_token * 2
    for step, text in (("new", first_token), ("replaced", token)):
        run_in(writer, placement[writer.hostname][0], f"echo {text} > /data/token.txt")
        started = time.monotonic()
        for reader in swarm.workers:
            read_token = functools.partial(
                read_in, reader, placement[reader.hostname][0], "/data/token.txt"
            )
            wait_for(read_token, lambda found, text=text: found == f"{text}\n",
                     timeout=CACHE_TIMEOUT,
                     message=f"{step} token in the task on {reader.hostname}")
        timings[f"{step} token seen on both other nodes"] = time.monotonic() - started

    # Drain one node. With at most one task per node, its task cannot
    # move yet, and the node's plugin releases the mount.
    drained = swarm.workers[-1]
    started = time.monotonic()
    manager.docker("node", "update", "--availability", "drain", drained.hostname)
    wait_for(lambda: drained.task_containers(name), lambda found: not found,
             timeout=SCHEDULE_TIMEOUT, message=f"no task on the drained {drained.hostname}")
    wait_until_unmounted(drained)
    states = manager.docker(
        "service", "ps", "--filter", "desired-state=running", "--format", "{{.CurrentState}}", name,
    ).stdout
    assert [line.split()[0] for line in states.splitlines()].count("Pending") == 1

    # Allowing two tasks per node lets the pending task start next to another.
    manager.docker("service", "update", "--detach", "--replicas-max-per-node", "2", name)
    moved = wait_for(
        lambda: containers_by_node(swarm, name),
        lambda found: sum(task_counts(found).values()) == 3 and not found[drained.hostname],
        timeout=SCHEDULE_TIMEOUT, message="three running tasks on the two active nodes",
    )
    timings["drained task running again"] = time.monotonic() - started
    counts = task_counts(moved)
    doubled = swarm.node_named(max(counts, key=counts.get))
    assert counts[doubled.hostname] == 2
    new_container = (set(moved[doubled.hostname]) - set(placement[doubled.hostname])).pop()

    # The moved task reads the files of the three first tasks and the token.
    listing = run_in(doubled, new_container, "ls /data").split()
    for key in keys:
        assert key in listing
    assert read_in(doubled, new_container, "/data/token.txt") == f"{token}\n"

    # Two tasks on one node share one ossfs mount: the plugin counts two
    # mount IDs, and the node has one FUSE filesystem and one ossfs process.
    assert len(doubled.mount_ids(VOLUME)) == 2
    assert len(doubled.fuse_devices()) == 1
    assert len(doubled.ossfs_processes()) == 1
    first, second = moved[doubled.hostname]
    run_in(doubled, first, "echo neighbour > /data/neighbour.txt")
    assert read_in(doubled, second, "/data/neighbour.txt") == "neighbour\n"

    # Scaling down to two removes a task from the node that has two,
    # because swarmkit removes tasks from the nodes with the most copies
    # first. The other task there keeps the mount and the data.
    manager.docker("service", "scale", "--detach", f"{name}=2")
    remaining = wait_for(
        lambda: containers_by_node(swarm, name),
        lambda found: sum(task_counts(found).values()) == 2,
        timeout=SCHEDULE_TIMEOUT, message="two running tasks",
    )
    assert task_counts(remaining)[doubled.hostname] == 1
    survivor = remaining[doubled.hostname][0]
    assert len(doubled.mount_ids(VOLUME)) == 1
    assert len(doubled.fuse_devices()) == 1
    assert read_in(doubled, survivor, "/data/token.txt") == f"{token}\n"
    assert read_in(doubled, survivor, "/data/neighbour.txt") == "neighbour\n"
    run_in(doubled, survivor, "echo after-scale > /data/after-scale.txt")
    assert swarm.store.read(bucket, "after-scale.txt") == "after-scale\n"

    # Removing the service unmounts the volume on every node.
    manager.docker("service", "rm", name)
    for node in swarm.nodes:
        wait_until_unmounted(node)

    manager.docker("node", "update", "--availability", "active", drained.hostname)
    print("timings:", {step: round(seconds, 1) for step, seconds in timings.items()})


def test_volume_without_nocopy_rejected(swarm, service):
    """Docker copies the image's /tmp into the empty volume and chmods its root.

    ossfs (here s3fs 1.90) returns EIO for chmod on the mount point, so the
    task is rejected. volume-nocopy=true skips the copy and the task starts.
    A target that the image does not have gets no copy, and needs no option.
    """
    name, bucket = service
    manager = swarm.manager
    url = swarm.store.url
    copied = volume_mount(bucket, url, source=COPY_CHECK_VOLUME, target="/tmp", nocopy=False)
    create_service(manager, name, copied, replicas=1, command=LONG_RUNNING)

    def task_errors():
        output = manager.docker(
            "service", "ps", "--no-trunc", "--format", "{{.Error}}", name,
        ).stdout
        return [line for line in output.splitlines() if line.strip()]

    errors = wait_for(task_errors, bool, timeout=SCHEDULE_TIMEOUT, message="a rejected task")
    assert "failed to chmod on " in errors[0]
    assert errors[0].rstrip('"').endswith(
        f"/propagated-mount/{COPY_CHECK_VOLUME}: input/output error"
    )

    # --mount-add replaces the mount with the same target. (--mount-rm of
    # that target would remove the added one too.)
    not_copied = volume_mount(bucket, url, source=COPY_CHECK_VOLUME, target="/tmp", nocopy=True)
    manager.docker("service", "update", "--detach", "--mount-add", not_copied, name)
    placement = wait_for(
        lambda: containers_by_node(swarm, name),
        lambda found: sum(task_counts(found).values()) == 1,
        timeout=SCHEDULE_TIMEOUT, message="the task running with volume-nocopy=true",
    )
    hostname = next(host for host, containers in placement.items() if containers)
    node = swarm.node_named(hostname)
    container = placement[hostname][0]
    assert swarm.store.keys(bucket) == []
    run_in(node, container, "echo mounted > /tmp/nocopy.txt")
    assert swarm.store.read(bucket, "nocopy.txt") == "mounted\n"

    # An empty volume on a folder that the image lacks needs no volume-nocopy.
    empty_bucket = swarm.store.create_bucket()
    not_in_image = volume_mount(empty_bucket, url, source=MISSING_TARGET_VOLUME, target="/data",
                                nocopy=False)
    node.docker("run", "--rm", "--mount", not_in_image, BUSYBOX_IMAGE,
                "sh", "-c", "echo mounted > /data/copy.txt")
    assert swarm.store.keys(empty_bucket) == ["copy.txt"]


def test_changed_volume_opt_keeps_old_volume(swarm, service):
    """A node reuses its volume of that name and never sends the new options to the plugin."""
    name, first_bucket = service
    manager = swarm.manager
    url = swarm.store.url
    node = swarm.workers[0]
    manager.docker(
        "service", "create", "--detach", "--no-resolve-image", "--name", name,
        "--constraint", f"node.hostname=={node.hostname}",
        "--mount", volume_mount(first_bucket, url, source=OPTIONS_CHECK_VOLUME),
        BUSYBOX_IMAGE, "sh", "-c", f"echo first > /data/first.txt; {LONG_RUNNING}",
    )
    first = wait_for(lambda: node.task_containers(name), lambda found: len(found) == 1,
                     timeout=SCHEDULE_TIMEOUT, message=f"the first task on {node.hostname}")

    second_bucket = swarm.store.create_bucket()
    manager.docker("service", "update", "--detach", "--mount-add",
                   volume_mount(second_bucket, url, source=OPTIONS_CHECK_VOLUME), name)
    second = wait_for(lambda: node.task_containers(name),
                      lambda found: len(found) == 1 and found != first,
                      timeout=SCHEDULE_TIMEOUT, message=f"the updated task on {node.hostname}")

    details = node.volume_details(OPTIONS_CHECK_VOLUME)
    assert details["Options"]["bucket"] == first_bucket
    assert run_in(node, second[0], "cat /data/first.txt") == "first\n"
    assert swarm.store.keys(second_bucket) == []
