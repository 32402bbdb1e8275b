"""Turning the results dict into a Markdown table, a plot and the docs page block."""

import re

RESULTS_START = "<!-- bench results: start -->"
RESULTS_END = "<!-- bench results: end -->"


def ms(seconds):
    return f"{seconds * 1000:.2f} ms"


def ratio(value, reference):
    return value / reference if reference else float("inf")


def verdict(met):
    return "met" if met else "**not met**"


class Table:
    def __init__(self):
        self.rows = []

    def add(self, figure, measure, floor, plugin, peer, compared, target, met):
        self.rows.append((figure, measure, floor, plugin, peer, compared, target, verdict(met)))

    def markdown(self):
        header = ("Figure", "Measure", "Floor", "Plugin", "rclone", "Plugin compared", "Target", "Result")
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(row) + " |" for row in self.rows]
        return "\n".join(lines)


def p1_rows(table, latency, volumes):
    for endpoint in ("Get", "Path", "List"):
        by_server = latency[endpoint]
        for statistic in ("median", "p99"):
            floor = by_server["floor"][statistic]
            plugin = by_server["plugin"][statistic]
            rclone = by_server["rclone"][statistic]
            to_floor = ratio(plugin, floor)
            compared = f"{to_floor:.2f}x floor"
            target = "≤ 1.3x floor"
            met = to_floor <= 1.3
            if endpoint == "List":
                to_rclone = ratio(plugin, rclone)
                compared += f", {to_rclone:.2f}x rclone"
                target += ", ≤ 1x rclone"
                met = met and to_rclone <= 1.0
            table.add("P1", f"{endpoint} {statistic}, {volumes:,} volumes", ms(floor), ms(plugin), ms(rclone),
                      compared, target, met)


def p2_rows(table, throughput, count):
    for existing, by_concurrency in throughput.items():
        for concurrency, by_server in by_concurrency.items():
            for call in ("create", "remove"):
                floor = by_server["floor"][call]
                plugin = by_server["plugin"][call]
                rclone = by_server["rclone"][call]
                to_rclone = ratio(plugin, rclone)
                table.add("P2", f"{call.capitalize()}s per second, {count} calls, concurrency {concurrency},"
                                f" {int(existing):,} other volumes",
                          f"{floor:,.0f}/s", f"{plugin:,.0f}/s", f"{rclone:,.0f}/s", f"{to_rclone:.1f}x rclone",
                          "≥ 3x rclone", to_rclone >= 3)


def pairs_text(result, failed_before=None):
    if result is None:
        return f"not run: {failed_before} pairs failed already" if failed_before else "not run"
    if result["passed"]:
        return f"pass, {result['rounds']} rounds, slowest {result['max_seconds']:.1f} s"
    detail = "; ".join(result["errors"]) or "calls did not return"
    return f"FAIL in round {result['rounds']}: {detail[:120]}"


def pairs_rows(table, pairs):
    plugin = {result["pairs"]: result for result in pairs["plugin"]}
    rclone = {result["pairs"]: result for result in pairs["rclone"]}
    def first_failure(results):
        return next((count for count, result in sorted(results.items()) if not result["passed"]), None)

    for count in sorted({result["pairs"] for server in ("plugin", "rclone") for result in pairs[server]} |
                        set(pairs.get("counts", ()))):
        table.add("Pairs", f"{count} parallel Mount/Unmount pairs on one volume, {pairs['time_limit']} s limit",
                  "", pairs_text(plugin.get(count), first_failure(plugin)),
                  pairs_text(rclone.get(count), first_failure(rclone)), "",
                  "no deadlock", bool(plugin.get(count) and plugin[count]["passed"]))


def p3_rows(table, mount):
    raw = mount["raw"]["median"]
    plugin = mount["plugin"]["median"]
    extra = plugin - raw
    table.add("P3", f"Mount wall time, median of {mount['plugin']['count']}", f"raw {ms(raw)}", ms(plugin), "",
              f"raw + {extra * 1000:.1f} ms", "≤ raw + 50 ms", extra <= 0.050)


def p4_rows(table, scale):
    plugin, rclone = scale["plugin"], scale["rclone"]
    count = scale["volumes"]
    first, last = plugin["points"][0], plugin["points"][-1]
    table.add("P4", f"Create p99 over {count:,} Creates", "", ms(plugin["create"]["p99"]),
              ms(rclone["create"]["p99"]) if rclone else "", f"median {ms(plugin['create']['median'])}",
              "≤ 20 ms", plugin["create"]["p99"] <= 0.020)
    table.add("P4", f"Create median, first {first['volumes']:,} vs last {count - plugin['points'][-2]['volumes']:,}",
              "", f"{ms(first['create']['median'])} → {ms(last['create']['median'])}",
              f"{ms(rclone['points'][0]['create']['median'])} → {ms(rclone['points'][-1]['create']['median'])}"
              if rclone else "", "", "no growth with volumes",
              last["create"]["median"] <= 2 * first["create"]["median"])
    table.add("P4", f"List median at {count:,} volumes", "", ms(last["list"]["median"]),
              ms(rclone["points"][-1]["list"]["median"]) if rclone else "",
              f"p99 {ms(last['list']['p99'])}", "≤ 100 ms", last["list"]["median"] <= 0.100)
    restart = scale["restart"]
    table.add("P4", f"Socket listening after start, {count:,} volumes", "", f"{restart['socket_listening']:.3f} s",
              "", f"first reply {restart.get('first_reply', float('nan')):.3f} s, all volumes listed "
                  f"{restart.get('volumes_listed', float('nan')):.3f} s",
              "≤ 1 s", restart["socket_listening"] <= 1.0)
    table.add("P4", f"Memory (RSS) with {count:,} volumes", "", f"{scale['plugin_rss'] / 2**20:.0f} MiB",
              f"{scale['rclone_rss'] / 2**20:.0f} MiB" if rclone else "", "gunicorn master + worker", "reported",
              True)
    if scale.get("migration"):
        migration = scale["migration"]
        table.add("P4", f"First start after an upgrade: {count:,} volumes moved out of one state.json", "",
                  f"{migration.get('volumes_listed', float('nan')):.2f} s", "",
                  f"socket listening {migration['socket_listening']:.3f} s; seconds until List returns all volumes",
                  "reported", "volumes_listed" in migration)


