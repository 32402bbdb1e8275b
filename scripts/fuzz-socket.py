#!/usr/bin/env python3
"""Send random and mutated request bodies to a fresh plugin and count bad replies.

Prints the number of requests, non-JSON replies, 5xx replies without an Err,
internal errors and crashes (the plugin or its worker restarting). The
target for each is 0. ossfs is /bin/false, so nothing leaves the machine.
"""

import argparse
import os
import random
import shutil
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tests import fuzz, harness  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=100_000, help="number of requests (default 100000)")
    parser.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    parser.add_argument("--max-seconds", type=float, default=1800, help="stop after this many seconds")
    arguments = parser.parse_args()

    folder = harness.short_temporary_folder("ossfs-fuzz-")
    plugin = harness.PluginProcess(folder, ossfs_bin="/bin/false", environment={"LOG_LEVEL": "info"}).start()
    try:
        workers_before = plugin.log_text().count("Booting worker")
        rng = random.Random(arguments.seed)
        tally = fuzz.Tally()
        base = "http+unix://" + plugin.socket_path.replace("/", "%2F") + "/"
        started = time.monotonic()
        crashes = 0
        for _ in range(arguments.count):
            if time.monotonic() - started > arguments.max_seconds:
                break
            endpoint, data = fuzz.request(rng)
            try:
                reply = plugin.session.post(base + endpoint, data=data, timeout=30)
            except OSError:
                crashes += 1
                continue
            tally.record(endpoint, data, reply.status_code, reply.text)
        seconds = time.monotonic() - started
        crashes += plugin.log_text().count("Booting worker") - workers_before
        if plugin.process.poll() is not None:
            crashes += 1
        print(f"requests: {tally.requests} in {seconds:.1f} s (seed {arguments.seed})")
        print(f"statuses: {dict(sorted(tally.statuses.items()))}")
        print(f"non-JSON replies: {tally.non_json}")
        print(f"5xx replies without Err: {tally.server_errors_without_err}")
        print(f"internal errors: {tally.internal_errors}")
        print(f"crashes: {crashes}")
        for example in tally.examples:
            print("example:", example)
        failed = tally.non_json + tally.server_errors_without_err + tally.internal_errors + crashes
        return 1 if failed else 0
    finally:
        plugin.stop()
        harness.cleanup_mounts(folder)
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
