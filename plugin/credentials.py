"""Passwd files and the choice of credentials for a volume.

A volume's keys come from its own options when it has them, else from the
plugin-level AK_ID and AK_SECRET settings. A volume with ``ram_role`` uses
the ECS instance role and gets no passwd file.
"""

import logging
import os

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


def resolve_keys(config, defaults):
    """Return ``(ak_id, ak_secret, source)`` for ``config``.

    ``source`` names where the keys came from, for Get's Status. Raises
    InvalidOption when the volume has no way to authenticate.
    """
    if config.ram_role is not None:
        return None, None, "ram_role"
    if config.has_keys:
        return config.ak_id, config.ak_secret, "volume options"
    if defaults is not None:
        return defaults[0], defaults[1], "plugin settings"
    raise InvalidOption(
        "missing credentials: give the options 'ak_id' and 'ak_secret' or 'ram_role',"
        " or set AK_ID and AK_SECRET on the plugin"
    )


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
