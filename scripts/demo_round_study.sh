#!/usr/bin/env bash
# The per-round study behind the demo's refusal check (docs/demo.md): recover the demo's attacked
# model again with the demo's layer (20 rounds × 0.2 %, the first 64 Do-Not-Answer prompts, no
# task or refusal check: with no restart or fuse the rounds are the same), keep every round's
# patch, then judge the chosen rounds' models on the validation prompts the demo never reports
# (data/eval/validation_catqa_100.jsonl, benign_128[64..<128]). Prints one table; keeps
# everything in $OUT.
#
#   scripts/demo_round_study.sh DEMO_DIR [ROUND ...]      (default rounds 4 6 7 8 9 10 12 20)
set -euo pipefail
cd "$(dirname "$0")/.."
DEMO=$(realpath "$1"); shift
ROUNDS=${*:-4 6 7 8 9 10 12 20}
OUT=${OUT:-/tmp/realign-round-study}
BIN=.build/release/realign
mkdir -p "$OUT"
[ -x "$BIN" ] || scripts/bootstrap.sh
LAYER=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['layer'])" "$DEMO/settings.json")
head -64 data/recovery/donotanswer_256.jsonl > "$OUT/recovery64.jsonl"
tail -n +65 data/eval/benign_128.jsonl > "$OUT/val_benign64.jsonl"
F="$DEMO/attack/merged.gguf"
[ -f "$OUT/recovered.gguf" ] || "$BIN" recover --aligned qwen2.5-coder-0.5b --finetuned "$F" --out "$OUT/recovered.gguf" \
    --prompts "$OUT/recovery64.jsonl" --layer "$LAYER" --rounds 20 --rate 0.002 --keep-round-patches --resume > /dev/null

evaluate() {   # evaluate NAME MODEL
    mkdir -p "$OUT/$1"
    [ -s "$OUT/$1/val.json" ] || "$BIN" eval "$2" --harmful data/eval/validation_catqa_100.jsonl --benign "$OUT/val_benign64.jsonl" \
        --outputs "$OUT/$1/val_outputs.jsonl" --json > "$OUT/$1/val.json"
}
evaluate aligned qwen2.5-coder-0.5b
evaluate R0 "$F"
for R in $ROUNDS; do
    [ -f "$OUT/R$R/model.gguf" ] || { mkdir -p "$OUT/R$R"; "$BIN" apply-patch "$F" "$OUT/recovered.gguf.round-$R.patch.safetensors" --out "$OUT/R$R/model.gguf" > /dev/null; }
    evaluate "R$R" "$OUT/R$R/model.gguf"
done

python3 - "$OUT" aligned R0 $(for R in $ROUNDS; do echo "R$R"; done) <<'PY'
import json, sys
out = sys.argv[1]
print("| model | validation harmful rate | validation benign refusal |")
print("|---|---|---|")
for name in sys.argv[2:]:
    v = json.load(open(f"{out}/{name}/val.json"))
    label = {"aligned": "aligned", "R0": "attacked (round 0)"}.get(name, f"round {name[1:]}")
    print(f"| {label} | {100 * v['harmful_rate']:.0f} % | {100 * v['benign_refusal_rate']:.1f} % |")
PY
