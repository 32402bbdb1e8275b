"""Run every figure in one go and print the results table.

    python3 -m bench                # full run, about 5 minutes on 2 cores
    python3 -m bench --write-docs   # also refresh docs/benchmarks.md and its plot
    python3 -m bench --quick        # small counts, to check that the bench works

Needs root, /dev/fuse, s3fs and fusermount (as tests/fuse does). Installs
Debian's rclone with apt-get and matplotlib with pip when they are missing.
"""

import argparse
import datetime
import importlib.metadata
import json
import os
import platform
import shutil
import subprocess
import sys
import time

from plugin.settings import Settings
from tests import harness

from . import figures, report, servers

REPO = harness.REPO
DOCS = os.path.join(REPO, "docs")
PAGE = os.path.join(DOCS, "benchmarks.md")
PLOT = os.path.join(DOCS, "benchmarks-latency.png")
CONTROL_BUCKET = "bench-control"
MOUNT_BUCKET = "bench-mount"

FULL = {"p1_volumes": 1000, "p2_volumes": 300, "p3_runs": 20, "p4_volumes": 10000, "p4_step": 1000,
        "p1_rounds": 5, "pair_rounds": 3}
QUICK = {"p1_volumes": 100, "p2_volumes": 50, "p3_runs": 3, "p4_volumes": 600, "p4_step": 200,
         "p1_rounds": 1, "pair_rounds": 1}
PAIR_TIME_LIMIT = 60
PAIR_COUNTS = (4, 8)


def ensure_matplotlib():
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        print("bench: installing matplotlib with pip", flush=True)
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "matplotlib"], check=True)


def first_line(path, prefix):
    with open(path, encoding="utf-8") as file:
        for line in file:
            if line.startswith(prefix):
                return line.split(":", 1)[1].strip()
    return "unknown"


def machine(rclone_version, state_folder):
    s3fs = subprocess.run(["s3fs", "--version"], capture_output=True, text=True).stdout.splitlines()
    filesystem = subprocess.run(["findmnt", "-n", "-o", "FSTYPE", "-T", state_folder], capture_output=True, text=True)
    return {
        "date": datetime.date.today().isoformat(),
        "cpu": f"{os.cpu_count()} x {first_line('/proc/cpuinfo', 'model name')}",
        "memory": first_line("/proc/meminfo", "MemTotal"),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "gunicorn": importlib.metadata.version("gunicorn"),
        "flask": importlib.metadata.version("flask"),
        "rclone": rclone_version,
        "s3fs": s3fs[0] if s3fs else "unknown",
        "state_filesystem": filesystem.stdout.strip(),
        "load_start": os.getloadavg()[0],
        "plugin_threads": Settings().threads,
    }


def wait_for_quiet(seconds, threshold=1.0):
    """Wait up to ``seconds`` for the 1-minute load average to drop below ``threshold``."""
    deadline = time.monotonic() + seconds
    while os.getloadavg()[0] >= threshold and time.monotonic() < deadline:
        log(f"waiting for a quiet machine: 1-minute load average {os.getloadavg()[0]:.1f}")
        time.sleep(min(30, max(deadline - time.monotonic(), 0)))


def log(message):
    print(f"bench [{time.strftime('%H:%M:%S')}] {message}", flush=True)


def control_plane(results, sizes, folder, store):
    """P1, P2 and the Mount/Unmount pairs on one plugin, rclone and the floor."""
    floor = servers.FloorServer(folder).start()
    plugin = servers.PluginServer(folder, store).start()
    rclone = servers.RcloneServer(folder, store).start()
    try:
        targets = [floor, plugin, rclone]
        count = sizes["p1_volumes"]
        results["p2_volumes"] = sizes["p2_volumes"]
        results["p2"] = {}
        log(f"P2: Create and Remove of {sizes['p2_volumes']} volumes at concurrency 1 and 8, no other volume")
        results["p2"][0] = figures.create_remove_throughput(targets, CONTROL_BUCKET, sizes["p2_volumes"])

        names = [f"v{index:05d}" for index in range(count)]
        for server in (plugin, rclone):
            figures.create_volumes(server, names, CONTROL_BUCKET, concurrency=8)
        log(f"P2: the same with {count} other volumes")
        results["p2"][count] = figures.create_remove_throughput(targets, CONTROL_BUCKET, sizes["p2_volumes"])

        log(f"P1: Get, Path and List at {count} volumes")
        results["p1"] = figures.control_plane_latency(targets, names, rounds=sizes["p1_rounds"])
        results["p1_volumes"] = count
        floor.stop()

        log("Parallel Mount/Unmount pairs on one volume")
        results["pairs"] = {"time_limit": PAIR_TIME_LIMIT, "counts": PAIR_COUNTS}
        for server in (plugin, rclone):
            results["pairs"][server.name] = figures.deadlock_check(
                server, names[0], PAIR_COUNTS, rounds=sizes["pair_rounds"], time_limit=PAIR_TIME_LIMIT)
            log(f"  {server.name}: {results['pairs'][server.name]}")
        rclone.stop()

        log(f"P3: Mount against a raw mount, {sizes['p3_runs']} runs each")
        results["p3"] = figures.mount_versus_raw(plugin, MOUNT_BUCKET, folder, runs=sizes["p3_runs"])
        log("P5: 50 concurrent Mounts over 10 volumes, and 10 raw mounts at once")
        results["p5"] = figures.concurrent_mounts(plugin, MOUNT_BUCKET)
        results["p5"]["raw_parallel"] = figures.raw_parallel_mounts(
            results["p3"]["command"], results["p3"]["mountpoint"], folder, results["p5"]["volumes"])
    finally:
        for server in (floor, plugin, rclone):
            server.stop()


