"""The JSON state file: every volume's options and mount IDs.

The file is one JSON object, ``{"version": 1, "volumes": {name: record}}``,
written with one volume per line so a person can read and diff it. Each
write goes to a temporary file in the same folder, is fsynced, and replaces
the old file with ``os.replace``, so a crash leaves either the old or the
new file and never a torn one. The file holds credentials and has mode 0600.
"""

import json
import logging
import os
import tempfile
import threading
import time

log = logging.getLogger(__name__)

FORMAT_VERSION = 1


class StateStore:
    """Loads and saves volume records; safe to call from many threads."""

    def __init__(self, path):
        self.path = path
        self._lock = threading.Lock()
        # Each volume's serialized line, cached so a write only encodes the
        # record that changed.
        self._lines = {}

    def load(self):
        """Return ``{name: record}`` from the file; ``{}`` when there is none.

        A file that cannot be parsed is renamed to ``<path>.corrupt-<time>``
        and reported, and the plugin starts with no volumes rather than not
        at all.
        """
        os.makedirs(os.path.dirname(self.path), mode=0o700, exist_ok=True)
        try:
            with open(self.path, "rb") as file:
                data = file.read()
        except FileNotFoundError:
            return {}
        try:
            document = json.loads(data)
            volumes = document["volumes"]
            if document.get("version") != FORMAT_VERSION or not isinstance(volumes, dict):
                raise ValueError(f"unsupported version {document.get('version')!r}")
            for name, record in volumes.items():
                if not isinstance(record, dict) or not isinstance(record.get("options"), dict):
                    raise ValueError(f"volume {name!r} has no options object")
        except (ValueError, KeyError, TypeError) as error:
            aside = f"{self.path}.corrupt-{time.strftime('%Y%m%dT%H%M%S')}"
            os.replace(self.path, aside)
            log.error("state file %s is corrupt (%s); kept it as %s and started with no volumes",
                      self.path, error, aside)
            return {}
        with self._lock:
            self._lines = {name: self._encode(name, record) for name, record in volumes.items()}
        return volumes

    def put(self, name, record):
        """Store ``record`` for volume ``name`` and write the file."""
        line = self._encode(name, record)
        with self._lock:
            previous = self._lines.get(name)
            self._lines[name] = line
            try:
                self._write()
            except OSError:
                if previous is None:
                    del self._lines[name]
                else:
                    self._lines[name] = previous
                raise

    def delete(self, name):
        """Remove volume ``name`` and write the file."""
        with self._lock:
            previous = self._lines.pop(name, None)
            if previous is None:
                return
            try:
                self._write()
            except OSError:
                self._lines[name] = previous
                raise

    @staticmethod
    def _encode(name, record):
        return json.dumps(name) + ": " + json.dumps(record, sort_keys=True)

    def _write(self):
        body = ",\n".join(self._lines[name] for name in sorted(self._lines))
        text = '{"version": %d, "volumes": {\n%s\n}}\n' % (FORMAT_VERSION, body)
        folder = os.path.dirname(self.path)
        # mkstemp creates the file with mode 0600 before anything is written.
        descriptor, temporary = tempfile.mkstemp(dir=folder, prefix=".state-", suffix=".tmp")
        try:
            with os.fdopen(descriptor, "w", encoding="utf-8") as file:
                file.write(text)
                file.flush()
                os.fsync(file.fileno())
            os.replace(temporary, self.path)
        except BaseException:
            try:
                os.unlink(temporary)
            except FileNotFoundError:
                pass
            raise
        directory = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
