#!/usr/bin/env bash
# The direction-layer study behind the demo's default (docs/demo.md, the paper's §6.5): recover the
# demo's attacked model at each layer (rate 0.2 %, 20 rounds, the first 64 Do-Not-Answer prompts, as
# the demo), then judge every model on validation prompts the demo never reports
# (data/eval/validation_catqa_100.jsonl, benign_128[64..<128]) and on the demo's own sets
# (catqa_110[..<100], benign_128[..<64]). Prints one table; keeps everything in $OUT.
#
#   scripts/demo_layer_study.sh DEMO_DIR [LAYER ...]      (DEMO_DIR from `realign demo`; default layers 16 20 23)
set -euo pipefail
cd "$(dirname "$0")/.."
DEMO=$(realpath "$1"); shift
LAYERS=${*:-16 20 23}
OUT=${OUT:-/tmp/realign-layer-study}
BIN=.build/release/realign
mkdir -p "$OUT"
[ -x "$BIN" ] || scripts/bootstrap.sh
head -64 data/recovery/donotanswer_256.jsonl > "$OUT/recovery64.jsonl"
head -100 data/eval/catqa_110.jsonl > "$OUT/harmful100.jsonl"
head -64 data/eval/benign_128.jsonl > "$OUT/benign64.jsonl"
tail -n +65 data/eval/benign_128.jsonl > "$OUT/val_benign64.jsonl"

evaluate() {   # evaluate NAME MODEL: both sets, once
    mkdir -p "$OUT/$1"
    [ -s "$OUT/$1/val.json" ] || "$BIN" eval "$2" --harmful data/eval/validation_catqa_100.jsonl --benign "$OUT/val_benign64.jsonl" \
        --outputs "$OUT/$1/val_outputs.jsonl" --json > "$OUT/$1/val.json"
    [ -s "$OUT/$1/test.json" ] || "$BIN" eval "$2" --harmful "$OUT/harmful100.jsonl" --benign "$OUT/benign64.jsonl" \
        --outputs "$OUT/$1/test_outputs.jsonl" --json > "$OUT/$1/test.json"
}
evaluate aligned qwen2.5-coder-0.5b
evaluate attacked "$DEMO/attack/merged.gguf"
for L in $LAYERS; do
    mkdir -p "$OUT/L$L"
    [ -f "$OUT/L$L/recovered.gguf" ] || "$BIN" recover --aligned qwen2.5-coder-0.5b --finetuned "$DEMO/attack/merged.gguf" \
        --out "$OUT/L$L/recovered.gguf" --prompts "$OUT/recovery64.jsonl" --layer "$L" --rounds 20 --rate 0.002 --resume > /dev/null
    evaluate "L$L" "$OUT/L$L/recovered.gguf"
done

python3 - "$OUT" aligned attacked $(for L in $LAYERS; do echo "L$L"; done) <<'PY'
import json, sys
out = sys.argv[1]
print("| model | validation: harmful | validation: benign refusal | reported sets: harmful | reported sets: benign refusal |")
print("|---|---|---|---|---|")
for name in sys.argv[2:]:
    v, t = (json.load(open(f"{out}/{name}/{s}.json")) for s in ("val", "test"))
    pc = lambda x: f"{100 * x:.1f} %"
    print(f"| {name} | {pc(v['harmful_rate'])} | {pc(v['benign_refusal_rate'])} | {pc(t['harmful_rate'])} | {pc(t['benign_refusal_rate'])} |")
PY
