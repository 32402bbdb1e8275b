"""``ossfs-volume``: list, inspect and check the plugin's volumes from the host.

``list`` and ``inspect`` ask the running plugin through its unix socket
(VolumeDriver.List and VolumeDriver.Get), so they show the plugin's own view
and change nothing. ``inspect`` also reads the volume's options from the
plugin's state, whose files have mode 0600 and so need root, and probes the
mount.
``check`` validates volume options without the plugin and, with
``--connect``, mounts the bucket once with ossfs.

Exit status: 0 when all is well, 1 when a check failed or a volume is
unhealthy, 2 for usage errors and when the plugin, its state or a program
could not be used.
"""

import argparse
import dataclasses
import http.client
import json
import logging
import os
import shlex
import socket
import sys

from . import connect_check, credentials, options, state
from . import settings as settings_module
from .command import build_argv
from .errors import PluginError
from .mounter import find_daemon_pids, probe_with_timeout, read_mount_table
from .secret import REDACTED, redact_text

PROGRAM = "ossfs-volume"
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_ERROR = 2

# Seconds to wait for a reply on the plugin socket. List and Get never wait
# for a mount, so they return at once unless the plugin is stuck.
REQUEST_TIMEOUT = 30.0
SECRET_OPTIONS = ("ak_id", "ak_secret")
SHORT_ID_LENGTH = 12
LAST_ERROR_WIDTH = 80
DEFAULT_CHECK_NAME = "VOLUME"
PROTOCOL_HEADERS = {"Accept": "application/vnd.docker.plugins.v1.2+json"}
PLUGIN_HINT = (
    "check that the plugin runs (systemctl status docker-volume-ossfs, or docker plugin ls)"
    " and pass --socket with its socket path; a managed plugin listens on"
    " /run/docker/plugins/<plugin ID>/ossfs.sock"
)


class AdminError(Exception):
    """The command could not do its work. The message names the next step."""


# The plugin socket


class UnixHTTPConnection(http.client.HTTPConnection):
    """An HTTP connection over a unix socket instead of TCP."""

    def __init__(self, socket_path, timeout):
        super().__init__("localhost", timeout=timeout)
        self.socket_path = socket_path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.socket_path)


class PluginClient:
    """Calls the plugin's volume API on its unix socket, as Docker does."""

    def __init__(self, socket_path, timeout=REQUEST_TIMEOUT):
        self.socket_path = socket_path
        self.timeout = timeout

    def call(self, endpoint, body=None):
        """POST ``body`` to ``/endpoint`` and return the HTTP status and the reply object.

        Raises AdminError when the socket cannot be reached or the reply is
        not a JSON object.
        """
        path = self.socket_path
        connection = UnixHTTPConnection(path, self.timeout)
        try:
            connection.request("POST", f"/{endpoint}", body=json.dumps(body or {}), headers=PROTOCOL_HEADERS)
            response = connection.getresponse()
            status, raw = response.status, response.read()
        except FileNotFoundError:
            raise AdminError(f"plugin socket {path} not found: {PLUGIN_HINT}") from None
        except PermissionError:
            raise AdminError(f"permission denied on the plugin socket {path}: run {PROGRAM} as root") from None
        except ConnectionRefusedError:
            raise AdminError(f"the plugin socket {path} refuses connections, so no plugin serves it: {PLUGIN_HINT}") from None
        except (socket.timeout, TimeoutError):
            raise AdminError(f"the plugin did not respond on {path} within {self.timeout:g} s; check the plugin's log") from None
        except (OSError, http.client.HTTPException) as error:
            raise AdminError(f"cannot talk to the plugin on {path}: {error}; {PLUGIN_HINT}") from None
        finally:
            connection.close()
        try:
            reply = json.loads(raw)
        except ValueError:
            reply = None
        if not isinstance(reply, dict):
            raise AdminError(f"{path} responded to {endpoint} with HTTP {status} and no plugin reply:"
                             " check that --socket is the ossfs plugin's socket")
        return status, reply

    def list_names(self):
        status, reply = self.call("VolumeDriver.List")
        if reply.get("Err"):
            raise AdminError(f"the plugin failed to list its volumes: {reply['Err']}")
        return [volume["Name"] for volume in reply.get("Volumes") or []]

    def get(self, name):
        """Return the plugin's Get reply for volume ``name``, or None if it has no such volume."""
        status, reply = self.call("VolumeDriver.Get", {"Name": name})
        if status == 404:
            return None
        if reply.get("Err"):
            raise AdminError(f"the plugin failed to return volume {name!r}: {reply['Err']}")
        return reply["Volume"]


