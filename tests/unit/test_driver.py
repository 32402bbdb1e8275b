"""Driver logic with a real state file and a fake mounter.

The fake replaces ossfs only to count mounts and to inject failures; the
real mounts are tested in tests/fuse.
"""

import os
import stat
import threading
import time

import pytest

from plugin.driver import Driver
from plugin.errors import InvalidOption, MountFailed, StateError, VolumeConflict, VolumeInUse, VolumeNotFound
from plugin.mounter import Health
from plugin.settings import Settings

OPTS = {"bucket": "b-1", "url": "https://e.example", "ak_id": "LTAI5tExampleKeyId",
        "ak_secret": "ExampleSecretValue0123456789"}


class FakeMounter:
    """Counts mounts and unmounts; ``fail_with`` makes the next mounts fail."""

    def __init__(self, delay=0.0):
        self.mounted = set()
        self.mounts = []
        self.unmounts = []
        self.fail_with = None
        self.delay = delay
        self.argv = None
        self._lock = threading.Lock()

    def health(self, mountpoint):
        return Health(mountpoint in self.mounted, "" if mountpoint in self.mounted else "not mounted")

    def is_mounted(self, mountpoint):
        return mountpoint in self.mounted

    def mount(self, argv, mountpoint, timeout, secrets=(), endpoint="", logfile=None):
        time.sleep(self.delay)
        with self._lock:
            self.mounts.append(mountpoint)
            self.argv = argv
        if self.fail_with:
            raise MountFailed(self.fail_with)
        self.mounted.add(mountpoint)

    def unmount(self, mountpoint):
        self.unmounts.append(mountpoint)
        self.mounted.discard(mountpoint)

    def cleanup(self, mountpoint):
        self.mounted.discard(mountpoint)

    def detach(self, mountpoint):
        self.unmount(mountpoint)

    def stop_daemons(self, mountpoints, grace=0):
        pass


@pytest.fixture
def settings(tmp_path):
    return Settings(state_path=str(tmp_path / "state" / "state.json"), mount_root=str(tmp_path / "mnt"))


@pytest.fixture
def mounter():
    return FakeMounter()


@pytest.fixture
def driver(settings, mounter):
    driver = Driver(settings, mounter=mounter, environ={})
    driver.load()
    return driver


def restart(settings, mounter, environ=None):
    """Build a new driver on the same state file, as a plugin restart does."""
    driver = Driver(settings, mounter=mounter, environ=environ or {})
    driver.load()
    return driver


def test_create_twice_with_same_options(driver):
    driver.create("v1", OPTS)
    driver.create("v1", dict(OPTS))
    assert [volume["Name"] for volume in driver.list()] == ["v1"]


def test_create_with_other_options_fails(driver):
    driver.create("v1", OPTS)
    with pytest.raises(VolumeConflict) as error:
        driver.create("v1", {**OPTS, "no_stat_cache": "true"})
    assert str(error.value) == "volume 'v1' already exists with other options; remove it first or choose another name"
    assert driver.get("v1")["Status"]["bucket"] == "b-1"


def test_get_unknown_volume(driver):
    with pytest.raises(VolumeNotFound) as error:
        driver.get("nope")
    assert str(error.value) == "volume 'nope' not found"


def test_mount_ids_share_one_mount(driver, mounter):
    driver.create("v1", OPTS)
    first = driver.mount("v1", "a")
    second = driver.mount("v1", "b")
    assert first == second
    assert len(mounter.mounts) == 1
    driver.unmount("v1", "a")
    assert mounter.unmounts == []
    driver.unmount("v1", "zzz")
    assert mounter.unmounts == []
    driver.unmount("v1", "b")
    assert len(mounter.unmounts) == 1
    assert driver.get("v1")["Status"]["mount_ids"] == []


