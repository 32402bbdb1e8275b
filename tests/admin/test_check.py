"""``ossfs-volume check``: offline validation, and --connect against local endpoints."""

import logging
import os
import socket

import pytest

from plugin import admin, options
from plugin.errors import InvalidOption
from tests import harness
from tests.admin.conftest import AUTH_BUCKET, run_admin

ID_MARKER = "AKID-MARKER-5e2b"
SECRET_MARKER = "SECRET-MARKER-0d9c"


def check_arguments(**opts):
    arguments = []
    for key, value in opts.items():
        arguments += ["-o", f"{key}={value}"]
    return arguments


def assert_no_marker(result, *markers):
    for marker in markers or (ID_MARKER, SECRET_MARKER):
        assert marker not in result.stdout
        assert marker not in result.stderr


@pytest.fixture
def connect_env(folder):
    """Environment for --connect: the test ossfs, and temporary folders inside ``folder``."""
    return {"OSSFS_BIN": harness.OSSFS_WRAPPER, "TMPDIR": folder}


def leftovers(folder):
    """Return what a mount test left in ``folder``: folders, mounts and processes."""
    folders = [name for name in os.listdir(folder) if name.startswith("ossfs-volume-check-")]
    return folders, harness.mounts_under(folder), harness.processes_with_argument_under(folder)


# Offline


def test_check_offline_prints_command_line():
    result = run_admin("check", *check_arguments(
        bucket="my-bucket:/team/x", url="oss-cn-hangzhou.aliyuncs.com", ak_id=ID_MARKER,
        ak_secret=SECRET_MARKER, other_opts="-o umask=022"))
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    lines = result.stdout.splitlines()
    assert lines[0] == "options: valid"
    assert "bucket:  my-bucket:/team/x" in lines
    assert "url:     https://oss-cn-hangzhou.aliyuncs.com" in lines
    assert "credentials: ak_id and ak_secret from the options" in lines
    assert lines[-2] == "ossfs command line for a volume named VOLUME:"
    assert lines[-1] == (
        "  ossfs my-bucket:/team/x /mnt/acs_mnt/ossfs/VOLUME -o url=https://oss-cn-hangzhou.aliyuncs.com"
        " -o passwd_file=/var/lib/docker-volume-ossfs/passwd/VOLUME -o allow_other"
        " -o logfile=/var/lib/docker-volume-ossfs/logs/VOLUME.log -o connect_timeout=5"
        " -o readwrite_timeout=8 -o retries=2 -o dbglevel=err -o umask=022"
    )
    assert_no_marker(result)


def test_check_offline_uses_settings_and_name():
    result = run_admin(
        "check", "--name", "web", "--ossfs-bin", "/opt/ossfs/bin/ossfs",
        *check_arguments(bucket="my-bucket", url="https://oss-cn-beijing.aliyuncs.com", ram_role="auto"),
        env={"MOUNT_ROOT": "/srv/oss", "STATE_PATH": "/srv/state/state.json"},
    )
    assert result.returncode == 0, result.stderr
    assert "credentials: the ECS RAM role 'auto'" in result.stdout
    assert result.stdout.splitlines()[-1] == (
        "  /opt/ossfs/bin/ossfs my-bucket /srv/oss/web -o url=https://oss-cn-beijing.aliyuncs.com"
        " -o ram_role=auto -o allow_other -o logfile=/srv/state/logs/web.log -o connect_timeout=5"
        " -o readwrite_timeout=8 -o retries=2 -o dbglevel=err"
    )


def test_check_offline_without_keys_names_plugin_settings():
    result = run_admin("check", *check_arguments(bucket="my-bucket", url="oss-cn-hangzhou.aliyuncs.com"))
    assert result.returncode == 0, result.stderr
    assert ("credentials: none in the options: the plugin uses its AK_ID and AK_SECRET settings"
            in result.stdout.splitlines())


