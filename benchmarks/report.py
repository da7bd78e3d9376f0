"""The report of a run: the table on the console, the JSON results, the same rows as
a Markdown table, and the chart (wall and CPU time per GiB of every big-file row)."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from rich.table import Table

from benchmarks.context import Bench
from benchmarks.measure import CPU_METHOD, Measurement, cpu_text
from benchmarks.text import GiB, console, size_text, spread_text, time_text, value_text


def ratios_text(m: Measurement) -> str:
    """The row's ratios, after its rate if it has one."""
    rate = [f"{m.rate:,.0f} {m.rate_unit}"] if m.rate is not None else []
    return ", ".join(rate + [f"{k} {v:.2f}×" if k.startswith("speed-up") else f"{v:.2f}× {k}"
                             for k, v in m.ratios.items()])


def render(rows: list[Measurement], title: str) -> Table:
    table = Table(title=title, header_style="bold")
    right = ("min", "median", "spread", "CPU user + sys", "peak RSS")
    for column in ("operation", "file", "min", "median", "spread", "CPU user + sys", "ratio", "peak RSS", "target",
                   "met?"):
        table.add_column(column, justify="right" if column in right else "left")
    for m in rows:
        if m.target:
            met = f"{'[green]yes' if m.target.met else '[red]NO'}[/] ({value_text(m.target.value, m.target.unit)})"
        else:
            met = m.note if m.note == "not installed" else ""
        table.add_row(m.operation, m.file, time_text(m.min), time_text(m.median), spread_text(m.spread), cpu_text(m),
                      ratios_text(m) or "-",
                      size_text(m.peak) if m.peak is not None else "-", m.target.text if m.target else "", met)
    return table


def report(bench: Bench, info: dict, out: Path, started: str, seconds: float) -> None:
    """Print the table and the notes; write everything as JSON to `out`."""
    title = f"pfs {info['pfs']} benchmark ({bench.profile.name}) - {info['cpu']}, {info['cores']} cores, " \
            f"{size_text(info['ram_bytes'])} RAM, {info['filesystem']}, Python {info['python']}"
    console.print(render(bench.rows, title))
    console.print(f"big-file ratios: median over the {bench.profile.reps} rounds of the ratio within the round; "
                  f"others: min / min of the baseline, unless marked (medians). spread: (max - min) / median. "
                  f"CPU: medians of the whole process tree, per GiB of input for big-file rows, from {CPU_METHOD}")
    notes = {(m.operation, m.note): None for m in bench.rows if m.note and m.note != "not installed"}
    for operation, note in notes:
        console.print(f"note: {operation}: {note}")
    for line in bench.observations:
        console.print(f"note: {line}")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "profile": asdict(bench.profile), "machine": info, "inputs": bench.inputs, "started": started,
        "duration_seconds": round(seconds, 1),
        "ratio_method": "big-file rows: median over rounds of the ratio within the round; others: min over "
                        "repetitions / min of the baseline over repetitions, unless labelled medians",
        "cpu_method": CPU_METHOD,
        "rows": [m.to_json() for m in bench.rows], "observations": bench.observations}, indent=2))
    out.with_suffix(".md").write_text(markdown([m.to_json() for m in bench.rows]))
    chart_file = chart(bench.rows, title, out.with_suffix(".png"))
    missed = [f"{m.operation} ({m.file})" for m in bench.rows if m.target and not m.target.met]
    console.print(f"results: {out}{f', chart: {chart_file}' if chart_file else ''}; "
                  f"targets missed: {', '.join(missed) or 'none'}")


def markdown(rows: list[dict]) -> str:
    """The rows (as in the JSON) as a Markdown table, for the README."""
    lines = ["| operation | file | wall min / median | CPU user + sys | ratios (same rounds) | peak RSS | target |",
             "|---|---|--:|--:|---|--:|---|"]
    for r in rows:
        if r["min"] is None:
            lines.append(f"| {r['operation']} | {r['file']} | {r['note'] or '-'} | | | | |")
            continue
        unit = "/GiB" if r["nbytes"] else ""
        cpu = f"{r['user_cpu']:.2f} + {r['system_cpu']:.2f} s{unit}" if r["user_cpu"] is not None else "-"
        ratios = ", ".join(f"{k} {v:.2f}×" if k.startswith("speed-up") else f"{v:.2f}× {k}"
                           for k, v in r["ratios"].items()) or "-"
        target = r["target"] and f"{r['target']['text']}: {'met' if r['target']['met'] else '**not met**'}"
        lines.append(f"| {r['operation']} | {r['file']} | {time_text(r['min'])} / {time_text(r['median'])} | {cpu} "
                     f"| {ratios} | {size_text(r['peak'])} | {target or ''} |")
    return "\n".join(lines) + "\n"


def chart(rows: list[Measurement], title: str, out: Path) -> Path | None:
    """A PNG beside the JSON: for each big file, every command's wall time (median,
    with a min-max bar) next to its CPU time (user + system) per GiB. None without
    matplotlib (pip install -e '.[bench]') or without big-file rows."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        console.print("[yellow]no chart: matplotlib is not installed (pip install -e '.[bench]')[/]")
        return None
    files = list(dict.fromkeys(m.file for m in rows if m.nbytes and m.seconds))
    if not files:
        return None
    fig, axes = plt.subplots(1, len(files), figsize=(7 * len(files), 9), squeeze=False)
    for ax, name in zip(axes[0], files):
        group = [m for m in rows if m.file == name and m.nbytes and m.seconds]
        y = range(len(group))
        gib = [m.nbytes / GiB for m in group]
        wall = [m.median / g for m, g in zip(group, gib)]
        low = [w - m.min / g for w, m, g in zip(wall, group, gib)]
        high = [max(m.seconds) / g - w for w, m, g in zip(wall, group, gib)]
        user = [m.cpu("user") or 0 for m in group]
        system = [m.cpu("system") or 0 for m in group]
        colours = ["tab:blue" if m.operation.startswith("pfs") else "tab:grey" for m in group]
        ax.barh([i - 0.2 for i in y], wall, 0.4, xerr=[low, high], color=colours, label="wall (median, min-max)")
        ax.barh([i + 0.2 for i in y], user, 0.4, color="tab:orange", label="CPU user")
        ax.barh([i + 0.2 for i in y], system, 0.4, left=user, color="tab:red", label="CPU system")
        ax.set_yticks(list(y), [m.operation for m in group], fontsize=8)
        ax.invert_yaxis()
        ax.set_xlabel("seconds per GiB")
        ax.set_title(name)
        ax.legend(fontsize=8, loc="lower right")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
