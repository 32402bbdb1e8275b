"""Recovery from dead mounts, busy mounts, orphans and rejected keys."""

import os
import shutil
import signal
import subprocess
import time

import pytest

from tests import harness
from tests.harness import PluginCallError, is_mounted, ossfs_pids, wait_until

pytestmark = pytest.mark.usefixtures("fuse")


@pytest.fixture(scope="module")
def auth_store():
    folder = harness.short_temporary_folder("ossfs-s3auth-")
    store = harness.ObjectStore(folder, auth=True).start()
    store.keys = store.create_keys()
    store.client(*store.keys).create_bucket(Bucket="keys-bucket")
    yield store
    store.stop()
    shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.parametrize("which, code", [("id", "InvalidAccessKeyId"), ("secret", "SignatureDoesNotMatch")])
def test_wrong_keys_error_names_the_code(plugin, auth_store, which, code):
    key_id, secret = auth_store.keys
    if which == "id":
        key_id = "LTAI5tUnknownKeyId"
    else:
        secret = "WrongSecretValue0123"
    plugin.call("Create", Name="v1", Opts={"bucket": "keys-bucket", "url": auth_store.url,
                                           "ak_id": key_id, "ak_secret": secret})
    with pytest.raises(PluginCallError) as error:
        plugin.call("Mount", Name="v1", ID="a")
    assert code in str(error.value)
    assert secret not in str(error.value)
    assert ossfs_pids(f"{plugin.mount_root}/v1") == []


def test_right_keys_mount(plugin, auth_store):
    key_id, secret = auth_store.keys
    plugin.call("Create", Name="v1", Opts={"bucket": "keys-bucket", "url": auth_store.url,
                                           "ak_id": key_id, "ak_secret": secret})
    mountpoint = plugin.call("Mount", Name="v1", ID="a")["Mountpoint"]
    assert harness.responds(mountpoint)
    plugin.call("Unmount", Name="v1", ID="a")


def test_watchdog_remounts_dead_mount(start_plugin, volume_opts):
    plugin = start_plugin(WATCHDOG_INTERVAL="0.5")
    plugin.call("Create", Name="v1", Opts=volume_opts)
    mountpoint = plugin.call("Mount", Name="v1", ID="a")["Mountpoint"]
    (old_pid,) = ossfs_pids(mountpoint)
    os.kill(old_pid, signal.SIGKILL)
    wait_until(lambda: harness.responds(mountpoint) and ossfs_pids(mountpoint) not in ([], [old_pid]), 15,
               message="watchdog remount")
    status = plugin.call("Get", Name="v1")["Volume"]["Status"]
    assert status["mounted"] is True
    assert status["last_check"]
    assert "mounting it again" in plugin.log_text()
    plugin.call("Unmount", Name="v1", ID="a")
    assert not is_mounted(mountpoint)


def test_busy_mount_is_detached_lazily(plugin, volume_opts):
    plugin.call("Create", Name="v1", Opts=volume_opts)
    mountpoint = plugin.call("Mount", Name="v1", ID="a")["Mountpoint"]
    holder = subprocess.Popen(["sleep", "60"], cwd=mountpoint)
    try:
        plugin.call("Unmount", Name="v1", ID="a")
        assert not is_mounted(mountpoint)
        assert ossfs_pids(mountpoint) == []
        assert "detaching it lazily" in plugin.log_text()
    finally:
        holder.kill()
        holder.wait(10)
    plugin.call("Remove", Name="v1")


def test_unmount_after_external_unmount(plugin, volume_opts):
    plugin.call("Create", Name="v1", Opts=volume_opts)
    mountpoint = plugin.call("Mount", Name="v1", ID="a")["Mountpoint"]
    subprocess.run(["fusermount", "-u", mountpoint], check=True)
    wait_until(lambda: not ossfs_pids(mountpoint), 10, message="ossfs exit")
    plugin.call("Unmount", Name="v1", ID="a")
    assert plugin.call("Get", Name="v1")["Volume"]["Status"]["mount_ids"] == []
    plugin.call("Remove", Name="v1")


def test_mount_no_id_holds_is_unmounted_at_start(start_plugin, volume_opts):
    plugin = start_plugin()
    plugin.call("Create", Name="v1", Opts=volume_opts)
    plugin.stop()
    # What a plugin killed between starting ossfs and saving the mount ID leaves.
    mountpoint = f"{plugin.mount_root}/v1"
    os.makedirs(mountpoint, exist_ok=True)
    passwd = os.path.join(plugin.folder, "orphan-passwd")
    descriptor = os.open(passwd, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(descriptor, f"{volume_opts['bucket']}:a:b\n".encode())
    os.close(descriptor)
    subprocess.run([harness.OSSFS_WRAPPER, volume_opts["bucket"], mountpoint, "-o", f"url={volume_opts['url']}",
                    "-o", f"passwd_file={passwd}"], check=True, timeout=30)
    wait_until(lambda: harness.responds(mountpoint), 10, message="orphan mount")

    plugin = start_plugin()
    wait_until(lambda: not is_mounted(mountpoint), 15, message="orphan unmounted")
    wait_until(lambda: not ossfs_pids(mountpoint), 10, message="orphan ossfs exit")
    assert "because no mount ID uses it" in plugin.log_text()
    plugin.call("Mount", Name="v1", ID="a")
    plugin.call("Unmount", Name="v1", ID="a")


def test_mounts_survive_restart_when_kept(start_plugin, volume_opts):
    plugin = start_plugin(UNMOUNT_ON_STOP="false")
    plugin.call("Create", Name="v1", Opts=volume_opts)
    mountpoint = plugin.call("Mount", Name="v1", ID="a")["Mountpoint"]
    (pid,) = ossfs_pids(mountpoint)
    plugin.stop()
    assert is_mounted(mountpoint)
    assert harness.responds(mountpoint)
    assert "leaving mounts in place" in plugin.log_text()

    plugin = start_plugin(UNMOUNT_ON_STOP="false")
    wait_until(lambda: plugin.call("Get", Name="v1")["Volume"]["Status"]["mounted"], 10, message="mount found")
    assert plugin.call("Get", Name="v1")["Volume"]["Status"]["mount_ids"] == ["a"]
    assert ossfs_pids(mountpoint) == [pid]
    plugin.call("Unmount", Name="v1", ID="a")
    assert not is_mounted(mountpoint)


def test_sigterm_unmounts_busy_volumes_in_time(start_plugin, volume_opts):
    plugin = start_plugin()
    holders = []
    try:
        for name in ("b1", "b2", "b3"):
            plugin.call("Create", Name=name, Opts=volume_opts)
            mountpoint = plugin.call("Mount", Name=name, ID="a")["Mountpoint"]
            holders.append(subprocess.Popen(["sleep", "60"], cwd=mountpoint))
        started = time.monotonic()
        plugin.stop()
        # Docker sends SIGKILL 10 seconds after SIGTERM.
        assert time.monotonic() - started < 9
        assert plugin.log_text().count("unmounted at shutdown") == 3
        assert harness.mounts_under(plugin.mount_root) == []
        assert harness.processes_with_argument_under(plugin.mount_root) == []
    finally:
        for holder in holders:
            holder.kill()
            holder.wait(10)
