"""Fault loops: kill -9 of ossfs and of the plugin during mixed operations.

Used by tests/fuse/test_fault_loops.py (a few rounds in CI) and
scripts/fault-loops.py (more rounds, printing the figures). Every loop is
bounded in rounds and in time.
"""

import collections
import os
import random
import signal
import threading
import time

from tests import harness

# Seconds a restarted plugin gets to sweep mounts that no ID holds.
SETTLE_SECONDS = 15


class Figures:
    def __init__(self):
        self.rounds = 0
        self.volumes_lost = 0
        self.volumes_resurrected = 0
        self.mounts_leaked = 0
        self.ids_leaked = 0
        self.ids_lost = 0
        self.dead_mounts = 0
        self.kills = 0
        self.recovered = 0
        self.operations = 0
        self.notes = []

    def add(self, other):
        for key, value in vars(other).items():
            if isinstance(value, int):
                setattr(self, key, getattr(self, key) + value)
        self.notes += other.notes

    def failures(self):
        return (self.volumes_lost + self.volumes_resurrected + self.mounts_leaked + self.ids_leaked
                + self.ids_lost + self.dead_mounts + (self.kills - self.recovered))

    def lines(self):
        return [
            f"rounds: {self.rounds}, operations: {self.operations}",
            f"volumes lost: {self.volumes_lost} (removed volumes back: {self.volumes_resurrected})",
            f"mounts leaked: {self.mounts_leaked}",
            f"IDs leaked: {self.ids_leaked} (acknowledged IDs lost: {self.ids_lost})",
            f"dead mounts after restart: {self.dead_mounts}",
            f"dead mounts recovered: {self.recovered} of {self.kills}",
        ]





class Model:
    """What the client knows from the replies it got before the kill."""

    def __init__(self, names):
        self.exists = {name: False for name in names}  # True, False or None (reply lost)
        # Mount calls per ID whose reply arrived, as the plugin counts them.
        self.acknowledged = {name: collections.Counter() for name in names}
        self.in_flight = {name: set() for name in names}
        self.lock = threading.Lock()


def run_operations(plugin, opts, model, names, rng, stop, counter):
    """Run random operations on ``names`` until ``stop`` is set or the plugin dies.

    Each thread gets volumes of its own. Replies of two threads acting on
    one volume can arrive in the other order than the plugin handled them,
    and the model would then expect the wrong state.
    """
    while not stop.is_set():
        name = rng.choice(names)
        action = rng.choice(["create", "create", "mount", "mount", "unmount", "remove"])
        mount_id = f"{name}-{rng.randrange(4)}"
        try:
            if action == "create":
                with model.lock:
                    if model.exists[name] is False:
                        model.exists[name] = None
                plugin.call("Create", Name=name, Opts=opts)
                with model.lock:
                    model.exists[name] = True
            elif action == "mount":
                with model.lock:
                    model.in_flight[name].add(mount_id)
                plugin.call("Mount", Name=name, ID=mount_id)
                with model.lock:
                    model.acknowledged[name][mount_id] += 1
                    model.in_flight[name].discard(mount_id)
            elif action == "unmount":
                with model.lock:
                    model.in_flight[name].add(mount_id)
                plugin.call("Unmount", Name=name, ID=mount_id)
                with model.lock:
                    model.acknowledged[name] -= collections.Counter([mount_id])
                    model.in_flight[name].discard(mount_id)
            else:
                with model.lock:
                    previous = model.exists[name]
                    model.exists[name] = None
                try:
                    plugin.call("Remove", Name=name)
                except harness.PluginCallError:
                    with model.lock:
                        model.exists[name] = previous
                    raise
                with model.lock:
                    model.exists[name] = False
            counter.append(1)
        except harness.PluginCallError:
            counter.append(1)
        except OSError:
            return  # the plugin was killed: this reply is lost
        except Exception:  # requests wraps socket errors in its own types
            return


def compare_ids(name, held, model, figures):
    """Count the mount calls the plugin keeps that the replies do not explain.

    A Mount or Unmount whose reply was lost may or may not have happened, so
    its ID may differ by one either way.
    """
    acknowledged = model.acknowledged[name]
    for mount_id in set(held) | set(acknowledged):
        difference = held[mount_id] - acknowledged[mount_id]
        slack = 1 if mount_id in model.in_flight[name] else 0
        if difference > slack:
            figures.ids_leaked += difference - slack
            figures.notes.append(f"{name}: ID {mount_id} held {held[mount_id]} times, acknowledged"
                                 f" {acknowledged[mount_id]}")
        elif difference < -slack:
            figures.ids_lost += -slack - difference
            figures.notes.append(f"{name}: ID {mount_id} held {held[mount_id]} times, acknowledged"
                                 f" {acknowledged[mount_id]}")


