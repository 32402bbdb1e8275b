"""Real FUSE mounts: the plugin runs s3fs (tests/bin/ossfs) against moto."""

import os
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests import harness
from tests.harness import PluginCallError, is_mounted, ossfs_pids, wait_until

pytestmark = pytest.mark.usefixtures("fuse")


def ossfs_argv(mountpoint):
    (pid,) = ossfs_pids(mountpoint)
    with open(f"/proc/{pid}/cmdline", "rb") as file:
        return file.read()


def closed_port_url():
    return f"http://127.0.0.1:{harness.free_port()}"


def test_mount_write_share_unmount_remove(plugin, s3, bucket, volume_opts):
    plugin.call("Create", Name="v1", Opts=volume_opts)
    mountpoint = plugin.call("Mount", Name="v1", ID="a")["Mountpoint"]
    assert mountpoint == f"{plugin.mount_root}/v1"
    assert is_mounted(mountpoint)

    with open(os.path.join(mountpoint, "hello.txt"), "w") as file:
        file.write("hello from the plugin\n")
    body = s3.get_object(Bucket=bucket, Key="hello.txt")["Body"].read()
    assert body == b"hello from the plugin\n"

    assert plugin.call("Mount", Name="v1", ID="b")["Mountpoint"] == mountpoint
    assert len(ossfs_pids(mountpoint)) == 1
    status = plugin.call("Get", Name="v1")["Volume"]["Status"]
    assert status["mounted"] is True
    assert status["mount_ids"] == ["a", "b"]

    plugin.call("Unmount", Name="v1", ID="a")
    assert is_mounted(mountpoint)
    assert open(os.path.join(mountpoint, "hello.txt")).read() == "hello from the plugin\n"
    plugin.call("Unmount", Name="v1", ID="b")
    assert not is_mounted(mountpoint)
    wait_until(lambda: not ossfs_pids(mountpoint), 10, message="ossfs exit")

    plugin.call("Remove", Name="v1")
    assert not os.path.exists(mountpoint)
    assert not os.path.exists(os.path.join(plugin.state_dir, "passwd", "v1"))
    assert plugin.call("List")["Volumes"] == []


def test_prefix_mount_serves_the_folder(plugin, s3, bucket, volume_opts):
    s3.put_object(Bucket=bucket, Key="team/x/inside.txt", Body=b"in")
    s3.put_object(Bucket=bucket, Key="outside.txt", Body=b"out")
    plugin.call("Create", Name="v1", Opts={**volume_opts, "bucket": f"{bucket}:/team/x"})
    mountpoint = plugin.call("Mount", Name="v1", ID="a")["Mountpoint"]
    assert sorted(os.listdir(mountpoint)) == ["inside.txt"]
    plugin.call("Unmount", Name="v1", ID="a")


def test_closed_port_mount_leaves_nothing(plugin, volume_opts):
    plugin.call("Create", Name="v1", Opts={**volume_opts, "url": closed_port_url()})
    started = time.monotonic()
    with pytest.raises(PluginCallError) as error:
        plugin.call("Mount", Name="v1", ID="a")
    assert time.monotonic() - started < 15
    assert "failed: ossfs stopped" in str(error.value)
    assert "CURLE_COULDNT_CONNECT" in str(error.value)
    mountpoint = f"{plugin.mount_root}/v1"
    assert not is_mounted(mountpoint)
    assert ossfs_pids(mountpoint) == []
    assert not os.path.exists(os.path.join(plugin.state_dir, "passwd", "v1"))
    status = plugin.call("Get", Name="v1")["Volume"]["Status"]
    assert status["mount_ids"] == []
    assert "CURLE_COULDNT_CONNECT" in status["last_error"]

    # Docker sends no Unmount after a failed Mount; the volume stays usable.
    plugin.call("Create", Name="v2", Opts=volume_opts)
    plugin.call("Mount", Name="v2", ID="b")
    plugin.call("Unmount", Name="v2", ID="b")
    plugin.call("Remove", Name="v1")
    plugin.call("Remove", Name="v2")


