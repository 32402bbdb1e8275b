"""The private dockerd and the busybox image that the other tests build on."""

from .support import LONG_RUNNING


def test_daemon_runs_busybox_container(dockerd, busybox_image):
    result = dockerd.docker("run", "--rm", busybox_image, "sh", "-c", "echo hello from busybox")

    assert result.stdout == "hello from busybox\n"


def test_daemon_uses_private_paths(dockerd):
    info = dockerd.docker("info", "--format", "{{.DockerRootDir}} {{.Driver}}").stdout.split()

    assert info == [str(dockerd.data_root), "vfs"]


def test_daemon_stops_long_running_container(dockerd, busybox_image, resources):
    name = resources.container_name()
    dockerd.docker("run", "--detach", "--name", name, busybox_image, "sh", "-c", LONG_RUNNING)

    dockerd.docker("stop", "--time", "10", name, timeout=30)

    state = dockerd.docker("inspect", "--format", "{{.State.ExitCode}}", name).stdout.strip()
    assert state == "0"