def summarize_volume(volume):
    """Return the fields of ``list`` for one volume from the plugin's Get reply."""
    status = volume.get("Status") or {}
    return {
        "name": volume["Name"],
        "bucket": status.get("bucket", ""),
        "path": status.get("path", ""),
        "url": status.get("url", ""),
        "mounted": bool(status.get("mounted")),
        "mount_ids": list(status.get("mount_ids") or []),
        "last_error": status.get("last_error", ""),
        "mountpoint": volume.get("Mountpoint", ""),
        "credentials": status.get("credentials", ""),
        "warnings": list(status.get("warnings") or []),
    }


# The state


def read_state_volumes(path):
    """Return ``{name: record}`` from the plugin's state for STATE_PATH ``path``, read-only.

    StateStore.load is not used because it migrates an old state file and
    moves unreadable files aside, which only the plugin should do.
    """
    folder = os.path.dirname(path)
    try:
        return state.read_volumes(path)
    except PermissionError:
        raise AdminError(
            f"cannot read the plugin's state in {folder}: permission denied. Its files have mode 0600"
            f" because they contain credentials, so run this command as root (sudo {PROGRAM} ...)"
        ) from None
    except FileNotFoundError:
        raise AdminError(
            f"no plugin state found in {folder}: pass --state (or set STATE_PATH) with the plugin's STATE_PATH"
        ) from None
    except OSError as error:
        raise AdminError(f"cannot read the plugin's state in {folder}: {error.strerror}") from None
    except (ValueError, KeyError, TypeError) as error:
        raise AdminError(f"state file {path} is not a valid state file: {error}") from None


def redacted_options(opts):
    return {key: REDACTED if key in SECRET_OPTIONS else value for key, value in sorted(opts.items())}


# Mount health


@dataclasses.dataclass
class MountHealth:
    """The state of a volume's mount in this host's mount table, and the verdict."""

    filesystem: str  # type in the mount table, "" when not mounted
    probe: str  # "ok", the statvfs failure, or "" when not probed
    pids: list
    healthy: bool
    verdict: str


def check_mount_health(mountpoint, status):
    """Probe ``mountpoint`` and judge it against the plugin's Get status.

    The checks are those of the plugin's own health check: a FUSE entry in
    the mount table, a statvfs that returns, and an ossfs process.
    """
    filesystem = read_mount_table().get(mountpoint, "")
    pids = find_daemon_pids(mountpoint)
    mount_ids = status.get("mount_ids") or []
    probe = ""
    if not filesystem:
        if mount_ids:
            healthy, verdict = False, (
                f"not mounted, but the plugin holds {len(mount_ids)} mount ID(s) for it; the next"
                " container start mounts it again, and running containers that use it need a restart"
            )
        else:
            healthy, verdict = True, "not mounted; the plugin mounts it when a container starts"
    elif not filesystem.startswith("fuse"):
        healthy, verdict = False, f"{mountpoint} is mounted as {filesystem}, not as a FUSE filesystem"
    else:
        failure = probe_with_timeout(mountpoint)
        probe = failure or "ok"
        if failure:
            healthy, verdict = False, (
                f"the mount does not respond ({failure}); the plugin mounts it again at its next"
                " health check or container start, and running containers that use it need a restart"
            )
        elif not pids:
            healthy, verdict = False, "the mount responds, but no ossfs process serves it"
        else:
            healthy, verdict = True, "mounted and responding"
    last_error = status.get("last_error")
    if last_error:
        healthy = False
        verdict += f"; the last mount failed: {last_error}"
    return MountHealth(filesystem, probe, pids, healthy, verdict)


# Subcommands


def command_list(args, settings):
    client = PluginClient(settings.socket_path)
    rows = []
    for name in sorted(client.list_names()):
        volume = client.get(name)
        if volume is not None:  # None: removed between List and Get
            rows.append(summarize_volume(volume))
    if args.json:
        print(json.dumps(rows, indent=2))
    elif not rows:
        print(f"no volumes (plugin at {settings.socket_path})")
    else:
        print_table(volume_table(rows, truncate=not args.no_trunc))
    return EXIT_OK


def volume_table(rows, truncate):
    def short(text, width):
        return text if not truncate or len(text) <= width else text[:width - 3] + "..."

    table = [("NAME", "BUCKET", "PATH", "MOUNTED", "MOUNT IDS", "LAST ERROR")]
    for row in rows:
        # Like docker ps, shortened IDs keep their first 12 characters.
        ids = ",".join(mount_id[:SHORT_ID_LENGTH] if truncate else mount_id for mount_id in row["mount_ids"])
        table.append((
            row["name"], row["bucket"], row["path"] or "/", "yes" if row["mounted"] else "no",
            ids or "-", short(row["last_error"], LAST_ERROR_WIDTH) or "-",
        ))
    return table