def test_check_offline_prints_warning():
    result = run_admin("check", *check_arguments(
        bucket="my-bucket", url="oss-cn-hangzhou.aliyuncs.com", other_opts="-o default_permission=666"))
    assert result.returncode == 0
    assert result.stderr == (
        "ossfs-volume: warning: dropped 'default_permission' from other_opts: it is not an ossfs or"
        " FUSE option (FUSE has 'default_permissions'; set file modes with 'umask' or 'mp_umask')\n"
    )
    assert "default_permission" not in result.stdout


@pytest.mark.parametrize("opts", [
    {"url": "oss-cn-hangzhou.aliyuncs.com"},
    {"bucket": "my-bucket", "url": "https://my-bucket.oss-cn-hangzhou.aliyuncs.com"},
    {"bucket": "my-bucket", "url": "x.example", "other_opts": "-o umask=022; rm -rf /"},
    {"bucket": "my-bucket", "url": "x.example", "passwd": "x"},
    {"bucket": "my-bucket", "url": "x.example", "ak_id": ID_MARKER},
    {"bucket": "my-bucket", "url": "x.example", "ak_id": ID_MARKER, "ak_secret": f"{SECRET_MARKER} x"},
], ids=["missing-bucket", "bucket-in-url", "shell-syntax", "unknown-option", "half-keys", "space-in-secret"])
def test_check_offline_rejects_options(opts):
    # The message is the plugin's own, which tests/unit asserts word for word.
    with pytest.raises(InvalidOption) as error:
        options.parse_options(opts)
    result = run_admin("check", *check_arguments(**opts))
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr == f"ossfs-volume: check failed: invalid options: {error.value}\n"
    assert_no_marker(result)


def test_check_offline_names_credentials_entry():
    result = run_admin("check", *check_arguments(bucket="my-bucket", url="x.example", credentials="team-a"),
                       env={"CREDENTIALS_FILE": "/srv/keys/credentials"})
    assert result.returncode == 0, result.stderr
    assert "credentials: entry 'team-a' of the credentials file /srv/keys/credentials" in result.stdout


@pytest.mark.parametrize("arguments, message", [
    (["-o", "bucket"], "invalid option 'bucket': write each option as -o key=value"),
    (["-o", "=x"], "invalid option '=x': write each option as -o key=value"),
    (["-o", "bucket=a-b", "-o", "bucket=c-d"], "option 'bucket' is given twice; give each option once"),
])
def test_check_usage_errors_exit_2(arguments, message):
    result = run_admin("check", *arguments)
    assert result.returncode == 2
    assert result.stderr == f"ossfs-volume: {message}\n"


def test_check_invalid_name_exits_2():
    result = run_admin("check", "--name=a/b", "-o", "bucket=abc")
    assert result.returncode == 2
    assert result.stderr.startswith("ossfs-volume: --name: invalid volume name 'a/b': ")


def test_check_rejects_zero_timeout():
    result = run_admin("check", "--timeout", "0", "-o", "bucket=abc")
    assert result.returncode == 2
    assert "argument --timeout: must be greater than 0, got '0'" in result.stderr


def test_help_describes_every_option():
    for command in ("list", "inspect", "check"):
        result = run_admin(command, "--help")
        assert result.returncode == 0
        assert "--socket PATH" in result.stdout
        assert "--state PATH" in result.stdout
    check_help = run_admin("check", "--help").stdout
    for option in ("-o KEY=VALUE", "--name NAME", "--connect", "--timeout SECONDS", "--ossfs-bin PATH"):
        assert option in check_help


# --connect: failures before ossfs runs


