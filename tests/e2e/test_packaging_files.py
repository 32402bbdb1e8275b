"""config.json, the systemd unit, the Dockerfile and the make targets.

plugin/settings.py lists the variables the plugin reads, except AK_ID and
AK_SECRET in plugin/credentials.py, so both packaging files are checked
against those two lists.
"""

import configparser
import json
import shutil
import subprocess

import pytest

from plugin import settings

from .support import PLUGIN_TARGETS, REPO_ROOT, require

CONFIG = json.loads((REPO_ROOT / "config.json").read_text())
UNIT = REPO_ROOT / "packaging" / "docker-volume-ossfs.service"
# Settings whose value must match another field of config.json, so a user
# must not change them with docker plugin set.
FIXED_IN_PLUGIN = {"SOCKET_PATH", "STATE_PATH", "MOUNT_ROOT", "CREDENTIALS_FILE"}
# config.json values that differ from the defaults in plugin.settings. The
# credentials file sits in the state mount, the only host folder the plugin can reach.
PLUGIN_VALUES = {"CREDENTIALS_FILE": "/var/lib/docker-volume-ossfs/credentials"}
# Plugin-level keys, read by plugin.credentials.plugin_keys and not by
# plugin.settings.
CREDENTIAL_SETTINGS = {"AK_ID", "AK_SECRET"}


def unit_environment():
    values = {}
    for line in UNIT.read_text().splitlines():
        if line.startswith("Environment="):
            key, value = line[len("Environment="):].split("=", 1)
            values[key] = value
    return values


def test_config_env_lists_every_setting():
    names = {entry["name"] for entry in CONFIG["env"]}

    assert set(settings.ENVIRONMENT) <= names
    assert CREDENTIAL_SETTINGS <= names


@pytest.mark.parametrize("name", sorted(CREDENTIAL_SETTINGS))
def test_config_credentials_settable_and_empty(name):
    entry = next(entry for entry in CONFIG["env"] if entry["name"] == name)

    assert entry["settable"] == ["value"]
    assert entry["value"] == ""


@pytest.mark.parametrize("name", sorted(settings.ENVIRONMENT))
def test_config_env_settable_unless_fixed(name):
    entry = next(entry for entry in CONFIG["env"] if entry["name"] == name)

    if name in FIXED_IN_PLUGIN:
        assert "settable" not in entry
    else:
        assert entry["settable"] == ["value"]


def test_config_env_defaults_match_settings():
    defaults = settings.Settings()

    for entry in CONFIG["env"]:
        if entry["name"] not in settings.ENVIRONMENT or entry["name"] in PLUGIN_VALUES:
            continue
        field, parse = settings.ENVIRONMENT[entry["name"]]
        assert parse(entry["name"], entry["value"]) == getattr(defaults, field), entry["name"]
    for name, value in PLUGIN_VALUES.items():
        assert {"name": name, "value": value} in [
            {"name": entry["name"], "value": entry["value"]} for entry in CONFIG["env"]
        ]


def test_config_paths_agree():
    env = {entry["name"]: entry["value"] for entry in CONFIG["env"]}
    state_mount = next(mount for mount in CONFIG["mounts"] if mount["name"] == "state")

    assert env["MOUNT_ROOT"] == CONFIG["propagatedMount"]
    assert env["SOCKET_PATH"] == f"/run/docker/plugins/{CONFIG['interface']['socket']}"
    assert env["STATE_PATH"].startswith(state_mount["destination"] + "/")
    assert env["CREDENTIALS_FILE"].startswith(state_mount["destination"] + "/")
    assert state_mount["settable"] == ["source"]


def test_unit_sets_every_setting():
    assert set(unit_environment()) == set(settings.ENVIRONMENT)


def test_unit_reads_credentials_from_file():
    unit = UNIT.read_text()

    assert "EnvironmentFile=-/etc/docker-volume-ossfs/environment\n" in unit
    assert not CREDENTIAL_SETTINGS & set(unit_environment())


