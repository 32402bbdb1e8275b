"""The HTTP layer served by gunicorn on a real unix socket.

Requests carry the headers Docker's plugin client sends (no Content-Type).
These tests need no FUSE: the mount paths are covered in tests/fuse.
"""

import json

import pytest

CONTENT_TYPE = "application/vnd.docker.plugins.v1.2+json"
OPTS = {"bucket": "b-1", "url": "https://e.example", "ak_id": "LTAI5tExampleKeyId",
        "ak_secret": "ExampleSecretValue0123456789"}


@pytest.fixture
def plugin(shared_plugin):
    return shared_plugin


@pytest.fixture
def raw_post(plugin):
    def post(endpoint, data, method="POST"):
        url = "http+unix://" + plugin.socket_path.replace("/", "%2F") + endpoint
        reply = plugin.session.request(method, url, data=data, headers={"User-Agent": "Go-http-client/1.1"})
        return reply
    return post


def test_activate(plugin):
    assert plugin.post("Plugin.Activate") == (200, {"Implements": ["VolumeDriver"]})


def test_capabilities_default_scope(plugin):
    assert plugin.post("VolumeDriver.Capabilities") == (200, {"Capabilities": {"Scope": "local"}})


def test_capabilities_scope_setting(start_plugin):
    plugin = start_plugin(SCOPE="global")
    assert plugin.post("VolumeDriver.Capabilities") == (200, {"Capabilities": {"Scope": "global"}})


def test_replies_are_json_with_docker_type(raw_post):
    reply = raw_post("/Plugin.Activate", "")
    assert reply.headers["Content-Type"] == CONTENT_TYPE
    assert reply.json() == {"Implements": ["VolumeDriver"]}


def test_create_get_list_path_remove(start_plugin):
    plugin = start_plugin()
    assert plugin.post("VolumeDriver.Create", {"Name": "v1", "Opts": OPTS}) == (200, {"Err": ""})
    status, reply = plugin.post("VolumeDriver.Get", {"Name": "v1"})
    assert status == 200
    volume = reply["Volume"]
    assert volume["Name"] == "v1"
    assert volume["Mountpoint"] == f"{plugin.mount_root}/v1"
    assert volume["Status"]["bucket"] == "b-1"
    assert volume["Status"]["mounted"] is False
    assert plugin.post("VolumeDriver.List") == (
        200, {"Volumes": [{"Name": "v1", "Mountpoint": f"{plugin.mount_root}/v1"}], "Err": ""})
    assert plugin.post("VolumeDriver.Path", {"Name": "v1"}) == (
        200, {"Mountpoint": f"{plugin.mount_root}/v1", "Err": ""})
    assert plugin.post("VolumeDriver.Remove", {"Name": "v1"}) == (200, {"Err": ""})
    assert plugin.post("VolumeDriver.List") == (200, {"Volumes": [], "Err": ""})


def test_create_with_null_opts_names_missing_option(plugin):
    status, reply = plugin.post("VolumeDriver.Create", raw='{"Name": "nullopts", "Opts": null}')
    assert status == 400
    assert reply == {"Err": "missing required option 'bucket'"}


def test_list_follows_create_and_remove(plugin):
    # The plugin keeps the encoded List reply until a Create or Remove.
    def names():
        return [volume["Name"] for volume in plugin.call("List")["Volumes"]]

    before = names()
    plugin.call("Create", Name="lc1", Opts=OPTS)
    assert "lc1" in names()
    assert len(names()) == len(before) + 1
    plugin.call("Remove", Name="lc1")
    assert "lc1" not in names()
    assert names() == before


def test_create_repeated_and_conflicting(plugin):
    assert plugin.post("VolumeDriver.Create", {"Name": "twice", "Opts": OPTS}) == (200, {"Err": ""})
    assert plugin.post("VolumeDriver.Create", {"Name": "twice", "Opts": OPTS}) == (200, {"Err": ""})
    assert plugin.post("VolumeDriver.Create", {"Name": "twice", "Opts": {**OPTS, "url": "https://f.example"}}) == (
        409, {"Err": "volume 'twice' already exists with other options; remove it first or choose another name"})


