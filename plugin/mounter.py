"""Running ossfs and fusermount, and checking that a FUSE mount is alive.

Everything here takes argv lists and paths; nothing runs through a shell.
``Mounter`` is the one class the driver talks to, so tests can replace it
with a fake to inject faults.
"""

import dataclasses
import errno
import logging
import os
import re
import signal
import subprocess
import tempfile
import threading
import time

from .errors import MountFailed, UnmountFailed
from .secret import redact_text

log = logging.getLogger(__name__)

MOUNTINFO = "/proc/self/mountinfo"
# Seconds a probe of a mount root may take before the mount counts as hung.
PROBE_TIMEOUT = 3.0
# Seconds ossfs gets to flush and exit after its mount is gone.
EXIT_GRACE = 5.0
POLL_INTERVAL = 0.02
# Maximum length of ossfs output quoted in an error message.
STDERR_LIMIT = 1500
# Only these variables reach ossfs: no credentials from the plugin's own
# environment, and nothing like AWS_* that would change how ossfs signs.
KEPT_ENVIRONMENT = ("PATH", "LANG", "LC_ALL", "TZ")


LOG_LEVEL_TAG = re.compile(r"\[(CRT|ERR|WAN|INF|DBG)\]")
LOG_PREFIX = re.compile(r"^\S+Z \[[A-Z]{3}\] (\S+\(\d+\): )?")
XML_PROLOG = re.compile(r"<\?xml[^>]*\?>")
XML_CODE = re.compile(r"<Code>([^<]*)</Code>")
XML_MESSAGE = re.compile(r"<Message>([^<]*)</Message>")


def summarize_log(text):
    """Return the error lines of an ossfs log, shortened for an error message.

    ossfs (like s3fs, whose log format it shares) tags lines with [CRT],
    [ERR], [WAN], [INF] or [DBG] and writes untagged lines for messages
    printed before logging starts and for the XML body of an error reply.
    Only critical, error and untagged lines are kept, and an XML body is
    reduced to its Code and Message.
    """
    kept = []
    for line in XML_PROLOG.sub("", text).splitlines():
        line = line.strip()
        if not line or "change debug level" in line:
            continue
        tag = LOG_LEVEL_TAG.search(line[:40])
        if tag and tag.group(1) not in ("CRT", "ERR"):
            continue
        codes, messages = XML_CODE.findall(line), XML_MESSAGE.findall(line)
        if codes:
            line = codes[0] + (f": {messages[0]}" if messages else "")
        line = LOG_PREFIX.sub("", line).lstrip("# ").rstrip(" :")
        if line and line not in kept:
            kept.append(line)
    return "; ".join(kept)


def has_fatal_line(text):
    """Return True when an ossfs log reports that ossfs gave up."""
    return any("[CRT]" in line and "change debug level" not in line for line in text.splitlines())


def read_tail(path, limit=64 * 1024):
    try:
        with open(path, "rb") as file:
            file.seek(0, os.SEEK_END)
            file.seek(max(file.tell() - limit, 0))
            return file.read().decode("utf-8", errors="replace")
    except FileNotFoundError:
        return ""


@dataclasses.dataclass(frozen=True)
class Health:
    alive: bool
    reason: str = ""


def _unescape_mountinfo(field):
    # mountinfo writes space, tab, newline and backslash as octal escapes.
    return (field.replace("\\040", " ").replace("\\011", "\t")
            .replace("\\012", "\n").replace("\\134", "\\"))


def read_mount_table(path=MOUNTINFO):
    """Return ``{mountpoint: filesystem type}`` from /proc/self/mountinfo.

    When a path is mounted more than once, the last (topmost) entry wins.
    """
    table = {}
    with open(path, encoding="utf-8", errors="surrogateescape") as file:
        for line in file:
            fields = line.split()
            separator = fields.index("-")
            table[_unescape_mountinfo(fields[4])] = fields[separator + 1]
    return table