# The host service keeps ossfs running across its own restarts.
UNIT_VALUES = {"UNMOUNT_ON_STOP": "false"}


def test_unit_defaults_match_settings():
    defaults = settings.Settings()

    for name, value in unit_environment().items():
        if name in UNIT_VALUES:
            assert value == UNIT_VALUES[name]
            continue
        field, parse = settings.ENVIRONMENT[name]
        assert parse(name, value) == getattr(defaults, field), name


def test_unit_runs_console_script():
    setup = configparser.ConfigParser()
    setup.read(REPO_ROOT / "setup.cfg")
    scripts = setup["options.entry_points"]["console_scripts"]
    unit = UNIT.read_text()

    assert "docker-volume-ossfs = plugin.server:main" in scripts
    assert "ExecStart=/usr/local/bin/docker-volume-ossfs\n" in unit


def test_unit_passes_systemd_verify(tmp_path):
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze not found")
    # verify also checks that ExecStart exists, and the package is not
    # installed system-wide here, so a copy runs an executable that exists.
    copy = tmp_path / UNIT.name
    copy.write_text(UNIT.read_text().replace(
        "ExecStart=/usr/local/bin/docker-volume-ossfs", f"ExecStart={shutil.which('true')}"
    ))

    result = subprocess.run([analyze, "verify", str(copy)], capture_output=True, text=True,
                            check=False)

    assert result.returncode == 0, result.stderr
    assert result.stderr == ""


def test_make_help_lines_for_targets():
    require(shutil.which("make") is not None, "make not found")
    text = PLUGIN_TARGETS.read_text()

    for target in ("rootfs", "plugin", "enable", "push", "clean"):
        lines = [line for line in text.splitlines() if line.startswith(f"{target}:")]
        assert len(lines) == 1, target
        assert " ## " in lines[0], target


def test_make_rejects_unknown_rootfs_kind(tmp_path):
    require(shutil.which("make") is not None, "make not found")

    result = subprocess.run(
        ["make", "--no-print-directory", "-f", str(PLUGIN_TARGETS), "rootfs",
         "PLUGIN_ROOTFS=tarball", f"PLUGIN_DIR={tmp_path / 'plugin'}"],
        capture_output=True, text=True, check=False, timeout=60,
    )

    assert result.returncode != 0
    assert "PLUGIN_ROOTFS must be dockerfile or debootstrap, not 'tarball'" in result.stderr


def test_make_passes_ossfs_checksum_to_build(tmp_path):
    require(shutil.which("make") is not None, "make not found")

    result = subprocess.run(
        ["make", "--dry-run", "--no-print-directory", "-f", str(PLUGIN_TARGETS), "rootfs",
         "OSSFS_SHA256=0123abcd", "PLUGIN_BUILD_ARGS=--build-arg OSSFS_VERSION=1.91.4",
         f"PLUGIN_DIR={tmp_path / 'plugin'}"],
        capture_output=True, text=True, check=False, timeout=60,
    )

    assert result.returncode == 0, result.stderr
    assert '--build-arg OSSFS_SHA256="0123abcd" --build-arg OSSFS_VERSION=1.91.4' in result.stdout


def test_dockerfile_requires_ossfs_checksum(dockerd, busybox_image, tmp_path):
    # The busybox image replaces Debian here, because the first build step
    # only checks the OSSFS_SHA256 argument and needs nothing but sh.
    context = tmp_path / "context"
    context.mkdir()
    shutil.copy(REPO_ROOT / "Dockerfile", context / "Dockerfile")

    result = dockerd.docker(
        "build", "--build-arg", f"DEBIAN_IMAGE={busybox_image}", str(context), check=False,
    )

    assert result.returncode != 0
    assert "missing build argument: --build-arg OSSFS_SHA256=" in result.stdout + result.stderr
