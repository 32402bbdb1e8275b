"""Volumes across a plugin re-enable and a daemon restart."""

import json

from .support import LONG_RUNNING, PLUGIN_REF, LogWatch, create_volume, run_container, wait_until


def test_plugin_reenable_keeps_volumes(plugin, object_store, bucket, busybox_image, resources):
    dockerd = plugin.dockerd
    name = resources.volume_name()
    create_volume(dockerd, plugin.name, name, object_store.volume_options(bucket))
    old_container = resources.container_name()
    run_container(dockerd, busybox_image, name, f"echo before > /data/before.txt; {LONG_RUNNING}",
                  name=old_container, detach=True)
    wait_until(lambda: "before.txt" in object_store.keys(bucket), timeout=30,
               message="before.txt in the bucket")

    plugin.restart()

    assert name in dockerd.docker("volume", "ls", "--quiet").stdout.split()
    output = run_container(dockerd, busybox_image, name,
                           "cat /data/before.txt; echo after > /data/after.txt")
    assert output == "before\n"
    assert object_store.read(bucket, "after.txt") == "after\n"

    watch = LogWatch(dockerd.log_path)
    dockerd.docker("rm", "--force", old_container)
    # The plugin may have dropped the old mount ID when its mount died with
    # the disabled plugin, so the Unmount only has to succeed.
    volume_lines = [line for line in watch.plugin_lines(plugin.id) if name in line]
    assert [line for line in volume_lines if "VolumeDriver.Unmount" in line], volume_lines
    assert [line for line in volume_lines if "failed" in line] == []
    errors = [line for line in watch.text().splitlines()
              if "level=error" in line and name in line]
    assert errors == []
    dockerd.docker("volume", "rm", name)
    assert name not in dockerd.docker("volume", "ls", "--quiet").stdout.split()


def test_daemon_restart_keeps_volumes(plugin, object_store, bucket, busybox_image, resources):
    dockerd = plugin.dockerd
    name = resources.volume_name()
    create_volume(dockerd, plugin.name, name, object_store.volume_options(bucket))
    run_container(dockerd, busybox_image, name, "echo before > /data/before.txt")

    dockerd.restart()

    def plugin_enabled():
        result = dockerd.docker("plugin", "inspect", PLUGIN_REF)
        return json.loads(result.stdout)[0]["Enabled"]

    wait_until(plugin_enabled, timeout=30, message="plugin enabled after restart")
    assert name in dockerd.docker("volume", "ls", "--quiet").stdout.split()
    output = run_container(dockerd, busybox_image, name,
                           "cat /data/before.txt; echo after > /data/after.txt")
    assert output == "before\n"
    assert object_store.read(bucket, "after.txt") == "after\n"