def p5_rows(table, burst, one_mount, one_raw):
    to_one = ratio(burst["wall"], one_mount)
    correct = burst["succeeded"] == burst["mounts"] and burst["ossfs_processes"] == burst["volumes"]
    table.add("P5", f"{burst['mounts']} concurrent Mounts over {burst['volumes']} volumes: results", "",
              f"{burst['succeeded']}/{burst['mounts']} succeeded, {burst['ossfs_processes']} ossfs processes, "
              f"{burst['left_after_unmount']} left after Unmount", "", "",
              f"all succeed, {burst['volumes']} processes", correct)
    table.add("P5", f"{burst['mounts']} concurrent Mounts over {burst['volumes']} volumes: wall time",
              f"one mount {ms(one_mount)}", f"{ms(burst['wall'])}, {burst['busy_cores']:.1f} cores busy", "",
              f"{to_one:.2f}x one mount", "≤ 1.5x one mount", to_one <= 1.5)
    raw = burst["raw_parallel"]
    table.add("P5", f"Reference: {burst['volumes']} raw mounts at once, no plugin", f"one raw mount {ms(one_raw)}",
              f"{ms(raw['wall'])}, {raw['busy_cores']:.1f} cores busy", "",
              f"{ratio(raw['wall'], one_raw):.2f}x one raw mount; plugin burst {ratio(burst['wall'], raw['wall']):.2f}x this",
              "reported", True)


def results_table(results):
    table = Table()
    p1_rows(table, results["p1"], results["p1_volumes"])
    p2_rows(table, results["p2"], results["p2_volumes"])
    pairs_rows(table, results["pairs"])
    p3_rows(table, results["p3"])
    p4_rows(table, results["p4"])
    p5_rows(table, results["p5"], results["p3"]["plugin"]["median"], results["p3"]["raw"]["median"])
    return table.markdown()


def plot(results, path):
    """Draw latency against the number of volumes for the plugin, rclone and the floor."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as pyplot

    scale = results["p4"]
    figure, (left, right) = pyplot.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    for name, color in (("plugin", "tab:blue"), ("rclone", "tab:orange")):
        points = scale[name]["points"] if scale.get(name) else []
        if not points:
            continue
        volumes = [point["volumes"] for point in points]
        left.plot(volumes, [point["create"]["median"] * 1000 for point in points], "-o", color=color,
                  label=f"{name} Create median")
        left.plot(volumes, [point["create"]["p99"] * 1000 for point in points], "--^", color=color,
                  label=f"{name} Create p99")
        right.plot(volumes, [point["list"]["median"] * 1000 for point in points], "-o", color=color,
                   label=f"{name} List median")
        right.plot(volumes, [point["get"]["median"] * 1000 for point in points], ":s", color=color,
                   label=f"{name} Get median")
    floor = scale["floor"]
    right.plot([point["volumes"] for point in floor], [point["get"]["median"] * 1000 for point in floor], ":",
               color="gray", label="floor (any call) median")
    left.axhline(20, color="red", linewidth=0.8, label="target: Create p99 20 ms")
    right.axhline(100, color="red", linewidth=0.8, label="target: List 100 ms")
    for axes, title in ((left, "Create, one call at a time"), (right, "List and Get")):
        axes.set_yscale("log")
        axes.set_xlabel("volumes on the server")
        axes.set_title(title)
        axes.grid(True, which="both", linewidth=0.3)
        axes.legend(fontsize=7)
    left.set_ylabel("latency (ms, log scale)")
    figure.suptitle(f"Latency against the number of volumes ({results['machine']['date']})", fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    pyplot.close(figure)


def update_page(page_path, block):
    """Replace the text between the results markers of ``page_path`` with ``block``."""
    with open(page_path, encoding="utf-8") as file:
        text = file.read()
    pattern = re.compile(re.escape(RESULTS_START) + ".*?" + re.escape(RESULTS_END), re.S)
    if not pattern.search(text):
        raise ValueError(f"{page_path} has no {RESULTS_START} ... {RESULTS_END} block")
    text = pattern.sub(lambda _: f"{RESULTS_START}\n{block}\n{RESULTS_END}", text)
    with open(page_path, "w", encoding="utf-8") as file:
        file.write(text)
