"""``ossfs-volume inspect`` against a real plugin process with real FUSE mounts."""

import json
import os
import shlex
import shutil
import signal
import subprocess

import pytest

from tests import harness
from tests.admin.conftest import plugin_environment, run_admin
from tests.conftest import require
from tests.harness import PluginCallError, wait_until

MARKERS = {"ak_id": "AKID-MARKER-6a41", "ak_secret": "SECRET-MARKER-2f90"}
# Debian's python3: the pyenv interpreter of the tests lives under /root,
# which the user ``nobody`` cannot enter.
SYSTEM_PYTHON = "/usr/bin/python3"
NOBODY = "65534"


def running_argv(mountpoint):
    """Return the argv of the one ossfs process serving ``mountpoint``."""
    (pid,) = harness.processes_with_argument_under(mountpoint)
    with open(f"/proc/{pid}/cmdline", "rb") as file:
        return pid, [part.decode() for part in file.read().split(b"\0")[:-1]]


def assert_no_marker(result):
    for marker in MARKERS.values():
        assert marker not in result.stdout
        assert marker not in result.stderr


def field(stdout, label):
    """Return the value of the line ``label:`` in inspect's text output."""
    for line in stdout.splitlines():
        if line.strip().startswith(f"{label}:"):
            return line.split(":", 1)[1].strip()
    raise AssertionError(f"no line {label!r} in:\n{stdout}")


@pytest.mark.usefixtures("fuse")
def test_inspect_mounted_volume(plugin, bucket, volume_opts):
    opts = {**volume_opts, **MARKERS, "bucket": f"{bucket}:/team/x", "other_opts": "-o umask=022"}
    plugin.call("Create", Name="v1", Opts=opts)
    mountpoint = plugin.call("Mount", Name="v1", ID="a")["Mountpoint"]
    result = run_admin("inspect", "v1", env=plugin_environment(plugin))
    assert result.returncode == 0, result.stderr
    assert_no_marker(result)

    lines = result.stdout.splitlines()
    assert field(result.stdout, "Mountpoint") == mountpoint
    assert field(result.stdout, "Bucket") == f"{bucket}:/team/x"
    assert field(result.stdout, "Mounted") == "yes"
    assert field(result.stdout, "Mount IDs") == "a"
    assert field(result.stdout, "Last error") == "-"
    options_at = lines.index("Options:")
    assert lines[options_at + 1:options_at + 6] == [
        "  ak_id=****", "  ak_secret=****", f"  bucket={bucket}:/team/x",
        "  other_opts=-o umask=022", f"  url={volume_opts['url']}",
    ]

    command = shlex.split(lines[lines.index("ossfs command line:") + 1])
    assert command[0] == harness.OSSFS_WRAPPER
    assert f" running {' '.join(command)}\n" in plugin.log_text()
    # The wrapper runs s3fs with the plugin's options and one more. s3fs
    # splits bucket:/path in its own argv, so only the options are compared.
    pid, argv = running_argv(mountpoint)
    options = command[3:] + ["-o", "use_path_request_style"]
    assert argv[-len(options):] == options

    assert field(result.stdout, "Mount table") == "fuse.s3fs"
    assert field(result.stdout, "statvfs") == "ok"
    assert field(result.stdout, "ossfs PIDs") == str(pid)
    assert field(result.stdout, "Verdict") == "healthy: mounted and responding"
    plugin.call("Unmount", Name="v1", ID="a")


@pytest.mark.usefixtures("fuse")
def test_inspect_json_redacts_keys(plugin, volume_opts):
    plugin.call("Create", Name="v1", Opts={**volume_opts, **MARKERS})
    plugin.call("Mount", Name="v1", ID="a")
    result = run_admin("inspect", "v1", "--json", env=plugin_environment(plugin))
    assert result.returncode == 0, result.stderr
    assert_no_marker(result)
    report = json.loads(result.stdout)
    assert report["options"]["ak_id"] == "****"
    assert report["options"]["ak_secret"] == "****"
    assert report["status"]["mount_ids"] == ["a"]
    assert report["health"]["healthy"] is True
    assert report["health"]["filesystem"] == "fuse.s3fs"
    assert report["command"][3:5] == ["-o", f"url={volume_opts['url']}"]
    assert f"passwd_file={plugin.state_dir}/passwd/v1" in report["command"]
    assert f"logfile={plugin.state_dir}/logs/v1.log" in report["command"]
    plugin.call("Unmount", Name="v1", ID="a")


def test_inspect_idle_volume_is_healthy(plugin, volume_opts):
    plugin.call("Create", Name="v1", Opts=volume_opts)
    result = run_admin("inspect", "v1", env=plugin_environment(plugin))
    assert result.returncode == 0, result.stderr
    assert field(result.stdout, "Mount table") == "no entry"
    assert field(result.stdout, "statvfs") == "not probed"
    assert field(result.stdout, "ossfs PIDs") == "none"
    assert field(result.stdout, "Verdict") == "healthy: not mounted; the plugin mounts it when a container starts"


