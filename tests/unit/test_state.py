import json
import logging
import os
import stat
import threading

import pytest

from plugin import state
from plugin.state import StateStore


def record(*mount_ids):
    return {"options": {"bucket": "b-1", "url": "https://e.example"}, "mount_ids": list(mount_ids),
            "created_at": "2026-01-01T00:00:00+00:00"}


def legacy_file(path, volumes):
    """Write a version 1 state file, as earlier releases did."""
    lines = ",\n".join(json.dumps(name) + ": " + json.dumps(value) for name, value in volumes.items())
    path.write_text('{"version": 1, "volumes": {\n%s\n}}\n' % lines)


def test_round_trip(tmp_path):
    path = str(tmp_path / "state.json")
    store = StateStore(path)
    store.put("v1", record("a", "b"))
    store.put("v2", record())
    store.delete("v2")
    assert StateStore(path).load() == {"v1": record("a", "b")}


def test_files_are_private_and_readable_json(tmp_path):
    store = StateStore(str(tmp_path / "state.json"))
    store.load()
    store.put("v2", record())
    store.put("v1", record("x"))
    folder = tmp_path / "volumes"
    assert stat.S_IMODE(os.stat(folder).st_mode) == 0o700
    assert sorted(os.listdir(folder)) == ["v1.json", "v2.json"]
    assert stat.S_IMODE(os.stat(folder / "v1.json").st_mode) == 0o600
    text = (folder / "v1.json").read_text()
    assert '\n  "mount_ids": [\n    "x"\n  ],\n' in text
    assert json.loads(text) == {"version": 2, "name": "v1", **record("x")}


def test_no_temporary_files_left(tmp_path):
    store = StateStore(str(tmp_path / "state.json"))
    store.load()
    for index in range(5):
        store.put(f"v{index}", record())
    assert sorted(os.listdir(tmp_path)) == ["volumes"]
    assert sorted(os.listdir(tmp_path / "volumes")) == [f"v{index}.json" for index in range(5)]


def test_leftover_temporary_file_is_deleted(tmp_path):
    store = StateStore(str(tmp_path / "state.json"))
    store.load()
    store.put("v1", record())
    (tmp_path / "volumes" / ".v1.abc123.tmp").write_text('{"version": 2, "na')
    assert StateStore(str(tmp_path / "state.json")).load() == {"v1": record()}
    assert os.listdir(tmp_path / "volumes") == ["v1.json"]


def test_corrupt_volume_file_is_kept_aside(tmp_path, caplog):
    store = StateStore(str(tmp_path / "state.json"))
    store.load()
    store.put("v1", record())
    store.put("v2", record("a"))
    (tmp_path / "volumes" / "v1.json").write_text('{"version": 2, "name": "v1", "opt')
    assert StateStore(str(tmp_path / "state.json")).load() == {"v2": record("a")}
    aside = [name for name in os.listdir(tmp_path / "volumes") if name.startswith("v1.json.corrupt-")]
    assert len(aside) == 1
    assert (tmp_path / "volumes" / aside[0]).read_text().startswith('{"version": 2')
    assert "is corrupt" in caplog.text


@pytest.mark.parametrize("content, reason", [
    ('{"version": 3, "name": "v1", "options": {}}', "unsupported version 3"),
    ('{"version": 2, "name": "v9", "options": {}}', "the file names volume 'v9', not 'v1'"),
    ('{"version": 2, "name": "v1"}', "the volume has no options object"),
    ('["v1"]', "the file is not a JSON object"),
])
def test_invalid_volume_file_is_kept_aside(tmp_path, caplog, content, reason):
    (tmp_path / "volumes").mkdir()
    (tmp_path / "volumes" / "v1.json").write_text(content)
    assert StateStore(str(tmp_path / "state.json")).load() == {}
    assert reason in caplog.text
    assert not (tmp_path / "volumes" / "v1.json").exists()


def test_corrupt_legacy_file_is_kept_aside(tmp_path, caplog):
    path = tmp_path / "state.json"
    path.write_text('{"version": 1, "volumes": {"v1": {"opt')
    assert StateStore(str(path)).load() == {}
    aside = [name for name in os.listdir(tmp_path) if name.startswith("state.json.corrupt-")]
    assert len(aside) == 1
    assert (tmp_path / aside[0]).read_text().startswith('{"version": 1')
    assert "is corrupt" in caplog.text


def test_legacy_file_is_moved_to_folder(tmp_path, caplog):
    caplog.set_level(logging.INFO)
    path = tmp_path / "state.json"
    legacy_file(path, {"v1": record("a"), "v2": record()})
    os.chmod(path, 0o600)
    assert StateStore(str(path)).load() == {"v1": record("a"), "v2": record()}
    assert not path.exists()
    assert (tmp_path / "state.json.migrated").exists()
    assert stat.S_IMODE(os.stat(tmp_path / "state.json.migrated").st_mode) == 0o600
    assert sorted(os.listdir(tmp_path / "volumes")) == ["v1.json", "v2.json"]
    assert "moved 2 volume(s)" in caplog.text
    assert StateStore(str(path)).load() == {"v1": record("a"), "v2": record()}


def test_legacy_file_wins_over_older_volume_files(tmp_path):
    """A crash after the files were written but before the rename leaves both; the file is redone."""
    store = StateStore(str(tmp_path / "state.json"))
    store.load()
    store.put("v1", record())
    legacy_file(tmp_path / "state.json", {"v1": record("a")})
    assert StateStore(str(tmp_path / "state.json")).load() == {"v1": record("a")}


def test_read_volumes_reads_folder_or_legacy_file(tmp_path):
    path = tmp_path / "state.json"
    legacy_file(path, {"v1": record("a")})
    assert state.read_volumes(str(path)) == {"v1": record("a")}
    assert path.exists()
    StateStore(str(path)).load()
    assert state.read_volumes(str(path)) == {"v1": record("a")}


def test_missing_file_loads_empty(tmp_path):
    assert StateStore(str(tmp_path / "sub" / "state.json")).load() == {}


def test_delete_of_missing_volume_is_quiet(tmp_path):
    store = StateStore(str(tmp_path / "state.json"))
    store.load()
    store.delete("v1")
    assert store.load() == {}


def test_concurrent_writers_lose_no_update(tmp_path):
    path = str(tmp_path / "state.json")
    store = StateStore(path)
    store.load()

    def write(start):
        for index in range(start, start + 25):
            store.put(f"v{index}", record(str(index)))
            store.put(f"v{index}", record(str(index), "second"))

    threads = [threading.Thread(target=write, args=(start,)) for start in range(0, 200, 25)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    loaded = StateStore(path).load()
    assert len(loaded) == 200
    assert loaded["v137"] == record("137", "second")


def test_failed_write_keeps_previous_content(tmp_path, monkeypatch):
    store = StateStore(str(tmp_path / "state.json"))
    store.load()
    store.put("v1", record())

    def no_space(descriptor):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(state.os, "fsync", no_space)
    with pytest.raises(OSError):
        store.put("v1", record("a"))
    with pytest.raises(OSError):
        store.put("v2", record())
    monkeypatch.undo()
    assert os.listdir(tmp_path / "volumes") == ["v1.json"]
    assert StateStore(str(tmp_path / "state.json")).load() == {"v1": record()}


def test_record_keys_must_not_clash(tmp_path):
    store = StateStore(str(tmp_path / "state.json"))
    store.load()
    with pytest.raises(ValueError):
        store.put("v1", {**record(), "name": "other"})
