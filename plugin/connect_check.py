"""The connection test of ``ossfs-volume check --connect``.

It runs in two steps. The network step resolves the endpoint's host and
opens a TCP connection, so a DNS failure, a refused connection or a timeout
is named in plain words before ossfs runs. The mount step runs ossfs with
the command line the plugin would use, on a temporary mountpoint with a
temporary passwd file, lists the mounted folder and unmounts it. A rejected
request is explained from ossfs's log: the HTTP status and the OSS or S3
error code, such as NoSuchBucket or InvalidAccessKeyId.
"""

import dataclasses
import os
import re
import shlex
import shutil
import socket
import tempfile
import threading
import time
import urllib.parse

from .command import build_argv
from .credentials import PasswdFiles
from .errors import MountFailed, UnmountFailed
from .mounter import Mounter, find_daemon_pids, read_mount_table, read_tail
from .secret import redact_text

# Volume name of the temporary passwd file. Any valid name works.
CHECK_VOLUME_NAME = "check"

HTTP_STATUS = re.compile(r"HTTP response code (\d{3})")
ERROR_CODE = re.compile(r"<Code>([^<]+)</Code>")
ERROR_MESSAGE = re.compile(r"<Message>([^<]+)</Message>")
CURL_ERROR = re.compile(r"\bCURLE_[A-Z_]+\b")

# OSS and S3 error codes, as returned in the <Code> element of an error
# reply, and what the user should check for each.
ERROR_CODE_ADVICE = {
    "NoSuchBucket": "The bucket does not exist at this endpoint. Check 'bucket', and that 'url'"
                    " is the endpoint of the bucket's region",
    "InvalidAccessKeyId": "The endpoint does not know this AccessKey ID. Check 'ak_id' and that"
                          " the key is enabled",
    "SignatureDoesNotMatch": "The AccessKey secret does not belong to this AccessKey ID."
                             " Check 'ak_secret'",
    "AccessDenied": "The key is valid but the request was denied. Check that the key may list and"
                    " read this bucket, and that 'url' is the endpoint of the bucket's region",
    "InvalidBucketName": "The endpoint rejects the bucket name. Check 'bucket'",
    "PermanentRedirect": "The bucket is in another region. Use the endpoint of its region as 'url'",
    "AuthorizationHeaderMalformed": "The request was signed for another region. Check 'region'",
    "RequestTimeTooSkewed": "This host's clock differs too much from the endpoint's."
                            " Synchronize it, for example with NTP",
}

# curl errors that ossfs logs when a request fails below HTTP.
CURL_ERROR_ADVICE = {
    "CURLE_COULDNT_RESOLVE_HOST": "ossfs could not resolve the endpoint's host name."
                                  " Check 'url' and this host's DNS settings",
    "CURLE_COULDNT_CONNECT": "ossfs could not connect to the endpoint. Check 'url' and that the"
                             " endpoint is up",
    "CURLE_OPERATION_TIMEDOUT": "a request of ossfs timed out. Check that this host can reach"
                                " the endpoint",
    "CURLE_SSL_CONNECT_ERROR": "the TLS handshake failed. Check that an https url points to an"
                               " https endpoint",
    "CURLE_PEER_FAILED_VERIFICATION": "the endpoint's TLS certificate was not accepted."
                                      " Check the host name in 'url'",
}


class CheckFailed(Exception):
    """A step of the check found a problem with the options, endpoint, bucket or keys."""


class CheckNotRun(Exception):
    """The check could not run on this host, for example because ossfs is missing."""


@dataclasses.dataclass(frozen=True)
class Endpoint:
    """A reachable endpoint: its host, the address that accepted, the port and the time taken."""

    host: str
    address: str
    port: int
    seconds: float


def endpoint_host_port(url):
    parts = urllib.parse.urlsplit(url)
    return parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)


