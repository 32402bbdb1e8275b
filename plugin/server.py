"""Serving the app with gunicorn on a unix socket.

One worker process with threads: the driver keeps volumes, locks and mount
IDs in memory, and a single process keeps that view coherent without file
locks. gunicorn binds the socket in the master before the worker starts, so
Docker can connect at once. Slow work, such as checking old mounts, runs in
background threads after the state is loaded.
"""

import logging
import os
import sys
import threading

import gunicorn.app.base

from . import settings as settings_module
from .api import create_app
from .driver import Driver

log = logging.getLogger("plugin")


def configure_logging(level):
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


def build_driver(settings):
    """Create the driver, load the state and start its background threads."""
    for folder, mode in ((settings.state_dir, 0o700), (settings.mount_root, 0o755)):
        os.makedirs(folder, mode=mode, exist_ok=True)
    driver = Driver(settings)
    driver.load()
    threading.Thread(target=driver.reconcile, name="reconcile", daemon=True).start()
    if settings.watchdog_interval > 0:
        threading.Thread(target=driver.watch, args=(settings.watchdog_interval,),
                         name="watchdog", daemon=True).start()
    return driver


class PluginServer(gunicorn.app.base.BaseApplication):
    def __init__(self, settings):
        self.settings = settings
        self.driver = None
        super().__init__()

    def load_config(self):
        settings = self.settings
        values = {
            "bind": [f"unix:{settings.socket_path}"],
            "workers": 1,
            "worker_class": "gthread",
            "threads": settings.threads,
            # The master restarts a worker that misses this many seconds of
            # heartbeats. gthread workers send them from their main loop, so
            # long mounts in request threads do not count against it.
            "timeout": 60,
            # Docker sends SIGKILL 10 seconds after SIGTERM.
            "graceful_timeout": 9,
            "loglevel": settings.log_level,
            "accesslog": None,
            "errorlog": "-",
            "worker_exit": self._worker_exit,
            # gunicorn 27 opens a control socket in the home folder unless
            # this is set. Older releases, such as Debian's 20.1, lack it.
            "control_socket_disable": True,
        }
        for key, value in values.items():
            if key in self.cfg.settings:
                self.cfg.set(key, value)

    def load(self):
        configure_logging(self.settings.python_log_level)
        self.driver = build_driver(self.settings)
        log.info("serving Docker volume plugin API on %s", self.settings.socket_path)
        return create_app(self.driver)

    def _worker_exit(self, server, worker):
        if self.driver is None:
            return
        if os.getppid() != worker.ppid:
            # The master died (a crash or kill -9): its ossfs processes keep
            # serving containers, and the next start finds them, as when
            # the whole plugin crashes.
            log.warning("stopping: the gunicorn master is gone; leaving mounts in place")
            return
        if self.settings.unmount_on_stop:
            log.info("stopping: unmounting volumes")
            self.driver.shutdown()
        else:
            log.info("stopping: leaving mounts in place (UNMOUNT_ON_STOP=false)")


def main():
    try:
        settings = settings_module.load()
    except settings_module.SettingsError as error:
        print(f"docker-volume-ossfs: {error}", file=sys.stderr)
        return 2
    configure_logging(settings.python_log_level)
    socket_folder = os.path.dirname(settings.socket_path)
    os.makedirs(socket_folder, exist_ok=True)
    if os.path.exists(settings.socket_path):
        # A socket left by a killed plugin would make bind fail.
        os.unlink(settings.socket_path)
    log.info("starting docker-volume-ossfs (state %s, mounts under %s, ossfs %s)",
             settings.state_path, settings.mount_root, settings.ossfs_bin)
    PluginServer(settings).run()
    return 0