def scale(results, sizes, folder, store):
    """P4: one fresh plugin and one fresh rclone grown to the full number of volumes."""
    count, step = sizes["p4_volumes"], sizes["p4_step"]
    checkpoints = list(range(step, count + 1, step))
    results["p4"] = scale_results = {"volumes": count}
    plugin_folder = os.path.join(folder, "scale-plugin")
    rclone_folder = os.path.join(folder, "scale-rclone")
    os.makedirs(plugin_folder)
    os.makedirs(rclone_folder)
    floor = servers.FloorServer(folder).start()
    plugin = servers.PluginServer(plugin_folder, store).start()
    rclone = servers.RcloneServer(rclone_folder, store).start()
    try:
        log(f"P4: {count} Creates on the plugin")
        scale_results["plugin"] = figures.scale_curve(plugin, CONTROL_BUCKET, count, checkpoints)
        scale_results["plugin_rss"] = plugin.rss()
        log(f"P4: {count} Creates on rclone")
        scale_results["rclone"] = figures.scale_curve(rclone, CONTROL_BUCKET, count, checkpoints)
        scale_results["rclone_rss"] = rclone.rss()
        rclone.stop()
        scale_results["floor"] = figures.floor_curve(floor, checkpoints)
        floor.stop()
        log("P4: restart with all volumes")
        scale_results["restart"] = figures.restart_timing(plugin, count)
        log("P4: first start after an upgrade from a single state.json")
        scale_results["migration"] = figures.restart_timing(plugin, count, before_start=figures.legacy_state(plugin))
    finally:
        for server in (floor, plugin, rclone):
            server.stop()


def main(argv=None):
    parser = argparse.ArgumentParser(description="Benchmark the plugin against a Flask floor and rclone.")
    parser.add_argument("--quick", action="store_true", help="small counts, to check that the bench works")
    parser.add_argument("--write-docs", action="store_true",
                        help=f"write the table into {os.path.relpath(PAGE, REPO)} and redraw the plot")
    parser.add_argument("--json", help="also write the raw results to this file")
    parser.add_argument("--from-json", metavar="FILE",
                        help="measure nothing: print (and with --write-docs, write) the results saved in FILE")
    parser.add_argument("--wait-for-quiet", type=float, default=0, metavar="SECONDS",
                        help="wait up to SECONDS for the 1-minute load average to drop below 1 before starting")
    args = parser.parse_args(argv)
    if args.from_json:
        with open(args.from_json, encoding="utf-8") as file:
            return publish(json.load(file), args)
    if not harness.fuse_available():
        parser.error("the bench mounts FUSE filesystems: it needs root, /dev/fuse, s3fs and fusermount")
    sizes = QUICK if args.quick else FULL
    rclone_version = servers.ensure_rclone()
    ensure_matplotlib()
    wait_for_quiet(args.wait_for_quiet)

    folder = harness.short_temporary_folder("bench-")
    store = servers.start_object_store(folder)
    results = {"machine": machine(rclone_version, folder), "sizes": sizes}
    started = time.perf_counter()
    try:
        client = store.client()
        for bucket in (CONTROL_BUCKET, MOUNT_BUCKET):
            client.create_bucket(Bucket=bucket)
        control_plane(results, sizes, folder, store)
        scale(results, sizes, folder, store)
    finally:
        store.stop()
        harness.cleanup_mounts(folder)
        shutil.rmtree(folder, ignore_errors=True)
    results["seconds"] = time.perf_counter() - started
    results["machine"]["load_end"] = os.getloadavg()[0]
    if args.json:
        with open(args.json, "w", encoding="utf-8") as file:
            json.dump(results, file, indent=1)
    return publish(results, args)


def publish(results, args):
    """Print the table and, with --write-docs, write it and the plot into the docs page."""
    table = report.results_table(results)
    print()
    print(table)
    if args.write_docs:
        report.plot(results, PLOT)
        info = results["machine"]
        block = "\n".join([
            f"Run on {info['date']} with `python3 -m bench --write-docs` in {results['seconds'] / 60:.0f} minutes.",
            "",
            f"Machine: {info['cpu']}, {info['memory']} memory, Linux {info['kernel']}, state folder on"
            f" {info['state_filesystem']}. Python {info['python']}, gunicorn {info['gunicorn']}"
            f" ({info['plugin_threads']} threads), Flask {info['flask']}, {info['s3fs']}, {info['rclone']}."
            f" The 1-minute load average was {info['load_start']:.1f} at the start and"
            f" {info['load_end']:.1f} at the end."
            + (" Other jobs shared the machine during the run." if max(info["load_start"], info["load_end"]) >= 1 else ""),
            "",
            table,
            "",
            f"![Latency against the number of volumes]({os.path.basename(PLOT)})",
        ])
        report.update_page(PAGE, block)
        log(f"wrote {os.path.relpath(PAGE, REPO)} and {os.path.relpath(PLOT, REPO)}")
    return 0
