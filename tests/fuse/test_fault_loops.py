"""A few rounds of the fault loops; scripts/fault-loops.py runs more."""

import random

import pytest

from tests import faults, harness

pytestmark = pytest.mark.usefixtures("fuse")
SETTINGS = {"WATCHDOG_INTERVAL": "1", "LOG_LEVEL": "info"}


def test_killed_ossfs_is_always_recovered(start_plugin, volume_opts):
    plugin = start_plugin(**SETTINGS)
    figures = faults.Figures()
    faults.ossfs_kill_loop(plugin, volume_opts, random.Random(5), 8, figures)
    assert figures.kills == 8
    assert figures.recovered == 8, figures.notes
    assert figures.mounts_leaked == 0, figures.notes


def test_killed_plugin_loses_and_leaks_nothing(folder, volume_opts):
    started = []

    def make_plugin():
        plugin = harness.PluginProcess(folder, environment=SETTINGS).start()
        started.append(plugin)
        return plugin

    figures = faults.Figures()
    rng = random.Random(11)
    try:
        for _ in range(3):
            faults.plugin_kill_round(make_plugin, volume_opts, rng, [f"p{index}" for index in range(8)], figures)
    finally:
        for plugin in started:
            plugin.kill()
    assert figures.rounds == 3
    assert figures.operations > 0
    assert figures.volumes_lost == 0, figures.notes
    assert figures.volumes_resurrected == 0, figures.notes
    assert figures.mounts_leaked == 0, figures.notes
    assert figures.ids_leaked == 0, figures.notes
    assert figures.ids_lost == 0, figures.notes
    assert figures.dead_mounts == 0, figures.notes