def test_repeated_mount_id_is_counted(settings, driver, mounter):
    # Docker mounts a running container's volume again under the
    # container's own ID for "docker cp", then unmounts it once.
    driver.create("v1", OPTS)
    driver.mount("v1", "c1")
    driver.mount("v1", "c1")
    assert len(mounter.mounts) == 1
    assert driver.get("v1")["Status"]["mount_ids"] == ["c1", "c1"]
    assert restart(settings, mounter).get("v1")["Status"]["mount_ids"] == ["c1", "c1"]
    driver.unmount("v1", "c1")
    assert mounter.unmounts == []
    driver.unmount("v1", "c1")
    assert len(mounter.unmounts) == 1
    driver.unmount("v1", "c1")
    assert len(mounter.unmounts) == 1


def test_restart_keeps_options_and_mount_ids(settings, driver, mounter):
    driver.create("v1", {**OPTS, "bucket": "b-1:/team/x", "other_opts": "-o umask=022"})
    driver.mount("v1", "a")
    argv_before = mounter.argv
    again = restart(settings, mounter)
    assert again.get("v1")["Status"]["mount_ids"] == ["a"]
    again.unmount("v1", "a")
    again.mount("v1", "b")
    assert mounter.argv == argv_before


def test_reconcile_drops_vanished_mounts(settings, driver, mounter):
    driver.create("v1", OPTS)
    driver.mount("v1", "a")
    # Nothing is really mounted, so the mount table has no entry for v1.
    again = restart(settings, FakeMounter())
    again.reconcile()
    assert again.get("v1")["Status"]["mount_ids"] == []
    assert restart(settings, mounter).get("v1")["Status"]["mount_ids"] == []


def test_failed_mount_leaves_nothing(settings, driver, mounter):
    driver.create("v1", OPTS)
    mounter.fail_with = "ossfs exited with status 1: bad"
    with pytest.raises(MountFailed) as error:
        driver.mount("v1", "a")
    assert str(error.value) == ("mount of volume 'v1' (bucket 'b-1' at https://e.example) failed:"
                                " ossfs exited with status 1: bad")
    assert driver.get("v1")["Status"]["mount_ids"] == []
    assert not os.path.exists(os.path.join(settings.passwd_dir, "v1"))
    assert "last_error" in driver.get("v1")["Status"]
    mounter.fail_with = None
    driver.mount("v1", "b")
    driver.unmount("v1", "b")
    driver.remove("v1")
    assert driver.list() == []


def test_passwd_file_is_private(settings, driver):
    driver.create("v1", OPTS)
    driver.mount("v1", "a")
    path = os.path.join(settings.passwd_dir, "v1")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(settings.passwd_dir).st_mode) == 0o700
    assert open(path).read() == "b-1:LTAI5tExampleKeyId:ExampleSecretValue0123456789\n"
    driver.unmount("v1", "a")
    assert not os.path.exists(path)


def test_remove_in_use_fails(driver):
    driver.create("v1", OPTS)
    driver.mount("v1", "a")
    with pytest.raises(VolumeInUse) as error:
        driver.remove("v1")
    assert str(error.value) == "volume 'v1' is in use by 1 mount(s); stop the containers that use it first"


def test_remove_keeps_stray_files(settings, driver):
    driver.create("v1", OPTS)
    mountpoint = driver.path("v1")
    os.makedirs(mountpoint)
    with open(os.path.join(mountpoint, "stray"), "w") as file:
        file.write("x")
    driver.remove("v1")
    assert os.path.exists(os.path.join(mountpoint, "stray"))
    with pytest.raises(VolumeNotFound):
        driver.get("v1")


def test_mount_refuses_non_empty_bare_mountpoint(driver):
    driver.create("v1", OPTS)
    os.makedirs(driver.path("v1"))
    open(os.path.join(driver.path("v1"), "stray"), "w").close()
    with pytest.raises(MountFailed, match="is not mounted but holds 1 file"):
        driver.mount("v1", "a")


