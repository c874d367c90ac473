#!/usr/bin/env bash
# One recovery round at several model sizes: random BF16 models with the shapes of
# Qwen2.5-0.5B/1.5B/3B and Llama-2-7B (scripts/make_shaped_model.py; F = A + a random LoRA
# adapter), 32 prompts, default layer ⌊2L/3⌋, --streaming auto. Prints one JSON line per size
# (round seconds and their parts, direction seconds, whole job, peak RSS, mode) and writes
# docs/benchmarks-sizes.svg (time and peak memory against parameters).
#
#   scripts/bench_sizes.sh [shape ...]     (default: qwen2.5-0.5b qwen2.5-1.5b qwen2.5-3b llama2-7b;
#                                           run on an otherwise idle machine; ~14 GB of disk per 7B)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-/opt/refvenv/bin/python}
OUT=${OUT:-/work/shaped}
BIN=.build/release/realign
SHAPES=${*:-qwen2.5-0.5b qwen2.5-1.5b qwen2.5-3b llama2-7b}
mkdir -p "$OUT"
[ -f "$OUT/prompts32.jsonl" ] || head -32 data/recovery/donotanswer_256.jsonl > "$OUT/prompts32.jsonl"
for s in $SHAPES; do
  M=$OUT/$s
  [ -f "$M/model/config.json" ] || "$PY" scripts/make_shaped_model.py "$M" --shape "$s" >&2
  rm -rf "$M/recovered" "$M/recovered".*
  echo "$s: load before $(cut -d' ' -f1-3 /proc/loadavg)" >&2
  /usr/bin/time -v "$BIN" recover --aligned "$M/model" --finetuned "$M/model" --adapter "$M/lora" --out "$M/recovered" \
      --prompts "$OUT/prompts32.jsonl" --rounds 1 --json > "$M/round.jsonl" 2> "$M/recover.err"
  rm -rf "$M/recovered"
  "$PY" - "$M" "$s" <<'PYEOF'
import glob, json, os, re, sys
m, shape = sys.argv[1], sys.argv[2]
err = open(m + "/recover.err").read()
r = json.loads(open(m + "/round.jsonl").read().splitlines()[0])
wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (?:(\d+):)?(\d+):([\d.]+)", err).groups()
cfg = json.load(open(m + "/model/config.json"))
direction = re.search(r"aligned direction done in ([\d.]+) s", err)
print(json.dumps({"shape": shape, "eligible_weights_restored": r["restored"], "candidates": r["candidates"],
    "params": sum(os.path.getsize(f) for f in glob.glob(m + "/model/*.safetensors")) // 2,   # BF16: 2 bytes a weight (headers are tiny)
    "layer": cfg["num_hidden_layers"] * 2 // 3, "mode": "layer-major" if "layer-major" in err else "resident",
    "round_seconds": round(r["seconds_forward_backward"] + (r.get("seconds_load") or 0) + r["seconds_selection"], 1),
    "forward_backward_seconds": round(r["seconds_forward_backward"], 1), "load_seconds": round(r.get("seconds_load") or 0, 1),
    "selection_seconds": round(r["seconds_selection"], 1), "direction_seconds": float(direction.group(1)) if direction else None,
    "job_seconds": round(int(wall[0] or 0) * 3600 + int(wall[1]) * 60 + float(wall[2]), 1),
    "peak_rss_gib": round(int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", err).group(1)) / 2**20, 2)}))
PYEOF
done | tee "$OUT/sizes.jsonl"
"$PY" scripts/plot_sizes.py "$OUT/sizes.jsonl" docs/benchmarks-sizes.svg
