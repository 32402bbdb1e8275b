"""Validation of volume names and volume options.

Docker passes every option as a string, exactly as the user typed it after
``-o`` or in ``driver_opts``. ``parse_options`` checks them all and returns a
``VolumeConfig``; no code after it reads raw option text. Error messages
name the option but never echo a credential.
"""

import dataclasses
import re
import shlex
import unicodedata
import urllib.parse

from .errors import InvalidName, InvalidOption
from .secret import Secret

# Docker's own rule for volume names, capped at 64 characters. It admits every
# name Alibaba Container Service allows (letters, digits, hyphens) and the
# "<project>_<volume>" names that Compose makes. A name starting with a
# letter or digit and free of "/" is always a single path component.
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
CREDENTIALS_NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
BUCKET_PATTERN = re.compile(r"[a-z0-9][a-z0-9-]{1,61}[a-z0-9]")
FUSE_KEY_PATTERN = re.compile(r"[A-Za-z][A-Za-z0-9_.-]*")
# Characters that only make sense to a shell. ossfs never runs through one,
# so a token containing them is a mistake and is rejected rather than passed.
SHELL_CHARACTERS = set(";|&$`<>(){}\\\"'*?!~#")
CREDENTIAL_FORBIDDEN = re.compile(r"[\s:]")
REGION_PATTERN = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")
RAM_ROLE_PATTERN = re.compile(r"[A-Za-z0-9_.+=@-]{1,64}")

TRUE_WORDS = ("true", "1", "yes")
FALSE_WORDS = ("false", "0", "no")

# Options that the plugin sets itself from the volume options or its own
# folders. Letting other_opts set them would bypass validation or let one
# volume read another's credentials or write outside the plugin's folders.
RESERVED_FUSE_OPTIONS = {
    "url": "use the volume option 'url' instead",
    "bucket": "use the volume option 'bucket' instead",
    "passwd_file": "the plugin writes the passwd file from 'ak_id' and 'ak_secret'",
    "ram_role": "use the volume option 'ram_role' instead",
    "region": "use the volume option 'region' instead",
    "sigv4": "set the volume option 'region' to sign requests with V4",
    "credential_process": "it would run a command as root; use 'ak_id'/'ak_secret' or 'ram_role'",
    "credlib": "it would load a library as root; use 'ak_id'/'ak_secret' or 'ram_role'",
    "credlib_opts": "it configures 'credlib', which is not allowed",
    "logfile": "ossfs output is captured by the plugin",
    "tmpdir": "ossfs temporary files stay in the plugin's folders",
    "use_cache": "the disk cache folder is not configurable yet",
    "ahbe_conf": "it reads a file from the host",
    "mime": "it reads a file from the host",
    "ssl_client_cert": "it reads a file from the host",
}

# Spellings that look like a real FUSE or ossfs option but are not one.
TYPO_HINTS = {
    "allow-other": "allow_other",
    "allowother": "allow_other",
    "allow_others": "allow_other",
    "default-permissions": "default_permissions",
    "defaultpermissions": "default_permissions",
    "max_stat_cache": "max_stat_cache_size",
    "nonEmpty": "nonempty",
    "non_empty": "nonempty",
}

# Alibaba Container Service documented "-o default_permission=666" for ossfs
# volumes. It is neither an ossfs nor a FUSE option and ossfs refuses to start
# with it, so the plugin drops it and reports a warning instead of failing the
# documented example.
DROPPED_FUSE_OPTIONS = {
    "default_permission": (
        "dropped 'default_permission' from other_opts: it is not an ossfs or FUSE option"
        " (FUSE has 'default_permissions'; set file modes with 'umask' or 'mp_umask')"
    ),
}


@dataclasses.dataclass(frozen=True)
class FuseOption:
    """One ``-o`` item: ``key`` or ``key=value``."""

    key: str
    value: str = None

    def __str__(self):
        return self.key if self.value is None else f"{self.key}={self.value}"


