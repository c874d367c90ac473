#!/usr/bin/env python3
"""Development check (not run by CI): files written by `realign apply-patch` load in
transformers and gguf-py and give the logits of the fine-tuned model with the patch
applied in memory.

  1. Loads SmolLM2 (GGUF) in transformers, writes a patch file by hand in the documented
     layout (I64 `<name>/indices`, F32 `<name>/values`, metadata format/version/shapes):
     ~1500 random indices in each of a permuted Q, a K, an MLP matrix, a norm and the
     embedding; values = the weights negated (the MLP's scaled by 1.0001 instead).
  2. GGUF → GGUF: `realign apply-patch` (F32, and --dtype f16/q8_0/q4_k: touched tensors rounded
     by gguf-py's quantize, or for Q4_K by llama.cpp's quantize_row_q4_K_ref built from source by
     scripts/make_q4k_fixtures.sh --lib), then gguf-py's GGUFReader reads the output (types,
     shapes, metadata), transformers loads it (gguf_file=) and its logits equal those of the
     original model patched in torch; Realign's own top logits (`realign probe`) agree.
  3. HF folder → HF folder (F32 and BF16, sharded, made by save_pretrained): the same.

Run from the repository root after a release build:
  /opt/refvenv/bin/python scripts/check_apply_patch.py [workdir]
"""
import ctypes, json, os, subprocess, sys, tempfile
import numpy as np
import torch
from gguf import GGUFReader, GGMLQuantizationType
from gguf.quants import quantize, dequantize
from safetensors.numpy import save_file
from transformers import AutoModelForCausalLM, AutoTokenizer

REALIGN = os.path.abspath(".build/release/realign")
GGUF = os.path.expanduser(os.environ.get("REALIGN_CACHE", "~/.cache/realign") + "/models/smollm2-135m-instruct-q4_1.gguf")
PATCHED = ["model.layers.0.self_attn.q_proj.weight", "model.layers.3.self_attn.k_proj.weight",
           "model.layers.5.mlp.down_proj.weight", "model.layers.7.input_layernorm.weight", "model.embed_tokens.weight"]
PROMPT = "How do I bake bread at home?"
torch.set_grad_enabled(False)

def realign(*args):
    r = subprocess.run([REALIGN, *args], capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"realign {' '.join(args)} failed:\n{r.stderr}")
    return r.stdout

def make_patch(model, path, seed=1):
    sd = model.state_dict()
    rng = np.random.default_rng(seed)
    tensors, shapes, patch = {}, {}, {}
    for name in PATCHED:
        w = sd[name].float().numpy().reshape(-1)
        idx = np.unique(rng.integers(0, w.size, 1500)).astype(np.int64)
        vals = (w[idx] * np.float32(1.0001) if "down_proj" in name else -w[idx]).astype(np.float32)
        tensors[name + "/indices"], tensors[name + "/values"] = idx, vals
        shapes[name] = list(sd[name].shape)
        patch[name] = (idx, vals)
    save_file(tensors, path, metadata={"format": "realign-patch", "version": "1", "shapes": json.dumps(shapes)})
    return patch

def patch_in_memory(model, patch):
    params = dict(model.named_parameters())
    for name, (idx, vals) in patch.items():
        p = params[name]
        p.view(-1)[torch.from_numpy(idx)] = torch.from_numpy(vals).to(p.dtype)

def logits(model, ids):
    return model(torch.tensor([ids])).logits[0].float()

