"""Passwd files and the choice of credentials for a volume.

A volume's keys come, in this order, from its own ``ak_id``/``ak_secret``
options, from the entry of the credentials file that its ``credentials``
option names, or from the plugin-level AK_ID and AK_SECRET settings. A
volume with ``ram_role`` uses the ECS instance role and gets no passwd file.
"""

import configparser
import logging
import os
import stat

from .command import passwd_line
from .errors import InvalidOption
from .options import parse_credential

log = logging.getLogger(__name__)


def plugin_keys(environ=None):
    """Return ``(ak_id, ak_secret)`` Secrets from AK_ID and AK_SECRET, or None.

    Raises InvalidOption when only one of them is set or a value is malformed.
    """
    environ = os.environ if environ is None else environ
    ak_id, ak_secret = environ.get("AK_ID", ""), environ.get("AK_SECRET", "")
    if not ak_id and not ak_secret:
        return None
    if not ak_id or not ak_secret:
        raise InvalidOption("plugin setting AK_ID needs AK_SECRET too, and the other way round")
    return parse_credential("AK_ID", ak_id), parse_credential("AK_SECRET", ak_secret)


def read_credentials_file(path, entry):
    """Return ``(ak_id, ak_secret)`` Secrets of ``entry`` in the credentials file.

    The file is INI: one ``[name]`` section per key pair with ``ak_id`` and
    ``ak_secret``. Like ssh with its keys, the plugin refuses a file that
    group or others can read. Errors name the file and the entry, never a
    key.
    """
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise InvalidOption(
            f"credentials {entry!r} not found: the credentials file {path} does not exist"
        ) from None
    if stat.S_IMODE(mode) & 0o077:
        raise InvalidOption(
            f"credentials file {path} is readable by group or others (mode {stat.S_IMODE(mode):04o});"
            f" run chmod 600 {path}"
        )
    parser = configparser.ConfigParser(interpolation=None)
    try:
        with open(path, encoding="utf-8") as file:
            parser.read_file(file)
    except (configparser.Error, UnicodeDecodeError) as error:
        # configparser messages can quote a line of the file, and so a key.
        raise InvalidOption(
            f"credentials file {path} is not a valid INI file ({type(error).__name__});"
            " each entry is a [name] section with ak_id and ak_secret"
        ) from None
    if not parser.has_section(entry):
        raise InvalidOption(
            f"credentials {entry!r} not found in {path}; entries: {', '.join(parser.sections()) or 'none'}"
        )
    section = parser[entry]
    for key in ("ak_id", "ak_secret"):
        if not section.get(key):
            raise InvalidOption(f"credentials {entry!r} in {path} has no {key}")
    return (parse_credential(f"ak_id of credentials {entry!r}", section["ak_id"].strip()),
            parse_credential(f"ak_secret of credentials {entry!r}", section["ak_secret"].strip()))


def resolve_keys(config, defaults, credentials_file=None):
    """Return ``(ak_id, ak_secret, source)`` for ``config``.

    ``source`` names where the keys came from, for Get's Status. Raises
    InvalidOption when the volume has no way to authenticate.
    """
    if config.ram_role is not None:
        return None, None, "ram_role"
    if config.has_keys:
        return config.ak_id, config.ak_secret, "volume options"
    if config.credentials is not None:
        ak_id, ak_secret = read_credentials_file(credentials_file, config.credentials)
        return ak_id, ak_secret, f"credentials file entry {config.credentials!r}"
    if defaults is not None:
        return defaults[0], defaults[1], "plugin settings"
    raise InvalidOption(
        "missing credentials: give the options 'ak_id' and 'ak_secret', 'credentials' or 'ram_role',"
        " or set AK_ID and AK_SECRET on the plugin"
    )


def describe_source(config, defaults):
    """Name where ``config``'s keys come from, without reading any file."""
    if config.ram_role is not None:
        return "ram_role"
    if config.has_keys:
        return "volume options"
    if config.credentials is not None:
        return f"credentials file entry {config.credentials!r}"
    return "plugin settings" if defaults is not None else "missing"


class PasswdFiles:
    """One passwd file per volume, mode 0600, in a folder of mode 0700."""

    def __init__(self, folder):
        self.folder = folder

    def path(self, name):
        # Volume names are letters, digits and hyphens, so this stays inside
        # the folder.
        return os.path.join(self.folder, name)

    def write(self, name, config, ak_id, ak_secret):
        """Write the passwd file for volume ``name`` and return its path.

        The file is created with mode 0600 by ``os.open`` before any byte is
        written, then renamed into place, so it is never readable by others.
        """
        os.makedirs(self.folder, mode=0o700, exist_ok=True)
        os.chmod(self.folder, 0o700)
        final = self.path(name)
        temporary = f"{final}.tmp"
        try:
            os.unlink(temporary)
        except FileNotFoundError:
            pass
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        try:
            with os.fdopen(descriptor, "w", encoding="utf-8") as file:
                file.write(passwd_line(config, ak_id, ak_secret))
                file.flush()
                os.fsync(file.fileno())
            os.replace(temporary, final)
        except BaseException:
            try:
                os.unlink(temporary)
            except FileNotFoundError:
                pass
            raise
        return final

    def delete(self, name):
        try:
            os.unlink(self.path(name))
        except FileNotFoundError:
            pass
