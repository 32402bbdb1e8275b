"""The state folder: one JSON file per volume with its options and mount IDs.

Each volume is a file ``<state dir>/volumes/<name>.json``, indented and
with sorted keys, so a person can read and diff it. The plugin keeps one
file per volume, not one file for all, so that a Create, Mount or Remove
writes a few hundred bytes whatever the number of volumes. Rewriting one
file of all volumes took a median 8.7 ms per change at 10,000 volumes on a
2-core test machine (docs/benchmarks.md).

Each write goes to a temporary file in the same folder, is fsynced, and
replaces the old file with ``os.replace``. A crash therefore leaves either
the old or the new file, never a torn one. The folder is fsynced after the
rename, so a change is durable before the call returns, and concurrent
writers share that fsync. The files contain credentials and have mode 0600,
in a folder of mode 0700.

Earlier releases kept every volume in the single file at STATE_PATH
(``{"version": 1, "volumes": {name: record}}``). ``load`` moves its volumes
into the folder and renames it to ``<STATE_PATH>.migrated``.
"""

import json
import logging
import os
import re
import tempfile
import threading
import time
import zlib

log = logging.getLogger(__name__)

LEGACY_FORMAT_VERSION = 1
FORMAT_VERSION = 2
FOLDER_NAME = "volumes"
SUFFIX = ".json"
TEMPORARY_SUFFIX = ".tmp"
# Volume names become file names, so the store accepts only names that are
# safe file names. The driver accepts a narrower set.
FILE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,199}")
# Writers of the same volume take the same one of these locks.
LOCK_STRIPES = 64


class _FolderSync:
    """Fsyncs a folder once for every caller that asks while the previous fsync runs.

    A caller takes a ticket after its rename. An fsync that starts after
    the ticket was taken makes that rename durable, so a caller whose
    ticket a finished fsync covers returns without one of its own.
    """

    def __init__(self, path):
        self.path = path
        self._counter_lock = threading.Lock()
        self._sync_lock = threading.Lock()
        self._requested = 0
        self._synced = 0

    def sync(self):
        with self._counter_lock:
            self._requested += 1
            ticket = self._requested
        with self._sync_lock:
            with self._counter_lock:
                if self._synced >= ticket:
                    return
                covered = self._requested
            descriptor = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(descriptor)
            finally:
                os.close(descriptor)
            with self._counter_lock:
                self._synced = max(self._synced, covered)


def _set_aside(path, error):
    aside = f"{path}.corrupt-{time.strftime('%Y%m%dT%H%M%S')}"
    os.replace(path, aside)
    log.error("state file %s is corrupt (%s): kept it as %s", path, error, aside)
    return aside


def _parse_legacy(data):
    """Return ``{name: record}`` from the content of a version 1 state file."""
    document = json.loads(data)
    volumes = document["volumes"]
    if document.get("version") != LEGACY_FORMAT_VERSION or not isinstance(volumes, dict):
        raise ValueError(f"unsupported version {document.get('version')!r}")
    for name, record in volumes.items():
        if not isinstance(record, dict) or not isinstance(record.get("options"), dict):
            raise ValueError(f"volume {name!r} has no options object")
    return volumes


def _parse_volume(data, name):
    """Return the record of volume ``name`` from the content of its file."""
    document = json.loads(data)
    if not isinstance(document, dict):
        raise ValueError("the file is not a JSON object")
    if document.get("version") != FORMAT_VERSION:
        raise ValueError(f"unsupported version {document.get('version')!r}")
    if document.get("name") != name:
        raise ValueError(f"the file names volume {document.get('name')!r}, not {name!r}")
    if not isinstance(document.get("options"), dict):
        raise ValueError("the volume has no options object")
    return {key: value for key, value in document.items() if key not in ("version", "name")}


def encode_volume(name, record):
    """Return the text of volume ``name``'s file."""
    if "version" in record or "name" in record:
        raise ValueError("a volume record must not have the keys 'version' or 'name'")
    return json.dumps({"version": FORMAT_VERSION, "name": name, **record}, indent=2, sort_keys=True) + "\n"


def read_volumes(state_path):
    """Return ``{name: record}`` as the plugin with STATE_PATH ``state_path`` would load it.

    It is read-only, for tools that inspect the state, and moves or fixes
    nothing. It reads the folder when it exists, else the version 1 file,
    and skips volume files that cannot be parsed. Raises OSError when the
    state cannot be read and ValueError when the version 1 file is corrupt.
    """
    folder = os.path.join(os.path.dirname(state_path), FOLDER_NAME)
    if not os.path.isdir(folder) and os.path.exists(state_path):
        with open(state_path, "rb") as file:
            return _parse_legacy(file.read())
    volumes = {}
    for file_name in sorted(os.listdir(folder)):
        name = file_name[:-len(SUFFIX)]
        if not file_name.endswith(SUFFIX) or not FILE_NAME.fullmatch(name):
            continue
        with open(os.path.join(folder, file_name), "rb") as file:
            try:
                volumes[name] = _parse_volume(file.read(), name)
            except ValueError:
                continue
    return volumes


