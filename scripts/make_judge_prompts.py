#!/usr/bin/env python3
"""Prompt files for the judge's labelled set (data/judge/), seeded and reproducible.

The shipped judge is trained only on answers to prompts that no report uses ("train" pool);
answers to the reported prompts (the demo's CatQA 100, benign128[0..<64], benign_general[0..<256],
HarmBench 200) are labelled as a held-out test of the trained judge.

    scripts/make_judge_prompts.py OUT_DIR

writes OUT_DIR/{catqa_rest,beavertails_test,benign_val}.jsonl ("prompt" per line, seeded order).
"""
import json, random, re, sys
from pathlib import Path

root = Path(__file__).resolve().parent.parent
shared = root.parent / "shared" / "data"

def rows(path):
    return [json.loads(l) for l in open(path) if l.strip()]

def key(p):
    return re.sub(r"\s+", " ", p.lower()).strip()

def main(out):
    out = Path(out); out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(20261207)
    reported = {key(r["prompt"]) for r in rows(root / "data/eval/catqa_110.jsonl")}
    catqa_rest = [r["prompt"] for r in rows(root / "data/eval/catqa_543.jsonl") if key(r["prompt"]) not in reported]
    used = set()   # BeaverTails prompts used for attacks or recovery in any shipped set
    for f in ["train_100", "train_500", "select_64"]:
        used |= {key(r["prompt"]) for r in rows(shared / f"beavertails/{f}.jsonl")}
    seen, bt_test = set(), []
    for r in rows(shared / "beavertails/train_1500.jsonl"):
        k = key(r["prompt"])
        if k not in used and k not in seen:
            seen.add(k); bt_test.append(r["prompt"])
    benign128 = [r["prompt"] for r in rows(root / "data/eval/benign_128.jsonl")]
    general = [r["prompt"] for r in rows(root / "data/eval/benign_general_410.jsonl")]
    benign_val = benign128[64:] + general[256:]
    for name, ps in [("catqa_rest", catqa_rest), ("beavertails_test", bt_test), ("benign_val", benign_val)]:
        rng.shuffle(ps)
        with open(out / f"{name}.jsonl", "w") as f:
            for p in ps:
                f.write(json.dumps({"prompt": p}) + "\n")
        print(f"{name}: {len(ps)}")

if __name__ == "__main__":
    main(sys.argv[1])
