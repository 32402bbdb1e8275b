"""``ossfs-volume list`` against a real plugin process, and its errors when no plugin responds."""

import http.server
import json
import os
import re
import socket
import socketserver
import threading
import uuid

import pytest

from tests import harness
from tests.admin.conftest import plugin_environment, run_admin
from tests.conftest import require
from tests.harness import PluginCallError

LONG_ID = "f" * 64


def table_rows(stdout):
    """Split the table into rows of cells, which are separated by two or more spaces."""
    return [re.split(r" {2,}", line.rstrip()) for line in stdout.splitlines()]


def test_list_empty_plugin(plugin):
    result = run_admin("list", env=plugin_environment(plugin))
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"no volumes (plugin at {plugin.socket_path})\n"
    result = run_admin("list", "--json", env=plugin_environment(plugin))
    assert json.loads(result.stdout) == []


@pytest.fixture(scope="module")
def three_volumes(shared_plugin, object_store, s3):
    """v1 mounted twice on a folder of a bucket, v2 idle, v3 with a failed mount.

    Returns the plugin and the bucket. Only this fixture uses the module's
    shared plugin, so these are its only volumes.
    """
    require(harness.fuse_available(), "FUSE tests need root, /dev/fuse, s3fs and fusermount")
    plugin = shared_plugin
    bucket = f"test-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=bucket)
    opts = {"bucket": bucket, "url": object_store.url, "ak_id": "test-key-id", "ak_secret": "test-secret-value"}
    plugin.call("Create", Name="v1", Opts={**opts, "bucket": f"{bucket}:/team/x"})
    plugin.call("Create", Name="v2", Opts=opts)
    plugin.call("Create", Name="v3", Opts={**opts, "url": f"http://127.0.0.1:{harness.free_port()}"})
    plugin.call("Mount", Name="v1", ID=LONG_ID)
    plugin.call("Mount", Name="v1", ID="b")
    with pytest.raises(PluginCallError):
        plugin.call("Mount", Name="v3", ID="c")
    yield plugin, bucket
    plugin.call("Unmount", Name="v1", ID=LONG_ID)
    plugin.call("Unmount", Name="v1", ID="b")


def test_list_table_shows_each_volume(three_volumes):
    plugin, bucket = three_volumes
    result = run_admin("list", env=plugin_environment(plugin))
    assert result.returncode == 0, result.stderr
    rows = table_rows(result.stdout)
    assert rows[0] == ["NAME", "BUCKET", "PATH", "MOUNTED", "MOUNT IDS", "LAST ERROR"]
    assert rows[1] == ["v1", bucket, "/team/x", "yes", "b,ffffffffffff", "-"]
    assert rows[2] == ["v2", bucket, "/", "no", "-", "-"]
    assert rows[3][:5] == ["v3", bucket, "/", "no", "-"]
    assert "CURLE_COULDNT_CONNECT" in rows[3][5]
    assert len(rows[3][5]) == 80
    assert rows[3][5].endswith("...")
    assert len(rows) == 4


def test_list_no_trunc_keeps_whole_values(three_volumes):
    plugin, _ = three_volumes
    result = run_admin("list", "--no-trunc", env=plugin_environment(plugin))
    rows = table_rows(result.stdout)
    assert rows[1][4] == f"b,{LONG_ID}"
    assert rows[3][5].endswith("Exiting FUSE event loop due to errors")


def test_list_json_has_every_field(three_volumes, object_store):
    plugin, bucket = three_volumes
    result = run_admin("list", "--json", env=plugin_environment(plugin))
    assert result.returncode == 0, result.stderr
    volumes = json.loads(result.stdout)
    assert [volume["name"] for volume in volumes] == ["v1", "v2", "v3"]
    first = volumes[0]
    assert first == {
        "name": "v1", "bucket": bucket, "path": "/team/x", "url": object_store.url, "mounted": True,
        "mount_ids": ["b", LONG_ID], "last_error": "",
        "mountpoint": f"{plugin.mount_root}/v1", "credentials": "volume options", "warnings": [],
    }
    assert "ossfs stopped: CURLE_COULDNT_CONNECT" in volumes[2]["last_error"]


def test_list_never_prints_keys(plugin, volume_opts):
    markers = {"ak_id": "AKID-MARKER-31c7", "ak_secret": "SECRET-MARKER-88a0"}
    plugin.call("Create", Name="v1", Opts={**volume_opts, **markers})
    for arguments in (["list"], ["list", "--json"], ["list", "--no-trunc"]):
        result = run_admin(*arguments, env=plugin_environment(plugin))
        assert result.returncode == 0, result.stderr
        for marker in markers.values():
            assert marker not in result.stdout + result.stderr


def test_list_socket_option_on_either_side(plugin):
    before = run_admin("--socket", plugin.socket_path, "list")
    after = run_admin("list", "--socket", plugin.socket_path)
    assert before.returncode == 0, before.stderr
    assert after.returncode == 0, after.stderr
    assert before.stdout == after.stdout == f"no volumes (plugin at {plugin.socket_path})\n"


def test_list_missing_socket_exits_2(folder):
    path = os.path.join(folder, "absent.sock")
    result = run_admin("list", "--socket", path)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr == (
        f"ossfs-volume: plugin socket {path} not found: check that the plugin runs (systemctl status"
        " docker-volume-ossfs, or docker plugin ls) and pass --socket with its socket path; a managed"
        " plugin listens on /run/docker/plugins/<plugin ID>/ossfs.sock\n"
    )


def test_list_stale_socket_exits_2(folder):
    path = os.path.join(folder, "stale.sock")
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(path)  # bound but not listening, as a socket left by a killed plugin
    try:
        result = run_admin("list", env={"SOCKET_PATH": path})
    finally:
        stale.close()
    assert result.returncode == 2
    assert result.stderr.startswith(
        f"ossfs-volume: the plugin socket {path} refuses connections, so no plugin serves it: check that"
    )


class NotPluginHandler(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = b"404 page not found\n"
        self.send_response(404)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *arguments):
        pass


class UnixHTTPServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True

    def get_request(self):
        connection, _ = super().get_request()
        # BaseHTTPRequestHandler expects a (host, port) client address.
        return connection, ("local", 0)


def test_list_other_server_exits_2(folder):
    path = os.path.join(folder, "other.sock")
    server = UnixHTTPServer(path, NotPluginHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        result = run_admin("list", "--socket", path)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
    assert result.returncode == 2
    assert result.stderr == (
        f"ossfs-volume: {path} responded to VolumeDriver.List with HTTP 404 and no plugin reply:"
        " check that --socket is the ossfs plugin's socket\n"
    )