def test_connect_closed_port_is_refused(connect_env):
    port = harness.free_port()
    result = run_admin("check", "--connect", *check_arguments(
        bucket="my-bucket", url=f"http://127.0.0.1:{port}", ak_id=ID_MARKER, ak_secret=SECRET_MARKER),
        env=connect_env)
    assert result.returncode == 1
    assert result.stderr == (
        f"ossfs-volume: check failed: connection refused by 127.0.0.1 port {port} (from the url"
        f" http://127.0.0.1:{port}): nothing accepts connections there. Check the port in 'url'"
        " and that the endpoint is up\n"
    )
    assert_no_marker(result)


@pytest.fixture
def full_backlog_port():
    """A port on 127.0.0.1 whose accept queue is full, so a new connection times out.

    Linux drops the SYN of a connection that does not fit in the queue of a
    listening socket (with the default net.ipv4.tcp_abort_on_overflow=0).
    """
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    queued = []
    for _ in range(3):
        client = socket.socket()
        client.settimeout(0.5)
        try:
            client.connect(("127.0.0.1", port))
        except OSError:
            pass
        queued.append(client)
    yield port
    for client in queued:
        client.close()
    listener.close()


def test_connect_timeout_names_address(connect_env, full_backlog_port):
    port = full_backlog_port
    result = run_admin("check", "--connect", "--timeout", "1", *check_arguments(
        bucket="my-bucket", url=f"http://127.0.0.1:{port}", ak_id=ID_MARKER, ak_secret=SECRET_MARKER),
        env=connect_env)
    assert result.returncode == 1
    assert result.stderr.startswith(
        f"ossfs-volume: check failed: connection to 127.0.0.1 port {port} (from the url"
        f" http://127.0.0.1:{port}) timed out after 1 s: a firewall drops the packets or the host is down."
    )


@pytest.fixture
def restore_plugin_logger():
    """Undo the logging setup of an in-process ``admin.main`` call, which later tests' caplog needs."""
    logger = logging.getLogger("plugin")
    handlers, level, propagate = list(logger.handlers), logger.level, logger.propagate
    yield
    logger.handlers[:] = handlers
    logger.setLevel(level)  # setLevel, unlike assigning .level, clears the loggers' level cache
    logger.propagate = propagate


@pytest.mark.usefixtures("restore_plugin_logger")
def test_connect_dns_failure_names_host(monkeypatch, capsys):
    def fail_lookup(host, port, *args, **kwargs):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", fail_lookup)
    status = admin.main(["check", "--connect", *check_arguments(
        bucket="my-bucket", url="https://oss-cn-nowhere.aliyuncs.com", ak_id=ID_MARKER,
        ak_secret=SECRET_MARKER)])
    captured = capsys.readouterr()
    assert status == 1
    assert captured.err == (
        "ossfs-volume: check failed: cannot resolve the host 'oss-cn-nowhere.aliyuncs.com' of the url:"
        " Name or service not known. Check the spelling of 'url' and this host's DNS settings\n"
    )


def test_connect_without_credentials_fails(connect_env, object_store):
    result = run_admin("check", "--connect", *check_arguments(bucket="my-bucket", url=object_store.url),
                       env=connect_env)
    assert result.returncode == 1
    assert result.stderr == (
        "ossfs-volume: check failed: missing credentials: give -o ak_id=... -o ak_secret=...,"
        " -o credentials=... or -o ram_role=..., or set AK_ID and AK_SECRET in this shell to test"
        " the keys the plugin has in its settings\n"
    )


def test_connect_missing_ossfs_exits_2(folder, object_store, bucket):
    result = run_admin("check", "--connect", "--ossfs-bin", "/nonexistent/ossfs", *check_arguments(
        bucket=bucket, url=object_store.url, ak_id=ID_MARKER, ak_secret=SECRET_MARKER),
        env={"TMPDIR": folder})
    assert result.returncode == 2
    assert result.stderr == (
        "ossfs-volume: program '/nonexistent/ossfs' not found on this host: install it, or set its"
        " path with --ossfs-bin or OSSFS_BIN\n"
    )


# --connect: real mounts with the test ossfs


