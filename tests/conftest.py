import os
import shutil
import socket
import threading
import uuid

import pytest

from tests import harness

IN_CI = os.environ.get("CI", "").lower() == "true"


def require(condition, reason):
    """Skip a test whose real component is missing; under CI=true, fail it instead."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"{reason} (CI=true: tests that need it must run)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def object_store():
    folder = harness.short_temporary_folder("ossfs-s3-")
    store = harness.ObjectStore(folder).start()
    yield store
    store.stop()
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def s3(object_store):
    return object_store.client()


@pytest.fixture
def bucket(s3):
    name = f"test-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    return name


@pytest.fixture
def folder():
    path = harness.short_temporary_folder()
    yield path
    harness.cleanup_mounts(path)
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def fuse():
    require(harness.fuse_available(), "FUSE tests need root, /dev/fuse, s3fs and fusermount")


@pytest.fixture
def start_plugin(folder):
    """Return a function that starts the plugin in ``folder``; stop it at teardown."""
    started = []

    def start(**environment):
        plugin = harness.PluginProcess(folder, environment=environment).start()
        started.append(plugin)
        return plugin

    yield start
    for plugin in started:
        plugin.stop()


@pytest.fixture
def plugin(start_plugin):
    return start_plugin()


@pytest.fixture(scope="module")
def shared_plugin():
    """One plugin for a whole module, for tests that use volume names of their own.

    Starting and stopping gunicorn takes about 2.5 s, most of it the
    graceful stop.
    """
    path = harness.short_temporary_folder()
    plugin = harness.PluginProcess(path).start()
    yield plugin
    plugin.stop()
    harness.cleanup_mounts(path)
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def volume_opts(object_store, bucket):
    """Options of a volume on a fresh bucket of the local object store."""
    return {"bucket": bucket, "url": object_store.url, "ak_id": "test-key-id",
            "ak_secret": "test-secret-value"}


@pytest.fixture
def silent_endpoint():
    """A listener on 127.0.0.1 that accepts connections and never responds."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    listener.settimeout(0.2)
    accepted = []
    stop = threading.Event()

    def accept():
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])
            except OSError:
                pass

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    stop.set()
    thread.join(5)
    for connection in accepted:
        connection.close()
    listener.close()