@dataclasses.dataclass(frozen=True)
class VolumeConfig:
    """The validated form of one volume's options."""

    bucket: str
    prefix: str  # "" for the bucket root, else "/a/b" with no trailing slash
    url: str
    ak_id: Secret = None
    ak_secret: Secret = None
    ram_role: str = None
    credentials: str = None  # entry name in the plugin's credentials file
    region: str = None
    no_stat_cache: bool = False
    allow_other: bool = True
    fuse_options: tuple = ()
    warnings: tuple = ()

    @property
    def has_keys(self):
        return self.ak_id is not None

    @property
    def bucket_spec(self):
        """Return the first ossfs argument: ``bucket`` or ``bucket:/prefix``."""
        return f"{self.bucket}:{self.prefix}" if self.prefix else self.bucket

    def secrets(self):
        return [s for s in (self.ak_id, self.ak_secret) if s is not None]


def validate_name(name):
    """Raise InvalidName unless ``name`` is 1-64 letters, digits, '_', '.'
    or '-' that starts with a letter or digit."""
    if not isinstance(name, str) or not name:
        raise InvalidName("volume name is missing: pass 'Name' with 1-64 letters, digits, '_', '.' or '-'")
    if not NAME_PATTERN.fullmatch(name):
        raise InvalidName(
            f"invalid volume name {name[:80]!r}: use 1-64 letters, digits, '_', '.' or '-',"
            " starting with a letter or digit"
        )
    return name


def is_clean_text(text):
    """Return True when ``text`` has no control character and encodes as UTF-8.

    Tab is allowed, so that other_opts can be written with tabs.
    """
    if any(unicodedata.category(ch) == "Cc" and ch != "\t" for ch in text):
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def parse_bool(key, text):
    word = text.strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise InvalidOption(f"invalid value {text!r} for option '{key}': use true or false")


def parse_bucket(text):
    """Split ``bucket`` or ``bucket:/prefix`` into the bucket name and prefix."""
    name, separator, prefix = text.partition(":")
    if not BUCKET_PATTERN.fullmatch(name):
        raise InvalidOption(
            f"invalid bucket name {name!r}: use 3-63 lowercase letters, digits or hyphens,"
            " starting and ending with a letter or digit"
        )
    if separator and not prefix:
        raise InvalidOption(f"invalid bucket {text!r}: the path after ':' is empty")
    return name, normalize_prefix(prefix, "bucket")


def normalize_prefix(text, key):
    """Return ``/a/b`` for ``a/b``, ``/a//b/`` and the like; "" for the root."""
    if not text:
        return ""
    if any(ch.isspace() and ch != " " for ch in text) or "," in text:
        raise InvalidOption(f"invalid path {text!r} in option '{key}': commas and control characters are not allowed")
    parts = [part for part in text.split("/") if part]
    if any(part in (".", "..") for part in parts):
        raise InvalidOption(f"invalid path {text!r} in option '{key}': '.' and '..' are not allowed")
    return "/" + "/".join(parts) if parts else ""


def parse_url(text, bucket):
    """Return the endpoint URL with a scheme.

    A URL without a scheme, as in Alibaba's documented example
    ``oss-cn-hangzhou.aliyuncs.com``, gets ``https://``.
    """
    value = text.strip()
    if not value or any(ch.isspace() for ch in value) or "," in value:
        raise InvalidOption(
            f"invalid url {text!r}: give the OSS endpoint, for example"
            " https://oss-cn-hangzhou.aliyuncs.com, without spaces or commas"
        )
    if "://" not in value:
        value = "https://" + value
    parts = urllib.parse.urlsplit(value)
    if parts.username is not None or parts.password is not None:
        # The text may hold a key, so it is not repeated in the message.
        raise InvalidOption("invalid url: credentials in the url are not allowed; use 'ak_id' and 'ak_secret'")
    if parts.scheme not in ("http", "https"):
        raise InvalidOption(f"invalid url {text!r}: the scheme must be http or https")
    try:
        host, port = parts.hostname, parts.port
    except ValueError:
        raise InvalidOption(f"invalid url {text!r}: the port must be a number from 1 to 65535") from None
    if not host:
        raise InvalidOption(f"invalid url {text!r}: the host is missing")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise InvalidOption(f"invalid url {text!r}: give only the scheme, host and port, without a path")
    if host.startswith(bucket + "."):
        endpoint = host[len(bucket) + 1:] if port is None else f"{host[len(bucket) + 1:]}:{port}"
        raise InvalidOption(
            f"invalid url {text!r}: the host starts with the bucket name; ossfs adds it,"
            f" so use url={parts.scheme}://{endpoint}"
        )
    netloc = host if port is None else f"{host}:{port}"
    if ":" in host:
        netloc = f"[{host}]" if port is None else f"[{host}]:{port}"
    return f"{parts.scheme}://{netloc}"


