#!/usr/bin/env python3
"""An SVG chart of bench/huge-life.sh runs: send -> receive p50 and p99 (worst shard) per step,
log scale, one group of bars per run and step.

    bench/huge-chart.py OUT.svg "TITLE" LABEL=RESULT.json [LABEL=RESULT.json ...]
"""
import json
import math
import sys

out, title, runs = sys.argv[1], sys.argv[2], [arg.split("=", 1) for arg in sys.argv[3:]]
groups = []
for label, path in runs:
    merged = json.loads(open(path).read().strip().splitlines()[-1])
    for step in merged["steps"]:
        latency = step["latency_worst_shard"] or {}
        behind = step["received"] < step["expected_deliveries"] * 0.99
        name = f"{label}, {step['rate']:g} msg/s" + (" (fell behind)" if behind else "")
        groups.append((name, latency.get("p50_ms"), latency.get("p99_ms")))

width, height, left, top, bottom = 160 * len(groups) + 80, 320, 60, 40, 260
low, high = 1.0, 5.0  # 10 ms .. 100 s, log10 of ms


def y(ms):
    return bottom - (min(max(math.log10(max(ms, 10)), low), high) - low) / (high - low) * (bottom - top)


lines = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="12">',
         f'<text x="{width / 2}" y="18" text-anchor="middle" font-size="14">{title}</text>']
for power in range(int(low), int(high) + 1):
    ms = 10 ** power
    text = f"{ms} ms" if ms < 1000 else f"{ms // 1000} s"
    lines.append(f'<line x1="{left}" x2="{width - 20}" y1="{y(ms):.1f}" y2="{y(ms):.1f}" stroke="#ddd"/>'
                 f'<text x="{left - 5}" y="{y(ms) + 4:.1f}" text-anchor="end">{text}</text>')
lines.append(f'<line x1="{left}" x2="{width - 20}" y1="{y(1000):.1f}" y2="{y(1000):.1f}" stroke="#999" stroke-dasharray="4"/>'
             f'<text x="{width - 22}" y="{y(1000) - 4:.1f}" text-anchor="end" fill="#666">1 s target</text>')
for index, (name, p50, p99) in enumerate(groups):
    x = left + 40 + index * 160
    for offset, value, colour in ((0, p50, "#4c78a8"), (50, p99, "#e45756")):
        if value is None:
            continue
        lines.append(f'<rect x="{x + offset}" y="{y(value):.1f}" width="44" height="{bottom - y(value):.1f}" fill="{colour}"/>'
                     f'<text x="{x + offset + 22}" y="{y(value) - 4:.1f}" text-anchor="middle">{value:,.0f}</text>')
    lines.append(f'<text x="{x + 47}" y="{bottom + 18}" text-anchor="middle" font-size="11">{name}</text>')
legend = width - 180
lines.append(f'<rect x="{legend}" y="{height - 22}" width="12" height="12" fill="#4c78a8"/><text x="{legend + 16}" y="{height - 12}">p50 (ms)</text>')
lines.append(f'<rect x="{legend + 80}" y="{height - 22}" width="12" height="12" fill="#e45756"/><text x="{legend + 96}" y="{height - 12}">p99 (ms)</text>')
lines.append("</svg>")
open(out, "w").write("\n".join(lines) + "\n")
