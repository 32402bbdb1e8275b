"""Settings read from environment variables.

The managed plugin's ``config.json`` declares most of them settable, so
``docker plugin set ossfs NAME=value`` changes them. The paths stay fixed
there, because they must match its socket, state mount and propagated mount.
The host service sets them in its systemd unit.
"""

import dataclasses
import logging
import os

LOG_LEVELS = ("debug", "info", "warning", "error")
SCOPES = ("local", "global")


class SettingsError(ValueError):
    pass


@dataclasses.dataclass(frozen=True)
class Settings:
    socket_path: str = "/run/docker/plugins/ossfs.sock"
    state_path: str = "/var/lib/docker-volume-ossfs/state.json"
    mount_root: str = "/mnt/acs_mnt/ossfs"
    ossfs_bin: str = "ossfs"
    fusermount_bin: str = "fusermount"
    log_level: str = "info"
    scope: str = "local"
    # Seconds one mount may take before ossfs is killed. Docker stops waiting
    # for a plugin's reply after a while of its own, and the plugin's limit
    # must expire first so that Docker prints the plugin's error.
    mount_timeout: float = 20.0
    # Seconds between health checks of mounted volumes; 0 turns them off.
    watchdog_interval: float = 10.0
    # Unmount every volume on SIGTERM. A managed plugin's ossfs processes die
    # with it, so a clean unmount beats a dead mount. A host service can keep
    # them running across its own restart instead (with systemd's
    # KillMode=process), and then reconnects to them at start.
    unmount_on_stop: bool = True
    # INI file of named key pairs that volumes pick with the 'credentials' option.
    credentials_file: str = "/etc/docker-volume-ossfs/credentials"
    # Worker threads in the single gunicorn worker process.
    threads: int = 16

    @property
    def state_dir(self):
        return os.path.dirname(os.path.abspath(self.state_path))

    @property
    def passwd_dir(self):
        return os.path.join(self.state_dir, "passwd")

    @property
    def log_dir(self):
        """Folder of the per-volume ossfs log files."""
        return os.path.join(self.state_dir, "logs")

    @property
    def python_log_level(self):
        return getattr(logging, self.log_level.upper())


def _seconds(minimum, allow_minimum):
    """Return a parser of a number of seconds above ``minimum`` (or equal, if allowed)."""
    def parse(name, text):
        try:
            value = float(text)
        except ValueError:
            raise SettingsError(f"{name} must be a number of seconds, got {text!r}") from None
        if value < minimum or (value == minimum and not allow_minimum):
            bound = f"{minimum:g} or more" if allow_minimum else f"greater than {minimum:g}"
            raise SettingsError(f"{name} must be {bound}, got {text!r}")
        return value
    return parse


_positive_float = _seconds(0, allow_minimum=False)
_non_negative_float = _seconds(0, allow_minimum=True)


def _positive_int(name, text):
    try:
        value = int(text)
    except ValueError:
        raise SettingsError(f"{name} must be a whole number, got {text!r}") from None
    if value < 1:
        raise SettingsError(f"{name} must be 1 or more, got {text!r}")
    return value


def _boolean(name, text):
    value = text.strip().lower()
    if value in ("true", "1", "yes"):
        return True
    if value in ("false", "0", "no"):
        return False
    raise SettingsError(f"{name} must be true or false, got {text!r}")


def _choice(choices):
    def parse(name, text):
        value = text.strip().lower()
        if value not in choices:
            raise SettingsError(f"{name} must be one of {', '.join(choices)}, got {text!r}")
        return value
    return parse


def _path(name, text):
    if not text.startswith("/"):
        raise SettingsError(f"{name} must be an absolute path, got {text!r}")
    return os.path.normpath(text)


def _text(name, text):
    if not text:
        raise SettingsError(f"{name} must not be empty")
    return text


# Environment variable name -> (field name, parser).
ENVIRONMENT = {
    "SOCKET_PATH": ("socket_path", _path),
    "STATE_PATH": ("state_path", _path),
    "MOUNT_ROOT": ("mount_root", _path),
    "OSSFS_BIN": ("ossfs_bin", _text),
    "FUSERMOUNT_BIN": ("fusermount_bin", _text),
    "LOG_LEVEL": ("log_level", _choice(LOG_LEVELS)),
    "SCOPE": ("scope", _choice(SCOPES)),
    "MOUNT_TIMEOUT": ("mount_timeout", _positive_float),
    "WATCHDOG_INTERVAL": ("watchdog_interval", _non_negative_float),
    "THREADS": ("threads", _positive_int),
    "UNMOUNT_ON_STOP": ("unmount_on_stop", _boolean),
    "CREDENTIALS_FILE": ("credentials_file", _path),
}


def load(environ=None):
    """Build Settings from ``environ`` (default ``os.environ``).

    Unset or empty variables keep their defaults. An invalid value raises
    SettingsError naming the variable, so a bad ``docker plugin set`` fails
    at start with a clear message instead of later on a mount.
    """
    environ = os.environ if environ is None else environ
    values = {}
    for variable, (field, parse) in ENVIRONMENT.items():
        text = environ.get(variable, "")
        if text != "":
            values[field] = parse(variable, text)
    return Settings(**values)