def resolve(host, port, timeout):
    """Return getaddrinfo's TCP results for ``host``.

    Raises CheckFailed when the lookup fails or takes longer than
    ``timeout`` seconds. getaddrinfo has no timeout of its own, so it runs
    in a daemon thread that is abandoned when the time is up.
    """
    outcome = {}

    def run():
        try:
            outcome["addresses"] = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError as error:
            outcome["error"] = error

    thread = threading.Thread(target=run, name="resolve", daemon=True)
    thread.start()
    thread.join(timeout)
    if "error" in outcome:
        error = outcome["error"]
        reason = error.strerror or str(error)
        raise CheckFailed(
            f"cannot resolve the host {host!r} of the url: {reason}."
            " Check the spelling of 'url' and this host's DNS settings"
        )
    if "addresses" not in outcome:
        raise CheckFailed(
            f"the DNS lookup of {host!r} timed out after {timeout:g} s: check this host's DNS settings"
        )
    return outcome["addresses"]


def connect(family, address, timeout):
    """Open and close one TCP connection to ``address`` (a socket address tuple)."""
    with socket.socket(family, socket.SOCK_STREAM) as connection:
        connection.settimeout(timeout)
        connection.connect(address)


def probe_endpoint(url, timeout):
    """Resolve the host of ``url`` and open a TCP connection to it.

    Each address that getaddrinfo returns is tried in turn. Raises
    CheckFailed naming the failure of the last address tried.
    """
    host, port = endpoint_host_port(url)
    started = time.monotonic()
    addresses = resolve(host, port, timeout)
    failure = None
    for family, _, _, _, address in addresses:
        remaining = timeout - (time.monotonic() - started)
        if remaining <= 0:
            break
        try:
            connect(family, address, remaining)
        except ConnectionRefusedError:
            failure = (
                f"connection refused by {address[0]} port {port} (from the url {url}):"
                " nothing accepts connections there. Check the port in 'url' and that the endpoint is up"
            )
        except (socket.timeout, TimeoutError):
            failure = (
                f"connection to {address[0]} port {port} (from the url {url}) timed out after"
                f" {timeout:g} s: a firewall drops the packets or the host is down. Check that this"
                " host can reach the endpoint. An OSS internal endpoint (-internal.aliyuncs.com) is"
                " reachable only from the internal network of its region, such as an ECS instance there"
            )
        except OSError as error:
            failure = (
                f"cannot connect to {address[0]} port {port} (from the url {url}):"
                f" {error.strerror or error}. Check this host's network route to the endpoint"
            )
        else:
            return Endpoint(host, address[0], port, time.monotonic() - started)
    if failure is None:
        failure = f"connection to {host} port {port} (from the url {url}) timed out after {timeout:g} s"
    raise CheckFailed(failure)


def explain_ossfs_log(text):
    """Return a plain sentence for the first rejected request in an ossfs log, or "".

    The sentence gives the HTTP status and the error code when ossfs logged
    them, and what to check. ossfs logs the status of some failed requests
    only, so the status can be missing while the code is there.
    """
    status = HTTP_STATUS.search(text)
    code = ERROR_CODE.search(text)
    if code:
        message = ERROR_MESSAGE.search(text)
        rejection = "the endpoint rejected the request with"
        if status:
            rejection += f" HTTP {status.group(1)} and"
        rejection += f" error code {code.group(1)}"
        if message:
            rejection += f" ({message.group(1).strip()})"
        advice = ERROR_CODE_ADVICE.get(code.group(1))
        return f"{rejection}. {advice}" if advice else rejection
    if status:
        return f"the endpoint rejected the request with HTTP {status.group(1)}"
    curl = CURL_ERROR.search(text)
    if curl:
        advice = CURL_ERROR_ADVICE.get(curl.group(0))
        return f"{advice} ({curl.group(0)})" if advice else f"a request failed with {curl.group(0)}"
    return ""


def list_with_timeout(path, timeout):
    """Return ``os.listdir(path)``.

    Raises the OSError of a failed listing, or TimeoutError when the listing
    blocks for ``timeout`` seconds, as it does on a hung FUSE mount.
    """
    outcome = {}

    def run():
        try:
            outcome["entries"] = os.listdir(path)
        except OSError as error:
            outcome["error"] = error

    thread = threading.Thread(target=run, name="list-mount", daemon=True)
    thread.start()
    thread.join(timeout)
    if "entries" in outcome:
        return outcome["entries"]
    if "error" in outcome:
        raise outcome["error"]
    raise TimeoutError(f"listing the mounted folder did not return within {timeout:g} s")


