import pytest

from plugin.command import build_argv
from plugin.errors import InvalidName, InvalidOption
from plugin.options import parse_options, validate_name

MOUNTPOINT = "/mnt/acs_mnt/ossfs/v1"
PASSWD = "/var/lib/docker-volume-ossfs/passwd/v1"
LOGFILE = "/var/lib/docker-volume-ossfs/logs/v1.log"
KEYS = {"ak_id": "LTAI5tExampleKeyId", "ak_secret": "ExampleSecretValue0123456789"}
FIXED = ["-o", f"logfile={LOGFILE}"]
DEFAULTS = ["-o", "connect_timeout=5", "-o", "readwrite_timeout=8", "-o", "retries=2", "-o", "dbglevel=err"]


def argv_for(**opts):
    return build_argv("ossfs", parse_options(opts), MOUNTPOINT, PASSWD, LOGFILE)


ARGV_CASES = [
    pytest.param(
        # Alibaba Container Service's documented example.
        {"bucket": "my-bucket", "url": "oss-cn-hangzhou.aliyuncs.com", "no_stat_cache": "true",
         "other_opts": "-o allow_other -o default_permission=666", **KEYS},
        ["ossfs", "my-bucket", MOUNTPOINT, "-o", "url=https://oss-cn-hangzhou.aliyuncs.com",
         "-o", f"passwd_file={PASSWD}", "-o", "allow_other", "-o", "max_stat_cache_size=0",
         *FIXED, *DEFAULTS],
        id="documented-example",
    ),
    pytest.param(
        {"bucket": "b-1:/team//x/", "url": "http://127.0.0.1:9000", "other_opts": "-o umask=022", **KEYS},
        ["ossfs", "b-1:/team/x", MOUNTPOINT, "-o", "url=http://127.0.0.1:9000",
         "-o", f"passwd_file={PASSWD}", "-o", "allow_other", *FIXED, *DEFAULTS, "-o", "umask=022"],
        id="bucket-prefix",
    ),
    pytest.param(
        {"bucket": "b-1", "path": "team/x", "url": "https://oss-cn-beijing.aliyuncs.com", **KEYS},
        ["ossfs", "b-1:/team/x", MOUNTPOINT, "-o", "url=https://oss-cn-beijing.aliyuncs.com",
         "-o", f"passwd_file={PASSWD}", "-o", "allow_other", *FIXED, *DEFAULTS],
        id="path-option",
    ),
    pytest.param(
        {"bucket": "b-1", "url": "https://oss-cn-beijing.aliyuncs.com", "ram_role": "auto",
         "region": "cn-beijing"},
        ["ossfs", "b-1", MOUNTPOINT, "-o", "url=https://oss-cn-beijing.aliyuncs.com",
         "-o", "ram_role=auto", "-o", "sigv4", "-o", "region=cn-beijing", "-o", "allow_other",
         *FIXED, *DEFAULTS],
        id="ram-role-and-region",
    ),
    pytest.param(
        {"bucket": "b-1", "url": "https://e.example", "other_opts": "-oallow_other,umask=022,ro -o retries=9",
         **KEYS},
        ["ossfs", "b-1", MOUNTPOINT, "-o", "url=https://e.example", "-o", f"passwd_file={PASSWD}",
         "-o", "allow_other", *FIXED, "-o", "connect_timeout=5", "-o", "readwrite_timeout=8",
         "-o", "dbglevel=err", "-o", "umask=022", "-o", "ro", "-o", "retries=9"],
        id="user-value-replaces-default",
    ),
    pytest.param(
        {"bucket": "b-1", "url": "https://e.example", "other_opts": "-o allow_other=false", **KEYS},
        ["ossfs", "b-1", MOUNTPOINT, "-o", "url=https://e.example", "-o", f"passwd_file={PASSWD}",
         *FIXED, *DEFAULTS],
        id="allow-other-off",
    ),
]


@pytest.mark.parametrize("opts, expected", ARGV_CASES)
def test_argv_from_options(opts, expected):
    assert argv_for(**opts) == expected


def test_argv_never_contains_keys():
    argv = " ".join(argv_for(bucket="b-1", url="https://e.example", **KEYS))
    assert KEYS["ak_id"] not in argv
    assert KEYS["ak_secret"] not in argv


@pytest.mark.parametrize("other_opts", [
    "-o allow_other -o umask=022 -o max_stat_cache_size=1000",
    "-o allow_other,umask=022,max_stat_cache_size=1000",
    "-oallow_other,umask=022 -omax_stat_cache_size=1000",
    "  -o 'allow_other'   -o umask=022,max_stat_cache_size=1000 ",
])
def test_other_opts_spellings_are_equivalent(other_opts):
    config = parse_options({"bucket": "b-1", "url": "https://e.example", "other_opts": other_opts, **KEYS})
    assert [str(option) for option in config.fuse_options] == ["umask=022", "max_stat_cache_size=1000"]
    assert config.allow_other


