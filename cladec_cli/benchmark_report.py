"""The benchmark's result as JSON and as a Markdown table for the README."""

import re
from pathlib import Path

from cladec_cli import artifacts


def device_slug(device):
    """A file-name part for a device description: 'CPU, 2 cores' -> 'cpu-2-cores'."""
    return re.sub(r"[^a-z0-9]+", "-", device.lower()).strip("-") or "device"


def default_out(device, folder="docs/results"):
    """Where a benchmark on `device` goes by default: docs/results/speed-<device>.json."""
    return Path(folder) / f"speed-{device_slug(device)}.json"


def table_paths(out):
    """The JSON file and the Markdown file written beside it."""
    out = Path(out)
    return out, out.with_suffix(".md")


def _percent(value):
    return f"{100 * value:.0f} %"


def ratio(value):
    """A speed ratio as the table writes it ("-" where a result of an earlier version lacks it)."""
    return "-" if value is None else f"{value:.2f}x"


def by_turn(row):
    """The median of a row's per-turn speeds vs the peer, with their range where there are several."""
    turns = row.get("turn_speedups")  # not in results of earlier versions
    if not turns or len(turns) == 1:
        return ratio(turns[0] if turns else None)
    return f"{ratio(row['median_turn_speedup'])} ({min(turns):.2f}-{max(turns):.2f})"


def markdown_table(result):
    """A heading paragraph on the machine and the set-up, and one row per command."""
    runtime, peaks = result["runtime"], result["peak_gflop_per_s"]
    load = result["load_average"]
    epochs = result["epochs"]
    cpu = result["cpu"]
    peak_text = ", ".join(f"{dtype} {value:,.0f} GFLOP/s" for dtype, value in peaks.items())
    lines = [
        f"Device: {runtime['device']} ({runtime['backend']}, Keras {result['keras']}); CPU {cpu['name']}"
        f"{' with AVX-512' if cpu.get('avx512') else ''}{' and AMX' if cpu.get('amx') else ''}. "
        f"Precision {runtime['precision']}, XLA {'on' if runtime['xla'] else 'off'}, deterministic "
        f"{'on' if runtime['deterministic'] else 'off'}, steps per execution {runtime['steps_per_execution']}.",
        f"{result['train_images']:,} {result['dataset']} training images, batch {result['batch_size']}, "
        f"{epochs} epochs a run, {result['repeats']} run(s) a side, taking turns; seconds per epoch are the "
        f"fastest of epochs 2-{epochs}; speed vs peer is the peer's seconds over cladec's (above 1: cladec is "
        f"faster), also in this process's CPU seconds and for the median epochs; by turn: the median (and "
        f"range) of the fastest epochs' ratio within each turn. Load average {load['start'][0]:.1f} at the start, "
        f"{load['end'][0]:.1f} at the end. Measured peak (matrix product): {peak_text}. {result['date']}.",
        "",
    ]
    header = ["command", "peer", "cladec s/epoch", "peer s/epoch", "speed vs peer", "by CPU time", "by median epoch",
              "by turn", "cladec images/s", "MFLOP/image", "cladec GFLOP/s"]
    header += [f"% of {dtype} peak" for dtype in peaks]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in result["rows"]:
        mine = row["cladec"]
        cells = [f"`{row['command']}`", row["peer_name"], f"{mine['s_per_epoch']:.2f}",
                 f"{row['peer']['s_per_epoch']:.2f}", ratio(row["speedup"]), ratio(row["cpu_speedup"]),
                 ratio(row.get("median_speedup")), by_turn(row), f"{mine['images_per_s']:,.0f}",
                 f"{row['train_flops_per_image'] / 1e6:.1f}", f"{mine['gflop_per_s']:.0f}"]
        cells += [_percent(mine["fraction_of_peak"][dtype]) for dtype in peaks]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def check_report_outputs(out, overwrite=False):
    """Refuse existing outputs before the benchmark starts (unless `overwrite`)."""
    json_path, table_path = table_paths(out)
    artifacts.check_output(json_path, overwrite, suffixes=(".json",))
    artifacts.check_output(table_path, overwrite)


def write_report(result, out, overwrite=False):
    """Write the result as JSON at `out` and as Markdown beside it; returns both paths."""
    json_path, table_path = table_paths(out)
    artifacts.write_json(json_path, result, overwrite)
    artifacts.write_text(table_path, markdown_table(result), overwrite)
    return json_path, table_path