def find_program(name, how_to_set):
    """Return the path of program ``name``; raise CheckNotRun if it is missing.

    ``how_to_set`` names the option or variable that sets the program.
    """
    path = shutil.which(name)
    if path is None:
        raise CheckNotRun(f"program {name!r} not found on this host: install it, or set its path with {how_to_set}")
    return path


class MountTest:
    """One mount of a bucket with ossfs in a temporary folder, as the plugin would mount it.

    The folder contains the mountpoint, the passwd file (mode 0600 in a folder
    of mode 0700) and ossfs's log file. ``run`` removes the folder when it
    is done, unless a mount could not be detached. Then it reports the
    folder and the command that detaches the mount.
    """

    def __init__(self, config, ak_id, ak_secret, ossfs_bin, fusermount_bin, timeout, report):
        self.config = config
        self.ak_id = ak_id
        self.ak_secret = ak_secret
        self.ossfs_bin = ossfs_bin
        self.fusermount_bin = fusermount_bin
        self.timeout = timeout
        self.report = report
        self.secrets = [secret for secret in (ak_id, ak_secret) if secret is not None]
        self.mounter = Mounter(fusermount_bin)

    def run(self):
        """Mount, list and unmount. Raises CheckFailed with ossfs's reason when a step fails."""
        folder = tempfile.mkdtemp(prefix="ossfs-volume-check-")
        mountpoint = os.path.join(folder, "mnt")
        try:
            argv, logfile = self._prepare(folder, mountpoint)
            self.report(f"mount test: running {shlex.join(argv)}")
            started = time.monotonic()
            try:
                self.mounter.mount(argv, mountpoint, self.timeout, secrets=self.secrets,
                                   endpoint=self.config.url, logfile=logfile)
            except MountFailed as error:
                raise CheckFailed(self._failure("mount test failed", error, logfile)) from None
            self.report(f"mount test: ossfs mounted {self.config.bucket_spec} in"
                        f" {time.monotonic() - started:.2f} s")
            self._list(mountpoint, logfile)
        finally:
            self._tear_down(folder, mountpoint)

    def _prepare(self, folder, mountpoint):
        os.mkdir(mountpoint, 0o755)
        passwd_files = PasswdFiles(os.path.join(folder, "passwd"))
        passwd_path = passwd_files.path(CHECK_VOLUME_NAME)
        if self.ak_id is not None:
            passwd_path = passwd_files.write(CHECK_VOLUME_NAME, self.config, self.ak_id, self.ak_secret)
        logfile = os.path.join(folder, "ossfs.log")
        os.close(os.open(logfile, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        argv = build_argv(self.ossfs_bin, self.config, mountpoint, passwd_path, logfile)
        return argv, logfile

    def _list(self, mountpoint, logfile):
        try:
            entries = list_with_timeout(mountpoint, self.timeout)
        except (OSError, TimeoutError) as error:
            reason = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
            raise CheckFailed(self._failure(
                "ossfs mounted the bucket, but listing the mounted folder failed", reason, logfile,
            )) from None
        where = f"under {self.config.prefix}" if self.config.prefix else "at the bucket root"
        self.report(f"mount test: listed {len(entries)} entries {where}")

    def _failure(self, summary, error, logfile):
        log_text = redact_text(read_tail(logfile), self.secrets)
        explanation = explain_ossfs_log(log_text)
        detail = redact_text(str(error), self.secrets)
        if explanation:
            return f"{summary}: {explanation}.\nossfs reported: {detail}"
        return f"{summary}: {detail}"

    def _tear_down(self, folder, mountpoint):
        try:
            self.mounter.unmount(mountpoint)
        except (UnmountFailed, OSError) as error:
            self.report(f"mount test: unmount of {mountpoint} failed: {error}")
        if mountpoint in read_mount_table() or find_daemon_pids(mountpoint):
            # Removing the folder would reach into a live mount.
            self.report(f"mount test: left {folder} in place because {mountpoint} is still in use;"
                        f" detach it with: fusermount -uz {mountpoint}")
            return
        shutil.rmtree(folder, ignore_errors=True)
        self.report("mount test: unmounted and removed the temporary folder")
