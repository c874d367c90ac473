import Foundation
import Testing
@testable import Formats
import TestSupport

// Model configs with zero, negative or absurd sizes: one error naming the file and key.

@Suite struct ConfigValueTests {
    static let base: [GGUFMetadataEntry] = [
        .init("general.architecture", .string("llama")),
        .init("llama.context_length", .uint(64)),
        .init("llama.embedding_length", .uint(8)),
        .init("llama.block_count", .uint(1)),
        .init("llama.feed_forward_length", .uint(16)),
        .init("llama.attention.head_count", .uint(2)),
        .init("llama.attention.head_count_kv", .uint(1)),
        .init("llama.attention.layer_norm_rms_epsilon", .float(1e-5)),
        .init("llama.rope.freq_base", .float(10000)),
    ]

    /// A tiny llama GGUF with `changes` applied to the base metadata (nil value: removed).
    static func gguf(_ dir: String, _ name: String, _ changes: [(String, GGUFValue?, GGUFValueType?)]) throws -> String {
        var meta = base
        for (k, v, t) in changes {
            meta.removeAll { $0.key == k }
            if let v { meta.append(GGUFMetadataEntry(k, v, type: t)) }
        }
        let p = dir + "/" + name + ".gguf"
        try GGUFWriter.write(metadata: meta, tensors: [.floats("token_embd.weight", shape: [8, 16], as: .f32, [Float](repeating: 0.5, count: 128))], to: p)
        return p
    }