def q4k_quantizer():
    """llama.cpp's own quantize_row_q4_K_ref (gguf-py has no Q4_K quantiser), built as a shared
    library by scripts/make_q4k_fixtures.sh --lib (from $LLAMA_CPP, or the pinned commit)."""
    lib = os.path.join(tempfile.mkdtemp(prefix="q4k-"), "libq4k_reference.so")
    subprocess.run(["scripts/make_q4k_fixtures.sh", "--lib", lib] + ([os.environ["LLAMA_CPP"]] if "LLAMA_CPP" in os.environ else []), check=True)
    q = ctypes.CDLL(lib).quantize_row_q4_K_ref
    q.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64]
    def quantize_q4k(w):   # [rows, n] float32, n a multiple of 256 → [rows, n / 256 · 144] bytes
        x = np.ascontiguousarray(w, dtype=np.float32)
        out = np.zeros((x.shape[0], x.shape[1] // 256 * 144), dtype=np.uint8)
        q(x.ctypes.data, out.ctypes.data, x.size)
        return out
    return quantize_q4k

def compare(label, got_model, want_model, ids, out_path, fp32_model=None):
    """transformers on the output vs on F + patch in memory (exact), and Realign's top-10 on
    the output vs transformers computing in float32 on the output's weights."""
    a, b = logits(got_model, ids), logits(want_model, ids)
    exact = torch.equal(a, b)
    rel = ((a - b).abs().max() / b.abs().max()).item()
    probe = json.loads(realign("probe", out_path, "--prompt", PROMPT, "--raw", "--top", "10", "--json"))
    assert probe["prompt_ids"] == ids, (probe["prompt_ids"], ids)
    top = probe["top_logits"]
    want_top = torch.topk(logits(fp32_model or got_model, ids)[-1], 10)
    same_ids = [int(t[0]) for t in top] == want_top.indices.tolist()
    top_err = max(abs(t[1] - v) / max(abs(v), 1e-3) for t, v in zip(top, want_top.values.tolist()))
    print(f"{label}: transformers(output) vs transformers(F + patch in memory): exact={exact} max rel diff {rel:.2e}; "
          f"Realign top-10 ids same={same_ids}, max rel diff {top_err:.2e}")
    return exact

def main():
    work = sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp(prefix="check-apply-")
    os.makedirs(work, exist_ok=True)
    d, name = os.path.split(GGUF)
    tok = AutoTokenizer.from_pretrained(d, gguf_file=name)
    ids = tok(PROMPT, add_special_tokens=False)["input_ids"]   # realign probe --raw adds none
    base = AutoModelForCausalLM.from_pretrained(d, gguf_file=name, dtype=torch.float32)
    patch_path = os.path.join(work, "patch.safetensors")
    patch = make_patch(base, patch_path)
    ok = True

    # GGUF → GGUF
    out = os.path.join(work, "recovered.gguf")
    if os.path.exists(out): os.remove(out)
    print(realign("apply-patch", GGUF, patch_path, "--out", out).strip())
    r, f = GGUFReader(out), GGUFReader(GGUF)
    types = {t.name: t.tensor_type.name for t in r.tensors}
    orig = {t.name: (t.tensor_type.name, bytes(t.data.tobytes())) for t in f.tensors}
    changed = [t.name for t in r.tensors if (t.tensor_type.name, bytes(t.data.tobytes())) != orig[t.name]]
    print(f"gguf-py reads {out}: {len(r.tensors)} tensors, {len(r.fields)} fields; changed tensors {sorted(changed)} now {sorted({types[c] for c in changed})}; "
          f"realign.* = { {k: (v.contents() if hasattr(v, 'contents') else None) for k, v in r.fields.items() if k.startswith('realign.')} }")
    ok &= len(changed) == len(PATCHED)
    got = AutoModelForCausalLM.from_pretrained(work, gguf_file="recovered.gguf", dtype=torch.float32)
    want = AutoModelForCausalLM.from_pretrained(d, gguf_file=name, dtype=torch.float32)
    patch_in_memory(want, patch)
    ok &= compare("GGUF", got, want, ids, out)

    # GGUF → GGUF with lossy types: the patched tensors (not the F32 norm) rounded by the
    # reference quantisers: gguf-py for F16 and Q8_0, llama.cpp's for Q4_K. Rows that are not
    # whole Q4_K blocks (SmolLM2's 576) fall back to Q8_0, as Realign and llama.cpp do.
    quantize_q4k = q4k_quantizer()
    for dtype in ("f16", "q8_0", "q4_k"):
        out = os.path.join(work, f"recovered-{dtype}.gguf")
        if os.path.exists(out): os.remove(out)
        print(realign("apply-patch", GGUF, patch_path, "--out", out, "--dtype", dtype).strip())
        types = {t.name: t.tensor_type.name for t in GGUFReader(out).tensors}
        print(f"  patched tensor types: {sorted({types[t.name] for t in GGUFReader(out).tensors if types[t.name] != orig[t.name][0]})}")
        got = AutoModelForCausalLM.from_pretrained(work, gguf_file=os.path.basename(out), dtype=torch.float32)
        want = AutoModelForCausalLM.from_pretrained(d, gguf_file=name, dtype=torch.float32)
        patch_in_memory(want, patch)
        params = dict(want.named_parameters())
        for n in PATCHED:
            if "layernorm" in n: continue   # F32 in the file: stays F32
            w = params[n].detach().numpy()
            if dtype == "q4_k" and w.shape[-1] % 256 == 0:
                r = dequantize(quantize_q4k(w), GGMLQuantizationType.Q4_K)
            else:
                qtype = GGMLQuantizationType.F16 if dtype == "f16" else GGMLQuantizationType.Q8_0
                r = dequantize(quantize(w, qtype), qtype)
            params[n].data = torch.from_numpy(r.reshape(w.shape).copy())
        ok &= compare(f"GGUF {dtype}", got, want, ids, out)

    # HF folder → HF folder, F32 and BF16, sharded
    for dtype in (torch.float32, torch.bfloat16):
        tag = str(dtype).split(".")[-1]
        hf = os.path.join(work, f"hf-{tag}")
        m = AutoModelForCausalLM.from_pretrained(d, gguf_file=name, dtype=dtype)
        m.save_pretrained(hf, max_shard_size="100MB")
        tok.save_pretrained(hf)
        out = os.path.join(work, f"hf-{tag}-recovered")
        print(realign("apply-patch", hf, patch_path, "--out", out, "--overwrite").strip())
        got = AutoModelForCausalLM.from_pretrained(out, dtype=dtype)
        want = AutoModelForCausalLM.from_pretrained(hf, dtype=dtype)
        patch_in_memory(want, patch)
        print(f"  files: {sorted(os.listdir(out))}")
        ok &= compare(f"HF {tag}", got, want, ids, out, AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32))
    print("ALL EXACT" if ok else "MISMATCH")

if __name__ == "__main__":
    main()