def print_table(table):
    widths = [max(len(row[column]) for row in table) for column in range(len(table[0]) - 1)]
    for row in table:
        cells = [cell.ljust(width) for cell, width in zip(row, widths)] + [row[-1]]
        print("  ".join(cells))


def command_inspect(args, settings):
    name = args.name
    try:
        options.validate_name(name)
    except PluginError as error:
        raise AdminError(str(error)) from None
    volume = PluginClient(settings.socket_path).get(name)
    if volume is None:
        raise AdminError(f"the plugin at {settings.socket_path} has no volume {name!r}; {PROGRAM} list shows its volumes")
    record = read_state_volumes(settings.state_path).get(name)
    if not isinstance(record, dict) or not isinstance(record.get("options"), dict):
        raise AdminError(
            f"volume {name!r} is not in the plugin's state in {settings.state_dir}: pass --state"
            " (or set STATE_PATH) with the plugin's STATE_PATH"
        )
    try:
        config = options.parse_options(record["options"])
    except PluginError as error:
        raise AdminError(f"volume {name!r} has invalid options in the plugin's state: {error}") from None

    status = volume.get("Status") or {}
    mountpoint = volume["Mountpoint"]
    argv = plugin_argv(args, settings, config, name, mountpoint)
    # NOTE: the health probe looks at the plugin's mountpoint in this host's
    # mount table. A managed plugin mounts inside its own mount namespace,
    # and the host shows those mounts under Docker's
    # plugins/<plugin ID>/propagated-mount folder instead, so there the
    # probe reports them as not mounted.
    health = check_mount_health(mountpoint, status)
    report = {
        "name": name,
        "mountpoint": mountpoint,
        "created_at": volume.get("CreatedAt", ""),
        "options": redacted_options(record["options"]),
        "status": status,
        "command": argv,
        "health": dataclasses.asdict(health),
    }
    text = json.dumps(report, indent=2) if args.json else inspect_text(report, config)
    # The options are redacted above; this also covers a key that ended up
    # in some other field, such as an error text.
    print(redact_text(text, config.secrets()))
    return EXIT_OK if health.healthy else EXIT_FAILED


def inspect_text(report, config):
    status, health = report["status"], report["health"]
    lines = [
        f"Name:          {report['name']}",
        f"Mountpoint:    {report['mountpoint']}",
        f"Created:       {report['created_at'] or '-'}",
        f"Bucket:        {config.bucket_spec}",
        f"Endpoint:      {config.url}",
        f"Credentials:   {status.get('credentials', '-')}",
        f"Mounted:       {'yes' if status.get('mounted') else 'no'}",
        f"Mount IDs:     {', '.join(status.get('mount_ids') or []) or '-'}",
        f"Last error:    {status.get('last_error') or '-'}",
    ]
    lines += [f"Warning:       {warning}" for warning in status.get("warnings") or []]
    lines.append("Options:")
    lines += [f"  {key}={value}" for key, value in report["options"].items()]
    lines += ["ossfs command line:", f"  {shlex.join(report['command'])}"]
    lines += [
        "Mount health:",
        f"  Mount table: {health['filesystem'] or 'no entry'}",
        f"  statvfs:     {health['probe'] or 'not probed'}",
        f"  ossfs PIDs:  {', '.join(str(pid) for pid in health['pids']) or 'none'}",
        f"  Verdict:     {'healthy' if health['healthy'] else 'UNHEALTHY'}: {health['verdict']}",
    ]
    return "\n".join(lines)


def plugin_argv(args, settings, config, name, mountpoint):
    """Return the ossfs argv the plugin runs for volume ``name``, with the driver's file paths."""
    passwd_path = credentials.PasswdFiles(settings.passwd_dir).path(name)
    logfile = os.path.join(settings.log_dir, f"{name}.log")
    return build_argv(args.ossfs_bin or settings.ossfs_bin, config, mountpoint, passwd_path, logfile)


def parse_option_arguments(items):
    """Turn the ``-o key=value`` arguments into the options dict Docker would send."""
    opts = {}
    for item in items:
        key, separator, value = item.partition("=")
        if not separator or not key:
            raise AdminError(f"invalid option {key or item!r}: write each option as -o key=value")
        if key in opts:
            raise AdminError(f"option {key!r} is given twice; give each option once")
        opts[key] = value
    return opts


