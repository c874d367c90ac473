import Foundation
import Testing
@testable import Formats
import TestSupport

@Test func namesMapBothWays() {
    let pairs: [(String, String)] = [
        ("token_embd.weight", "model.embed_tokens.weight"),
        ("output_norm.weight", "model.norm.weight"),
        ("output.weight", "lm_head.weight"),
        ("blk.0.attn_norm.weight", "model.layers.0.input_layernorm.weight"),
        ("blk.3.attn_q.weight", "model.layers.3.self_attn.q_proj.weight"),
        ("blk.3.attn_q.bias", "model.layers.3.self_attn.q_proj.bias"),
        ("blk.12.attn_k.weight", "model.layers.12.self_attn.k_proj.weight"),
        ("blk.12.attn_k.bias", "model.layers.12.self_attn.k_proj.bias"),
        ("blk.7.attn_v.bias", "model.layers.7.self_attn.v_proj.bias"),
        ("blk.29.attn_output.weight", "model.layers.29.self_attn.o_proj.weight"),
        ("blk.1.ffn_norm.weight", "model.layers.1.post_attention_layernorm.weight"),
        ("blk.1.ffn_gate.weight", "model.layers.1.mlp.gate_proj.weight"),
        ("blk.1.ffn_up.weight", "model.layers.1.mlp.up_proj.weight"),
        ("blk.10.ffn_down.weight", "model.layers.10.mlp.down_proj.weight"),
    ]
    for (g, h) in pairs {
        #expect(TensorNames.hf(fromGGUF: g) == h)
        #expect(TensorNames.gguf(fromHF: h) == g)
    }
}

@Test(arguments: ["rope_freqs.weight", "blk.x.attn_q.weight", "blk.01.attn_q.weight", "blk.-1.attn_q.weight", "blk.1.attn_q",
                  "blk.1.attn_norm.scale", "blk.1.token_embd.weight", "attn_q.weight", "blk..attn_q.weight", "blk.1.self_attn.q_proj.weight",
                  "token_embd", "", "blk.1.attn_q.weight.weight"])