class StateStore:
    """Loads and saves volume records; safe to call from many threads."""

    def __init__(self, path):
        self.path = path  # the version 1 file, read once to move its volumes
        self.folder = os.path.join(os.path.dirname(path), FOLDER_NAME)
        self._folder_sync = _FolderSync(self.folder)
        self._locks = [threading.Lock() for _ in range(LOCK_STRIPES)]

    def file_path(self, name):
        return os.path.join(self.folder, name + SUFFIX)

    def load(self):
        """Return ``{name: record}`` from the folder, or ``{}`` when there is none.

        A file that cannot be parsed is renamed to ``<file>.corrupt-<time>``
        and reported, and only its volume is not loaded. Temporary files left
        by a crash are deleted.
        """
        os.makedirs(self.folder, mode=0o700, exist_ok=True)
        self._migrate()
        volumes = {}
        for entry in sorted(os.scandir(self.folder), key=lambda entry: entry.name):
            if entry.name.startswith(".") and entry.name.endswith(TEMPORARY_SUFFIX):
                os.unlink(entry.path)
                continue
            name = entry.name[:-len(SUFFIX)]
            if not entry.name.endswith(SUFFIX) or not FILE_NAME.fullmatch(name):
                continue
            if not entry.is_file(follow_symlinks=False):
                log.error("ignored state folder entry %s because it is not a regular file", entry.path)
                continue
            with open(entry.path, "rb") as file:
                data = file.read()
            try:
                volumes[name] = _parse_volume(data, name)
            except (ValueError, UnicodeDecodeError) as error:
                _set_aside(entry.path, error)
        return volumes

    def put(self, name, record):
        """Store ``record`` for volume ``name`` on disk before returning."""
        text = encode_volume(name, record).encode("utf-8")
        with self._lock_for(name):
            self._write_file(name, text)
        self._folder_sync.sync()

    def delete(self, name):
        """Remove volume ``name`` from disk before returning."""
        with self._lock_for(name):
            try:
                os.unlink(self.file_path(name))
            except FileNotFoundError:
                return
        self._folder_sync.sync()

    def _lock_for(self, name):
        return self._locks[zlib.crc32(name.encode("utf-8")) % LOCK_STRIPES]

    def _write_file(self, name, data, durable=True):
        if not FILE_NAME.fullmatch(name):
            raise ValueError(f"volume name {name!r} cannot be a file name")
        # mkstemp creates the file with mode 0600 before anything is written.
        try:
            descriptor, temporary = tempfile.mkstemp(dir=self.folder, prefix=f".{name}.", suffix=TEMPORARY_SUFFIX)
        except FileNotFoundError:
            os.makedirs(self.folder, mode=0o700, exist_ok=True)
            descriptor, temporary = tempfile.mkstemp(dir=self.folder, prefix=f".{name}.", suffix=TEMPORARY_SUFFIX)
        try:
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(descriptor, view):]
                if durable:
                    os.fsync(descriptor)
            finally:
                os.close(descriptor)
            os.replace(temporary, self.file_path(name))
        except BaseException:
            try:
                os.unlink(temporary)
            except FileNotFoundError:
                pass
            raise

    def _migrate(self):
        """Move the volumes of a version 1 state file into the folder.

        The old file is renamed only after every volume file and the folder
        are on disk, so a crash midway leaves it in place and the next start
        moves it again. Volume files of the same names are overwritten,
        because the old file is the newer state when it still exists. One
        sync(2) after all files replaces an fsync per file, which took
        seconds for thousands of volumes on a busy disk.
        """
        try:
            with open(self.path, "rb") as file:
                data = file.read()
        except FileNotFoundError:
            return
        try:
            volumes = _parse_legacy(data)
        except (ValueError, KeyError, TypeError, UnicodeDecodeError) as error:
            _set_aside(self.path, error)
            log.error("no volumes were loaded from %s", self.path)
            return
        moved = 0
        for name, record in volumes.items():
            if not FILE_NAME.fullmatch(name):
                log.error("volume %r in %s cannot be a file name; it stays only in %s.migrated",
                          name, self.path, self.path)
                continue
            self._write_file(name, encode_volume(name, record).encode("utf-8"), durable=False)
            moved += 1
        os.sync()
        self._folder_sync.sync()
        os.replace(self.path, self.path + ".migrated")
        descriptor = os.open(os.path.dirname(self.path), os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
        log.info("moved %d volume(s) from %s to %s/; the old file is kept as %s.migrated",
                 moved, self.path, self.folder, self.path)