def check_credentials(config, settings, connect):
    """Return ``(ak_id, ak_secret, description)`` for a connection test of ``config``.

    Keys are read only when ``connect`` is true, from where the plugin takes
    them. A ``credentials`` entry comes from CREDENTIALS_FILE. A volume
    without keys, entry or ram_role uses the plugin's AK_ID and AK_SECRET
    settings, which this command cannot read, so it takes AK_ID and
    AK_SECRET from its own environment instead. ak_id and ak_secret are
    None when there are no keys to use.
    """
    if config.ram_role is not None:
        return None, None, f"the ECS RAM role {config.ram_role!r}"
    if config.has_keys:
        return config.ak_id, config.ak_secret, "ak_id and ak_secret from the options"
    if config.credentials is not None:
        path = settings.credentials_file
        description = f"entry {config.credentials!r} of the credentials file {path}"
        if not connect:
            return None, None, description
        try:
            ak_id, ak_secret = credentials.read_credentials_file(path, config.credentials)
        except PluginError as error:
            raise connect_check.CheckFailed(str(error)) from None
        except OSError as error:
            raise AdminError(
                f"cannot read the credentials file {path}: {error.strerror}; run this command as root"
                " or set CREDENTIALS_FILE to the plugin's credentials file"
            ) from None
        return ak_id, ak_secret, description
    plugin_settings = "none in the options: the plugin uses its AK_ID and AK_SECRET settings"
    if not connect:
        return None, None, plugin_settings
    try:
        keys = credentials.plugin_keys()
    except PluginError as error:
        raise AdminError(f"{error} in this shell's environment") from None
    if keys is None:
        return None, None, plugin_settings
    return keys[0], keys[1], "AK_ID and AK_SECRET from this shell's environment"


def command_check(args, settings):
    opts = parse_option_arguments(args.opt or [])
    try:
        options.validate_name(args.name)
    except PluginError as error:
        raise AdminError(f"--name: {error}") from None
    try:
        config = options.parse_options(opts)
    except PluginError as error:
        raise connect_check.CheckFailed(f"invalid options: {error}") from None
    for warning in config.warnings:
        print(f"{PROGRAM}: warning: {warning}", file=sys.stderr)
    ak_id, ak_secret, source = check_credentials(config, settings, args.connect)

    print("options: valid")
    print(f"bucket:  {config.bucket_spec}")
    print(f"url:     {config.url}")
    print(f"credentials: {source}")
    argv = plugin_argv(args, settings, config, args.name, os.path.join(settings.mount_root, args.name))
    print(f"ossfs command line for a volume named {args.name}:")
    print(f"  {shlex.join(argv)}")
    if not args.connect:
        return EXIT_OK

    if ak_id is None and config.ram_role is None:
        raise connect_check.CheckFailed(
            "missing credentials: give -o ak_id=... -o ak_secret=..., -o credentials=... or"
            " -o ram_role=..., or set AK_ID and AK_SECRET in this shell to test the keys the plugin"
            " has in its settings"
        )
    timeout = args.timeout or settings.mount_timeout
    endpoint = connect_check.probe_endpoint(config.url, timeout)
    print(f"endpoint: {endpoint.host} port {endpoint.port} accepted a TCP connection"
          f" (address {endpoint.address}, {endpoint.seconds * 1000:.0f} ms)")
    ossfs_bin = args.ossfs_bin or settings.ossfs_bin
    connect_check.find_program(ossfs_bin, "--ossfs-bin or OSSFS_BIN")
    connect_check.find_program(settings.fusermount_bin, "FUSERMOUNT_BIN")
    test = connect_check.MountTest(config, ak_id, ak_secret, ossfs_bin, settings.fusermount_bin,
                                   timeout, report=print)
    test.run()
    print("check passed")
    return EXIT_OK


# Command line


