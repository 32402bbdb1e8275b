"""The volume driver: Docker's volume calls on top of the state and ossfs.

Locking: ``Driver._lock`` guards only the name -> Volume map and is never held
across I/O. Each Volume has its own lock, held for the whole of a Create,
Mount, Unmount or Remove of that volume, so a slow mount delays no other
volume. Get, List and Path take no volume lock and never wait for a mount.
"""

import collections
import datetime
import logging
import os
import threading
import time

from . import credentials, options
from .command import build_argv
from .errors import (BadRequest, MountFailed, PluginError, StateError, VolumeConflict, VolumeInUse,
                     VolumeNotFound)
from .mounter import Mounter, read_mount_table
from .state import StateStore

log = logging.getLogger(__name__)

# Maximum wait, in seconds, between watchdog remounts of a volume that fails.
MAX_RETRY_DELAY = 300.0
# Seconds the ossfs processes get to exit at shutdown before SIGTERM.
SHUTDOWN_GRACE = 2.0


def _now():
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


class Volume:
    """One volume: its options, the mount IDs that hold it, and its health."""

    def __init__(self, name, opts, config, mountpoint, mount_ids=(), created_at=None):
        self.name = name
        self.options = opts  # as Docker sent them; contains secrets, never logged
        self.config = config
        self.mountpoint = mountpoint
        # Mount calls per ID. Docker sends a running container's own ID again,
        # with a matching Unmount, around a "docker cp". So one ID can mount
        # the volume more than once, and only the last Unmount unmounts.
        self.mount_ids = collections.Counter(mount_ids)
        self.created_at = created_at or _now()
        self.lock = threading.Lock()
        self.saved = False  # False until the state file has the volume
        self.removed = False
        self.mounted = False
        self.last_error = ""
        self.last_check = ""
        self.retry_failures = 0  # failed watchdog remounts in a row
        self.retry_at = 0.0  # time.monotonic() before which the watchdog skips it

    def record(self):
        return {"options": self.options, "mount_ids": sorted(self.mount_ids.elements()),
                "created_at": self.created_at}

    def mount_count(self):
        return sum(self.mount_ids.values())

    def release(self, mount_id):
        """Take back one Mount call of ``mount_id``; return False for an unknown ID."""
        if mount_id not in self.mount_ids:
            return False
        self.mount_ids[mount_id] -= 1
        if self.mount_ids[mount_id] <= 0:
            del self.mount_ids[mount_id]
        return True


