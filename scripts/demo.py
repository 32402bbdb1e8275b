#!/usr/bin/env python3
"""Mount a bucket through the plugin socket, as Docker would, on this machine.

Starts a local S3 server (moto, on 127.0.0.1) and the plugin with the test
ossfs stand-in (Debian's s3fs), creates a volume, writes a file through the
FUSE mount, shows the object in the bucket, reads it back and cleans up.
Needs root, /dev/fuse and s3fs; `make demo` installs them first.
"""

import os
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tests import harness  # noqa: E402

BUCKET = "demo-bucket"


def step(text):
    print(f"\n==> {text}", flush=True)


def main():
    if not harness.fuse_available():
        print("demo: needs root, /dev/fuse, s3fs and fusermount; run `make deps` as root", file=sys.stderr)
        return 1
    folder = harness.short_temporary_folder("ossfs-demo-")
    store = plugin = None
    try:
        step("starting a local S3 server (moto) on 127.0.0.1")
        store = harness.ObjectStore(folder).start()
        s3 = store.client()
        s3.create_bucket(Bucket=BUCKET)
        print(f"endpoint {store.url}, bucket {BUCKET}")

        step("starting the plugin with ossfs = tests/bin/ossfs (s3fs)")
        plugin = harness.PluginProcess(folder, environment={"LOG_LEVEL": "info"}).start()
        print(f"socket {plugin.socket_path}")
        print("Plugin.Activate ->", plugin.post("Plugin.Activate")[1])

        step("VolumeDriver.Create demo (the options `docker volume create -d ossfs -o ...` would pass)")
        opts = {"bucket": BUCKET, "url": store.url, "ak_id": "demo-key-id", "ak_secret": "demo-key-secret",
                "no_stat_cache": "true", "other_opts": "-o allow_other -o umask=022"}
        print("Create ->", plugin.call("Create", Name="demo", Opts=opts))

        step("VolumeDriver.Mount demo, as `docker run -v demo:/data` would")
        mountpoint = plugin.call("Mount", Name="demo", ID="demo-container")["Mountpoint"]
        print(f"Mountpoint {mountpoint}")
        with open("/proc/self/mountinfo", encoding="utf-8") as table:
            print("".join(line for line in table if f" {mountpoint} " in line).strip())

        step("writing hello.txt through the FUSE mount")
        with open(os.path.join(mountpoint, "hello.txt"), "w", encoding="utf-8") as file:
            file.write("hello from docker-volume-ossfs\n")

        step(f"listing bucket {BUCKET} with boto3")
        for item in s3.list_objects_v2(Bucket=BUCKET).get("Contents", []):
            print(f"{item['Key']}  {item['Size']} bytes")
        body = s3.get_object(Bucket=BUCKET, Key="hello.txt")["Body"].read().decode()
        print(f"object content: {body!r}")

        step("reading it back through the mount")
        with open(os.path.join(mountpoint, "hello.txt"), encoding="utf-8") as file:
            print(repr(file.read()))

        step("VolumeDriver.Get demo (Status holds no secret)")
        print(plugin.call("Get", Name="demo")["Volume"])

        step("VolumeDriver.Unmount and Remove")
        plugin.call("Unmount", Name="demo", ID="demo-container")
        print("mounted after Unmount:", bool(harness.mounts_under(mountpoint)))
        plugin.call("Remove", Name="demo")
        print("volumes after Remove:", plugin.call("List")["Volumes"])
        print("\ndemo finished: the volume was mounted, written, read and removed")
        return 0
    finally:
        if plugin is not None:
            plugin.stop()
        harness.cleanup_mounts(folder)
        if store is not None:
            store.stop()
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
