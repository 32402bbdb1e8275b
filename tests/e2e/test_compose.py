"""A Compose project with an ossfs volume, run with Debian's docker-compose."""

import shutil
import subprocess

import pytest

from .support import BUSYBOX_IMAGE, require, unique_name, wait_until

COMPOSE_FILE = """\
version: "3.7"
services:
  app:
    image: {image}
    # The test daemon runs without a bridge, and "none" also keeps Compose
    # from creating a network.
    network_mode: none
    command: ["sh", "-c", "echo started >> /data/compose.log; {long_running}"]
    volumes:
      - data:/data
volumes:
  data:
    # docker-compose 1.29 compares this with the driver of an existing
    # volume, which dockerd reports with the plugin's tag, so a plain
    # "ossfs" fails on the second "up".
    driver: ossfs:latest
    driver_opts:
      bucket: {bucket}
      url: {url}
      ak_id: {ak_id}
      ak_secret: {ak_secret}
"""


@pytest.fixture
def compose(dockerd, plugin, busybox_image, tmp_path):
    """Return a function that runs docker-compose in a fresh project."""
    binary = shutil.which("docker-compose")
    require(binary is not None, "docker-compose not found (Debian package docker-compose)")
    project = unique_name("p")

    def run(*arguments, timeout=180):
        result = subprocess.run(
            [binary, "--project-name", project, "--file", str(tmp_path / "compose.yml"),
             *arguments],
            capture_output=True, text=True, timeout=timeout, check=False,
            env=dockerd.client_environment(),
        )
        assert result.returncode == 0, (
            f"docker-compose {' '.join(arguments)} failed:\n{result.stdout}\n{result.stderr}"
        )
        return result.stdout

    run.project = project
    yield run
    run("down", "--volumes", "--timeout", "5")


def test_compose_up_down_up(compose, dockerd, object_store, bucket, tmp_path):
    options = object_store.volume_options(bucket)
    (tmp_path / "compose.yml").write_text(COMPOSE_FILE.format(
        image=BUSYBOX_IMAGE,
        long_running="trap 'exit 0' TERM; while true; do sleep 1; done",
        **options,
    ))
    volume = f"{compose.project}_data"

    def log_lines(count):
        def has_lines():
            keys = object_store.keys(bucket)
            return "compose.log" in keys and object_store.read(bucket, "compose.log").count("\n") == count
        return has_lines

    compose("up", "--detach")
    wait_until(log_lines(1), timeout=60, message="one line in compose.log")
    compose("down", "--timeout", "5")
    assert volume in dockerd.docker("volume", "ls", "--quiet").stdout.split()

    compose("up", "--detach")
    wait_until(log_lines(2), timeout=60, message="two lines in compose.log")
    assert compose("exec", "-T", "app", "cat", "/data/compose.log") == "started\nstarted\n"

    compose("down", "--volumes", "--timeout", "5")
    assert volume not in dockerd.docker("volume", "ls", "--quiet").stdout.split()