func unknownGGUFNames(_ name: String) { #expect(TensorNames.hf(fromGGUF: name) == nil) }

@Test(arguments: ["model.rotary_emb.inv_freq", "model.layers.1.self_attn.rotary_emb.inv_freq", "model.layers.a.mlp.up_proj.weight",
                  "model.layers.1.attn_q.weight", "model.layers.1.model.norm.weight", "model.embed_tokens", "lm_head.bias.weight",
                  "model.layers.1.embed_tokens.weight", "model.layers.007.mlp.up_proj.weight"])
func unknownHFNames(_ name: String) { #expect(TensorNames.gguf(fromHF: name) == nil) }

/// Every tensor of the real models maps to an HF name and back, the HF names are those
/// the config expects, and the shapes agree.
@Test(arguments: ["qwen", "smol"])
func realModelNamesRoundTrip(_ which: String) throws {
    let g = try GGUFFile(path: which == "qwen" ? RealModels.qwen : RealModels.smol)
    let config = try g.modelConfig()
    var hfNames: [String] = []
    for t in g.tensors {
        let h = try #require(TensorNames.hf(fromGGUF: t.name), "\(t.name)")
        #expect(TensorNames.gguf(fromHF: h) == t.name)
        #expect(TensorNames.hfShape(h, for: config) == Array(t.shape.reversed()), "\(t.name) \(t.shape)")
        hfNames.append(h)
    }
    #expect(Set(hfNames) == Set(TensorNames.hfNames(for: config)))
    #expect(hfNames.count == TensorNames.hfNames(for: config).count)
    #expect(TensorNames.hfShape("model.layers.\(config.numLayers).mlp.up_proj.weight", for: config) == nil)
    #expect(TensorNames.hfShape("model.layers.0.self_attn.o_proj.bias", for: config) == nil)
}

// MARK: - Q/K permutation

struct PermuteCase: CustomStringConvertible {
    let what: String, rows: Int, columns: Int, heads: Int
    let hf: [Float], gguf: [Float]
    var description: String { what }
    static let all: [PermuteCase] = {
        let path = fixturesDir() + "/qk_permute.json"
        guard let j = try? JSONValue.parse([UInt8](fixtureBytes(path))), let arr = j.array else { badFixture(path, "not a JSON array") }
        return arr.map { c in
            PermuteCase(what: c["what"]!.string!, rows: c["rows"]!.int!, columns: c["columns"]!.int!, heads: c["heads"]!.int!,
                        hf: c["hf"]!.array!.map { Float($0.double!) }, gguf: c["gguf"]!.array!.map { Float($0.double!) })
        }
    }()
}

@Test func permuteFixtureLoaded() { #expect(PermuteCase.all.count == 3) }

@Test(arguments: PermuteCase.all)
func permutationMatchesLlamaCppConverter(_ c: PermuteCase) throws {
    var out = [Float](repeating: .nan, count: c.hf.count)
    try permuteQKRows(c.hf, into: &out, rows: c.rows, columns: c.columns, heads: c.heads)
    #expect(out == c.gguf)
    try unpermuteQKRows(c.gguf, into: &out, rows: c.rows, columns: c.columns, heads: c.heads)
    #expect(out == c.hf)
    var inPlace = c.hf
    try permuteQKRows(&inPlace, rows: c.rows, columns: c.columns, heads: c.heads)
    #expect(inPlace == c.gguf)
    try unpermuteQKRows(&inPlace, rows: c.rows, columns: c.columns, heads: c.heads)
    #expect(inPlace == c.hf)
}

@Test(arguments: [(1, 2, 1), (2, 4, 3), (9, 64, 7), (3, 128, 1), (14, 64, 2)])
func permutationsAreInverses(_ heads: Int, _ headDim: Int, _ columns: Int) throws {
    let rows = heads * headDim
    let x = (0..<rows * columns).map { Float($0) }
    var p = [Float](repeating: 0, count: x.count), back = p
    try permuteQKRows(x, into: &p, rows: rows, columns: columns, heads: heads)
    try unpermuteQKRows(p, into: &back, rows: rows, columns: columns, heads: heads)
    #expect(back == x)
    if headDim > 2 { #expect(p != x) }
    try unpermuteQKRows(x, into: &p, rows: rows, columns: columns, heads: heads)
    try permuteQKRows(p, into: &back, rows: rows, columns: columns, heads: heads)
    #expect(back == x)
}

@Test func permutationRefusesBadShapes() {
    var x = [Float](repeating: 0, count: 30)
    #expect(throws: FormatError.self) { try permuteQKRows(&x, rows: 6, columns: 5, heads: 4) }   // 6 rows, 4 heads
    #expect(throws: FormatError.self) { try unpermuteQKRows(&x, rows: 6, columns: 5, heads: 2) } // head dim 3 is odd
    #expect(throws: FormatError.self) { try unpermuteQKRows(&x, rows: 6, columns: 5, heads: 0) }
}

/// Families whose GGUF names differ (gguf-py tensor_mapping.py): gemma2's four norms, phi3's
/// fused matrices, qwen3's q/k norms; llama's names are unchanged by them.
@Test func familyNamesMapBothWays() {
    let cases: [(String, String, String)] = [
        ("gemma2", "blk.2.attn_norm.weight", "model.layers.2.input_layernorm.weight"),
        ("gemma2", "blk.2.post_attention_norm.weight", "model.layers.2.post_attention_layernorm.weight"),
        ("gemma2", "blk.2.ffn_norm.weight", "model.layers.2.pre_feedforward_layernorm.weight"),
        ("gemma2", "blk.2.post_ffw_norm.weight", "model.layers.2.post_feedforward_layernorm.weight"),
        ("gemma2", "blk.2.ffn_up.weight", "model.layers.2.mlp.up_proj.weight"),
        ("phi3", "blk.0.attn_qkv.weight", "model.layers.0.self_attn.qkv_proj.weight"),
        ("phi3", "blk.0.ffn_up.weight", "model.layers.0.mlp.gate_up_proj.weight"),
        ("phi3", "blk.0.ffn_norm.weight", "model.layers.0.post_attention_layernorm.weight"),
        ("qwen3", "blk.5.attn_q_norm.weight", "model.layers.5.self_attn.q_norm.weight"),
        ("qwen3", "blk.5.attn_k_norm.weight", "model.layers.5.self_attn.k_norm.weight"),
        ("llama", "blk.1.ffn_up.weight", "model.layers.1.mlp.up_proj.weight"),
        ("llama", "blk.1.ffn_norm.weight", "model.layers.1.post_attention_layernorm.weight"),
    ]
    for (arch, g, h) in cases {
        #expect(TensorNames.hf(fromGGUF: g, architecture: arch) == h, "\(arch) \(g)")
        #expect(TensorNames.gguf(fromHF: h, architecture: arch) == g, "\(arch) \(h)")
    }
    #expect(TensorNames.gguf(fromHF: "model.layers.0.mlp.up_proj.weight", architecture: "phi3") == nil)
    #expect(TensorNames.gguf(fromHF: "model.layers.0.post_feedforward_layernorm.weight", architecture: "llama") == nil)
}
