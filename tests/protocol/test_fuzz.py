"""A short fuzz run against the plugin socket; scripts/fuzz-socket.py runs the long one."""

import random

from tests import fuzz

COUNT = 2000


def test_fuzzed_requests_get_json_errors(start_plugin):
    plugin = start_plugin(OSSFS_BIN="/bin/false", LOG_LEVEL="info")
    worker_line_count = plugin.log_text().count("Booting worker")
    rng = random.Random(20261204)
    tally = fuzz.Tally()
    base = "http+unix://" + plugin.socket_path.replace("/", "%2F") + "/"
    for _ in range(COUNT):
        endpoint, data = fuzz.request(rng)
        reply = plugin.session.post(base + endpoint, data=data, timeout=30)
        tally.record(endpoint, data, reply.status_code, reply.text)
    assert tally.requests == COUNT
    assert tally.non_json == 0, tally.examples
    assert tally.server_errors_without_err == 0, tally.examples
    assert tally.internal_errors == 0, tally.examples
    assert plugin.process.poll() is None
    assert plugin.log_text().count("Booting worker") == worker_line_count