def test_documented_default_permission_is_dropped_with_warning():
    config = parse_options({"bucket": "b-1", "url": "https://e.example",
                            "other_opts": "-o allow_other -o default_permission=666", **KEYS})
    assert config.fuse_options == ()
    assert len(config.warnings) == 1
    assert "default_permission" in config.warnings[0]
    assert "default_permissions" in config.warnings[0]


def test_secret_prints_redacted():
    config = parse_options({"bucket": "b-1", "url": "https://e.example", **KEYS})
    for text in (str(config), repr(config), f"{config.ak_secret}", str(config.ak_id)):
        assert KEYS["ak_secret"] not in text
        assert KEYS["ak_id"] not in text
    assert config.ak_secret.reveal() == KEYS["ak_secret"]


@pytest.mark.parametrize("name", ["a", "v1", "A-b-9", "x" * 64, "9-lives", "project_data", "v1.2", "a..b"])
def test_valid_volume_names(name):
    assert validate_name(name) == name


@pytest.mark.parametrize("name", ["-v1", "_v1", ".v1", "x" * 65, "a/b", "..", ".", "a b", "ü", "a\n"])
def test_invalid_volume_names(name):
    with pytest.raises(InvalidName) as error:
        validate_name(name)
    assert str(error.value) == (f"invalid volume name {name!r}: use 1-64 letters, digits, '_', '.' or '-',"
                                " starting with a letter or digit")


def test_missing_volume_name():
    with pytest.raises(InvalidName, match="^volume name is missing"):
        validate_name("")


BASE = {"bucket": "b-1", "url": "https://e.example", **KEYS}

