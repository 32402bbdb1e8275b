"""Containers that write, read and share OSS volumes.

Each test runs once against the managed plugin and once against the same
package served on the host as a legacy plugin (the systemd unit's mode).
"""

import pytest

from .support import LONG_RUNNING, create_volume, run_container, wait_until


@pytest.fixture(params=["managed", "host"])
def driver(request):
    """Name of the volume driver under test."""
    if request.param == "managed":
        return request.getfixturevalue("plugin").name
    return request.getfixturevalue("legacy_service").driver


def test_container_write_lands_in_bucket(driver, dockerd, object_store, bucket, busybox_image,
                                         resources):
    name = resources.volume_name()
    create_volume(dockerd, driver, name, object_store.volume_options(bucket))

    run_container(dockerd, busybox_image, name, "echo hello > /data/greeting.txt")

    assert object_store.read(bucket, "greeting.txt") == "hello\n"


def test_second_container_reads_file(driver, dockerd, object_store, bucket, busybox_image,
                                     resources):
    name = resources.volume_name()
    create_volume(dockerd, driver, name, object_store.volume_options(bucket))
    run_container(dockerd, busybox_image, name, "mkdir /data/docs && echo kept > /data/docs/a.txt")

    output = run_container(dockerd, busybox_image, name, "cat /data/docs/a.txt")

    assert output == "kept\n"


def test_bucket_object_visible_in_container(driver, dockerd, object_store, bucket, busybox_image,
                                            resources):
    object_store.client.put_object(Bucket=bucket, Key="from-s3.txt", Body=b"uploaded\n")
    name = resources.volume_name()
    create_volume(dockerd, driver, name, object_store.volume_options(bucket))

    output = run_container(dockerd, busybox_image, name, "cat /data/from-s3.txt")

    assert output == "uploaded\n"


def test_containers_share_volume(driver, dockerd, object_store, bucket, busybox_image, resources):
    name = resources.volume_name()
    create_volume(dockerd, driver, name, object_store.volume_options(bucket))
    long_running = resources.container_name()
    run_container(
        dockerd, busybox_image, name, f"echo first > /data/first.txt; {LONG_RUNNING}",
        name=long_running, detach=True,
    )
    wait_until(lambda: "first.txt" in object_store.keys(bucket), timeout=30,
               message="first.txt in the bucket")

    output = run_container(
        dockerd, busybox_image, name, "cat /data/first.txt; echo second > /data/second.txt"
    )

    assert output == "first\n"
    # The short container's unmount must leave the long-running one's view.
    view = dockerd.docker("exec", long_running, "cat", "/data/first.txt", "/data/second.txt")
    assert view.stdout == "first\nsecond\n"
    assert object_store.keys(bucket) == ["first.txt", "second.txt"]


def test_volume_rm_fails_while_in_use(driver, dockerd, object_store, bucket, busybox_image,
                                      resources):
    name = resources.volume_name()
    create_volume(dockerd, driver, name, object_store.volume_options(bucket))
    container = resources.container_name()
    run_container(dockerd, busybox_image, name, f"echo data > /data/d.txt; {LONG_RUNNING}",
                  name=container, detach=True)
    # docker rm --force below could otherwise kill the write before ossfs uploads it.
    wait_until(lambda: "d.txt" in object_store.keys(bucket) and object_store.read(bucket, "d.txt") == "data\n",
               timeout=30, message="d.txt in the bucket")

    in_use = dockerd.docker("volume", "rm", name, check=False)

    assert in_use.returncode != 0
    assert "volume is in use" in in_use.stderr
    dockerd.docker("rm", "--force", container)
    dockerd.docker("volume", "rm", name)
    names = dockerd.docker("volume", "ls", "--quiet").stdout.split()
    assert name not in names
    # docker volume rm deletes the volume record, not the bucket's objects.
    assert object_store.read(bucket, "d.txt") == "data\n"