@pytest.mark.usefixtures("fuse")
def test_connect_mounts_lists_and_cleans_up(folder, connect_env, object_store, s3, bucket):
    s3.put_object(Bucket=bucket, Key="team/x/one.txt", Body=b"1")
    s3.put_object(Bucket=bucket, Key="team/x/two.txt", Body=b"2")
    result = run_admin("check", "--connect", *check_arguments(
        bucket=f"{bucket}:/team/x", url=object_store.url, ak_id=ID_MARKER, ak_secret=SECRET_MARKER),
        env=connect_env)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert any(line.startswith(f"endpoint: 127.0.0.1 port {object_store.port} accepted a TCP connection")
               for line in lines)
    assert any(line.startswith(f"mount test: running {harness.OSSFS_WRAPPER} {bucket}:/team/x {folder}/ossfs-volume-check-")
               for line in lines)
    assert any(line.startswith(f"mount test: ossfs mounted {bucket}:/team/x in ") for line in lines)
    assert "mount test: listed 2 entries under /team/x" in lines
    assert "mount test: unmounted and removed the temporary folder" in lines
    assert lines[-1] == "check passed"
    assert_no_marker(result)
    assert leftovers(folder) == ([], [], [])


@pytest.mark.usefixtures("fuse")
def test_connect_uses_keys_from_environment(folder, connect_env, object_store, bucket):
    environment = {**connect_env, "AK_ID": ID_MARKER, "AK_SECRET": SECRET_MARKER}
    result = run_admin("check", "--connect", "--verbose", *check_arguments(bucket=bucket, url=object_store.url),
                       env=environment)
    assert result.returncode == 0, result.stderr
    assert "credentials: AK_ID and AK_SECRET from this shell's environment" in result.stdout
    assert f"ossfs-volume: running {harness.OSSFS_WRAPPER} {bucket} " in result.stderr
    assert_no_marker(result)


def write_credentials_file(path, text):
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(text)


@pytest.mark.usefixtures("fuse")
def test_connect_reads_credentials_entry(folder, connect_env, object_store, bucket):
    path = os.path.join(folder, "credentials")
    write_credentials_file(path, f"[team-a]\nak_id = {ID_MARKER}\nak_secret = {SECRET_MARKER}\n")
    result = run_admin("check", "--connect", *check_arguments(bucket=bucket, url=object_store.url, credentials="team-a"),
                       env={**connect_env, "CREDENTIALS_FILE": path})
    assert result.returncode == 0, result.stderr
    assert f"credentials: entry 'team-a' of the credentials file {path}" in result.stdout
    assert_no_marker(result)


def test_connect_missing_credentials_entry_fails(folder, connect_env, object_store):
    path = os.path.join(folder, "credentials")
    write_credentials_file(path, f"[team-a]\nak_id = {ID_MARKER}\nak_secret = {SECRET_MARKER}\n")
    result = run_admin("check", "--connect", *check_arguments(bucket="my-bucket", url=object_store.url, credentials="team-b"),
                       env={**connect_env, "CREDENTIALS_FILE": path})
    assert result.returncode == 1
    assert result.stderr == f"ossfs-volume: check failed: credentials 'team-b' not found in {path}; entries: team-a\n"
    assert_no_marker(result)


@pytest.mark.usefixtures("fuse")
def test_connect_missing_bucket_names_code(folder, connect_env, object_store):
    result = run_admin("check", "--connect", *check_arguments(
        bucket="no-such-bucket-here", url=object_store.url, ak_id=ID_MARKER, ak_secret=SECRET_MARKER),
        env=connect_env)
    assert result.returncode == 1
    assert result.stderr.startswith(
        "ossfs-volume: check failed: mount test failed: the endpoint rejected the request with error code"
        " NoSuchBucket (The specified bucket does not exist). The bucket does not exist at this"
        " endpoint. Check 'bucket', and that 'url' is the endpoint of the bucket's region.\n"
        "ossfs reported: ossfs stopped: "
    )
    assert_no_marker(result)
    assert leftovers(folder) == ([], [], [])