def plugin_kill_round(make_plugin, opts, rng, names, figures):
    """One round: mixed operations, kill -9 of the plugin, restart, compare."""
    plugin = make_plugin()
    model = Model(names)
    stop = threading.Event()
    counter = []
    thread_count = 4
    threads = [threading.Thread(target=run_operations,
                                args=(plugin, opts, model, names[index::thread_count],
                                      random.Random(rng.random()), stop, counter))
               for index in range(thread_count)]
    for thread in threads:
        thread.start()
    time.sleep(rng.uniform(0.2, 2.0))
    plugin.kill()
    stop.set()
    for thread in threads:
        thread.join(30)
    figures.operations += len(counter)

    plugin = make_plugin()
    # An ossfs started just before the kill may finish mounting after the
    # restart; the watchdog sweeps such a mount within its interval. Wait,
    # bounded, until every mount is held by an ID, then compare.
    def settled():
        for point in harness.mounts_under(plugin.mount_root):
            status = plugin.call("Get", Name=os.path.basename(point))["Volume"]["Status"]
            if not status["mount_ids"]:
                return False
        return True

    try:
        harness.wait_until(settled, SETTLE_SECONDS, interval=0.2, message="mounts held by IDs")
    except (TimeoutError, harness.PluginCallError):
        pass  # counted as leaked below
    listed = {volume["Name"] for volume in plugin.call("List")["Volumes"]}
    held = {}
    for name in names:
        if model.exists[name] is True and name not in listed:
            figures.volumes_lost += 1
            figures.notes.append(f"lost volume {name}")
        if model.exists[name] is False and name in listed:
            figures.volumes_resurrected += 1
            figures.notes.append(f"removed volume {name} is back")
        if name in listed:
            held[name] = collections.Counter(plugin.call("Get", Name=name)["Volume"]["Status"]["mount_ids"])
            compare_ids(name, held[name], model, figures)
    for point in harness.mounts_under(plugin.mount_root):
        name = os.path.basename(point)
        if not held.get(name):
            figures.mounts_leaked += 1
            figures.notes.append(f"mount {point} held by no ID")
        elif not harness.responds(point):
            figures.dead_mounts += 1
            figures.notes.append(f"mount {point} is dead")

    # Release everything the way Docker would, then check nothing is left.
    for name, ids in held.items():
        for mount_id in ids.elements():
            plugin.call("Unmount", Name=name, ID=mount_id)
        plugin.call("Remove", Name=name)
    leftovers = harness.mounts_under(plugin.mount_root)
    figures.mounts_leaked += len(leftovers)
    if leftovers:
        figures.notes.append(f"mounts left after cleanup: {leftovers}")
    plugin.stop()
    figures.rounds += 1


def ossfs_kill_loop(plugin, opts, rng, rounds, figures, volume_count=3):
    """Kill -9 a random volume's ossfs; a Mount or the watchdog must bring it back."""
    names = [f"k{index}" for index in range(volume_count)]
    for name in names:
        plugin.call("Create", Name=name, Opts=opts)
        plugin.call("Mount", Name=name, ID="first")
    for round_number in range(rounds):
        name = rng.choice(names)
        mountpoint = f"{plugin.mount_root}/{name}"
        pids = harness.processes_with_argument_under(mountpoint)
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        figures.kills += 1
        if rng.random() < 0.5:
            plugin.call("Mount", Name=name, ID=f"again-{round_number}")
            plugin.call("Unmount", Name=name, ID=f"again-{round_number}")
        try:
            harness.wait_until(lambda: harness.responds(mountpoint) and harness.processes_with_argument_under(mountpoint),
                               15, message=f"{name} remounted")
            figures.recovered += 1
        except TimeoutError:
            figures.notes.append(f"{name} not recovered after kill {round_number}")
    for name in names:
        plugin.call("Unmount", Name=name, ID="first")
        plugin.call("Remove", Name=name)
    figures.mounts_leaked += len(harness.mounts_under(plugin.mount_root))
