#!/usr/bin/env python3
"""Writes a random model with the shapes of a real one, as an HF folder of BF16 safetensors
shards (with model.safetensors.index.json, as HF shards), plus a small random PEFT LoRA
adapter for it, to measure `realign recover` at real sizes without downloading weights:

    realign recover --aligned OUT/model --finetuned OUT/model --adapter OUT/lora ...

(F = A + adapter: no second copy of the weights on disk.)

Weights: N(0, 0.02²), norms 1, Qwen2 q/k/v biases N(0, 0.02²); LoRA r 8, alpha 16 on all
seven projections of every block, A ~ N(0, 0.02²), B ~ N(0, 0.01²) (nonzero, so F ≠ A).
Tokenizer: the 3,260-token Qwen2-style BPE of Tests/TokenizerTests/Fixtures/qwen2-mini (ids
fit every vocabulary here) with a ChatML chat template and Qwen's default system prompt.
Each tensor is generated and written on its own, so memory stays at one tensor.

    python3 scripts/make_shaped_model.py OUT [--shape llama2-7b|qwen2.5-0.5b|qwen2.5-1.5b|qwen2.5-3b]
           [--shards N] [--seed 0]      (needs torch; the reference env has it)
"""
import argparse, json, os, shutil, struct
import torch

SHAPES = {
    # hidden, intermediate, layers, heads, kv heads, vocab, tied, qkv bias, rope theta, eps
    "llama2-7b": dict(arch="LlamaForCausalLM", model_type="llama", hidden=4096, inter=11008, layers=32, heads=32, kv=32,
                      vocab=32000, tied=False, bias=False, theta=10000.0, eps=1e-5, max_pos=4096),
    "qwen2.5-0.5b": dict(arch="Qwen2ForCausalLM", model_type="qwen2", hidden=896, inter=4864, layers=24, heads=14, kv=2,
                         vocab=151936, tied=True, bias=True, theta=1000000.0, eps=1e-6, max_pos=32768),
    "qwen2.5-1.5b": dict(arch="Qwen2ForCausalLM", model_type="qwen2", hidden=1536, inter=8960, layers=28, heads=12, kv=2,
                         vocab=151936, tied=True, bias=True, theta=1000000.0, eps=1e-6, max_pos=32768),
    "qwen2.5-3b": dict(arch="Qwen2ForCausalLM", model_type="qwen2", hidden=2048, inter=11008, layers=36, heads=16, kv=2,
                       vocab=151936, tied=True, bias=True, theta=1000000.0, eps=1e-6, max_pos=32768),
}
CHATML = ("{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
          "{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}{% endif %}"
          "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}{% endfor %}"
          "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")
PROJ = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def tensors(s):
    """(name, shape, kind) in HF order; kind: 'w' random, 'one' norm, 'b' bias."""
    H, I, d = s["hidden"], s["inter"], s["hidden"] // s["heads"]
    Q, K = s["heads"] * d, s["kv"] * d
    out = [("model.embed_tokens.weight", [s["vocab"], H], "w")]
    for l in range(s["layers"]):
        p = f"model.layers.{l}."
        out += [(p + "input_layernorm.weight", [H], "one"), (p + "self_attn.q_proj.weight", [Q, H], "w")]
        if s["bias"]: out.append((p + "self_attn.q_proj.bias", [Q], "b"))
        out.append((p + "self_attn.k_proj.weight", [K, H], "w"))
        if s["bias"]: out.append((p + "self_attn.k_proj.bias", [K], "b"))
        out.append((p + "self_attn.v_proj.weight", [K, H], "w"))
        if s["bias"]: out.append((p + "self_attn.v_proj.bias", [K], "b"))
        out += [(p + "self_attn.o_proj.weight", [H, Q], "w"), (p + "post_attention_layernorm.weight", [H], "one"),
                (p + "mlp.gate_proj.weight", [I, H], "w"), (p + "mlp.up_proj.weight", [I, H], "w"),
                (p + "mlp.down_proj.weight", [H, I], "w")]
    out.append(("model.norm.weight", [H], "one"))
    if not s["tied"]: out.append(("lm_head.weight", [s["vocab"], H], "w"))
    return out


def numel(shape):
    n = 1
    for x in shape: n *= x
    return n