ERROR_CASES = [
    ("/VolumeDriver.Create", "", 400, "missing 'Name' in the request"),
    ("/VolumeDriver.Create", "{bad", 400,
     "request body is not valid JSON: Expecting property name enclosed in double quotes: line 1 column 2 (char 1)"),
    ("/VolumeDriver.Create", "[1, 2]", 400, "request body must be a JSON object"),
    ("/VolumeDriver.Create", '{"Name": 5}', 400, "'Name' must be a string"),
    ("/VolumeDriver.Create", '{"Name": "v1", "Opts": "x"}', 400, "'Opts' must be a JSON object of strings"),
    ("/VolumeDriver.Create", '{"Name": "-v1", "Opts": {}}', 400,
     "invalid volume name '-v1': use 1-64 letters, digits, '_', '.' or '-', starting with a letter or digit"),
    ("/VolumeDriver.Create", json.dumps({"Name": "v1", "Opts": {**OPTS, "bukcet": "x"}}), 400,
     "unknown option 'bukcet': valid options are bucket, url, ak_id, ak_secret, path, credentials, ram_role,"
     " region, no_stat_cache, other_opts"),
    ("/VolumeDriver.Get", '{"Name": "nope"}', 404, "volume 'nope' not found"),
    ("/VolumeDriver.Path", '{"Name": "nope"}', 404, "volume 'nope' not found"),
    ("/VolumeDriver.Remove", '{"Name": "nope"}', 404, "volume 'nope' not found"),
    ("/VolumeDriver.Mount", '{"Name": "nope", "ID": "a"}', 404, "volume 'nope' not found"),
    ("/VolumeDriver.Unmount", '{"Name": "nope", "ID": "a"}', 404, "volume 'nope' not found"),
    ("/VolumeDriver.Get", "", 400, "missing 'Name' in the request"),
    ("/VolumeDriver.Mount", '{"Name": "nope"}', 400,
     "mount ID is missing or invalid: pass 'ID' as a non-empty string"),
    ("/VolumeDriver.Snapshot", "{}", 404,
     "unknown endpoint /VolumeDriver.Snapshot: this plugin implements Plugin.Activate, VolumeDriver.Create,"
     " VolumeDriver.Remove, VolumeDriver.Mount, VolumeDriver.Unmount, VolumeDriver.Path, VolumeDriver.Get,"
     " VolumeDriver.List, VolumeDriver.Capabilities"),
    ("/a/b", "{}", 404,
     "unknown endpoint /a/b: this plugin implements Plugin.Activate, VolumeDriver.Create,"
     " VolumeDriver.Remove, VolumeDriver.Mount, VolumeDriver.Unmount, VolumeDriver.Path, VolumeDriver.Get,"
     " VolumeDriver.List, VolumeDriver.Capabilities"),
]


@pytest.mark.parametrize("endpoint, data, status, message", ERROR_CASES,
                         ids=[f"{case[0]}-{case[3][:30]}" for case in ERROR_CASES])
def test_error_replies(raw_post, endpoint, data, status, message):
    reply = raw_post(endpoint, data)
    assert reply.status_code == status
    assert reply.headers["Content-Type"] == CONTENT_TYPE
    assert reply.json() == {"Err": message}


def test_wrong_method_is_json(raw_post):
    reply = raw_post("/VolumeDriver.List", "", method="GET")
    assert reply.status_code == 405
    assert reply.json() == {"Err": "method GET is not allowed on /VolumeDriver.List; use POST"}


def test_remove_mounted_volume_fails(plugin, fuse, volume_opts):
    plugin.call("Create", Name="busy", Opts=volume_opts)
    plugin.call("Mount", Name="busy", ID="a")
    assert plugin.post("VolumeDriver.Remove", {"Name": "busy"}) == (
        409, {"Err": "volume 'busy' is in use by 1 mount(s); stop the containers that use it first"})
    plugin.call("Unmount", Name="busy", ID="a")
    plugin.call("Remove", Name="busy")


def test_state_survives_restart(start_plugin):
    first = start_plugin()
    first.call("Create", Name="v1", Opts=OPTS)
    first.stop()
    second = start_plugin()
    assert second.call("Get", Name="v1")["Volume"]["Status"]["bucket"] == "b-1"


def test_broken_settings_stop_the_start(folder):
    import subprocess
    import sys
    from tests.harness import REPO
    result = subprocess.run([sys.executable, "-m", "plugin"], capture_output=True, text=True, cwd=REPO,
                            env={"PATH": "/usr/bin:/bin", "MOUNT_TIMEOUT": "soon", "PYTHONPATH": REPO}, timeout=30)
    assert result.returncode == 2
    assert result.stderr.strip() == "docker-volume-ossfs: MOUNT_TIMEOUT must be a number of seconds, got 'soon'"


def test_corrupt_state_file_is_kept_aside(folder, start_plugin):
    import os
    state = os.path.join(folder, "state")
    os.makedirs(state)
    with open(os.path.join(state, "state.json"), "w") as file:
        file.write('{"version": 1, "volumes": {"v1": ')
    plugin = start_plugin()
    assert plugin.call("List") == {"Volumes": [], "Err": ""}
    aside = [name for name in os.listdir(state) if name.startswith("state.json.corrupt-")]
    assert len(aside) == 1
    assert "is corrupt" in plugin.log_text()
    plugin.call("Create", Name="v1", Opts=OPTS)
    assert plugin.call("Get", Name="v1")["Volume"]["Name"] == "v1"
