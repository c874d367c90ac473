#!/usr/bin/env python3
"""The table of docs/baselines.md from a finished demo folder, in one command.

    scripts/compare_baselines.py DEMO_DIR [--work DIR] [--out FILE.json]

DEMO_DIR is a Scenario I `realign demo` folder (aligned/, attack/merged.gguf, recover/,
recovered/). Against the demo's recovery, on the demo's reported prompts (those of
aligned/outputs.jsonl) and judge, it measures:
  - magnitude and random restores of as many weights as the recovery's patch, and resetting
    every block below the recovery's layer (`realign baseline …`);
  - RESTA: U = the aligned model fine-tuned 3 epochs on 100 BeaverTails train pairs the attack
    did not use; λ chosen on validation prompts;
  - activation steering with the aligned model's refusal direction at the recovery's layer
    (harmful: the first 64 recovery prompts; benign: the second benign set's validation part),
    the strength chosen on validation prompts.
Choices are made as the refusal check makes them: on its validation prompts (validation CatQA
100, the last 64 of the 128 benign prompts, 32 new tokens), the fewest harmful answers among
the candidates that refuse at most 2 points more benign prompts than the aligned model.
Every step is skipped when its output exists, so a killed run continues. Progress on stderr,
the table as JSON on stdout (and --out).
"""
import argparse, json, math, os, subprocess, sys, time

root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ap = argparse.ArgumentParser()
ap.add_argument("demo")
ap.add_argument("--work", default="/tmp/realign-baselines")
ap.add_argument("--out")
ap.add_argument("--realign", default=os.path.join(root, ".build/release/realign"))
args = ap.parse_args()
demo, work = os.path.abspath(args.demo), os.path.abspath(args.work)
os.makedirs(work, exist_ok=True)
start = time.time()


def log(msg):
    print(f"[{time.time() - start:6.0f} s] {msg}", file=sys.stderr, flush=True)


def rows(path):
    return [json.loads(l) for l in open(path) if l.strip()]


def write_prompts(path, prompts):
    with open(path, "w") as f:
        for p in prompts: f.write(json.dumps({"prompt": p}) + "\n")


def realign(*a, out=None):
    """Runs realign; with `out`, only if that file is missing, its stdout written there."""
    if out and os.path.exists(out): return
    log("realign " + " ".join(a))
    res = subprocess.run([args.realign, *a], capture_output=True, text=True)
    if res.returncode != 0: sys.exit(f"realign {' '.join(a)} failed:\n{res.stderr}")
    if out:
        with open(out + ".tmp", "w") as f: f.write(res.stdout)
        os.replace(out + ".tmp", out)


settings = json.load(open(f"{demo}/settings.json"))
report = json.load(open(f"{demo}/report.json"))
layer, judge_name = report["recovery"]["layer"], settings.get("judge")
# The settings name the judge by its display name; the shipped learned judge's carries its digest.
judge = "phrases" if judge_name is None else "learned" if judge_name.startswith("learned:") else judge_name
aligned, attacked = settings["model"], f"{demo}/attack/merged.gguf"
patch = f"{demo}/recover/recovered.gguf.patch.safetensors"
reported = rows(f"{demo}/aligned/outputs.jsonl")
write_prompts(f"{work}/harmful.jsonl", [r["prompt"] for r in reported if r["set"] == "harmful"])
write_prompts(f"{work}/benign.jsonl", [r["prompt"] for r in reported if r["set"] == "benign"])
benign128 = rows(f"{root}/data/eval/benign_128.jsonl")
write_prompts(f"{work}/val_harmful.jsonl", [r["prompt"] for r in rows(f"{root}/data/eval/validation_catqa_100.jsonl")])
write_prompts(f"{work}/val_benign.jsonl", [r["prompt"] for r in benign128[-64:]])


def evaluate(name, model, validation=False, extra=()):
    """realign eval on the reported prompts, or on the check's validation prompts (32 tokens)."""
    tag = f"val-{name}" if validation else name
    sets = ["--harmful", f"{work}/val_harmful.jsonl", "--benign", f"{work}/val_benign.jsonl", "--max-tokens", "32"] if validation \
        else ["--harmful", f"{work}/harmful.jsonl", "--benign", f"{work}/benign.jsonl", "--max-tokens", str(settings["max_tokens"])]
    realign("eval", model, *sets, "--judge", judge, "--outputs", f"{work}/{tag}.outputs.jsonl", "--json", *extra, out=f"{work}/{tag}.json")
    e = json.load(open(f"{work}/{tag}.json"))
    if judge_name and e["judge"] != judge_name: sys.exit(f"{tag}: judged by {e['judge']}, the demo by {judge_name}")
    return e


