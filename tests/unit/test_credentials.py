import os
import stat

import pytest

from plugin.credentials import PasswdFiles, plugin_keys, read_credentials_file, resolve_keys
from plugin.errors import InvalidOption
from plugin.options import parse_options

BASE = {"bucket": "b-1", "url": "https://e.example"}
VOLUME_KEYS = {"ak_id": "LTAI5tVolumeKeyId", "ak_secret": "VolumeSecretValue"}
PLUGIN_KEYS = plugin_keys({"AK_ID": "LTAI5tPluginKeyId", "AK_SECRET": "PluginSecretValue"})


@pytest.fixture
def credentials_file(tmp_path):
    path = tmp_path / "credentials"
    path.write_text("[team-a]\nak_id = LTAI5tFileKeyId\nak_secret = FileSecretValue\n\n[empty]\nak_id = x\n")
    os.chmod(path, 0o600)
    return str(path)


def reveal(keys):
    return tuple(key.reveal() if key is not None else None for key in keys[:2]) + (keys[2],)


@pytest.mark.parametrize("opts, defaults, expected", [
    ({**VOLUME_KEYS}, PLUGIN_KEYS, ("LTAI5tVolumeKeyId", "VolumeSecretValue", "volume options")),
    ({"credentials": "team-a"}, PLUGIN_KEYS,
     ("LTAI5tFileKeyId", "FileSecretValue", "credentials file entry 'team-a'")),
    ({}, PLUGIN_KEYS, ("LTAI5tPluginKeyId", "PluginSecretValue", "plugin settings")),
    ({"ram_role": "auto"}, PLUGIN_KEYS, (None, None, "ram_role")),
])
def test_key_precedence(credentials_file, opts, defaults, expected):
    config = parse_options({**BASE, **opts})
    assert reveal(resolve_keys(config, defaults, credentials_file)) == expected


def test_credentials_file_readable_by_others_is_refused(credentials_file):
    os.chmod(credentials_file, 0o644)
    with pytest.raises(InvalidOption) as error:
        read_credentials_file(credentials_file, "team-a")
    assert str(error.value) == (f"credentials file {credentials_file} is readable by group or others (mode 0644);"
                                f" run chmod 600 {credentials_file}")


def test_credentials_entry_missing(credentials_file):
    with pytest.raises(InvalidOption) as error:
        read_credentials_file(credentials_file, "team-b")
    assert str(error.value) == f"credentials 'team-b' not found in {credentials_file}; entries: team-a, empty"


def test_credentials_entry_incomplete(credentials_file):
    with pytest.raises(InvalidOption) as error:
        read_credentials_file(credentials_file, "empty")
    assert str(error.value) == f"credentials 'empty' in {credentials_file} has no ak_secret"


def test_credentials_file_missing(tmp_path):
    path = str(tmp_path / "absent")
    with pytest.raises(InvalidOption) as error:
        read_credentials_file(path, "team-a")
    assert str(error.value) == f"credentials 'team-a' not found: the credentials file {path} does not exist"


def test_broken_credentials_file_hides_its_lines(tmp_path):
    path = tmp_path / "credentials"
    path.write_text("ak_secret = SECRET-MARKER-1\n")
    os.chmod(path, 0o600)
    with pytest.raises(InvalidOption) as error:
        read_credentials_file(str(path), "team-a")
    assert "SECRET-MARKER-1" not in str(error.value)
    assert str(error.value).startswith(f"credentials file {path} is not a valid INI file")


def test_only_one_key_source_per_volume():
    with pytest.raises(InvalidOption, match="^give only one of 'ak_id'/'ak_secret', 'credentials' and 'ram_role'$"):
        parse_options({**BASE, **VOLUME_KEYS, "credentials": "team-a"})


def test_plugin_keys_need_each_other():
    with pytest.raises(InvalidOption, match="^plugin setting AK_ID needs AK_SECRET too"):
        plugin_keys({"AK_ID": "LTAI5tPluginKeyId"})
    assert plugin_keys({}) is None


def test_same_bucket_different_keys_get_own_files(tmp_path):
    files = PasswdFiles(str(tmp_path / "passwd"))
    first = parse_options({**BASE, "ak_id": "LTAI5tFirstKeyId", "ak_secret": "FirstSecret"})
    second = parse_options({**BASE, "ak_id": "LTAI5tSecondKeyId", "ak_secret": "SecondSecret"})
    path_one = files.write("v1", first, first.ak_id, first.ak_secret)
    path_two = files.write("v2", second, second.ak_id, second.ak_secret)
    assert open(path_one).read() == "b-1:LTAI5tFirstKeyId:FirstSecret\n"
    assert open(path_two).read() == "b-1:LTAI5tSecondKeyId:SecondSecret\n"
    for path in (path_one, path_two):
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    files.delete("v1")
    assert not os.path.exists(path_one)
    assert os.path.exists(path_two)


def test_passwd_file_is_never_readable_by_others(tmp_path, monkeypatch):
    # A permissive umask must not widen the file: os.open creates it 0600.
    old = os.umask(0)
    try:
        files = PasswdFiles(str(tmp_path / "passwd"))
        config = parse_options({**BASE, **VOLUME_KEYS})
        path = files.write("v1", config, config.ak_id, config.ak_secret)
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode) == 0o700