def test_state_write_failure_fails_create(driver, monkeypatch):
    def broken(name, record):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(driver.store, "put", broken)
    with pytest.raises(StateError) as error:
        driver.create("v1", OPTS)
    assert str(error.value) == "could not save volume 'v1' to the state file: [Errno 28] No space left on device"
    assert driver.list() == []


def test_state_write_failure_undoes_mount(driver, mounter, monkeypatch):
    driver.create("v1", OPTS)

    def broken(name, record):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(driver.store, "put", broken)
    with pytest.raises(StateError):
        driver.mount("v1", "a")
    assert mounter.mounted == set()
    assert driver.get("v1")["Status"]["mount_ids"] == []


def test_missing_credentials(driver):
    with pytest.raises(InvalidOption) as error:
        driver.create("v1", {"bucket": "b-1", "url": "https://e.example"})
    assert str(error.value) == ("missing credentials: give the options 'ak_id' and 'ak_secret', 'credentials'"
                                " or 'ram_role', or set AK_ID and AK_SECRET on the plugin")


def test_plugin_level_credentials(settings, mounter):
    driver = restart(settings, mounter, {"AK_ID": "LTAI5tPluginKeyId", "AK_SECRET": "PluginSecretValue"})
    driver.create("v1", {"bucket": "b-1", "url": "https://e.example"})
    driver.mount("v1", "a")
    assert open(os.path.join(settings.passwd_dir, "v1")).read() == "b-1:LTAI5tPluginKeyId:PluginSecretValue\n"
    assert driver.get("v1")["Status"]["credentials"] == "plugin settings"


def test_status_has_no_secret(driver):
    driver.create("v1", OPTS)
    driver.mount("v1", "a")
    text = repr(driver.get("v1")) + repr(driver.list())
    assert OPTS["ak_id"] not in text
    assert OPTS["ak_secret"] not in text


def test_parallel_creates_make_one_volume(driver):
    errors = []

    def create():
        try:
            driver.create("v1", OPTS)
        except Exception as error:  # collected for the assert below
            errors.append(error)

    threads = [threading.Thread(target=create) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert errors == []
    assert len(driver.list()) == 1


def test_parallel_mounts_run_ossfs_once(settings):
    mounter = FakeMounter(delay=0.2)
    driver = restart(settings, mounter)
    driver.create("v1", OPTS)
    results = []
    threads = [threading.Thread(target=lambda i=i: results.append(driver.mount("v1", f"id{i}")))
               for i in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert len(mounter.mounts) == 1
    assert len(set(results)) == 1
    assert len(driver.get("v1")["Status"]["mount_ids"]) == 20


def test_slow_mount_does_not_block_reads(settings):
    mounter = FakeMounter(delay=1.5)
    driver = restart(settings, mounter)
    driver.create("v1", OPTS)
    driver.create("v2", OPTS)
    slow = threading.Thread(target=driver.mount, args=("v1", "a"))
    slow.start()
    time.sleep(0.1)
    started = time.monotonic()
    driver.get("v1")
    driver.list()
    driver.path("v1")
    assert time.monotonic() - started < 0.5
    slow.join(10)


def test_watchdog_retries_failed_remount(driver, mounter):
    driver.create("v1", OPTS)
    mountpoint = driver.mount("v1", "a")
    mounter.mounted.discard(mountpoint)  # ossfs died
    mounter.fail_with = "ossfs exited with status 1: endpoint down"
    driver.check_mounts(1.0)
    status = driver.get("v1")["Status"]
    assert status["mounted"] is False
    assert "endpoint down" in status["last_error"]
    assert status["mount_ids"] == ["a"]

    driver.check_mounts(1.0)
    assert len(mounter.mounts) == 2  # still backing off: no third attempt

    mounter.fail_with = None
    driver._volumes["v1"].retry_at = 0.0
    driver.check_mounts(1.0)
    assert mountpoint in mounter.mounted
    assert driver.get("v1")["Status"]["mounted"] is True
    assert len(mounter.mounts) == 3