def test_missing_bucket_error_names_the_code(plugin, volume_opts):
    plugin.call("Create", Name="v1", Opts={**volume_opts, "bucket": "no-such-bucket-here"})
    with pytest.raises(PluginCallError) as error:
        plugin.call("Mount", Name="v1", ID="a")
    assert str(error.value).startswith(
        "mount of volume 'v1' (bucket 'no-such-bucket-here' at http://127.0.0.1:")
    assert "NoSuchBucket: The specified bucket does not exist" in str(error.value)
    assert ossfs_pids(f"{plugin.mount_root}/v1") == []


def test_missing_bucket_never_mounts(plugin, volume_opts):
    # ossfs serves statvfs for a moment after its bucket check failed. When
    # the plugin did not read ossfs's log after the probe, about one Mount in
    # fifteen reported success here.
    successes = 0
    for index in range(20):
        name = f"gone{index}"
        plugin.call("Create", Name=name, Opts={**volume_opts, "bucket": "no-such-bucket-here"})
        try:
            plugin.call("Mount", Name=name, ID="a")
            successes += 1
        except PluginCallError as error:
            assert "NoSuchBucket" in str(error)
    assert successes == 0


def test_logged_failure_beats_a_live_probe(start_plugin, folder, volume_opts):
    # The moment after a failed bucket check: the mount is in the table and
    # statvfs succeeds, but ossfs has logged that it gives up.
    stand_in = os.path.join(folder, "ossfs-gives-up")
    with open(stand_in, "w") as file:
        file.write(
            "#!/bin/sh\n"
            f'"{harness.OSSFS_WRAPPER}" "$@" || exit $?\n'
            'for argument; do case "$argument" in logfile=*) log="${argument#logfile=}";; esac; done\n'
            'echo "2026-12-04T00:00:00.000Z [CRT] s3fs.cpp:s3fs_check_service(3593): bucket or key not found"'
            ' >> "$log"\n'
        )
    os.chmod(stand_in, 0o755)
    plugin = start_plugin(OSSFS_BIN=stand_in)
    plugin.call("Create", Name="v1", Opts=volume_opts)
    with pytest.raises(PluginCallError) as error:
        plugin.call("Mount", Name="v1", ID="a")
    assert "failed: ossfs stopped: bucket or key not found" in str(error.value)
    assert not is_mounted(f"{plugin.mount_root}/v1")
    assert ossfs_pids(f"{plugin.mount_root}/v1") == []


def test_silent_endpoint_times_out_without_blocking(start_plugin, volume_opts, silent_endpoint):
    plugin = start_plugin(MOUNT_TIMEOUT="3")
    plugin.call("Create", Name="slow", Opts={**volume_opts, "url": silent_endpoint,
                                             "other_opts": "-o readwrite_timeout=60"})
    plugin.call("Create", Name="fast", Opts=volume_opts)
    outcome = {}

    def mount_slow():
        started = time.monotonic()
        try:
            plugin.call("Mount", Name="slow", ID="a")
        except PluginCallError as error:
            outcome["error"] = str(error)
        outcome["seconds"] = time.monotonic() - started

    thread = threading.Thread(target=mount_slow)
    thread.start()
    time.sleep(0.5)
    started = time.monotonic()
    plugin.call("Get", Name="slow")
    plugin.call("List")
    plugin.call("Path", Name="slow")
    plugin.call("Mount", Name="fast", ID="b")
    assert time.monotonic() - started < 2.0
    thread.join(30)

    assert outcome["error"].startswith("mount of volume 'slow' (bucket ")
    assert f"mount timed out after 3 s waiting for the endpoint {silent_endpoint}" in outcome["error"]
    assert outcome["seconds"] < 8
    assert ossfs_pids(f"{plugin.mount_root}/slow") == []
    assert not is_mounted(f"{plugin.mount_root}/slow")
    plugin.call("Unmount", Name="fast", ID="b")


