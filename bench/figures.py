"""The measurements behind each figure; each returns a plain dict of numbers.

Latencies are seconds measured by the client in bench/client.py. Every
loop runs a fixed number of calls, and every wait has a time limit.
"""

import json
import os
import random
import shutil
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from plugin import state
from tests import harness

from . import servers
from .client import CallFailed, Client


def percentile(values, fraction):
    """Return the nearest-rank percentile of ``values`` (``fraction`` 0.5 is the median)."""
    ordered = sorted(values)
    rank = max(int(round(fraction * len(ordered) + 0.5)) - 1, 0)
    return ordered[min(rank, len(ordered) - 1)]


def summary(values):
    return {"median": percentile(values, 0.5), "p99": percentile(values, 0.99), "count": len(values)}


def run_parallel(function, items, concurrency):
    """Call ``function`` on each item from ``concurrency`` threads; return (results, wall seconds).

    With a concurrency of 1 the calls run in the calling thread, so no
    thread pool adds its own latency to each call.
    """
    started = time.perf_counter()
    if concurrency == 1:
        results = [function(item) for item in items]
    else:
        with ThreadPoolExecutor(concurrency) as pool:
            results = list(pool.map(function, items))
    return results, time.perf_counter() - started


def create_volumes(server, names, bucket, concurrency=1):
    """Create ``names`` on ``server``; return (per-call seconds, wall seconds)."""
    options = server.volume_options(bucket)
    return run_parallel(lambda name: server.client.call("Create", Name=name, Opts=options)[0],
                        names, concurrency)


def remove_volumes(server, names, concurrency=1):
    return run_parallel(lambda name: server.client.call("Remove", Name=name)[0], names, concurrency)


# P1: Get, Path and List latency at 1,000 volumes.

def control_plane_latency(targets, names, rounds=5, calls=400, list_calls=150, warmup=50):
    """Measure Get, Path and List on every server, alternating servers call by call.

    Each round runs ``calls`` Gets and Paths of random existing names (and
    ``list_calls`` Lists). Each call goes to every server in turn, so a busy
    spell of the machine hits all servers alike. Returns
    ``{endpoint: {server: summary}}``.
    """
    chooser = random.Random(1)
    plan = {"Get": calls, "Path": calls, "List": list_calls}
    samples = {endpoint: {server.name: [] for server in targets} for endpoint in plan}
    for server in targets:
        for endpoint in plan:
            for _ in range(warmup):
                server.client.timed_post(f"VolumeDriver.{endpoint}", {"Name": names[0]})
    for _ in range(rounds):
        for endpoint, count in plan.items():
            for _ in range(count):
                body = {} if endpoint == "List" else {"Name": chooser.choice(names)}
                for server in targets:
                    elapsed, status, reply = server.client.timed_post(f"VolumeDriver.{endpoint}", body)
                    if status != 200 or reply.get("Err"):
                        raise CallFailed(f"{server.name} {endpoint}: HTTP {status}: {reply.get('Err')}")
                    samples[endpoint][server.name].append(elapsed)
    return {endpoint: {name: summary(values) for name, values in by_server.items()}
            for endpoint, by_server in samples.items()}


# P2: Create and Remove throughput.