def write_safetensors(path, entries, dtype, make):
    """entries: [(name, shape)]; make(name, shape) -> tensor of `dtype`; written one by one."""
    size = 2 if dtype == torch.bfloat16 else 4
    tag = "BF16" if dtype == torch.bfloat16 else "F32"
    header, off = {"__metadata__": {"format": "pt"}}, 0
    for name, shape in entries:
        n = numel(shape) * size
        header[name] = {"dtype": tag, "shape": shape, "data_offsets": [off, off + n]}
        off += n
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path + ".tmp", "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h)
        for name, shape in entries:
            t = make(name, shape).to(dtype).contiguous()
            f.write(t.view(torch.int16 if size == 2 else torch.int32).numpy().tobytes())
    os.replace(path + ".tmp", path)
    return off


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--shape", default="llama2-7b", choices=sorted(SHAPES))
    ap.add_argument("--shards", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    s = SHAPES[a.shape]
    model, lora = a.out + "/model", a.out + "/lora"
    os.makedirs(model, exist_ok=True); os.makedirs(lora, exist_ok=True)
    g = torch.Generator().manual_seed(a.seed)

    def make(name, shape):
        kind = kinds[name]
        if kind == "one": return torch.ones(shape)
        return torch.randn(shape, generator=g) * 0.02

    ts = tensors(s)
    kinds = {n: k for n, _, k in ts}
    total = sum(numel(sh) for _, sh, _ in ts) * 2
    shards, cur, size = [], [], 0
    for name, shape, _ in ts:   # about equal shards, in model order
        cur.append((name, shape)); size += numel(shape) * 2
        if size >= total * (len(shards) + 1) / a.shards and len(shards) < a.shards - 1:
            shards.append(cur); cur = []
    if cur: shards.append(cur)
    weight_map = {}
    for i, entries in enumerate(shards):
        fname = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
        write_safetensors(f"{model}/{fname}", entries, torch.bfloat16, make)
        for n, _ in entries: weight_map[n] = fname
        print(f"wrote {fname} ({len(entries)} tensors)", flush=True)
    json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, open(f"{model}/model.safetensors.index.json", "w"), indent=2)

    d = s["hidden"] // s["heads"]
    config = {"architectures": [s["arch"]], "model_type": s["model_type"], "hidden_size": s["hidden"],
              "intermediate_size": s["inter"], "num_hidden_layers": s["layers"], "num_attention_heads": s["heads"],
              "num_key_value_heads": s["kv"], "head_dim": d, "vocab_size": s["vocab"], "tie_word_embeddings": s["tied"],
              "rms_norm_eps": s["eps"], "rope_theta": s["theta"], "max_position_embeddings": s["max_pos"], "hidden_act": "silu",
              "torch_dtype": "bfloat16", "bos_token_id": 3256, "eos_token_id": 3258, "attention_bias": s["bias"], "rope_scaling": None}
    json.dump(config, open(f"{model}/config.json", "w"), indent=2)
    json.dump({"bos_token_id": 3256, "eos_token_id": [3258, 3256]}, open(f"{model}/generation_config.json", "w"), indent=2)
    fixtures = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Tests", "TokenizerTests", "Fixtures", "qwen2-mini")
    shutil.copy(os.path.join(fixtures, "tokenizer.json"), f"{model}/tokenizer.json")
    json.dump({"chat_template": CHATML, "eos_token": "<|im_end|>", "clean_up_tokenization_spaces": False},
              open(f"{model}/tokenizer_config.json", "w"), indent=2)

    # LoRA: r 8, alpha 16, all seven projections.
    H, I, Q, K = s["hidden"], s["inter"], s["heads"] * d, s["kv"] * d
    dims = {"q_proj": (H, Q), "k_proj": (H, K), "v_proj": (H, K), "o_proj": (Q, H), "gate_proj": (H, I), "up_proj": (H, I), "down_proj": (I, H)}
    entries, std = [], {}
    for l in range(s["layers"]):
        for m in PROJ:
            part = "self_attn" if m in PROJ[:4] else "mlp"
            base = f"base_model.model.model.layers.{l}.{part}.{m}"
            fin, fout = dims[m]
            entries += [(base + ".lora_A.weight", [8, fin]), (base + ".lora_B.weight", [fout, 8])]
            std[base + ".lora_A.weight"], std[base + ".lora_B.weight"] = 0.02, 0.01
    write_safetensors(f"{lora}/adapter_model.safetensors", entries, torch.float32,
                      lambda n, sh: torch.randn(sh, generator=g) * std[n])
    json.dump({"peft_type": "LORA", "task_type": "CAUSAL_LM", "r": 8, "lora_alpha": 16, "lora_dropout": 0.0, "bias": "none",
               "fan_in_fan_out": False, "use_rslora": False, "use_dora": False, "target_modules": PROJ,
               "base_model_name_or_path": os.path.abspath(model)}, open(f"{lora}/adapter_config.json", "w"), indent=2)
    print(f"{model} ({total / 1e9:.2f} GB), {lora}")


if __name__ == "__main__":
    main()