@pytest.mark.usefixtures("fuse")
def test_inspect_dead_mount_is_unhealthy(start_plugin, volume_opts):
    plugin = start_plugin(WATCHDOG_INTERVAL="0")
    plugin.call("Create", Name="v1", Opts=volume_opts)
    mountpoint = plugin.call("Mount", Name="v1", ID="a")["Mountpoint"]
    pid, _ = running_argv(mountpoint)
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: not harness.processes_with_argument_under(mountpoint), 5, message="ossfs killed")

    result = run_admin("inspect", "v1", env=plugin_environment(plugin))
    assert result.returncode == 1
    assert field(result.stdout, "Mount table") == "fuse.s3fs"
    assert field(result.stdout, "statvfs") == (
        f"statvfs of {mountpoint} failed: Transport endpoint is not connected (ENOTCONN)"
    )
    assert field(result.stdout, "ossfs PIDs") == "none"
    assert field(result.stdout, "Verdict").startswith(
        f"UNHEALTHY: the mount does not respond (statvfs of {mountpoint} failed:"
    )
    plugin.call("Unmount", Name="v1", ID="a")


@pytest.mark.usefixtures("fuse")
def test_inspect_failed_mount_is_unhealthy(plugin, volume_opts):
    plugin.call("Create", Name="v1", Opts={**volume_opts, **MARKERS, "bucket": "no-such-bucket-here"})
    with pytest.raises(PluginCallError):
        plugin.call("Mount", Name="v1", ID="a")
    result = run_admin("inspect", "v1", env=plugin_environment(plugin))
    assert result.returncode == 1
    assert_no_marker(result)
    assert "NoSuchBucket" in field(result.stdout, "Last error")
    assert field(result.stdout, "Verdict").startswith(
        "UNHEALTHY: not mounted; the plugin mounts it when a container starts; the last mount failed: "
    )


def test_inspect_unknown_volume_exits_2(plugin):
    result = run_admin("inspect", "nope", env=plugin_environment(plugin))
    assert result.returncode == 2
    assert result.stderr == (
        f"ossfs-volume: the plugin at {plugin.socket_path} has no volume 'nope'; ossfs-volume list"
        " shows its volumes\n"
    )


def test_inspect_invalid_name_exits_2(plugin):
    result = run_admin("inspect", "no/such", env=plugin_environment(plugin))
    assert result.returncode == 2
    assert result.stderr.startswith("ossfs-volume: invalid volume name 'no/such'")


def test_inspect_missing_state_exits_2(plugin, folder, volume_opts):
    plugin.call("Create", Name="v1", Opts=volume_opts)
    elsewhere = os.path.join(folder, "elsewhere")
    os.mkdir(elsewhere)
    result = run_admin("inspect", "v1", "--state", f"{elsewhere}/state.json", env=plugin_environment(plugin))
    assert result.returncode == 2
    assert result.stderr == (
        f"ossfs-volume: no plugin state found in {elsewhere}: pass --state (or set STATE_PATH) with"
        " the plugin's STATE_PATH\n"
    )


def test_inspect_volume_absent_from_state_exits_2(plugin, folder, volume_opts):
    plugin.call("Create", Name="v1", Opts=volume_opts)
    other = os.path.join(folder, "other")
    os.makedirs(os.path.join(other, "volumes"))
    result = run_admin("inspect", "v1", "--state", f"{other}/state.json", env=plugin_environment(plugin))
    assert result.returncode == 2
    assert result.stderr == (
        f"ossfs-volume: volume 'v1' is not in the plugin's state in {other}: pass --state (or set"
        " STATE_PATH) with the plugin's STATE_PATH\n"
    )


@pytest.fixture
def readable_package():
    """A copy of the plugin package in a folder that the user ``nobody`` can read."""
    path = harness.short_temporary_folder("ossfs-pkg-")
    os.chmod(path, 0o755)
    shutil.copytree(os.path.join(harness.REPO, "plugin"), os.path.join(path, "plugin"),
                    ignore=shutil.ignore_patterns("__pycache__"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_inspect_as_non_root_says_root_needed(plugin, volume_opts, readable_package):
    require(os.geteuid() == 0 and shutil.which("setpriv") and os.path.exists(SYSTEM_PYTHON),
            "needs root, setpriv and Debian's python3 to run the command as the user nobody")
    plugin.call("Create", Name="v1", Opts=volume_opts)
    # Let the user reach the socket, so that the state is what stops it.
    # The state folder keeps its mode 0700.
    os.chmod(plugin.folder, 0o711)
    result = subprocess.run(
        ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
         SYSTEM_PYTHON, "-m", "plugin.admin", "inspect", "v1",
         "--socket", plugin.socket_path, "--state", plugin.state_path],
        capture_output=True, text=True, cwd=readable_package, timeout=60,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": readable_package, "PYTHONDONTWRITEBYTECODE": "1"},
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr == (
        f"ossfs-volume: cannot read the plugin's state in {plugin.state_dir}: permission denied. Its"
        " files have mode 0600 because they contain credentials, so run this command as root"
        " (sudo ossfs-volume ...)\n"
    )