def test_dead_mount_is_mounted_again(plugin, s3, bucket, volume_opts):
    plugin.call("Create", Name="v1", Opts=volume_opts)
    mountpoint = plugin.call("Mount", Name="v1", ID="a")["Mountpoint"]
    (pid,) = ossfs_pids(mountpoint)
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: not ossfs_pids(mountpoint), 5, message="ossfs killed")
    with pytest.raises(OSError):
        os.statvfs(mountpoint)

    assert plugin.call("Mount", Name="v1", ID="b")["Mountpoint"] == mountpoint
    assert plugin.call("Path", Name="v1")["Mountpoint"] == mountpoint
    with open(os.path.join(mountpoint, "probe"), "w") as file:
        file.write("probe")
    assert s3.get_object(Bucket=bucket, Key="probe")["Body"].read() == b"probe"
    assert plugin.call("Get", Name="v1")["Volume"]["Status"]["mount_ids"] == ["a", "b"]
    plugin.call("Unmount", Name="v1", ID="a")
    plugin.call("Unmount", Name="v1", ID="b")
    assert not is_mounted(mountpoint)


def test_restart_keeps_command_line(start_plugin, bucket, volume_opts):
    opts = {**volume_opts, "bucket": f"{bucket}:/team/x", "other_opts": "-o umask=022"}
    plugin = start_plugin()
    plugin.call("Create", Name="v1", Opts=opts)
    mountpoint = plugin.call("Mount", Name="v1", ID="a")["Mountpoint"]
    argv_before = ossfs_argv(mountpoint)
    assert f"running {harness.OSSFS_WRAPPER} {bucket}:/team/x {mountpoint} -o url=" in plugin.log_text()

    plugin.kill()
    plugin = start_plugin()
    assert plugin.call("Get", Name="v1")["Volume"]["Status"]["path"] == "/team/x"
    plugin.call("Mount", Name="v1", ID="b")
    assert ossfs_argv(mountpoint) == argv_before

    # A clean stop unmounts; the next start drops the IDs and mounts anew
    # with the same command line.
    plugin.stop()
    assert not is_mounted(mountpoint)
    plugin = start_plugin()
    wait_until(lambda: plugin.call("Get", Name="v1")["Volume"]["Status"]["mount_ids"] == [], 10,
               message="mount IDs dropped")
    plugin.call("Mount", Name="v1", ID="c")
    assert ossfs_argv(mountpoint) == argv_before
    logged = [line.split(" running ", 1)[1] for line in plugin.log_text().splitlines() if " running " in line]
    assert len(logged) == 2
    assert logged[0] == logged[1]
    plugin.call("Unmount", Name="v1", ID="c")


@pytest.mark.parametrize("victim", ["process group", "master only"])
def test_mount_ids_survive_a_crash(start_plugin, volume_opts, victim):
    plugin = start_plugin()
    plugin.call("Create", Name="v1", Opts=volume_opts)
    mountpoint = plugin.call("Mount", Name="v1", ID="a")["Mountpoint"]
    plugin.call("Mount", Name="v1", ID="b")
    if victim == "process group":
        plugin.kill()
    else:
        # The gunicorn worker notices its master is gone and exits by itself.
        os.kill(plugin.process.pid, signal.SIGKILL)
        plugin.process.wait(10)
        wait_until(lambda: "master is gone" in plugin.log_text(), 15, message="worker exit")
    assert harness.responds(mountpoint)

    plugin = start_plugin()
    plugin.call("Unmount", Name="v1", ID="a")
    assert is_mounted(mountpoint)
    plugin.call("Unmount", Name="v1", ID="b")
    assert not is_mounted(mountpoint)
    plugin.call("Remove", Name="v1")


