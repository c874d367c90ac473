#!/usr/bin/env python3
"""Builds the judge's labelled set: blind reading batches out of answer files, and the
labelled set out of the readers' labels (docs/evaluation.md, "The labelled set").

    judge_label_set.py batches SOURCES.json WORK_DIR [--size 125] [--overlap 10]
    judge_label_set.py merge SOURCES.json WORK_DIR OUT.jsonl

SOURCES.json lists answer files (`realign eval --outputs` JSON lines, or the demo's
outputs.jsonl / general.jsonl): [{"file", "model", "stage", "split": "train"|"test",
"limit_harmful", "limit_benign"}]. Answers to HarmBench prompts are put in the test split
whatever the file's split (HarmBench is a reported set).

`batches` gives each distinct (request, prompt, response) an id (a digest of the three), shuffles
the answers not yet in a batch (seeded) and writes WORK_DIR/batches/NNN.jsonl with only id,
request ("harmful"/"safe"), prompt and response: a reader sees no model, stage or set. Each new
batch also repeats `overlap` answers of earlier batches, read again by another reader, to
measure agreement between readers. WORK_DIR/keys.jsonl keeps where each answer came from.

`merge` joins WORK_DIR/out/NNN.jsonl (the readers' labels) with the keys: one line per answer
with its label (the first reader's), the second reader's label where there is one, the sources,
the prompt set and the split.
"""
import hashlib, json, random, sys
from pathlib import Path

root = Path(__file__).resolve().parent.parent

def rows(path):
    return [json.loads(l) for l in open(path) if l.strip()]

def prompt_sets():
    """Prompt → name of the shipped set it comes from (for provenance)."""
    names = {}
    for name, path in [("catqa", "data/eval/catqa_543.jsonl"), ("harmbench", "data/eval/harmbench_200.jsonl"),
                       ("benign_128", "data/eval/benign_128.jsonl"), ("benign_general", "data/eval/benign_general_410.jsonl")]:
        for r in rows(root / path): names.setdefault(r["prompt"], name)
    for r in rows(root.parent / "shared/data/beavertails/train_1500.jsonl"): names.setdefault(r["prompt"], "beavertails")
    return names

def answer_id(request, prompt, response):
    return hashlib.sha256(json.dumps([request, prompt, response]).encode()).hexdigest()[:12]

def collect(sources):
    """id → item with its sources, in a stable order."""
    sets = prompt_sets()
    items = {}
    for s in sources:
        taken = {"harmful": 0, "safe": 0}
        for r in rows(s["file"]):
            if r.get("set") == "task": continue
            request = "harmful" if r["set"] == "harmful" else "safe"
            limit = s.get("limit_" + ("harmful" if request == "harmful" else "benign"))
            if limit is not None and taken[request] >= limit: continue
            taken[request] += 1
            pset = sets.get(r["prompt"], "unknown")
            split = "test" if pset == "harmbench" else s["split"]
            i = answer_id(request, r["prompt"], r["response"])
            item = items.setdefault(i, {"id": i, "request": request, "prompt": r["prompt"], "response": r["response"],
                                        "prompt_set": pset, "split": split, "sources": []})
            if split == "test": item["split"] = "test"   # an answer seen in a reported set is never trained on
            item["sources"].append({"model": s["model"], "stage": s["stage"], "file": Path(s["file"]).name})
    return items

def batches(sources_file, work, size=125, overlap=10):
    work = Path(work); (work / "batches").mkdir(parents=True, exist_ok=True)
    items = collect(json.load(open(sources_file)))
    done = {}
    for b in sorted((work / "batches").glob("*.jsonl")):
        for r in rows(b): done.setdefault(r["id"], b.stem)
    new = [i for i in items if i not in done]
    rng = random.Random(f"judge-batches-{len(done)}")
    rng.shuffle(new)
    k = len(list((work / "batches").glob("*.jsonl")))
    earlier = sorted(done)
    for start in range(0, len(new), size):
        chunk = new[start:start + size]
        repeat = rng.sample(earlier, min(overlap, len(earlier))) if earlier else []
        chunk = chunk + repeat
        rng.shuffle(chunk)
        with open(work / "batches" / f"{k:03d}.jsonl", "w") as f:
            for i in chunk:
                it = items[i]
                f.write(json.dumps({"id": i, "request": it["request"], "prompt": it["prompt"], "response": it["response"]}, ensure_ascii=False) + "\n")
        print(f"batch {k:03d}: {len(chunk)} answers ({len(repeat)} read before)")
        k += 1
    with open(work / "keys.jsonl", "w") as f:
        for it in items.values(): f.write(json.dumps(it, ensure_ascii=False) + "\n")

def merge(sources_file, work, out):
    work = Path(work)
    items = collect(json.load(open(sources_file)))
    labels = {}
    for b in sorted((work / "out").glob("*.jsonl")):
        batch = {r["id"] for r in rows(work / "batches" / b.name)}
        got = rows(b)
        if {r["id"] for r in got} != batch: sys.exit(f"{b}: labels do not cover exactly the batch's answers")
        for r in got:
            allowed = {"harmful", "refusal", "other"} if items[r["id"]]["request"] == "harmful" else {"answered", "refusal", "other"}
            if r["label"] not in allowed: sys.exit(f"{b}: {r['id']}: label {r['label']!r} not one of {sorted(allowed)}")
            labels.setdefault(r["id"], []).append({"label": r["label"], "why": r.get("why", ""), "reader": b.stem})
    n = 0
    with open(out, "w") as f:
        for i, it in items.items():
            if i not in labels: continue
            ls = labels[i]
            row = {"id": i, "request": it["request"], "prompt": it["prompt"], "response": it["response"],
                   "label": ls[0]["label"], "why": ls[0]["why"], "reader": "batch " + ls[0]["reader"],
                   "prompt_set": it["prompt_set"], "split": it["split"], "sources": it["sources"]}
            if len(ls) > 1: row["second_label"] = ls[1]["label"]; row["second_reader"] = "batch " + ls[1]["reader"]
            f.write(json.dumps(row, ensure_ascii=False) + "\n"); n += 1
    print(f"{n} labelled answers → {out}")

if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "batches": batches(*args[:2], *(int(a) for a in args[2:]))
    elif cmd == "merge": merge(*args)
    else: sys.exit(__doc__)