ERROR_CASES = [
    ({"bukcet": "x"}, "unknown option 'bukcet': valid options are bucket, url, ak_id, ak_secret,"
                      " path, credentials, ram_role, region, no_stat_cache, other_opts"),
    ({"bucket": ""}, "missing required option 'bucket'"),
    ({"url": " "}, "missing required option 'url'"),
    ({"bucket": "B"}, "invalid bucket name 'B': use 3-63 lowercase letters, digits or hyphens,"
                      " starting and ending with a letter or digit"),
    ({"bucket": "ab"}, "invalid bucket name 'ab': use 3-63 lowercase letters, digits or hyphens,"
                       " starting and ending with a letter or digit"),
    ({"bucket": "b-1:"}, "invalid bucket 'b-1:': the path after ':' is empty"),
    ({"bucket": "b-1:/a/../etc"}, "invalid path '/a/../etc' in option 'bucket': '.' and '..' are not allowed"),
    ({"bucket": "b-1:/a", "path": "b"}, "give the path either in 'bucket' (bucket:/path) or in 'path', not both"),
    ({"url": "ftp://e.example"}, "invalid url 'ftp://e.example': the scheme must be http or https"),
    ({"url": "https://e.example/x"}, "invalid url 'https://e.example/x': give only the scheme, host and port,"
                                     " without a path"),
    ({"url": "https://e.example:99999"}, "invalid url 'https://e.example:99999': the port must be a number"
                                         " from 1 to 65535"),
    ({"url": "https://e .example"}, "invalid url 'https://e .example': give the OSS endpoint, for example"
                                    " https://oss-cn-hangzhou.aliyuncs.com, without spaces or commas"),
    ({"url": "https://id:key@e.example"}, "invalid url: credentials in the url are not allowed;"
                                          " use 'ak_id' and 'ak_secret'"),
    ({"url": "http://b-1.127.0.0.1:9000"},
     "invalid url 'http://b-1.127.0.0.1:9000': the host starts with the bucket name;"
     " ossfs adds it, so use url=http://127.0.0.1:9000"),
    ({"url": "https://b-1.oss-cn-hangzhou.aliyuncs.com"},
     "invalid url 'https://b-1.oss-cn-hangzhou.aliyuncs.com': the host starts with the bucket name;"
     " ossfs adds it, so use url=https://oss-cn-hangzhou.aliyuncs.com"),
    ({"ak_secret": "abc "}, "invalid value for option 'ak_secret': it contains whitespace, a line break,"
                            " a colon or a control character, which an access key never does;"
                            " check for a copy-and-paste error"),
    ({"ak_id": "ab:c"}, "invalid value for option 'ak_id': it contains whitespace, a line break,"
                        " a colon or a control character, which an access key never does;"
                        " check for a copy-and-paste error"),
    ({"ak_secret": "ab\r"}, "invalid value for option 'ak_secret': it contains whitespace, a line break,"
                            " a colon or a control character, which an access key never does;"
                            " check for a copy-and-paste error"),
    ({"ak_id": ""}, "option 'ak_id' is empty"),
    ({"ram_role": "auto"}, "give either 'ak_id'/'ak_secret' or 'ram_role', not both"),
    ({"region": "CN_hz"}, "invalid region 'CN_hz': use a region id such as cn-hangzhou"),
    ({"no_stat_cache": "maybe"}, "invalid value 'maybe' for option 'no_stat_cache': use true or false"),
    ({"no_stat_cache": "1", "other_opts": "-o max_stat_cache_size=9"},
     "no_stat_cache=true conflicts with max_stat_cache_size in other_opts: keep one of them"),
    ({"other_opts": "-o umask=022; touch pwned"},
     "invalid other_opts: shell syntax is not supported, found 'umask=022;';"
     " pass options as '-o name' or '-o name=value'"),
    ({"other_opts": "-o url=http://other"},
     "option 'url' is not allowed in other_opts: use the volume option 'url' instead"),
    ({"other_opts": "-o passwd_file=/etc/shadow"},
     "option 'passwd_file' is not allowed in other_opts: the plugin writes the passwd file"
     " from 'ak_id' and 'ak_secret'"),
    ({"other_opts": "-o credential_process=/bin/sh"},
     "option 'credential_process' is not allowed in other_opts: it would run a command as root;"
     " use 'ak_id'/'ak_secret' or 'ram_role'"),
    ({"other_opts": "-f"}, "invalid other_opts: unexpected argument '-f';"
                           " only '-o name' or '-o name=value' options are accepted"),
    ({"other_opts": "-d"}, "invalid other_opts: unexpected argument '-d';"
                           " only '-o name' or '-o name=value' options are accepted"),
    ({"other_opts": "/mnt/other"}, "invalid other_opts: unexpected argument '/mnt/other';"
                                   " only '-o name' or '-o name=value' options are accepted"),
    ({"other_opts": "--help"}, "invalid other_opts: unexpected argument '--help';"
                               " only '-o name' or '-o name=value' options are accepted"),
    ({"other_opts": "-o"}, "invalid other_opts: '-o' at the end has no option after it"),
    ({"other_opts": "-o 'a"}, "invalid other_opts \"-o 'a\": No closing quotation"),
    ({"other_opts": "-o allow-other"}, "unknown option 'allow-other' in other_opts: did you mean 'allow_other'?"),
    ({"other_opts": "-o =1"}, "invalid option '=1' in other_opts: an option name starts with a letter"
                              " and has letters, digits, '_', '.' or '-'"),
    ({"path": "a\x00b"}, "invalid value for option 'path': it contains a control character or invalid Unicode"),
    ({"url": "https://e.example\x00"},
     "invalid value for option 'url': it contains a control character or invalid Unicode"),
    ({"ak_secret": "abc\x00"},
     "invalid value for option 'ak_secret': it contains whitespace, a line break, a colon or a control"
     " character, which an access key never does; check for a copy-and-paste error"),
    ({"bucket": "b-1:/a\ud800"},
     "invalid value for option 'bucket': it contains a control character or invalid Unicode"),
    ({"other_opts": "-o umask=022\x1b"},
     "invalid value for option 'other_opts': it contains a control character or invalid Unicode"),
]


@pytest.mark.parametrize("change, message", ERROR_CASES, ids=[case[1][:40] for case in ERROR_CASES])
def test_option_errors(change, message):
    opts = {**BASE, **change}
    with pytest.raises(InvalidOption) as error:
        parse_options(opts)
    assert str(error.value) == message


def test_credential_error_never_shows_the_value():
    with pytest.raises(InvalidOption) as error:
        parse_options({**BASE, "ak_secret": "SECRET-MARKER\n"})
    assert "SECRET-MARKER" not in str(error.value)


def test_ak_id_needs_ak_secret():
    with pytest.raises(InvalidOption, match=r"^option 'ak_id' needs 'ak_secret' too$"):
        parse_options({"bucket": "b-1", "url": "https://e.example", "ak_id": "LTAI5tExampleKeyId"})


def test_options_must_be_strings():
    with pytest.raises(InvalidOption, match=r"^invalid value for option 'no_stat_cache': it must be a string$"):
        parse_options({**BASE, "no_stat_cache": True})


@pytest.mark.parametrize("text, expected", [
    ("true", True), ("TRUE", True), ("1", True), ("yes", True),
    ("false", False), ("0", False), ("No", False),
])
def test_boolean_spellings(text, expected):
    assert parse_options({**BASE, "no_stat_cache": text}).no_stat_cache is expected
