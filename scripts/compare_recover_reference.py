#!/usr/bin/env python3
"""Realign's recovery round beside the PyTorch reference (../shared/bench/ref_recover.py),
element by element.

Both sides start from the same weights: the aligned Qwen2.5-Coder-0.5B-Instruct GGUF and its
perturbed copy (scripts/make_perturbed_gguf.py: the reference's own noise, stored F32),
direction layer 16 (hidden-state index), the reference's 32 prompts. The reference's rounds run
here with its own functions (direction, truncate, PROMPTS) and exactly its round (loss
-cos(mean over all prompts, d_o), one backward; sign rule; global top-k of |grad|,
k = int(0.002 * eligible)), recording which elements each round restores. `realign recover`
runs with --keep-round-patches for each --loss-batch asked for (all, the default = the
reference's one loss over all 32 prompts; 8 = the authors' code), and the restored sets are
compared round by round: overlap = |ours ∩ reference| / |reference|, and the cosines.

Dev only (needs the reference env, docs/reference-env.md):
    /opt/refvenv/bin/python scripts/compare_recover_reference.py MODEL.gguf PERTURBED.gguf \
        --rounds 2 --loss-batches all,8 --out docs/recover-reference.json
"""
import argparse, importlib.util, json, os, subprocess, sys, time

import numpy as np
import torch
import torch.nn.functional as F
from safetensors import safe_open
from transformers import AutoModelForCausalLM, AutoTokenizer

ap = argparse.ArgumentParser()
ap.add_argument("aligned")
ap.add_argument("perturbed")
ap.add_argument("--ref", default=os.path.join(os.path.dirname(__file__), "../../shared/bench/ref_recover.py"))
ap.add_argument("--realign", default=os.path.join(os.path.dirname(__file__), "../.build/release/realign"))
ap.add_argument("--rounds", type=int, default=2)
ap.add_argument("--loss-batches", default="all,8")
ap.add_argument("--work", default="/tmp/realign-compare-recover")
ap.add_argument("--out", default=None)
args = ap.parse_args()
os.makedirs(args.work, exist_ok=True)

