"""Property tests: no volume options yield a shell, a stray argument, a
denied option or a secret in the ossfs argv."""

import string

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from plugin.command import build_argv
from plugin.errors import PluginError
from plugin.options import OPTIONS, RESERVED_FUSE_OPTIONS, SHELL_CHARACTERS, parse_options, parse_other_opts

MOUNTPOINT = "/mnt/acs_mnt/ossfs/v1"
PASSWD = "/var/lib/docker-volume-ossfs/passwd/v1"
LOGFILE = "/var/lib/docker-volume-ossfs/logs/v1.log"
PLUGIN_KEYS = {"url", "passwd_file", "logfile", "ram_role", "region", "sigv4"}

option_words = st.sampled_from(["-o", "-oallow_other", "allow_other", "umask=022", "ro", "-f", "-d", "--help",
                                "url=http://x", "passwd_file=/etc/shadow", "credlib=x", ";", "|", "$(id)",
                                "a,b", ",", "=", "-o-x", "nonempty", "uid=1000", "default_permission=666",
                                "logfile=/tmp/x", "tmpdir=/", "'", '"', "\\", "\n"])
other_opts_text = st.one_of(
    st.text(max_size=80),
    st.lists(option_words, max_size=8).map(" ".join),
    st.lists(st.text(alphabet=string.ascii_letters + string.digits + "_=,-/.:", max_size=12), max_size=6)
    .map(lambda words: " ".join(f"-o {word}" for word in words)),
)
key_text = st.text(alphabet=string.ascii_letters + string.digits + "+/=-_", min_size=12, max_size=40)


def check_argv(argv, config):
    assert argv[0] == "ossfs"
    assert argv[2] == MOUNTPOINT
    rest = argv[3:]
    assert len(rest) % 2 == 0
    assert rest[0::2] == ["-o"] * (len(rest) // 2)
    for item in rest[1::2]:
        assert not SHELL_CHARACTERS.intersection(item)
        assert not item.startswith("-")
        assert "," not in item
    user_keys = [str(option).partition("=")[0] for option in config.fuse_options]
    assert not set(user_keys) & set(RESERVED_FUSE_OPTIONS)
    assert [item for item in rest[1::2] if item.startswith("passwd_file=")] in ([], [f"passwd_file={PASSWD}"])


@settings(max_examples=600, suppress_health_check=[HealthCheck.too_slow])
@given(other_opts_text)
def test_other_opts_never_yield_a_stray_argument(text):
    try:
        config = parse_options({"bucket": "b-1", "url": "https://e.example", "ak_id": "LTAI5tExampleKeyId",
                                "ak_secret": "ExampleSecretValue", "other_opts": text})
    except PluginError:
        return
    check_argv(build_argv("ossfs", config, MOUNTPOINT, PASSWD, LOGFILE), config)


@settings(max_examples=300)
@given(key_text, key_text, other_opts_text)
def test_keys_never_reach_argv(ak_id, ak_secret, other_opts):
    base = {"bucket": "b-1", "url": "https://e.example", "other_opts": other_opts}
    try:
        neutral = parse_options({**base, "ak_id": "LTAI5tNeutral", "ak_secret": "NeutralSecret"})
    except PluginError:
        return
    # A random key may spell part of an option or field name by chance. The
    # argv and repr made from other keys rule that out.
    neutral_text = " ".join(build_argv("ossfs", neutral, MOUNTPOINT, PASSWD, LOGFILE)) + repr(neutral)
    assume(ak_id != ak_secret and ak_id not in neutral_text and ak_secret not in neutral_text)

    config = parse_options({**base, "ak_id": ak_id, "ak_secret": ak_secret})
    argv = " ".join(build_argv("ossfs", config, MOUNTPOINT, PASSWD, LOGFILE))
    assert ak_id not in argv
    assert ak_secret not in argv
    assert ak_secret not in repr(config)
    assert ak_id not in repr(config)


option_values = st.one_of(st.text(max_size=40), st.sampled_from(["", "true", "b-1", "https://e.example", "a:/b"]))


@settings(max_examples=500)
@given(st.dictionaries(st.sampled_from(list(OPTIONS) + ["bukcet", "", "URL"]), option_values, max_size=8))
def test_any_options_either_validate_or_raise_plugin_error(opts):
    try:
        config = parse_options(opts)
    except PluginError as error:
        assert str(error)
        return
    check_argv(build_argv("ossfs", config, MOUNTPOINT, PASSWD, LOGFILE), config)


@given(st.text(max_size=60))
def test_parse_other_opts_raises_only_plugin_errors(text):
    try:
        options, warnings = parse_other_opts(text)
    except PluginError:
        return
    for option in options:
        assert option.key not in RESERVED_FUSE_OPTIONS