def parse_credential(key, text):
    if text == "":
        raise InvalidOption(f"option '{key}' is empty")
    if CREDENTIAL_FORBIDDEN.search(text) or not is_clean_text(text):
        raise InvalidOption(
            f"invalid value for option '{key}': it contains whitespace, a line break, a colon"
            " or a control character, which an access key never does; check for a copy-and-paste error"
        )
    return Secret(text)


def parse_other_opts(text):
    """Parse ``other_opts`` into FuseOption items and warnings.

    Accepted forms: ``-o a -o b``, ``-oa,b``, ``-o a,b`` and ``-o key=value``.
    Every other token is rejected and named in the error.
    """
    try:
        tokens = shlex.split(text)
    except ValueError as error:
        raise InvalidOption(f"invalid other_opts {text!r}: {error}") from None

    items = []
    index = 0
    while index < len(tokens):
        token = tokens[index]
        bad = SHELL_CHARACTERS.intersection(token)
        if bad:
            raise InvalidOption(
                f"invalid other_opts: shell syntax is not supported, found {token!r};"
                " pass options as '-o name' or '-o name=value'"
            )
        if token == "-o":
            if index + 1 == len(tokens):
                raise InvalidOption("invalid other_opts: '-o' at the end has no option after it")
            group = tokens[index + 1]
            index += 2
        elif token.startswith("-o") and not token.startswith("-o-"):
            group = token[2:]
            index += 1
        else:
            raise InvalidOption(
                f"invalid other_opts: unexpected argument {token!r};"
                " only '-o name' or '-o name=value' options are accepted"
            )
        if SHELL_CHARACTERS.intersection(group):
            raise InvalidOption(
                f"invalid other_opts: shell syntax is not supported, found {group!r};"
                " pass options as '-o name' or '-o name=value'"
            )
        items.extend(item for item in group.split(",") if item)

    options, warnings = [], []
    for item in items:
        key, has_value, value = item.partition("=")
        if not FUSE_KEY_PATTERN.fullmatch(key):
            raise InvalidOption(
                f"invalid option {item!r} in other_opts: an option name starts with a letter"
                " and has letters, digits, '_', '.' or '-'"
            )
        if key in DROPPED_FUSE_OPTIONS:
            warnings.append(DROPPED_FUSE_OPTIONS[key])
            continue
        if key in TYPO_HINTS:
            raise InvalidOption(f"unknown option {key!r} in other_opts: did you mean {TYPO_HINTS[key]!r}?")
        if key in RESERVED_FUSE_OPTIONS:
            raise InvalidOption(f"option {key!r} is not allowed in other_opts: {RESERVED_FUSE_OPTIONS[key]}")
        options.append(FuseOption(key, value if has_value else None))
    return options, warnings


def _take_allow_other(options):
    """Remove ``allow_other`` items and return whether it is wanted.

    The plugin turns ``allow_other`` on by default, because containers rarely
    run as root inside. ``allow_other=false`` (a plugin-level spelling, not a
    FUSE one) turns it off.
    """
    allow_other = True
    kept = []
    for option in options:
        if option.key != "allow_other":
            kept.append(option)
        elif option.value is not None:
            allow_other = parse_bool("other_opts allow_other", option.value)
    return allow_other, kept


# Volume option name -> one-line description. The order is the order of the
# documentation table.
OPTIONS = {
    "bucket": "OSS bucket name, optionally with a path: 'bucket' or 'bucket:/path'",
    "url": "OSS endpoint, for example https://oss-cn-hangzhou.aliyuncs.com (https:// is added when no scheme is given)",
    "ak_id": "AccessKey ID; needs 'ak_secret'",
    "ak_secret": "AccessKey secret; needs 'ak_id'",
    "path": "folder inside the bucket to mount instead of its root",
    "credentials": "name of an entry in the plugin's credentials file, instead of keys",
    "ram_role": "ECS instance RAM role ('auto' or a role name) instead of keys",
    "region": "OSS region, for example cn-hangzhou; turns on V4 request signing",
    "no_stat_cache": "true turns off ossfs's file metadata cache",
    "other_opts": "extra ossfs options: '-o name' or '-o name=value', repeated",
}
REQUIRED_OPTIONS = ("bucket", "url")