spec = importlib.util.spec_from_file_location("ref_recover", args.ref)
ref = importlib.util.module_from_spec(spec)
spec.loader.exec_module(ref)  # sets torch to 2 threads, defines PROMPTS, LINEAR, direction, truncate


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ---------------- the reference's rounds, recording what each restores ----------------
def reference_rounds():
    d, f = os.path.dirname(os.path.abspath(args.aligned)), os.path.basename(args.aligned)
    tok = AutoTokenizer.from_pretrained(d, gguf_file=f)
    m_o = AutoModelForCausalLM.from_pretrained(d, gguf_file=f, dtype=torch.float32).eval()
    d, f = os.path.dirname(os.path.abspath(args.perturbed)), os.path.basename(args.perturbed)
    m_f = AutoModelForCausalLM.from_pretrained(d, gguf_file=f, dtype=torch.float32).eval()
    L = m_o.config.num_hidden_layers
    l = round(2 * L / 3)
    for p in list(m_o.parameters()) + list(m_f.parameters()):
        p.requires_grad_(False)
    elig = []
    for i in range(l):
        for blk in ("self_attn", "mlp"):
            for n in ref.LINEAR:
                lo, lf = getattr(getattr(m_o.model.layers[i], blk), n, None), getattr(getattr(m_f.model.layers[i], blk), n, None)
                if lo is not None:
                    elig.append((f"model.layers.{i}.{blk}.{n}.weight", lf.weight, lo.weight))
    # The file must hold the reference's own perturbation: as many changed elements as eligible.
    changed = sum(int((wf != wo).sum()) for _, wf, wo in elig)
    n_elig = sum(wf.numel() for _, wf, _ in elig)
    tok.pad_token = tok.pad_token or tok.eos_token
    tok.padding_side = "left"
    texts = [tok.apply_chat_template([{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True)
             for p in ref.PROMPTS]
    batches = []
    for s in range(0, len(texts), 8):
        enc = tok(texts[s:s + 8], return_tensors="pt", padding=True, add_special_tokens=False)
        enc["position_ids"] = (enc["attention_mask"].cumsum(-1) - 1).clamp(min=0)
        batches.append(dict(enc))
    base_o, base_f = ref.truncate(m_o, l), ref.truncate(m_f, l)
    with torch.no_grad():
        d_o = ref.direction(base_o, batches, l)
    for _, wf, _ in elig:
        wf.requires_grad_(True)
    k = int(0.002 * n_elig)
    rounds = []
    for r in range(args.rounds):
        t = time.time()
        for _, wf, _ in elig:
            wf.grad = None
        loss = -F.cosine_similarity(ref.direction(base_f, batches, l), d_o, dim=0)
        loss.backward()
        with torch.no_grad():
            scores = []
            for _, wf, wo in elig:
                gr, delta = wf.grad, wo - wf
                cand = (torch.sign(-gr) == torch.sign(delta)) & (delta != 0)
                scores.append(torch.where(cand, gr.abs(), torch.full_like(gr, -1.0)).flatten())
            allsc = torch.cat(scores)
            vals, idx = torch.topk(allsc, k, sorted=False)
            idx = idx[vals > 0]
            kth = float(vals.min())
            restored, off = {}, 0
            for name, wf, wo in elig:
                n = wf.numel()
                sel = idx[(idx >= off) & (idx < off + n)] - off
                if sel.numel():
                    restored[name] = np.sort(sel.numpy())
                wf.view(-1)[sel] = wo.view(-1)[sel]
                off += n
            cos_after = F.cosine_similarity(ref.direction(base_f, batches, l), d_o, dim=0).item()
        rounds.append({"cos_before": -loss.item(), "cos_after": cos_after, "restored": restored,
                       "k": k, "kth_abs_grad": kth})
        log(f"reference round {r + 1}: cos {-loss.item():.6f} -> {cos_after:.6f}, {int(idx.numel())} restored ({time.time() - t:.1f} s)")
    return {"layer": l, "eligible": n_elig, "perturbed_elements": changed}, rounds


# ---------------- realign recover with its round patches ----------------
def read_patch(path):
    out = {}
    with safe_open(path, "np") as f:
        for key in f.keys():
            if key.endswith("/indices"):
                out[key[:-len("/indices")]] = np.sort(f.get_tensor(key).astype(np.int64))
    return out


def realign_rounds(loss_batch):
    out = os.path.join(args.work, f"realign-{loss_batch}.gguf")
    for name in os.listdir(args.work):
        if name.startswith(os.path.basename(out)):
            os.remove(os.path.join(args.work, name))
    prompts = os.path.join(args.work, "prompts.jsonl")
    with open(prompts, "w") as fh:
        for p in ref.PROMPTS:
            fh.write(json.dumps({"prompt": p}) + "\n")
    cmd = [args.realign, "recover", "--aligned", args.aligned, "--finetuned", args.perturbed, "--out", out,
           "--prompts", prompts, "--layer", "16", "--rounds", str(args.rounds), "--loss-batch", loss_batch,
           "--keep-round-patches", "--json"]
    log(" ".join(cmd))
    res = subprocess.run(cmd, capture_output=True, text=True, check=True)
    logs = [json.loads(line) for line in res.stdout.splitlines() if line.strip()]
    rounds, before = [], {}
    for r, entry in enumerate(logs, start=1):
        cumulative = read_patch(f"{out}.round-{r}.patch.safetensors")
        restored = {name: np.setdiff1d(ix, before.get(name, np.empty(0, np.int64)), assume_unique=True)
                    for name, ix in cumulative.items()}
        rounds.append({"cos_before": entry["cosine_before"], "cos_after": entry["cosine_after"],
                       "restored": {n: ix for n, ix in restored.items() if ix.size}})
        before = cumulative
    return rounds


def overlap(ours, theirs):
    both = sum(np.intersect1d(ours.get(n, []), ix, assume_unique=True).size for n, ix in theirs.items())
    n_ours, n_ref = sum(ix.size for ix in ours.values()), sum(ix.size for ix in theirs.values())
    return {"realign_restored": n_ours, "reference_restored": n_ref, "both": both,
            "overlap_of_reference": both / max(n_ref, 1)}


setting, ref_rounds = reference_rounds()
result = {"aligned": os.path.basename(args.aligned), "perturbed": os.path.basename(args.perturbed),
          "prompts": len(ref.PROMPTS), "torch": torch.__version__, "reference": setting,
          "reference_rounds": [{k: v for k, v in r.items() if k != "restored"} for r in ref_rounds],
          "realign": {}}
for bs in args.loss_batches.split(","):
    ours = realign_rounds(bs)
    rows = []
    for r, (o, t) in enumerate(zip(ours, ref_rounds), start=1):
        row = {"round": r, "cos_before": o["cos_before"], "cos_after": o["cos_after"],
               "cos_after_minus_reference": o["cos_after"] - t["cos_after"], **overlap(o["restored"], t["restored"])}
        rows.append(row)
        log(f"--loss-batch {bs} round {r}: cos {o['cos_before']:.6f} -> {o['cos_after']:.6f} "
            f"(reference {t['cos_after']:.6f}), overlap {row['overlap_of_reference']:.4%}")
    result["realign"][f"loss_batch_{bs}"] = rows
text = json.dumps(result, indent=1)
print(text)
if args.out:
    with open(args.out + ".tmp", "w") as fh:
        fh.write(text + "\n")
    os.replace(args.out + ".tmp", args.out)
