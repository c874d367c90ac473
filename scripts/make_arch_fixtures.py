#!/usr/bin/env python3
"""Tiny random models of each decoder family, made by transformers from a real config with
shrunk sizes, and their reference outputs, for Tests/ModelTests/ArchitectureTests.swift.

Run with the development venv (torch, transformers==4.57.6, safetensors, gguf):
    /opt/refvenv/bin/python scripts/make_arch_fixtures.py [family ...]

Writes Tests/ModelTests/Fixtures/arch/<family>/:
  config.json         the full transformers config (to_dict), as save_pretrained writes it
  model.safetensors   seeded random weights at the scale of a trained model, in bf16
                      (the references run on the same bf16-rounded values in fp32)
  reference.json      RoPE inverse frequencies; prompt ids; every hidden state (output_hidden_states, fp32) and the
                      logits of every position; 16 greedy tokens (full recompute per step,
                      argmax); the recovery loss of the backward tests (as
                      make_backward_fixtures.py: blocks 0..<l, final norm removed, batches of
                      -cos(mean last-token state, d)) and its last states
  grads.safetensors   every gradient of blocks < l (PyTorch autograd in float64, stored fp32)
  model.gguf          the same weights as llama.cpp's convert_hf_to_gguf.py lays them out
                      (F16 matrices, F32 vectors): per-family tensor names, Q/K rows permuted
                      for llama-arch files, gemma norms stored as 1 + w, llama3 rope factors
                      as rope_freqs.weight, phi3's fused qkv and gate_up kept fused, longrope's
                      factors as rope_factors_short/long.weight
and Tests/ModelTests/Fixtures/arch/ops.json (`ops`): RoPE scalings and GeGLU (see ops()).
"""
import inspect, json, math, os, sys
import numpy as np
import torch
import gguf
from safetensors.torch import save_file
from transformers import (Gemma2Config, Gemma2ForCausalLM, GemmaConfig, GemmaForCausalLM, LlamaConfig,
                          LlamaForCausalLM, MistralConfig, MistralForCausalLM, Phi3Config, Phi3ForCausalLM,
                          Qwen3Config, Qwen3ForCausalLM)

torch.set_num_threads(2)
ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
FIX = os.path.join(ROOT, "Tests", "ModelTests", "Fixtures", "arch")

COMMON = dict(vocab_size=300, hidden_size=32, intermediate_size=64, num_hidden_layers=3,
              num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256)

# Real configs' settings (Mistral-7B-v0.1, Llama-3.1-8B, Qwen3-0.6B, gemma-2b, gemma-2-2b,
# Phi-3-mini-4k), sizes shrunk; windows and soft-caps small enough to matter at these lengths.
FAMILIES = {
    "mistral": (MistralConfig, MistralForCausalLM, dict(head_dim=8, rms_norm_eps=1e-5, rope_theta=10000.0,
                                                         sliding_window=5, tie_word_embeddings=False)),
    "llama3": (LlamaConfig, LlamaForCausalLM, dict(head_dim=16, rms_norm_eps=1e-5, rope_theta=500000.0,
                                                    tie_word_embeddings=False, attention_bias=False, mlp_bias=False, max_position_embeddings=131072,
                                                    rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                                                  "high_freq_factor": 4.0, "original_max_position_embeddings": 8192})),
    "qwen3": (Qwen3Config, Qwen3ForCausalLM, dict(head_dim=16, rms_norm_eps=1e-6, rope_theta=1000000.0,
                                                   tie_word_embeddings=True, attention_bias=False)),
    "gemma": (GemmaConfig, GemmaForCausalLM, dict(num_key_value_heads=1, head_dim=16, rms_norm_eps=1e-6, rope_theta=10000.0,
                                                   hidden_act="gelu_pytorch_tanh", tie_word_embeddings=True)),
    "gemma2": (Gemma2Config, Gemma2ForCausalLM, dict(head_dim=16, rms_norm_eps=1e-6, rope_theta=10000.0,
                                                      hidden_activation="gelu_pytorch_tanh", tie_word_embeddings=True,
                                                      query_pre_attn_scalar=24, sliding_window=4,
                                                      attn_logit_softcapping=2.0, final_logit_softcapping=5.0)),
    "phi3": (Phi3Config, Phi3ForCausalLM, dict(rms_norm_eps=1e-5, rope_theta=10000.0, sliding_window=6,
                                                tie_word_embeddings=False, pad_token_id=0, bos_token_id=1, eos_token_id=2)),
    # Phi-3.5-mini: longrope (short factors up to 4096 tokens, the attention factor of 131072 / 4096).
    "phi3-longrope": (Phi3Config, Phi3ForCausalLM, dict(rms_norm_eps=1e-5, rope_theta=10000.0, sliding_window=6,
                                                         tie_word_embeddings=False, pad_token_id=0, bos_token_id=1, eos_token_id=2,
                                                         max_position_embeddings=131072, original_max_position_embeddings=4096,
                                                         rope_scaling={"type": "longrope", "short_factor": [1.0, 1.05, 1.6, 2.9],
                                                                       "long_factor": [1.1, 1.9, 6.5, 24.0]})),
}
GGUF_ARCH = {"mistral": "llama", "llama3": "llama", "qwen3": "qwen3", "gemma": "gemma", "gemma2": "gemma2", "phi3": "phi3",
             "phi3-longrope": "phi3"}