def parse_options(opts):
    """Validate the volume options ``opts`` (a dict of strings) into a VolumeConfig."""
    unknown = sorted(set(opts) - set(OPTIONS))
    if unknown:
        raise InvalidOption(
            f"unknown option {unknown[0]!r}: valid options are {', '.join(OPTIONS)}"
        )
    for key, value in opts.items():
        if not isinstance(value, str):
            raise InvalidOption(f"invalid value for option '{key}': it must be a string")
        if key not in ("ak_id", "ak_secret") and not is_clean_text(value):
            # ossfs takes arguments and files as C strings in UTF-8: a NUL byte
            # or a lone surrogate cannot reach it, and no option needs either.
            raise InvalidOption(
                f"invalid value for option '{key}': it contains a control character or invalid Unicode"
            )
    missing = [key for key in REQUIRED_OPTIONS if not opts.get(key, "").strip()]
    if missing:
        raise InvalidOption(f"missing required option '{missing[0]}'")

    bucket, prefix = parse_bucket(opts["bucket"].strip())
    if "path" in opts:
        if prefix:
            raise InvalidOption("give the path either in 'bucket' (bucket:/path) or in 'path', not both")
        prefix = normalize_prefix(opts["path"].strip(), "path")
    url = parse_url(opts["url"], bucket)

    ak_id = parse_credential("ak_id", opts["ak_id"]) if "ak_id" in opts else None
    ak_secret = parse_credential("ak_secret", opts["ak_secret"]) if "ak_secret" in opts else None
    if (ak_id is None) != (ak_secret is None):
        given, absent = ("ak_id", "ak_secret") if ak_id is not None else ("ak_secret", "ak_id")
        raise InvalidOption(f"option '{given}' needs '{absent}' too")

    ram_role = opts.get("ram_role")
    if ram_role is not None:
        if not RAM_ROLE_PATTERN.fullmatch(ram_role):
            raise InvalidOption(
                f"invalid ram_role {ram_role!r}: use 'auto' or a role name of letters, digits and _.+=@-"
            )
        if ak_id is not None:
            raise InvalidOption("give either 'ak_id'/'ak_secret' or 'ram_role', not both")

    credentials = opts.get("credentials")
    if credentials is not None:
        if not CREDENTIALS_NAME_PATTERN.fullmatch(credentials):
            raise InvalidOption(
                f"invalid credentials name {credentials[:80]!r}: use 1-64 letters, digits, '_', '.' or '-'"
            )
        if ak_id is not None or ram_role is not None:
            raise InvalidOption("give only one of 'ak_id'/'ak_secret', 'credentials' and 'ram_role'")

    region = opts.get("region")
    if region is not None and not REGION_PATTERN.fullmatch(region):
        raise InvalidOption(f"invalid region {region!r}: use a region id such as cn-hangzhou")

    no_stat_cache = parse_bool("no_stat_cache", opts["no_stat_cache"]) if "no_stat_cache" in opts else False
    fuse_options, warnings = parse_other_opts(opts.get("other_opts", ""))
    allow_other, fuse_options = _take_allow_other(fuse_options)
    if no_stat_cache and any(option.key == "max_stat_cache_size" for option in fuse_options):
        raise InvalidOption(
            "no_stat_cache=true conflicts with max_stat_cache_size in other_opts: keep one of them"
        )

    return VolumeConfig(
        bucket=bucket,
        prefix=prefix,
        url=url,
        ak_id=ak_id,
        ak_secret=ak_secret,
        ram_role=ram_role,
        credentials=credentials,
        region=region,
        no_stat_cache=no_stat_cache,
        allow_other=allow_other,
        fuse_options=tuple(fuse_options),
        warnings=tuple(warnings),
    )
