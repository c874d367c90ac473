#!/usr/bin/env python3
"""Plots scripts/bench_sizes.sh's results: seconds per recovery round and peak resident memory
against model parameters (log-log), as a self-contained SVG (no plotting library needed).

    python3 scripts/plot_sizes.py sizes.jsonl out.svg
"""
import json, math, sys

rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
W, H, L, R, T, B = 640, 360, 70, 70, 40, 50
xs = [r["params"] / 1e9 for r in rows]
series = [("round (s)", [r["round_seconds"] for r in rows], "#1f77b4", "left"),
          ("peak memory (GiB)", [r["peak_rss_gib"] for r in rows], "#d62728", "right")]
lx = lambda v: math.log10(v)
x0, x1 = lx(min(xs)) - 0.1, lx(max(xs)) + 0.1
def px(v): return L + (lx(v) - x0) / (x1 - x0) * (W - L - R)
out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">',
       f'<rect width="{W}" height="{H}" fill="white"/>',
       f'<text x="{W/2}" y="20" text-anchor="middle" font-size="14">Realign: one recovery round against model size (32 prompts, 2 cores)</text>']
for name, ys, color, side in series:
    y0, y1 = lx(min(ys)) - 0.15, lx(max(ys)) + 0.15
    py = lambda v: H - B - (lx(v) - y0) / (y1 - y0) * (H - T - B)
    pts = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in zip(xs, ys))
    out.append(f'<polyline points="{pts}" fill="none" stroke="{color}" stroke-width="2"/>')
    for r, x, y in zip(rows, xs, ys):
        out.append(f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="4" fill="{color}"/>')
        out.append(f'<text x="{px(x) + 6:.1f}" y="{py(y) - 6:.1f}" fill="{color}">{y:g}</text>')
    ax = L if side == "left" else W - R
    out.append(f'<line x1="{ax}" y1="{T}" x2="{ax}" y2="{H - B}" stroke="{color}"/>')
    for e in range(math.floor(y0), math.ceil(y1) + 1):
        for m in (1, 2, 5):
            v = m * 10 ** e
            if y0 <= lx(v) <= y1:
                tx = ax - 6 if side == "left" else ax + 6
                out.append(f'<text x="{tx}" y="{py(v) + 4:.1f}" fill="{color}" text-anchor="{"end" if side == "left" else "start"}">{v:g}</text>')
    lab_x = 14 if side == "left" else W - 14
    out.append(f'<text x="{lab_x}" y="{(T + H - B) / 2}" fill="{color}" text-anchor="middle" '
               f'transform="rotate({-90 if side == "left" else 90} {lab_x} {(T + H - B) / 2})">{name}, log scale</text>')
out.append(f'<line x1="{L}" y1="{H - B}" x2="{W - R}" y2="{H - B}" stroke="black"/>')
for r, x in zip(rows, xs):
    out.append(f'<text x="{px(x):.1f}" y="{H - B + 16}" text-anchor="middle">{x:.2g}B</text>')
    out.append(f'<text x="{px(x):.1f}" y="{H - B + 30}" text-anchor="middle" fill="#555">{r["shape"]} ({r["mode"]})</text>')
out.append(f'<text x="{W/2}" y="{H - 4}" text-anchor="middle">parameters (log scale)</text></svg>')
open(sys.argv[2], "w").write("\n".join(out) + "\n")