def positive_seconds(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid number of seconds {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be greater than 0, got {text!r}")
    return value


def add_global_options(parser, default):
    """Add --socket, --state and --verbose with ``default``: None on the main parser, SUPPRESS on subcommands.

    SUPPRESS keeps a subcommand from overwriting a value given before it,
    so the options work on either side of the subcommand name.
    """
    parser.add_argument(
        "--socket", metavar="PATH", default=default,
        help="unix socket of the plugin (default: $SOCKET_PATH, else /run/docker/plugins/ossfs.sock;"
             " a managed plugin listens on /run/docker/plugins/<plugin ID>/ossfs.sock)",
    )
    parser.add_argument(
        "--state", metavar="PATH", default=default,
        help="the plugin's STATE_PATH; inspect reads the volumes' options from the state in its folder"
             " (default: $STATE_PATH, else /var/lib/docker-volume-ossfs/state.json)",
    )
    parser.add_argument(
        "-v", "--verbose", action="store_true", default=default,
        help="also print the log messages of the mount test, such as the signals sent to a stuck ossfs",
    )


def add_ossfs_bin_option(parser):
    parser.add_argument(
        "--ossfs-bin", metavar="PATH", default=None,
        help="ossfs program shown in the command line and run by --connect (default: $OSSFS_BIN, else ossfs)",
    )


def build_parser():
    parser = argparse.ArgumentParser(
        prog=PROGRAM,
        description="List, inspect and check the volumes of the docker-volume-ossfs plugin.",
        epilog="Exit status: 0 all well; 1 a check failed or a volume is unhealthy;"
               " 2 usage error, or the plugin, its state or a program could not be used.",
    )
    add_global_options(parser, None)
    subcommands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    common = argparse.ArgumentParser(add_help=False)
    add_global_options(common, argparse.SUPPRESS)

    listing = subcommands.add_parser(
        "list", parents=[common], help="list the plugin's volumes",
        description="List the volumes of the running plugin: name, bucket, path inside the bucket,"
                    " mounted, mount IDs and the last mount error. Asks the plugin through its socket.",
    )
    listing.add_argument("--json", action="store_true", help="print a JSON array instead of a table")
    listing.add_argument("--no-trunc", action="store_true",
                         help="print whole mount IDs and error messages instead of shortening them")
    listing.set_defaults(handler=command_list)

    inspect = subcommands.add_parser(
        "inspect", parents=[common], help="show one volume's options, ossfs command line and mount health",
        description="Show a volume's options with ak_id and ak_secret redacted, the ossfs command line"
                    " the plugin runs for it, and the health of its mount. Reads the plugin's state,"
                    " which only root can read. Exits with 1 when the mount is unhealthy.",
    )
    inspect.add_argument("name", metavar="NAME", help="volume name")
    inspect.add_argument("--json", action="store_true", help="print a JSON object instead of text")
    add_ossfs_bin_option(inspect)
    inspect.set_defaults(handler=command_inspect)

    check = subcommands.add_parser(
        "check", parents=[common], help="validate volume options, and with --connect mount the bucket once",
        description="Validate volume options as 'docker volume create -o' takes them and print the ossfs"
                    " command line. With --connect, also reach the endpoint and mount the bucket with"
                    " ossfs on a temporary mountpoint, then unmount it. Exits with 1 when a check fails.",
    )
    check.add_argument(
        "-o", "--opt", metavar="KEY=VALUE", action="append",
        help="a volume option, as for docker volume create; repeat for each option",
    )
    check.add_argument(
        "--name", default=DEFAULT_CHECK_NAME,
        help=f"volume name used in the printed command line (default: {DEFAULT_CHECK_NAME})",
    )
    check.add_argument(
        "--connect", action="store_true",
        help="also resolve the endpoint, open a TCP connection, and mount, list and unmount the bucket"
             " with ossfs on this host (needs root and /dev/fuse)",
    )
    check.add_argument(
        "--timeout", metavar="SECONDS", type=positive_seconds, default=None,
        help="maximum seconds for the DNS lookup and TCP connection, and again for the mount"
             " (default: $MOUNT_TIMEOUT, else 20)",
    )
    add_ossfs_bin_option(check)
    check.set_defaults(handler=command_check)
    return parser


def load_settings(args):
    try:
        settings = settings_module.load()
    except settings_module.SettingsError as error:
        raise AdminError(f"invalid environment: {error}") from None
    changes = {}
    if args.socket:
        changes["socket_path"] = os.path.abspath(args.socket)
    if args.state:
        changes["state_path"] = os.path.abspath(args.state)
    return dataclasses.replace(settings, **changes)


def configure_logging(verbose):
    """Send the plugin modules' log messages to stderr: all from info up with --verbose, else errors only."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(f"{PROGRAM}: %(message)s"))
    logger = logging.getLogger("plugin")
    logger.handlers[:] = [handler]
    logger.setLevel(logging.INFO if verbose else logging.ERROR)
    logger.propagate = False


def main(argv=None):
    args = build_parser().parse_args(argv)
    configure_logging(args.verbose)
    try:
        return args.handler(args, load_settings(args))
    except connect_check.CheckFailed as error:
        print(f"{PROGRAM}: check failed: {error}", file=sys.stderr)
        return EXIT_FAILED
    except (AdminError, connect_check.CheckNotRun) as error:
        print(f"{PROGRAM}: {error}", file=sys.stderr)
        return EXIT_ERROR
    except BrokenPipeError:
        # The reader of stdout went away, as with "| head". Python's docs
        # advise pointing stdout at /dev/null so the exit flush fails quietly.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
