"""Volumes created through the Engine API as Alibaba Container Service does."""

from .objectstore import ACCESS_KEY_ID, SECRET_ACCESS_KEY
from .support import PLUGIN_REF, inspect_volume, run_container

# Alibaba Container Service's documented request for an OSS volume, with
# lowercase keys. The Engine API matches JSON keys without regard to case.
ALIBABA_REQUEST = (
    '{"name": "ossvolume", "driver": "ossfs", "driverOpts": {"bucket": "%(bucket)s",'
    ' "ak_id": "%(ak_id)s", "ak_secret": "%(ak_secret)s", "url": "%(url)s",'
    ' "no_stat_cache": "true", "other_opts": "-o allow_other -o default_permission=666"}}'
)


def test_alibaba_request_creates_volume(plugin, object_store, bucket, busybox_image, resources):
    dockerd = plugin.dockerd
    resources.volumes.append("ossvolume")
    body = ALIBABA_REQUEST % {
        "bucket": bucket, "ak_id": ACCESS_KEY_ID, "ak_secret": SECRET_ACCESS_KEY,
        "url": object_store.url,
    }

    status, created, text = dockerd.api("POST", "/volumes/create", body=body)

    assert status == 201, text
    assert created["Name"] == "ossvolume"
    assert created["Driver"] == PLUGIN_REF
    assert created["Scope"] == "local"
    assert "Labels" in created
    # dockerd 20.10 returns an empty Mountpoint when it creates a plugin
    # volume. An inspect afterwards returns the path from the plugin's Get.
    assert "Mountpoint" in created
    status, details, text = dockerd.api("GET", "/volumes/ossvolume")
    assert status == 200, text
    assert details["Mountpoint"] == "/mnt/acs_mnt/ossfs/ossvolume"
    run_container(dockerd, busybox_image, "ossvolume", "echo via-api > /data/api.txt")
    assert object_store.read(bucket, "api.txt") == "via-api\n"
    assert run_container(dockerd, busybox_image, "ossvolume", "cat /data/api.txt") == "via-api\n"


def test_alibaba_request_reports_dropped_option(plugin, object_store, bucket, resources):
    dockerd = plugin.dockerd
    resources.volumes.append("ossvolume")
    body = ALIBABA_REQUEST % {
        "bucket": bucket, "ak_id": ACCESS_KEY_ID, "ak_secret": SECRET_ACCESS_KEY,
        "url": object_store.url,
    }

    status, _, text = dockerd.api("POST", "/volumes/create", body=body)

    assert status == 201, text
    warnings = inspect_volume(dockerd, "ossvolume")["Status"].get("warnings", [])
    assert [warning for warning in warnings if "default_permission" in warning]