def create_remove_throughput(targets, bucket, count=300, concurrencies=(1, 8), prefix="tp", rounds=10):
    """Return ``{concurrency: {server: {"create": per s, "remove": per s}}}``.

    Each server creates and then removes ``count`` volumes, in ``rounds``
    batches that alternate between the servers, so a slow spell of the
    machine hits all servers alike.
    """
    results = {}
    for concurrency in concurrencies:
        walls = {server.name: {"create": 0.0, "remove": 0.0} for server in targets}
        for round_number in range(rounds):
            batch = range(round_number * count // rounds, (round_number + 1) * count // rounds)
            names = [f"{prefix}{concurrency}-{index:05d}" for index in batch]
            for server in targets:
                walls[server.name]["create"] += create_volumes(server, names, bucket, concurrency)[1]
            for server in targets:
                walls[server.name]["remove"] += remove_volumes(server, names, concurrency)[1]
        results[concurrency] = {name: {call: count / wall for call, wall in by_call.items()}
                                for name, by_call in walls.items()}
    return results


# Parallel Mount/Unmount pairs on one volume.

def mount_unmount_pairs(server, volume, pairs, time_limit):
    """Run ``pairs`` threads that each Mount and then Unmount ``volume`` with an ID of their own.

    Passes when every call returns without an error within ``time_limit``
    seconds and the volume is unmounted at the end. A call that does not
    return is abandoned when its socket times out.
    """
    client = Client(server.socket_path, timeout=time_limit)
    errors = []
    finished = []

    def pair(index):
        mount_id = f"pair-{pairs}-{index}"
        try:
            client.call("Mount", Name=volume, ID=mount_id)
            client.call("Unmount", Name=volume, ID=mount_id)
            finished.append(index)
        except Exception as error:  # a timeout or an Err both fail the round
            errors.append(f"{type(error).__name__}: {error}")
        finally:
            client.close()

    threads = [threading.Thread(target=pair, args=(index,), daemon=True) for index in range(pairs)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    deadline = started + time_limit + 5
    for thread in threads:
        thread.join(max(deadline - time.perf_counter(), 0))
    wall = time.perf_counter() - started
    mountpoint = os.path.join(server.mount_root, volume)
    left_mounted = mountpoint in harness.mounts_under(server.mount_root)
    passed = len(finished) == pairs and not errors and not left_mounted
    return {"pairs": pairs, "passed": passed, "seconds": wall, "finished": len(finished),
            "errors": errors[:3], "left_mounted": left_mounted}


def deadlock_check(server, volume, pair_counts=(4, 8), rounds=3, time_limit=60):
    """Return one result per pair count: passed only if every round passed."""
    results = []
    for pairs in pair_counts:
        outcomes = []
        for _ in range(rounds):
            outcome = mount_unmount_pairs(server, volume, pairs, time_limit)
            outcomes.append(outcome)
            if not outcome["passed"]:
                break
        results.append({"pairs": pairs, "passed": all(outcome["passed"] for outcome in outcomes),
                        "rounds": len(outcomes), "max_seconds": max(o["seconds"] for o in outcomes),
                        "errors": [error for outcome in outcomes for error in outcome["errors"]][:3]})
        if not results[-1]["passed"]:
            break
    return results


# P3: Mount wall time against a raw mount with the same command line.

def fuse_mounted(mountpoint):
    """Return True when ``mountpoint`` is a FUSE mount in the table and statvfs on it succeeds."""
    with open("/proc/self/mountinfo", encoding="utf-8") as file:
        entries = [line.split() for line in file]
    types = [fields[fields.index("-") + 1] for fields in entries if fields[4] == mountpoint]
    if not types or not types[-1].startswith("fuse"):
        return False
    try:
        os.statvfs(mountpoint)
    except OSError:
        return False
    return True


def daemon_argv(mountpoint):
    """Return the argv of the one process serving ``mountpoint``."""
    pids = harness.processes_with_argument_under(mountpoint)
    if len(pids) != 1:
        raise RuntimeError(f"expected one ossfs process for {mountpoint}, found {pids}")
    with open(f"/proc/{pids[0]}/cmdline", "rb") as file:
        return [os.fsdecode(argument) for argument in file.read().split(b"\0")[:-1]]


def wait_until_gone(mountpoint, timeout=30):
    servers.wait_for(lambda: not harness.processes_with_argument_under(mountpoint)
                     and mountpoint not in harness.mounts_under(mountpoint), timeout,
                     f"ossfs for {mountpoint} to exit")


def raw_command(plugin, mountpoint, folder):
    """Return the plugin's ossfs command line for ``mountpoint``, with a passwd file of our own.

    It is read from the running daemon: tests/bin/ossfs runs
    ``exec s3fs "$@" -o use_path_request_style``, so the wrapper's argv is
    the daemon's without its first and last two words. The passwd file is
    a copy, because the plugin deletes its own on Unmount.
    """
    argv = daemon_argv(mountpoint)
    if argv[-2:] != ["-o", "use_path_request_style"]:
        raise RuntimeError(f"unexpected ossfs command line: {argv}")
    command = [plugin.harness.environment["OSSFS_BIN"]] + argv[1:-2]
    passwd_copy = os.path.join(folder, "raw-passwd")
    for index, argument in enumerate(command):
        if argument.startswith("passwd_file="):
            with open(argument.split("=", 1)[1], encoding="utf-8") as source:
                content = source.read()
            descriptor = os.open(passwd_copy, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(descriptor, "w", encoding="utf-8") as target:
                target.write(content)
            command[index] = f"passwd_file={passwd_copy}"
    return command


def raw_mount_seconds(command, mountpoint, timeout=30):
    """Run ``command`` as a user would; return seconds until statvfs on the mount succeeds."""
    started = time.perf_counter()
    subprocess.run(command, check=True, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout)
    deadline = started + timeout
    while not fuse_mounted(mountpoint):
        if time.perf_counter() > deadline:
            raise TimeoutError(f"raw mount of {mountpoint} not ready within {timeout} s")
        time.sleep(0.001)
    return time.perf_counter() - started


def mount_versus_raw(plugin, bucket, folder, runs=20):
    """Alternate a plugin Mount and a raw mount of the same volume ``runs`` times each."""
    volume = "mount-time"
    plugin.client.call("Create", Name=volume, Opts=plugin.volume_options(bucket))
    mountpoint = os.path.join(plugin.mount_root, volume)
    _, reply = plugin.client.call("Mount", Name=volume, ID="capture")
    command = raw_command(plugin, reply["Mountpoint"], folder)
    plugin.client.call("Unmount", Name=volume, ID="capture")
    wait_until_gone(mountpoint)
    plugin_times, raw_times = [], []
    for index in range(runs):
        elapsed, _ = plugin.client.call("Mount", Name=volume, ID=f"run-{index}")
        plugin_times.append(elapsed)
        plugin.client.call("Unmount", Name=volume, ID=f"run-{index}")
        wait_until_gone(mountpoint)
        raw_times.append(raw_mount_seconds(command, mountpoint))
        subprocess.run(["fusermount", "-u", mountpoint], check=True, capture_output=True, timeout=30)
        wait_until_gone(mountpoint)
    return {"plugin": summary(plugin_times), "raw": summary(raw_times), "command": command,
            "mountpoint": mountpoint}


# P5: concurrent Mounts over a few volumes.

def busy_cores():
    """Return a function that gives the average number of busy cores since this call."""
    def sample():
        with open("/proc/stat", encoding="ascii") as file:
            fields = [int(value) for value in file.readline().split()[1:]]
        idle = fields[3] + fields[4]  # idle and iowait
        return sum(fields) - idle, sum(fields)

    busy_before, total_before = sample()
    cores = os.cpu_count()

    def measure():
        busy_after, total_after = sample()
        return cores * (busy_after - busy_before) / max(total_after - total_before, 1)

    return measure


def raw_parallel_mounts(command, mountpoint, folder, count):
    """Run ``count`` raw mounts of the same bucket at once; return wall seconds and busy cores.

    Each raw mount uses the plugin's command line with a mountpoint and a
    log file of its own under ``folder``.
    """
    commands, targets = [], []
    for index in range(count):
        target = os.path.join(folder, f"raw-{index}")
        os.makedirs(target, exist_ok=True)
        logfile = os.path.join(folder, f"raw-{index}.log")
        commands.append([target if argument == mountpoint else
                         f"logfile={logfile}" if argument.startswith("logfile=") else argument
                         for argument in command])
        targets.append(target)
    cpu = busy_cores()
    _, wall = run_parallel(lambda index: raw_mount_seconds(commands[index], targets[index]), range(count), count)
    cores = cpu()
    for target in targets:
        subprocess.run(["fusermount", "-u", target], check=True, capture_output=True, timeout=30)
        wait_until_gone(target)
    return {"wall": wall, "busy_cores": cores}


def concurrent_mounts(plugin, bucket, volumes=10, mounts=50, seed=5):
    """Send ``mounts`` Mount calls at once, spread over ``volumes`` fresh volumes in a shuffled order."""
    names = [f"burst-{index}" for index in range(volumes)]
    create_volumes(plugin, names, bucket)
    calls = [(names[index % volumes], f"burst-id-{index}") for index in range(mounts)]
    random.Random(seed).shuffle(calls)
    errors = []
    barrier = threading.Barrier(mounts)

    def mount(call):
        name, mount_id = call
        barrier.wait(30)
        try:
            plugin.client.call("Mount", Name=name, ID=mount_id)
        except Exception as error:
            errors.append(f"{type(error).__name__}: {error}")
        return time.perf_counter()

    cpu = busy_cores()
    started = time.perf_counter()
    with ThreadPoolExecutor(mounts) as pool:
        ends = list(pool.map(mount, calls))
    wall = max(ends) - started
    cores = cpu()
    processes = harness.processes_with_argument_under(plugin.mount_root)
    per_volume = {name: len(harness.processes_with_argument_under(os.path.join(plugin.mount_root, name)))
                  for name in names}
    run_parallel(lambda call: plugin.client.call("Unmount", Name=call[0], ID=call[1]), calls, mounts)
    for name in names:
        wait_until_gone(os.path.join(plugin.mount_root, name))
    left = harness.processes_with_argument_under(plugin.mount_root)
    return {"mounts": mounts, "volumes": volumes, "errors": errors[:3], "succeeded": mounts - len(errors),
            "wall": wall, "busy_cores": cores, "ossfs_processes": len(processes), "per_volume": per_volume,
            "left_after_unmount": len(left)}


# P4: scale to 10,000 volumes.

def scale_curve(server, bucket, count, checkpoints, list_calls=10, get_calls=50):
    """Create ``count`` volumes one at a time; at each checkpoint measure List and Get.

    Returns per-call Create latencies and, per checkpoint, the median List
    and Get latencies and the Create latencies of the calls since the last
    checkpoint.
    """
    options = server.volume_options(bucket)
    create_times = []
    points = []
    created = 0
    for checkpoint in checkpoints:
        window = []
        for index in range(created, checkpoint):
            elapsed, _ = server.client.call("Create", Name=f"s{index:05d}", Opts=options)
            window.append(elapsed)
        create_times += window
        created = checkpoint
        lists = [server.client.call("List")[0] for _ in range(list_calls)]
        gets = [server.client.call("Get", Name=f"s{random.randrange(created):05d}")[0] for _ in range(get_calls)]
        points.append({"volumes": checkpoint, "create": summary(window), "list": summary(lists),
                       "get": summary(gets)})
    return {"create": summary(create_times), "points": points}


def floor_curve(floor, checkpoints, list_calls=10, get_calls=50):
    """Measure the floor at the same points as the plugin, for the plot; it has no volumes."""
    points = []
    for checkpoint in checkpoints:
        lists = [floor.client.timed_post("VolumeDriver.List", {})[0] for _ in range(list_calls)]
        gets = [floor.client.timed_post("VolumeDriver.Get", {"Name": "s00000"})[0] for _ in range(get_calls)]
        points.append({"volumes": checkpoint, "list": summary(lists), "get": summary(gets)})
    return points


def restart_timing(plugin, expected_volumes, before_start=None, timeout=120):
    """Stop the plugin and start it again; time the socket, the first reply and a full List.

    ``before_start``, when given, runs while the plugin is stopped. Returns
    seconds from starting the process until the socket accepts a
    connection, until Plugin.Activate returns, and until List returns all
    ``expected_volumes`` volumes.
    """
    plugin.stop()
    if before_start is not None:
        before_start()
    if os.path.exists(plugin.socket_path):
        os.unlink(plugin.socket_path)
    probe = Client(plugin.socket_path, timeout=5)
    marks = {}
    started = time.perf_counter()
    starter = threading.Thread(target=plugin.start, daemon=True)
    starter.start()
    deadline = started + timeout
    while "volumes_listed" not in marks and time.perf_counter() < deadline:
        now = time.perf_counter() - started
        if "socket_listening" not in marks:
            if servers.socket_accepts(plugin.socket_path):
                marks["socket_listening"] = now
        elif "first_reply" not in marks:
            try:
                if probe.timed_post("Plugin.Activate")[1] == 200:
                    marks["first_reply"] = time.perf_counter() - started
            except OSError:
                probe.close()
        else:
            _, status, reply = probe.timed_post("VolumeDriver.List", {})
            if len(reply.get("Volumes") or ()) == expected_volumes:
                marks["volumes_listed"] = time.perf_counter() - started
        time.sleep(0.001)
    probe.close()
    starter.join(timeout)
    return marks


def legacy_state(plugin):
    """Return a function that turns the plugin's state folder into a version 1 state.json."""
    def convert():
        volumes = state.read_volumes(plugin.state_path)
        lines = ",\n".join(json.dumps(name) + ": " + json.dumps(record, sort_keys=True)
                           for name, record in sorted(volumes.items()))
        descriptor = os.open(plugin.state_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as file:
            file.write('{"version": 1, "volumes": {\n%s\n}}\n' % lines)
        shutil.rmtree(os.path.join(os.path.dirname(plugin.state_path), state.FOLDER_NAME))

    return convert