    @Test func ggufHyperparametersAreChecked() throws {
        let dir = makeTempDir("gguf-config")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let good = try GGUFFile(path: try Self.gguf(dir, "good", [])).modelConfig()
        #expect(good.maxPositions == 64 && good.headDim == 4 && good.numKVHeads == 1 && good.vocabSize == 16)
        let cases: [(String, GGUFValue?, GGUFValueType?, String)] = [
            ("llama.context_length", .uint(0), .uint32, "bad model config: llama.context_length is 0 (allowed: 1...16777216)"),
            ("llama.context_length", .int(-1), .int32, "bad model config: llama.context_length is -1 (allowed: 1...16777216)"),
            ("llama.context_length", .uint(1 << 25), .uint64, "bad model config: llama.context_length is 33554432 (allowed: 1...16777216)"),
            ("llama.context_length", .uint(.max), .uint64, "metadata 'llama.context_length' is 18446744073709551615, out of range"),
            ("llama.context_length", .string("long"), nil, "metadata 'llama.context_length' is not an integer"),
            ("llama.attention.head_count", .uint(0), nil, "bad model config: llama.attention.head_count is 0 (allowed: 1...131072)"),
            ("llama.attention.head_count", .uint(3), nil,
             "llama.embedding_length 8 is not a multiple of llama.attention.head_count 3, and no llama.attention.key_length is given"),
            ("llama.attention.head_count_kv", .uint(3), nil, "bad model config: llama.attention.head_count_kv is 3 (allowed: 1...2)"),
            ("llama.attention.head_count_kv", .int(-2), nil, "bad model config: llama.attention.head_count_kv is -2 (allowed: 1...2)"),
            ("llama.attention.head_count_kv", .array([.uint(1)]), nil, "metadata 'llama.attention.head_count_kv' is not an integer"),
            ("llama.attention.key_length", .uint(3), nil, "bad model config: llama.attention.key_length 3 is odd (RoPE rotates pairs)"),
            ("llama.attention.key_length", .uint(1 << 20), nil, "bad model config: llama.attention.key_length is 1048576 (allowed: 2...1024)"),
            ("llama.block_count", .uint(0), nil, "bad model config: llama.block_count is 0 (allowed: 1...1000)"),
            ("llama.block_count", .uint(1 << 40), .uint64, "bad model config: llama.block_count is 1099511627776 (allowed: 1...1000)"),
            ("llama.feed_forward_length", .int(-5), nil, "bad model config: llama.feed_forward_length is -5 (allowed: 1...524288)"),
            ("llama.embedding_length", .uint(0), nil, "bad model config: llama.embedding_length is 0 (allowed: 1...131072)"),
            ("llama.attention.layer_norm_rms_epsilon", .float(0), nil,
             "bad model config: llama.attention.layer_norm_rms_epsilon is 0.0 (must be finite and > 0 and < 1.0)"),
            ("llama.attention.layer_norm_rms_epsilon", .float(.nan), nil,
             "bad model config: llama.attention.layer_norm_rms_epsilon is nan (must be finite and > 0 and < 1.0)"),
            ("llama.rope.freq_base", .float(0), nil, "bad model config: llama.rope.freq_base is 0.0 (must be finite and > 0)"),
            ("llama.rope.freq_base", .float(-1), nil, "bad model config: llama.rope.freq_base is -1.0 (must be finite and > 0)"),
            ("llama.rope.freq_base", .float(1e300), .float64, "bad model config: llama.rope.freq_base is inf (must be finite and > 0)"),
            ("llama.rope.freq_base", .string("x"), nil, "metadata 'llama.rope.freq_base' is not a number"),
        ]
        for (i, (key, value, type, problem)) in cases.enumerated() {
            let p = try Self.gguf(dir, "case\(i)", [(key, value, type)])
            #expect(throws: FormatError(p, problem), "\(key) = \(String(describing: value))") { _ = try GGUFFile(path: p).modelConfig() }
        }
        // Heads × head dim beyond any layer's width (each alone within bounds).
        let wide = try Self.gguf(dir, "wide", [("llama.attention.head_count", .uint(1 << 17), nil), ("llama.attention.key_length", .uint(2), nil)])
        #expect(throws: FormatError(wide, "bad model config: llama.attention.head_count × llama.attention.key_length is 131072 × 2 = 262144 (allowed: up to 131072)")) {
            _ = try GGUFFile(path: wide).modelConfig()
        }
    }

    private func hf(_ text: String) throws -> ModelConfig { try ModelConfig(hfConfig: try JSONValue.parse(text), source: "cfg.json") }

    @Test func hfConfigHyperparametersAreChecked() throws {
        let base = #""vocab_size":100,"hidden_size":64,"intermediate_size":128,"num_hidden_layers":2,"num_attention_heads":4"#
        #expect(try hf("{\"model_type\":\"llama\",\(base)}").maxPositions == 2048)
        let cases: [(String, String)] = [
            (#""max_position_embeddings":0"#, "bad model config: max_position_embeddings is 0 (allowed: 1...16777216)"),
            (#""max_position_embeddings":-4096"#, "bad model config: max_position_embeddings is -4096 (allowed: 1...16777216)"),
            (#""max_position_embeddings":1e12"#, "bad model config: max_position_embeddings is 1000000000000 (allowed: 1...16777216)"),
            (#""num_key_value_heads":0"#, "bad model config: num_key_value_heads is 0 (allowed: 1...4)"),
            (#""head_dim":0"#, "bad model config: head_dim is 0 (allowed: 2...1024)"),
            (#""rope_theta":0"#, "bad model config: rope_theta is 0.0 (must be finite and > 0)"),
            (#""rope_theta":1e39"#, "bad model config: rope_theta is inf (must be finite and > 0)"),
            (#""rms_norm_eps":-1e-6"#, "bad model config: rms_norm_eps is -1e-06 (must be finite and > 0 and < 1.0)"),
            (#""sliding_window":0"#, "bad model config: sliding_window is 0 (allowed: 1...16777216)"),
        ]
        for (extra, problem) in cases {
            #expect(throws: FormatError("cfg.json", problem), "\(extra)") { _ = try hf("{\"model_type\":\"mistral\",\(base),\(extra)}") }
        }
        // An original length beyond Int (it was converted with Int(_:), which traps).
        do {
            _ = try hf(#"{"model_type":"llama",\#(base),"rope_scaling":{"rope_type":"llama3","factor":8,"low_freq_factor":1,"high_freq_factor":4,"original_max_position_embeddings":1e300}}"#)
            Issue.record("accepted an original length of 1e300")
        } catch let e as FormatError {
            #expect(e.path == "cfg.json" && e.problem.hasSuffix("original_max_position_embeddings missing or not an integer"), "\(e)")
        }
        #expect(throws: FormatError("cfg.json", "config.json: hidden_size 64 is not a multiple of num_attention_heads 3, and no head_dim is given")) {
            _ = try hf(#"{"model_type":"llama","vocab_size":100,"hidden_size":64,"intermediate_size":128,"num_hidden_layers":2,"num_attention_heads":3}"#)
        }
        // Sizes are checked before they are used: a layer count of 10^15 must not build a
        // list of sliding layers first.
        #expect(throws: FormatError("cfg.json", "bad model config: num_hidden_layers is 1000000000000000 (allowed: 1...1000)")) {
            _ = try hf(#"{"model_type":"gemma2","vocab_size":100,"hidden_size":64,"intermediate_size":128,"num_hidden_layers":1000000000000000,"num_attention_heads":4,"head_dim":16,"sliding_window":8}"#)
        }
    }
}