def probe_with_timeout(path, timeout=PROBE_TIMEOUT):
    """Return None if the filesystem at ``path`` responds, else a reason string.

    The probe is ``statvfs``, not ``stat``. The kernel serves ``stat`` of a
    mount root from its attribute cache even after the FUSE daemon died,
    while ``statvfs`` always reaches the daemon. A hung daemon blocks the
    call forever, so it runs in a daemon thread that is abandoned when the
    time is up.
    """
    outcome = {}

    def run():
        try:
            os.statvfs(path)
            outcome["error"] = None
        except OSError as error:
            outcome["error"] = error

    thread = threading.Thread(target=run, name="mount-probe", daemon=True)
    thread.start()
    thread.join(timeout)
    if "error" not in outcome:
        return f"statvfs of {path} did not return within {timeout:g} s"
    error = outcome["error"]
    if error is None:
        return None
    return f"statvfs of {path} failed: {error.strerror} ({errno.errorcode.get(error.errno, error.errno)})"


def find_daemon_pids(mountpoint):
    """Return the PIDs of processes whose arguments include ``mountpoint``.

    ossfs daemonizes, so the plugin does not know its PID. Its command line
    always contains the mountpoint, which is unique to one volume.
    """
    pids = []
    own = os.getpid()
    target = os.fsencode(mountpoint)
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == own:
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as file:
                arguments = file.read().split(b"\0")
        except OSError:
            continue
        if target in arguments[1:]:
            pids.append(int(entry))
    return pids


def _pid_exists(pid):
    try:
        with open(f"/proc/{pid}/stat", "rb") as file:
            # A zombie has exited already; only its parent has to reap it.
            return file.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except (OSError, IndexError):
        return False


def _clean_environment():
    return {key: os.environ[key] for key in KEPT_ENVIRONMENT if key in os.environ}