class Driver:
    def __init__(self, settings, store=None, mounter=None, environ=None):
        self.settings = settings
        self.store = store or StateStore(settings.state_path)
        self.mounter = mounter or Mounter(settings.fusermount_bin)
        self.passwd_files = credentials.PasswdFiles(settings.passwd_dir)
        self.default_keys = credentials.plugin_keys(environ)
        self._volumes = {}
        self._lock = threading.Lock()
        # Incremented after each change to the set of listed volumes, so the
        # API can reuse its encoded List reply until the next change.
        self.list_generation = 0
        self._stopping = threading.Event()

    # Loading and reconciling after a start

    def load(self):
        """Read the volumes from the state file. Fast: touches no mount."""
        for name, record in self.store.load().items():
            try:
                options.validate_name(name)
                config = options.parse_options(record["options"])
            except PluginError as error:
                log.error("volume %s in the state file is invalid (%s); it is kept in the file but not served",
                          name, error)
                continue
            volume = Volume(name, record["options"], config, self._mountpoint(name),
                            record.get("mount_ids", ()), record.get("created_at"))
            volume.saved = True
            self._volumes[name] = volume
        log.info("loaded %d volume(s) from %s", len(self._volumes), self.store.folder)

    def reconcile(self):
        """Match the mount IDs in the state with the mount table.

        Live mounts are kept, and dead ones are detached and mounted again.
        The IDs of mounts that vanished (the host rebooted, or ossfs was
        unmounted while the plugin was down) are dropped, because Docker
        will not mount them again under the same ID. Mounts without a mount
        ID are then unmounted.
        """
        table = read_mount_table()
        for volume in self._snapshot():
            with volume.lock:
                if volume.removed or not volume.mount_ids:
                    continue
                if volume.mountpoint not in table:
                    log.info("volume %s: mount vanished while the plugin was stopped; dropping mount IDs %s",
                             volume.name, ", ".join(sorted(volume.mount_ids)))
                    volume.mount_ids.clear()
                    self._save_quietly(volume)
                    continue
                try:
                    self._ensure_mounted(volume)
                except PluginError as error:
                    log.error("volume %s: remount after restart failed: %s", volume.name, error)
        self.sweep_orphans()

    def watch(self, interval):
        """Remount, every ``interval`` seconds, each volume in use whose mount died.

        A volume is checked while mount IDs hold it, also after a failed
        remount, so containers get their volume back once the endpoint
        responds again. Failed remounts back off exponentially, up to
        MAX_RETRY_DELAY. A volume whose lock is held (a Mount or Unmount is
        running) is left for the next round rather than waited for.
        """
        while not self._stopping.wait(interval):
            self.check_mounts(interval)

    def check_mounts(self, interval):
        """Run one watchdog round; see ``watch``."""
        for volume in self._snapshot():
            if not volume.mount_ids or time.monotonic() < volume.retry_at:
                continue
            if not volume.lock.acquire(blocking=False):
                continue
            try:
                if volume.mount_ids and not volume.removed:
                    self._ensure_mounted(volume)
                    volume.retry_failures = 0
            except PluginError as error:
                volume.retry_failures += 1
                delay = min(interval * 2 ** volume.retry_failures, MAX_RETRY_DELAY)
                volume.retry_at = time.monotonic() + delay
                log.error("volume %s: remount by the watchdog failed (attempt %d, next in %.0f s): %s",
                          volume.name, volume.retry_failures, delay, error)
            finally:
                volume.lock.release()
        self.sweep_orphans()

    def sweep_orphans(self):
        """Unmount FUSE mounts under the mount root that no mount ID holds.

        They come from a plugin killed between starting ossfs and saving the
        mount ID: Docker got no reply, so it sends no Unmount. Volumes with a
        Mount in progress are skipped.
        """
        root = self.settings.mount_root
        for point, fstype in read_mount_table().items():
            if os.path.dirname(point) != root or not fstype.startswith("fuse"):
                continue
            name = os.path.basename(point)
            with self._lock:
                volume = self._volumes.get(name)
            if volume is None:
                log.warning("unmounting %s: no volume of that name exists", point)
                self.mounter.cleanup(point)
                continue
            if not volume.lock.acquire(blocking=False):
                continue
            try:
                if not volume.mount_ids and not volume.removed:
                    log.warning("volume %s: unmounting %s because no mount ID uses it", name, point)
                    self.mounter.cleanup(point)
                    self.passwd_files.delete(name)
                    volume.mounted = False
            finally:
                volume.lock.release()

    # Docker's volume calls

    def create(self, name, opts):
        options.validate_name(name)
        opts = dict(opts or {})
        config = options.parse_options(opts)
        credentials.resolve_keys(config, self.default_keys, self.settings.credentials_file)

        with self._lock:
            volume = self._volumes.get(name)
            if volume is None:
                volume = Volume(name, opts, config, self._mountpoint(name))
                volume.lock.acquire()
                self._volumes[name] = volume
                is_new = True
            else:
                is_new = False

        if not is_new:
            with volume.lock:
                if volume.removed:
                    return self.create(name, opts)
                if volume.options != opts:
                    raise VolumeConflict(
                        f"volume {name!r} already exists with other options;"
                        " remove it first or choose another name"
                    )
                log.debug("create %s: exists with the same options", name)
                return

        try:
            self._save(volume)
            volume.saved = True
            with self._lock:
                self.list_generation += 1
        except StateError:
            with self._lock:
                del self._volumes[name]
            volume.removed = True
            raise
        finally:
            volume.lock.release()
        for warning in config.warnings:
            log.warning("volume %s: %s", name, warning)
        log.info("created volume %s (bucket %s, endpoint %s)", name, config.bucket_spec, config.url)

    def remove(self, name):
        volume = self._lookup(name)
        with volume.lock:
            self._check_present(volume)
            if volume.mount_ids:
                raise VolumeInUse(
                    f"volume {name!r} is in use by {volume.mount_count()} mount(s);"
                    " stop the containers that use it first"
                )
            # Scanning for a stray ossfs costs more than the rest of Remove,
            # so it runs only for a volume that was or still is mounted.
            if volume.mounted or self.mounter.is_mounted(volume.mountpoint):
                self.mounter.unmount(volume.mountpoint)
            self.passwd_files.delete(name)
            self._remove_file(os.path.join(self.settings.log_dir, f"{name}.log"))
            self._remove_mountpoint(volume)
            try:
                self.store.delete(name)
            except OSError as error:
                raise StateError(f"could not save the removal of volume {name!r}: {error}") from None
            with self._lock:
                del self._volumes[name]
                self.list_generation += 1
            volume.removed = True
        log.info("removed volume %s", name)

    def mount(self, name, mount_id):
        mount_id = self._check_mount_id(mount_id)
        volume = self._lookup(name)
        with volume.lock:
            self._check_present(volume)
            self._ensure_mounted(volume)
            volume.mount_ids[mount_id] += 1
            try:
                self._save(volume)
            except StateError:
                volume.release(mount_id)
                if not volume.mount_ids:
                    self._stop_mount(volume)
                raise
            log.info("volume %s: mount ID %s added (%d in use)", name, mount_id, volume.mount_count())
            return volume.mountpoint

    def unmount(self, name, mount_id):
        mount_id = self._check_mount_id(mount_id)
        volume = self._lookup(name)
        with volume.lock:
            self._check_present(volume)
            if not volume.release(mount_id):
                log.info("volume %s: unmount of unknown mount ID %s; nothing to release", name, mount_id)
                return
            if not volume.mount_ids:
                self._stop_mount(volume)
            self._save(volume)
            log.info("volume %s: mount ID %s released (%d in use)", name, mount_id, volume.mount_count())

    def path(self, name):
        return self._lookup(name).mountpoint

    def get(self, name):
        volume = self._lookup(name)
        return {
            "Name": volume.name,
            "Mountpoint": volume.mountpoint,
            "CreatedAt": volume.created_at,
            "Status": self._status(volume),
        }

    def list(self):
        with self._lock:
            volumes = [volume for volume in self._volumes.values() if volume.saved]
        return [{"Name": volume.name, "Mountpoint": volume.mountpoint} for volume in volumes]

    def capabilities(self):
        return {"Scope": self.settings.scope}

    # Lifecycle

    def shutdown(self, budget=8.0):
        """Unmount every mounted volume, keeping the state file as it is.

        Docker stops a plugin with SIGKILL 10 seconds after SIGTERM, and a
        killed ossfs leaves a "Transport endpoint is not connected" mount,
        so this works within ``budget`` seconds. Every mount is detached
        first, and then all ossfs processes share one grace period to exit.
        An ossfs whose mount a container still uses never exits by itself.
        """
        self._stopping.set()
        deadline = time.monotonic() + budget
        detached = []
        for volume in self._snapshot():
            if not volume.lock.acquire(timeout=max(deadline - time.monotonic() - SHUTDOWN_GRACE, 0.01)):
                log.warning("volume %s is busy; leaving its mount in place at shutdown", volume.name)
                continue
            try:
                if self.mounter.is_mounted(volume.mountpoint):
                    self.mounter.detach(volume.mountpoint)
                    volume.mounted = False
                    detached.append(volume)
                    log.info("volume %s: unmounted at shutdown", volume.name)
            except PluginError as error:
                log.error("volume %s: unmount at shutdown failed: %s", volume.name, error)
            finally:
                volume.lock.release()
        grace = max(min(SHUTDOWN_GRACE, deadline - time.monotonic()), 0.1)
        self.mounter.stop_daemons([volume.mountpoint for volume in detached], grace=grace)
        for volume in detached:
            self.passwd_files.delete(volume.name)

    # Helpers

    def _mountpoint(self, name):
        return os.path.join(self.settings.mount_root, name)

    def _lookup(self, name):
        options.validate_name(name)
        with self._lock:
            volume = self._volumes.get(name)
        if volume is None or not volume.saved:
            raise VolumeNotFound(name)
        return volume

    @staticmethod
    def _check_present(volume):
        if volume.removed:
            raise VolumeNotFound(volume.name)

    @staticmethod
    def _check_mount_id(mount_id):
        if not isinstance(mount_id, str) or not mount_id or len(mount_id) > 256:
            raise BadRequest("mount ID is missing or invalid: pass 'ID' as a non-empty string")
        return mount_id

    def _save(self, volume):
        try:
            self.store.put(volume.name, volume.record())
        except OSError as error:
            raise StateError(f"could not save volume {volume.name!r} to the state file: {error}") from None

    def _save_quietly(self, volume):
        try:
            self._save(volume)
        except StateError as error:
            log.error("%s", error)

    def _snapshot(self):
        with self._lock:
            return list(self._volumes.values())

    def _ensure_mounted(self, volume):
        """Make the volume's mount live: keep a live one, replace a dead one.

        Called with the volume lock held. Raises MountFailed when ossfs fails.
        """
        health = self.mounter.health(volume.mountpoint)
        volume.last_check = _now()
        if health.alive:
            volume.mounted = True
            return
        if volume.mountpoint in read_mount_table():
            log.warning("volume %s: mount at %s is dead (%s); mounting it again",
                        volume.name, volume.mountpoint, health.reason)
            self.mounter.cleanup(volume.mountpoint)
        self._start_mount(volume)
        volume.mounted = True

    def _start_mount(self, volume):
        """Write the passwd file and run ossfs; undo both if the mount fails."""
        config = volume.config
        ak_id, ak_secret, _ = credentials.resolve_keys(config, self.default_keys,
                                                       self.settings.credentials_file)
        self._prepare_mountpoint(volume)
        passwd_path = self.passwd_files.path(volume.name)
        if ak_id is not None:
            passwd_path = self.passwd_files.write(volume.name, config, ak_id, ak_secret)
        logfile = self._prepare_logfile(volume)
        argv = build_argv(self.settings.ossfs_bin, config, volume.mountpoint, passwd_path, logfile)
        log.info("volume %s: mounting %s from %s", volume.name, config.bucket_spec, config.url)
        started = time.monotonic()
        try:
            self.mounter.mount(argv, volume.mountpoint, self.settings.mount_timeout,
                               secrets=[s for s in (ak_id, ak_secret) if s is not None],
                               endpoint=config.url, logfile=logfile)
        except MountFailed as error:
            self.passwd_files.delete(volume.name)
            volume.mounted = False
            volume.last_error = f"{_now()} {error}"
            log.warning("volume %s: mount failed: %s", volume.name, error)
            raise MountFailed(f"mount of volume {volume.name!r} (bucket {config.bucket_spec!r}"
                              f" at {config.url}) failed: {error}") from None
        volume.last_error = ""
        log.info("volume %s: mounted at %s in %.2f s", volume.name, volume.mountpoint,
                 time.monotonic() - started)

    def _stop_mount(self, volume):
        self.mounter.unmount(volume.mountpoint)
        self.passwd_files.delete(volume.name)
        volume.mounted = False
        log.info("volume %s: unmounted %s", volume.name, volume.mountpoint)

    def _prepare_mountpoint(self, volume):
        os.makedirs(volume.mountpoint, mode=0o755, exist_ok=True)
        stray = os.listdir(volume.mountpoint)
        if stray:
            raise MountFailed(
                f"mount of volume {volume.name!r} failed: the mountpoint {volume.mountpoint}"
                f" is not mounted but holds {len(stray)} file(s); move them away and retry"
            )

    def _prepare_logfile(self, volume):
        """Create an empty ossfs log file for this mount, mode 0600."""
        folder = self.settings.log_dir
        os.makedirs(folder, mode=0o700, exist_ok=True)
        path = os.path.join(folder, f"{volume.name}.log")
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        os.close(descriptor)
        return path

    @staticmethod
    def _remove_file(path):
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass

    def _remove_mountpoint(self, volume):
        try:
            os.rmdir(volume.mountpoint)
        except FileNotFoundError:
            pass
        except OSError as error:
            log.warning("volume %s: left the mountpoint %s in place: %s",
                        volume.name, volume.mountpoint, error.strerror)

    def _status(self, volume):
        # Reads fields without the volume lock. sorted() copies the counter in
        # C while holding the GIL, so a concurrent Mount cannot change it midway.
        config = volume.config
        status = {
            "bucket": config.bucket,
            "url": config.url,
            "mounted": volume.mounted,
            "mount_ids": sorted(volume.mount_ids.elements()),
        }
        if config.prefix:
            status["path"] = config.prefix
        status["credentials"] = credentials.describe_source(config, self.default_keys)
        if config.warnings:
            status["warnings"] = list(config.warnings)
        if volume.last_error:
            status["last_error"] = volume.last_error
        if volume.last_check:
            status["last_check"] = volume.last_check
        return status
