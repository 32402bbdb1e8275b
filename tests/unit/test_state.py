import json
import os
import stat
import threading

from plugin.state import StateStore


def record(*mount_ids):
    return {"options": {"bucket": "b-1", "url": "https://e.example"}, "mount_ids": list(mount_ids),
            "created_at": "2026-01-01T00:00:00+00:00"}


def test_round_trip(tmp_path):
    path = str(tmp_path / "state.json")
    store = StateStore(path)
    store.put("v1", record("a", "b"))
    store.put("v2", record())
    store.delete("v2")
    assert StateStore(path).load() == {"v1": record("a", "b")}


def test_file_is_private_and_readable_json(tmp_path):
    path = str(tmp_path / "state.json")
    store = StateStore(path)
    store.put("v2", record())
    store.put("v1", record("x"))
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    lines = open(path, encoding="utf-8").read().splitlines()
    assert lines[1].startswith('"v1": ')
    assert lines[2].startswith('"v2": ')
    assert json.load(open(path))["version"] == 1


def test_no_temporary_files_left(tmp_path):
    store = StateStore(str(tmp_path / "state.json"))
    for index in range(5):
        store.put(f"v{index}", record())
    assert sorted(os.listdir(tmp_path)) == ["state.json"]


def test_corrupt_file_is_kept_aside(tmp_path, caplog):
    path = tmp_path / "state.json"
    path.write_text('{"version": 1, "volumes": {"v1": {"opt')
    assert StateStore(str(path)).load() == {}
    aside = [name for name in os.listdir(tmp_path) if name.startswith("state.json.corrupt-")]
    assert len(aside) == 1
    assert (tmp_path / aside[0]).read_text().startswith('{"version": 1')
    assert "is corrupt" in caplog.text


def test_missing_file_loads_empty(tmp_path):
    assert StateStore(str(tmp_path / "sub" / "state.json")).load() == {}


def test_concurrent_writers_lose_no_update(tmp_path):
    path = str(tmp_path / "state.json")
    store = StateStore(path)

    def write(start):
        for index in range(start, start + 25):
            store.put(f"v{index}", record(str(index)))

    threads = [threading.Thread(target=write, args=(start,)) for start in range(0, 200, 25)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    loaded = StateStore(path).load()
    assert len(loaded) == 200
    assert loaded["v137"] == record("137")


def test_failed_write_keeps_previous_content(tmp_path):
    folder = tmp_path / "state"
    folder.mkdir()
    path = str(folder / "state.json")
    store = StateStore(path)
    store.put("v1", record())
    os.chmod(folder, 0o500)
    try:
        if os.geteuid() == 0:
            # root ignores folder modes; replace the folder with a file instead.
            os.chmod(folder, 0o700)
            store.path = str(tmp_path / "not-a-folder" / "state.json")
            (tmp_path / "not-a-folder").write_text("")
        try:
            store.put("v2", record())
        except OSError:
            pass
        else:
            raise AssertionError("put should have failed")
    finally:
        os.chmod(folder, 0o700)
    assert "v2" not in store._lines
    assert StateStore(path).load() == {"v1": record()}
