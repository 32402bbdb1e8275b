#!/usr/bin/env python3
"""Kill ossfs and the plugin at random points and report what survived.

Prints volumes lost, mounts leaked, IDs leaked and dead mounts recovered;
the target is 0, 0, 0 and all. Needs root, /dev/fuse and s3fs.
"""

import argparse
import os
import random
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tests import faults, harness  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--plugin-rounds", type=int, default=20, help="rounds of kill -9 of the plugin")
    parser.add_argument("--ossfs-kills", type=int, default=20, help="kill -9 of ossfs processes")
    parser.add_argument("--seed", type=int, default=1, help="random seed")
    arguments = parser.parse_args()
    if not harness.fuse_available():
        print("fault-loops: needs root, /dev/fuse, s3fs and fusermount", file=sys.stderr)
        return 2

    rng = random.Random(arguments.seed)
    folder = harness.short_temporary_folder("ossfs-faults-")
    store = harness.ObjectStore(folder).start()
    figures = faults.Figures()
    try:
        store.client().create_bucket(Bucket="faults")
        opts = {"bucket": "faults", "url": store.url, "ak_id": "fault-key-id", "ak_secret": "fault-secret"}
        settings = {"WATCHDOG_INTERVAL": "1", "LOG_LEVEL": "info"}

        plugin = harness.PluginProcess(folder, environment=settings).start()
        faults.ossfs_kill_loop(plugin, opts, rng, arguments.ossfs_kills, figures)
        plugin.stop()

        def make_plugin():
            return harness.PluginProcess(folder, environment=settings).start()

        names = [f"p{index}" for index in range(8)]
        for round_number in range(arguments.plugin_rounds):
            faults.plugin_kill_round(make_plugin, opts, rng, names, figures)
            print(f"round {round_number + 1}: {figures.operations} operations so far", flush=True)
        for line in figures.lines():
            print(line)
        for note in figures.notes:
            print("note:", note)
        return 1 if figures.failures() else 0
    finally:
        harness.cleanup_mounts(folder)
        store.stop()
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
