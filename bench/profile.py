"""Profile the plugin's worker process with py-spy under four workloads.

Run it as ``python3 -m bench.profile`` (root). It starts moto and the
plugin, creates volumes, and samples the gunicorn worker while a client
sends List, Get, Create and Remove calls in turn. For each workload it
prints the functions and source lines where the request threads spent
their samples.
"""

import argparse
import collections
import itertools
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

from tests import harness

from . import servers

BUCKET = "bench-profile"


def worker_pid(master_pid):
    with open(f"/proc/{master_pid}/task/{master_pid}/children", encoding="ascii") as file:
        children = [int(child) for child in file.read().split()]
    if len(children) != 1:
        raise RuntimeError(f"expected one gunicorn worker under {master_pid}, found {children}")
    return children[0]


def _function(frame):
    """Return ``name (file)`` for a py-spy frame ``name (file:line)``."""
    name, _, place = frame.partition(" (")
    return f"{name} ({place.rsplit(':', 1)[0]})"


def summarize(raw_path, top):
    """Print where the request threads spent their samples, from a py-spy raw file.

    Only samples inside gunicorn's ``ThreadWorker.handle`` count: the
    worker's idle pool threads, its event loop and the watchdog thread
    would otherwise fill the list. Functions are ranked by the share of
    those samples they were on the stack for (incl), and source lines by
    the share they were the innermost frame for (self).
    """
    inclusive = collections.Counter()
    own = collections.Counter()
    total = 0
    with open(raw_path, encoding="utf-8") as file:
        for line in file:
            stack, _, count = line.rstrip("\n").rpartition(" ")
            frames = stack.split(";")
            handled = [index for index, frame in enumerate(frames) if frame.startswith("ThreadWorker.handle (")]
            if not handled:
                continue
            frames = frames[handled[0]:]
            total += int(count)
            for function in {_function(frame) for frame in frames}:
                inclusive[function] += int(count)
            own[frames[-1]] += int(count)
    print(f"  {total} samples in request threads")
    print("  functions by share of samples on the stack:")
    for function, count in inclusive.most_common(top):
        print(f"  {100 * count / total:5.1f}%  {function}")
    print("  lines by share of samples as the innermost frame:")
    for frame, count in own.most_common(max(top // 2, 5)):
        print(f"  {100 * count / total:5.1f}%  {frame}")


def record(pid, seconds, raw_path, workload):
    """Run ``workload`` in a thread while py-spy samples ``pid`` for ``seconds``."""
    stop = threading.Event()
    thread = threading.Thread(target=workload, args=(stop,), daemon=True)
    thread.start()
    time.sleep(0.5)
    subprocess.run(["py-spy", "record", "--pid", str(pid), "--duration", str(seconds), "--rate", "500",
                    "--format", "raw", "--output", raw_path],
                   check=True, capture_output=True)
    stop.set()
    thread.join(60)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--volumes", type=int, default=1000, help="volumes created before List and Get")
    parser.add_argument("--seconds", type=int, default=8, help="sampling time per workload")
    parser.add_argument("--top", type=int, default=25, help="functions printed per workload")
    args = parser.parse_args(argv)
    if shutil.which("py-spy") is None:
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "py-spy"], check=True)

    folder = harness.short_temporary_folder("bench-profile-")
    store = servers.start_object_store(folder)
    plugin = None
    try:
        store.client().create_bucket(Bucket=BUCKET)
        plugin = servers.PluginServer(folder, store).start()
        options = plugin.volume_options(BUCKET)
        for index in range(args.volumes):
            plugin.client.call("Create", Name=f"p{index:05d}", Opts=options)
        pid = worker_pid(plugin.pid)
        counter = itertools.count(args.volumes)

        def calls(endpoint, body_of):
            def run(stop):
                for index in itertools.count():
                    if stop.is_set() or index > 1_000_000:
                        return
                    plugin.client.call(endpoint, **body_of(index))
            return run

        removable = itertools.count()

        def remove_next(stop):
            # Removes the volumes in creation order and stops when none is left.
            for _ in range(1_000_000):
                index = next(removable)
                if stop.is_set() or index >= next(counter) - 1:
                    return
                plugin.client.call("Remove", Name=f"p{index:05d}")

        workloads = {
            "List": calls("List", lambda index: {}),
            "Get": calls("Get", lambda index: {"Name": f"p{index % args.volumes:05d}"}),
            "Create": calls("Create", lambda index: {"Name": f"p{next(counter):05d}", "Opts": options}),
            "Remove": remove_next,
        }
        with tempfile.TemporaryDirectory() as output:
            for name, workload in workloads.items():
                raw_path = os.path.join(output, f"{name}.txt")
                record(pid, args.seconds, raw_path, workload)
                print(f"{name} with {args.volumes} volumes at start:")
                summarize(raw_path, args.top)
    finally:
        if plugin is not None:
            plugin.stop()
        store.stop()
        harness.cleanup_mounts(folder)
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