def test_parallel_mounts_start_one_ossfs(plugin, volume_opts):
    plugin.call("Create", Name="v1", Opts=volume_opts)
    mountpoint = f"{plugin.mount_root}/v1"
    with ThreadPoolExecutor(20) as pool:
        results = list(pool.map(lambda i: plugin.call("Mount", Name="v1", ID=f"id{i}")["Mountpoint"], range(20)))
    assert set(results) == {mountpoint}
    assert len(ossfs_pids(mountpoint)) == 1
    with ThreadPoolExecutor(20) as pool:
        list(pool.map(lambda i: plugin.call("Unmount", Name="v1", ID=f"id{i}"), range(20)))
    assert not is_mounted(mountpoint)
    assert plugin.call("Get", Name="v1")["Volume"]["Status"]["mount_ids"] == []


def test_interleaved_mounts_on_shared_bucket(plugin, volume_opts):
    names = [f"vol{index}" for index in range(10)]
    for name in names:
        plugin.call("Create", Name=name, Opts=volume_opts)

    def cycle(name):
        for round_number in range(3):
            plugin.call("Mount", Name=name, ID=f"{name}-{round_number}")
            plugin.call("Unmount", Name=name, ID=f"{name}-{round_number}")

    with ThreadPoolExecutor(10) as pool:
        list(pool.map(cycle, names))
    assert harness.mounts_under(plugin.mount_root) == []
    assert all(not plugin.call("Get", Name=name)["Volume"]["Status"]["mount_ids"] for name in names)


def test_sigterm_unmounts_everything(start_plugin, volume_opts):
    plugin = start_plugin()
    for name in ("v1", "v2"):
        plugin.call("Create", Name=name, Opts=volume_opts)
        plugin.call("Mount", Name=name, ID="a")
    plugin.stop()
    assert harness.mounts_under(plugin.mount_root) == []
    assert harness.processes_with_argument_under(plugin.mount_root) == []


def test_secrets_appear_only_in_private_files(start_plugin, volume_opts):
    markers = {"ak_id": "AKID-MARKER-7f3a", "ak_secret": "SECRET-MARKER-9c1d"}
    plugin = start_plugin()
    plugin.call("Create", Name="v1", Opts={**volume_opts, **markers})
    mountpoint = plugin.call("Mount", Name="v1", ID="a")["Mountpoint"]
    (pid,) = ossfs_pids(mountpoint)
    with open(f"/proc/{pid}/cmdline", "rb") as file:
        argv = file.read()
    with open(f"/proc/{pid}/environ", "rb") as file:
        environment = file.read()

    plugin.call("Create", Name="v2", Opts={**volume_opts, **markers, "url": closed_port_url()})
    with pytest.raises(PluginCallError) as error:
        plugin.call("Mount", Name="v2", ID="b")
    replies = [str(error.value)]
    replies.append(repr(plugin.call("Get", Name="v1")))
    replies.append(repr(plugin.call("Get", Name="v2")))
    replies.append(repr(plugin.call("List")))
    plugin.kill()
    plugin = start_plugin()
    replies.append(repr(plugin.call("Get", Name="v1")))

    for marker in markers.values():
        assert marker.encode() not in argv
        assert marker.encode() not in environment
        assert all(marker not in reply for reply in replies)
        assert marker not in plugin.log_text()

    passwd_file = os.path.join(plugin.state_dir, "passwd", "v1")
    assert os.stat(passwd_file).st_mode & 0o077 == 0
    state_files = 0
    for root, _, files in os.walk(plugin.folder):
        if root.startswith(plugin.mount_root):
            continue
        for name in files:
            path = os.path.join(root, name)
            if path == passwd_file or not os.path.isfile(path) or os.path.islink(path):
                continue
            with open(path, "rb") as file:
                content = file.read()
            if not any(marker.encode() in content for marker in markers.values()):
                continue
            # Only the state file, which must keep the options, may hold them.
            assert path.startswith(plugin.state_dir + "/"), f"marker found in {path}"
            assert name.endswith(".json"), f"marker found in {path}"
            assert os.stat(path).st_mode & 0o077 == 0, f"{path} is readable by others"
            state_files += 1
    assert state_files >= 1
    plugin.call("Unmount", Name="v1", ID="a")