def init_weights(model):
    # Weights at the scale of a trained model: unit embeddings, 1/sqrt(fan_in) matrices,
    # norms around 1 (gemma's around 0: it multiplies by 1 + w), rounded to bf16.
    gemma = model.config.model_type.startswith("gemma")
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "embed" in name: p.normal_(0, 1)
            elif "norm" in name: p.copy_((0 if gemma else 1) + 0.2 * torch.randn_like(p))
            elif name.endswith("bias"): p.normal_(0, 0.3)
            else: p.normal_(0, p.shape[1] ** -0.5)
            p.copy_(p.bfloat16().float())


def truncate(model, l):
    model.model.layers = model.model.layers[:l]
    model.model.norm = torch.nn.Identity()
    return model


def write_gguf(path, family, model):
    c = model.config
    arch = GGUF_ARCH[family]
    w = gguf.GGUFWriter(path, arch)
    hd = c.head_dim if getattr(c, "head_dim", None) else c.hidden_size // c.num_attention_heads
    w.add_context_length(c.max_position_embeddings)
    w.add_embedding_length(c.hidden_size)
    w.add_block_count(c.num_hidden_layers)
    w.add_feed_forward_length(c.intermediate_size)
    w.add_head_count(c.num_attention_heads)
    w.add_head_count_kv(c.num_key_value_heads)
    w.add_layer_norm_rms_eps(c.rms_norm_eps)
    w.add_rope_freq_base(c.rope_theta)
    w.add_key_length(hd)
    w.add_value_length(hd)
    w.add_rope_dimension_count(hd)
    if family == "gemma2":
        w.add_sliding_window(c.sliding_window)
        w.add_attn_logit_softcapping(c.attn_logit_softcapping)
        w.add_final_logit_softcapping(c.final_logit_softcapping)
    if arch == "phi3" and c.sliding_window:
        w.add_sliding_window(c.sliding_window)
    if family == "phi3-longrope":   # Phi3MiniModel.set_gguf_parameters and generate_extra_tensors
        orig = c.original_max_position_embeddings
        scale = c.max_position_embeddings / orig
        w.add_rope_scaling_orig_ctx_len(orig)
        w.add_rope_scaling_attn_factors(math.sqrt(1 + math.log(scale) / math.log(orig)) if scale > 1.0 else 1.0)
        w.add_tensor("rope_factors_long.weight", np.array(c.rope_scaling["long_factor"], dtype=np.float32))
        w.add_tensor("rope_factors_short.weight", np.array(c.rope_scaling["short_factor"], dtype=np.float32))

    def permute(t, n_head):   # convert_hf_to_gguf.py LlamaModel.permute
        return t.reshape(n_head, 2, t.shape[0] // n_head // 2, *t.shape[1:]).swapaxes(1, 2).reshape(t.shape)

    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH[arch.upper()], c.num_hidden_layers)
    sd = {k: v.detach().float() for k, v in model.state_dict().items()}
    if family == "llama3":   # LlamaModel.generate_extra_tensors
        rs = c.rope_scaling
        base, dim = c.rope_theta, hd
        freqs = 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.float32) / dim))
        factor, lo, hi, old = rs["factor"], rs["low_freq_factor"], rs["high_freq_factor"], rs["original_max_position_embeddings"]
        low_wl, high_wl = old / lo, old / hi
        factors = []
        for f in freqs:
            wl = 2 * math.pi / f
            if wl < high_wl: factors.append(1)
            elif wl > low_wl: factors.append(factor)
            else:
                smooth = (old / wl - lo) / (hi - lo)
                factors.append(1 / ((1 - smooth) / factor + smooth))
        w.add_tensor("rope_freqs.weight", np.array(factors, dtype=np.float32))
    for k, t in sd.items():
        if k == "lm_head.weight" and c.tie_word_embeddings: continue
        if arch == "llama" and k.endswith("q_proj.weight"): t = permute(t, c.num_attention_heads)
        if arch == "llama" and k.endswith("k_proj.weight"): t = permute(t, c.num_key_value_heads)
        if arch.startswith("gemma") and k.endswith("norm.weight"): t = t + 1
        base, suffix = k.rsplit(".", 1)
        g = names.get_name(base)
        assert g is not None, k
        a = t.numpy()
        w.add_tensor(f"{g}.{suffix}", a.astype(np.float16) if a.ndim == 2 else a.astype(np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def make(family, seed):
    cfg_cls, model_cls, kw = FAMILIES[family]
    cfg = cfg_cls(**{**COMMON, **kw})
    cfg._attn_implementation = "eager"
    torch.manual_seed(1000 + seed)
    model = model_cls(cfg).float().eval()
    init_weights(model)
    out = os.path.join(FIX, family)
    os.makedirs(out, exist_ok=True)
    tensors = {k: v.detach().bfloat16().contiguous() for k, v in model.state_dict().items()
               if not (k == "lm_head.weight" and cfg.tie_word_embeddings)}
    save_file(tensors, os.path.join(out, "model.safetensors"), metadata={"format": "pt"})
    cfg.architectures = [model_cls.__name__]
    # The family's own settings (its config class's arguments) plus whatever differs from the
    # defaults: what a real config.json holds, without the generic generation fields.
    full = cfg.to_dict()
    cfg_json = {k: full[k] for k in inspect.signature(cfg_cls.__init__).parameters if k in full}
    cfg_json.update(cfg.to_diff_dict())
    for k in ("transformers_version", "_attn_implementation_autoset"): cfg_json.pop(k, None)
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(cfg_json, f, indent=2, sort_keys=True)
    write_gguf(os.path.join(out, "model.gguf"), family, model)

    inv_freq = model.model.rotary_emb.inv_freq.tolist()
    g = torch.Generator().manual_seed(77 + seed)
    prompt = torch.randint(3, cfg.vocab_size, (12,), generator=g).tolist()
    with torch.no_grad():
        o = model(input_ids=torch.tensor([prompt]), output_hidden_states=True)
        hidden = [h[0].tolist() for h in o.hidden_states]
        logits = o.logits[0].tolist()
        ids = list(prompt)
        for _ in range(16):
            ids.append(int(model(input_ids=torch.tensor([ids])).logits[0, -1].argmax()))
    greedy = ids[len(prompt):]

    lengths = [7, 12, 1, 9, 5]
    seqs = [torch.randint(0, cfg.vocab_size, (t,), generator=g).tolist() for t in lengths]
    d_o = torch.randn(cfg.hidden_size, generator=g).double()
    l, batch_size = 2, 3
    truncate(model, l).double()
    states = torch.stack([model.model(input_ids=torch.tensor([s])).last_hidden_state[0, -1] for s in seqs])
    loss = 0
    for b in range(0, len(states), batch_size):
        loss = loss - torch.nn.functional.cosine_similarity(states[b:b + batch_size].mean(0), d_o, dim=0)
    loss.backward()
    grads = {f"model.layers.{i}.{name}": p.grad.detach().float().contiguous()
             for i in range(l) for name, p in model.model.layers[i].named_parameters()}
    save_file(grads, os.path.join(out, "grads.safetensors"))
    ref = {"inv_freq": inv_freq, "prompt": prompt, "hidden_states": hidden, "logits": logits, "greedy": greedy,
           "blocks": l, "batch_size": batch_size, "sequences": seqs, "target": d_o.tolist(),
           "loss": loss.item(), "last_states": states.detach().tolist()}
    with open(os.path.join(out, "reference.json"), "w") as f:
        json.dump(ref, f)
    sizes = {n: os.path.getsize(os.path.join(out, n)) for n in sorted(os.listdir(out))}
    print(family, "loss", loss.item(), "greedy", greedy, sizes, file=sys.stderr)


def ops():
    """arch/ops.json: RoPE inverse frequencies of transformers for linear and llama3 scalings
    (head_dim 32, a small original context so that every llama3 band is hit), and GeGLU
    (exact and tanh GELU) outputs and autograd gradients on random inputs."""
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS
    rope = []
    for rs in [{"rope_type": "linear", "factor": 4.0},
               {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 8192},
               {"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 2.0, "high_freq_factor": 6.0, "original_max_position_embeddings": 100}]:
        cfg = LlamaConfig(hidden_size=64, num_attention_heads=2, head_dim=32, rope_theta=500000.0, rope_scaling=rs,
                          max_position_embeddings=131072)
        inv, _ = ROPE_INIT_FUNCTIONS[rs["rope_type"]](cfg, "cpu")
        rope.append({"rope_scaling": rs, "head_dim": 32, "rope_theta": 500000.0, "inv_freq": inv.tolist()})
    g = torch.Generator().manual_seed(5)
    gate = (torch.randn(64, generator=g) * 2).requires_grad_()
    up = torch.randn(64, generator=g).requires_grad_()
    dh = torch.randn(64, generator=g)
    geglu = {"gate": gate.tolist(), "up": up.tolist(), "dh": dh.tolist()}
    for name, approx in [("gelu", "none"), ("gelu_pytorch_tanh", "tanh")]:
        gate.grad = up.grad = None
        h = torch.nn.functional.gelu(gate, approximate=approx) * up
        h.backward(dh)
        geglu[name] = {"h": h.tolist(), "dgate": gate.grad.tolist(), "dup": up.grad.tolist()}
    with open(os.path.join(FIX, "ops.json"), "w") as f:
        json.dump({"rope": rope, "geglu": geglu}, f)


if __name__ == "__main__":
    todo = sys.argv[1:] or list(FAMILIES) + ["ops"]
    for i, fam in enumerate(FAMILIES):
        if fam in todo: make(fam, i)
    if "ops" in todo: ops()