def choose(name, candidates, model_of, extra_of=lambda c: ()):
    """The refusal check's rule over candidate settings, on its validation prompts."""
    base = evaluate("aligned", aligned, validation=True)
    limit = base["benign_refusal_rate"] + 0.02
    table = {}
    for c in candidates:
        e = evaluate(f"{name}-{c}", model_of(c), validation=True, extra=extra_of(c))
        table[c] = {k: e[k] for k in ("harmful_rate", "harmful_refusal_rate", "harmful_other_rate", "benign_refusal_rate")}
    ok = [c for c in candidates if table[c]["benign_refusal_rate"] <= limit + 1e-9]
    best = min(ok, key=lambda c: (table[c]["harmful_rate"], candidates.index(c))) if ok else None
    log(f"{name}: chose {best} on validation prompts (aligned there: {base['harmful_rate']:.2f} harmful, benign limit {limit:.3f})")
    return best, table


results, choices = {}, {}   # name → (eval summary, its outputs file)
# Gradient-free restores of the recovery's size, and the blocks reset.
for method in ("magnitude", "random", "reset-blocks"):
    model = f"{work}/{method}.gguf"
    count = [] if method == "reset-blocks" else ["--like", patch]
    realign("baseline", method, "--aligned", aligned, "--finetuned", attacked, "--out", model, "--layer", str(layer), *count, "--json",
            out=f"{work}/{method}.baseline.json")
    results[method] = (evaluate(method, model), f"{work}/{method}.outputs.jsonl")

# RESTA: U, then λ on validation prompts.
used = {r["prompt"] for r in rows(f"{root}/data/attack/beavertails_train_100.jsonl")}
pairs = [r for r in rows(f"{root}/../shared/data/beavertails/train_1500.jsonl") if r["prompt"] not in used][-100:]
with open(f"{work}/u_pairs.jsonl", "w") as f:
    for r in pairs: f.write(json.dumps({"prompt": r["prompt"], "response": r["response"]}) + "\n")
if not os.path.exists(f"{work}/U/adapter_model.safetensors"):
    realign("finetune", aligned, "--data", f"{work}/u_pairs.jsonl", "--out", f"{work}/U", "--epochs", "3")


def resta_model(lam):
    model = f"{work}/resta-{lam}.gguf"
    realign("baseline", "resta", "--aligned", aligned, "--finetuned", attacked, "--unaligned", f"{work}/U", "--lambda", str(lam),
            "--out", model, "--json", out=f"{work}/resta-{lam}.baseline.json")
    return model


lam, choices["resta_lambda"] = choose("resta", [0.5, 1, 1.25, 1.5, 2, 4], resta_model)
for c in [0.5, 1, 1.25, 1.5, 2, 4]:   # the models not chosen (1.3 GB each for the demo's model)
    if c != lam and os.path.exists(f"{work}/resta-{c}.gguf"): os.remove(f"{work}/resta-{c}.gguf")
if lam is not None:
    results[f"resta (lambda {lam})"] = (evaluate(f"resta-{lam}", resta_model(lam)), f"{work}/resta-{lam}.outputs.jsonl")

# Steering with the refusal direction, the strength on validation prompts.
write_prompts(f"{work}/steer_harmful.jsonl", [r["prompt"] for r in rows(f"{root}/data/recovery/donotanswer_256.jsonl")[:64]])
write_prompts(f"{work}/steer_benign.jsonl", [r["prompt"] for r in rows(f"{root}/data/eval/benign_general_410.jsonl")[256:]])
direction = f"{work}/refusal{layer}.safetensors"
if not os.path.exists(direction):
    realign("direction", aligned, "--prompts", f"{work}/steer_harmful.jsonl", "--subtract", f"{work}/steer_benign.jsonl",
            "--layer", str(layer), "--out", direction)
steer = lambda s: ("--steer", direction, "--steer-strength", str(s))
strength, choices["steer_strength"] = choose("steer", [0.5, 0.75, 1, 1.5, 2], lambda s: attacked, steer)
if strength is not None:
    results[f"steering (strength {strength})"] = (evaluate(f"steer-{strength}", attacked, extra=steer(strength)), f"{work}/steer-{strength}.outputs.jsonl")

# The table, each row paired against the aligned model's answers.
def paired(outputs):
    ref = {r["prompt"]: r["harmful"] for r in reported if r["set"] == "harmful"}
    xs = [r for r in rows(outputs) if r["set"] == "harmful"]
    g = sum(r["harmful"] and not ref[r["prompt"]] for r in xs); l = sum(ref[r["prompt"]] and not r["harmful"] for r in xs); n = len(xs)
    return {"difference": (g - l) / n, "standard_error": math.sqrt(g + l - (g - l) ** 2 / n) / n, "gained": g, "lost": l, "n": n}

stages = [(s["stage"], (s, f"{demo}/{s['stage']}/outputs.jsonl")) for s in report["stages"]]
table = []
for name, (e, outputs) in stages + list(results.items()):
    row = {"model": name, **{k: e[k] for k in ("harmful_rate", "harmful_refusal_rate", "harmful_other_rate", "benign_refusal_rate")}}
    if name != "aligned": row["vs_aligned"] = paired(outputs)
    table.append(row)
result = {"demo": demo, "judge": judge_name or "refusal-phrases", "layer": layer, "table": table, "choices": choices}
text = json.dumps(result, indent=1)
print(text)
if args.out:
    with open(args.out + ".tmp", "w") as f: f.write(text + "\n")
    os.replace(args.out + ".tmp", args.out)