class Mounter:
    """Mounts and unmounts ossfs filesystems."""

    def __init__(self, fusermount_bin="fusermount"):
        self.fusermount_bin = fusermount_bin

    def is_mounted(self, mountpoint):
        return read_mount_table().get(mountpoint, "").startswith("fuse")

    def health(self, mountpoint):
        """Check that ``mountpoint`` is a FUSE mount in the mount table that responds.

        A successful statvfs reached the FUSE daemon, so it also shows that
        an ossfs process serves the mount, without a scan of /proc.
        """
        fstype = read_mount_table().get(mountpoint)
        if fstype is None:
            return Health(False, "not in the mount table")
        if not fstype.startswith("fuse"):
            return Health(False, f"mounted as {fstype}, not as a FUSE filesystem")
        reason = probe_with_timeout(mountpoint)
        if reason:
            return Health(False, reason)
        return Health(True)

    def mount(self, argv, mountpoint, timeout, secrets=(), endpoint="", logfile=None):
        """Run ossfs and return once ``mountpoint`` is a live FUSE mount.

        ``logfile`` is the file that ossfs writes its log to (its ``logfile``
        option). The plugin reads it, because ossfs checks the bucket after
        it daemonizes, when its stderr is closed. Raises MountFailed with ossfs's
        own reason, secrets redacted, when ossfs fails or the mount is not
        live within ``timeout`` seconds. After a failure no ossfs process
        and no mount remain.
        """
        deadline = time.monotonic() + timeout
        with tempfile.TemporaryFile() as stderr:
            log.info("running %s", " ".join(argv))
            process = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=stderr, stderr=stderr,
                env=_clean_environment(), start_new_session=True, close_fds=True,
            )

            def reason():
                stderr.seek(0)
                text = stderr.read().decode("utf-8", errors="replace")
                if logfile:
                    text += "\n" + read_tail(logfile)
                return summarize_log(redact_text(text, secrets))[-STDERR_LIMIT:]

            def fail(message):
                self.cleanup(mountpoint)
                detail = reason()
                raise MountFailed(message + (f": {detail}" if detail else ""))

            try:
                code = process.wait(timeout=max(deadline - time.monotonic(), 0.001))
            except subprocess.TimeoutExpired:
                self._kill_group(process)
                fail(self._timeout_message(endpoint, timeout))
            if code != 0:
                fail(f"ossfs exited with status {code}")

            # Exit status 0 only means the daemon started: the bucket check
            # runs inside it, and a failed check ends the mount moments later.
            # ossfs checks the bucket while the kernel queues every request
            # until FUSE's INIT reply, and it logs a failure before that
            # reply. It still serves statvfs locally for a moment before its
            # loop stops, so the log is read after a probe succeeds.
            while True:
                health = self.health(mountpoint)
                if logfile and has_fatal_line(read_tail(logfile)):
                    fail("ossfs stopped")
                if health.alive:
                    return
                if not self.is_mounted(mountpoint) and not find_daemon_pids(mountpoint):
                    fail("ossfs exited after it started and left no mount")
                if time.monotonic() >= deadline:
                    fail(self._timeout_message(endpoint, timeout))
                time.sleep(POLL_INTERVAL)

    def unmount(self, mountpoint):
        """Unmount ``mountpoint`` and wait for its ossfs process to exit.

        Already unmounted is success. A busy mount is detached lazily, and
        its ossfs is stopped after EXIT_GRACE seconds.
        """
        self.detach(mountpoint)
        self.stop_daemons([mountpoint])

    def detach(self, mountpoint):
        """Unmount ``mountpoint``, lazily when it is busy, without waiting for ossfs."""
        if self.is_mounted(mountpoint):
            result = self._fusermount("-u", mountpoint)
            if result.returncode != 0 and self.is_mounted(mountpoint):
                log.warning("unmount of %s failed (%s); detaching it lazily",
                            mountpoint, result.stderr.strip())
                result = self._fusermount("-uz", mountpoint)
                if result.returncode != 0 and self.is_mounted(mountpoint):
                    raise UnmountFailed(f"could not unmount {mountpoint}: {result.stderr.strip()}")

    def cleanup(self, mountpoint):
        """Detach a dead or half-made mount and end its ossfs processes."""
        if mountpoint in read_mount_table():
            result = self._fusermount("-uz", mountpoint)
            if result.returncode != 0:
                log.warning("lazy unmount of %s failed: %s", mountpoint, result.stderr.strip())
        self.stop_daemons([mountpoint], grace=0.5)

    def _fusermount(self, flags, mountpoint):
        return subprocess.run([self.fusermount_bin, flags, mountpoint], capture_output=True,
                              text=True, stdin=subprocess.DEVNULL, timeout=30)

    def stop_daemons(self, mountpoints, grace=EXIT_GRACE):
        """Wait up to ``grace`` seconds for the ossfs of ``mountpoints`` to exit, then end them.

        ossfs exits by itself once its mount is gone, unless a lazily
        detached mount is still in use; such a process gets SIGTERM, then
        SIGKILL. The grace period is shared by all the mountpoints.
        """
        owners = {pid: mountpoint for mountpoint in mountpoints for pid in find_daemon_pids(mountpoint)}
        pids = [pid for pid in owners if _pid_exists(pid)]
        deadline = time.monotonic() + grace
        while pids and time.monotonic() < deadline:
            time.sleep(POLL_INTERVAL)
            pids = [pid for pid in pids if _pid_exists(pid)]
        for signal_number in (signal.SIGTERM, signal.SIGKILL):
            if not pids:
                return
            for pid in pids:
                log.warning("ossfs process %d for %s is still running; sending %s",
                            pid, owners[pid], signal.Signals(signal_number).name)
                try:
                    os.kill(pid, signal_number)
                except ProcessLookupError:
                    pass
            stop = time.monotonic() + 2.0
            while pids and time.monotonic() < stop:
                time.sleep(POLL_INTERVAL)
                pids = [pid for pid in pids if _pid_exists(pid)]

    @staticmethod
    def _kill_group(process):
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait()

    @staticmethod
    def _timeout_message(endpoint, timeout):
        return (f"mount timed out after {timeout:g} s waiting for the endpoint {endpoint};"
                " check that the url is reachable from this host, or raise MOUNT_TIMEOUT")
