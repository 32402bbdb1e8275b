"""A string type that keeps credentials out of logs, errors and reprs."""

REDACTED = "****"
# Values shorter than this are not searched for in free text: replacing a
# one- or two-character test key would mangle every word that contains it,
# and so short a value reveals nothing. Real AccessKey IDs and secrets are
# 16 to 30 characters long.
MIN_REDACTED_LENGTH = 4


class Secret:
    """A credential value that prints as ``****``.

    ``str()``, ``repr()`` and f-strings all return the placeholder, so a secret
    that reaches a log line or an error message by mistake shows nothing. The
    only way to the real value is ``reveal()``, which is called where the
    value is written to the passwd file and the state file, and nowhere else.
    """

    __slots__ = ("_value",)

    def __init__(self, value):
        self._value = str(value)

    def reveal(self):
        return self._value

    def __str__(self):
        return REDACTED

    __repr__ = __str__

    def __format__(self, spec):
        return REDACTED

    def __eq__(self, other):
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self):
        return hash(self._value)

    def __bool__(self):
        return bool(self._value)


def redact_text(text, secrets):
    """Return ``text`` with every non-empty secret value replaced by ``****``.

    Used on output the plugin does not control, such as ossfs's stderr.
    Values shorter than MIN_REDACTED_LENGTH are left alone.
    """
    for secret in secrets:
        value = secret.reveal() if isinstance(secret, Secret) else str(secret)
        if len(value) >= MIN_REDACTED_LENGTH:
            text = text.replace(value, REDACTED)
    return text