@pytest.mark.usefixtures("fuse")
def test_connect_silent_endpoint_times_out(folder, connect_env, silent_endpoint):
    result = run_admin("check", "--connect", "--timeout", "3", *check_arguments(
        bucket="my-bucket", url=silent_endpoint, ak_id=ID_MARKER, ak_secret=SECRET_MARKER),
        env=connect_env)
    assert result.returncode == 1
    assert result.stderr.startswith(
        "ossfs-volume: check failed: mount test failed: mount timed out after 3 s waiting for the"
        f" endpoint {silent_endpoint}; check that the url is reachable from this host, or raise MOUNT_TIMEOUT"
    )
    assert leftovers(folder) == ([], [], [])


# --connect against an object store that checks keys


def test_auth_store_checks_keys(auth_store):
    import botocore.exceptions

    with pytest.raises(botocore.exceptions.ClientError) as error:
        auth_store.client("test-key-id", "test-secret").list_objects(Bucket=AUTH_BUCKET)
    assert error.value.response["Error"]["Code"] == "InvalidAccessKeyId"
    auth_store.client(auth_store.key_id, auth_store.secret).head_bucket(Bucket=AUTH_BUCKET)


@pytest.mark.usefixtures("fuse")
def test_connect_unknown_key_id(folder, connect_env, auth_store):
    result = run_admin("check", "--connect", *check_arguments(
        bucket=AUTH_BUCKET, url=auth_store.url, ak_id=ID_MARKER, ak_secret=SECRET_MARKER), env=connect_env)
    assert result.returncode == 1
    assert result.stderr.startswith(
        "ossfs-volume: check failed: mount test failed: the endpoint rejected the request with HTTP 403"
        " and error code InvalidAccessKeyId (The AWS Access Key Id you provided does not exist in our records.)."
        " The endpoint does not know this AccessKey ID. Check 'ak_id' and that the key is enabled.\n"
    )
    assert_no_marker(result)
    assert leftovers(folder) == ([], [], [])


@pytest.mark.usefixtures("fuse")
def test_connect_wrong_secret(folder, connect_env, auth_store):
    result = run_admin("check", "--connect", *check_arguments(
        bucket=AUTH_BUCKET, url=auth_store.url, ak_id=auth_store.key_id, ak_secret=SECRET_MARKER),
        env=connect_env)
    assert result.returncode == 1
    assert result.stderr.startswith(
        "ossfs-volume: check failed: mount test failed: the endpoint rejected the request with HTTP 403"
        " and error code SignatureDoesNotMatch (The request signature we calculated does not match the signature you"
        " provided. Check your key and signing method.). The AccessKey secret does not belong to this"
        " AccessKey ID. Check 'ak_secret'.\n"
    )
    assert_no_marker(result, auth_store.key_id, SECRET_MARKER)
    assert leftovers(folder) == ([], [], [])


@pytest.mark.usefixtures("fuse")
def test_connect_valid_keys_pass_bucket_check(folder, connect_env, auth_store):
    result = run_admin("check", "--connect", *check_arguments(
        bucket=AUTH_BUCKET, url=auth_store.url, ak_id=auth_store.key_id, ak_secret=auth_store.secret),
        env=connect_env)
    # The mount succeeds only when ossfs's signed bucket check passes.
    assert any(line.startswith(f"mount test: ossfs mounted {AUTH_BUCKET} in ")
               for line in result.stdout.splitlines()), result.stderr
    # NOTE: moto 5.2.1 with authentication on rejects the signature of every
    # request with delimiter=/ in its query, boto3's own included, so the
    # listing after the mount fails there. The listing is not asserted.
    assert_no_marker(result, auth_store.key_id, auth_store.secret)
    assert leftovers(folder) == ([], [], [])
