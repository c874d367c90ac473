import Foundation
import Testing
import Formats
import Model
import Tensor
import TestSupport

/// PEFT LoRA adapters on the tiny random models. Reference made by
/// scripts/make_lora_fixtures.py with peft 0.21.2: `merge_and_unload()` weights (sampled
/// elements and float64 sums of merged − base per tensor) and the merged model's logits.
struct LoRAReference: Decodable {
    struct Weight: Decodable {
        let delta_sum: Double
        let delta_sum_squares: Double
        let indices: [Int]
        let values: [Float]
    }
    let base: String
    let sequences: [[Int]]
    let last_logits: [[Float]]
    let weights: [String: Weight]
    let scaling: [String: Double]

    static func load(_ name: String) throws -> (LoRAReference, LoRAAdapter, SafetensorsModel, ModelConfig) {
        let dir = fixturesDir() + "/lora/" + name
        let ref = try JSONDecoder().decode(LoRAReference.self, from: Data(contentsOf: URL(fileURLWithPath: dir + "/reference.json")))
        let baseDir = fixturesDir() + "/" + ref.base
        return (ref, try LoRAAdapter(folder: dir), try SafetensorsModel(folder: baseDir), try ModelConfig(hfConfigAt: baseDir + "/config.json"))
    }
}

@Suite struct LoRATests {
    /// plain alpha/r on every linear layer (F32), and rsLoRA with rank and alpha patterns on
    /// some modules of some layers (BF16).
    static let fixtures = ["llama-plain", "qwen2-rslora"]

    @Test(arguments: fixtures)
    func mergedWeightsMatchPEFT(_ name: String) throws {
        let (ref, adapter, base, _) = try LoRAReference.load(name)
        #expect(Set(adapter.weightNames) == Set(ref.weights.keys))
        #expect(Set(ref.scaling.keys) == Set(ref.weights.keys))
        for (w, s) in ref.scaling { #expect(adapter.modules[w]?.scale == Float(s), "\(w)") }
        let merged = try LoRAMergedParameters(base: base, adapter: adapter)
        var worst: Float = 0
        for (w, r) in ref.weights {
            let n = try base.shape(w).reduce(1, *)
            var m = [Float](repeating: 0, count: n), b = m
            try merged.read(w, into: &m, count: n)
            try base.read(w, into: &b, count: n)
            for (i, v) in zip(r.indices, r.values) { worst = max(worst, abs(m[i] - v)) }
            var sum = 0.0, squares = 0.0
            for i in 0..<n { let d = Double(m[i]) - Double(b[i]); sum += d; squares += d * d }
            #expect(abs(sum - r.delta_sum) <= 1e-5 * max(1, abs(r.delta_sum)), "\(w): Σ(merged − base) \(sum) vs \(r.delta_sum)")
            #expect(abs(squares - r.delta_sum_squares) <= 1e-5 * r.delta_sum_squares, "\(w)")
        }
        print("\(name): \(ref.weights.count) merged tensors, largest difference to PEFT \(worst)")
        #expect(worst < 1e-6)
        // Weights the adapter does not change pass through untouched.
        let other = "model.layers.3.self_attn.q_proj.weight"
        if ref.weights[other] == nil {
            let n = try base.shape(other).reduce(1, *)
            var m = [Float](repeating: 0, count: n), b = m
            try merged.read(other, into: &m, count: n)
            try base.read(other, into: &b, count: n)
            #expect(m == b)
        }
    }

    @Test(arguments: fixtures)
    func mergedModelLogitsMatchPEFT(_ name: String) throws {
        let (ref, adapter, base, config) = try LoRAReference.load(name)
        let t = Transformer(weights: try ModelWeights.load(config: config, from: try LoRAMergedParameters(base: base, adapter: adapter)))
        let seqs = ref.sequences
        let logits = t.forward(tokens: seqs, sequences: Array(seqs.indices), cache: KVCache(config: config, capacities: seqs.map(\.count)))
        var worst: Float = 0, largest: Float = 0
        for (s, want) in ref.last_logits.enumerated() {
            for (j, v) in want.enumerated() { worst = max(worst, abs(logits[s * config.vocabSize + j] - v)); largest = max(largest, abs(v)) }
        }
        print("\(name): largest logit difference to PEFT's merged model \(worst) (largest logit \(largest))")
        #expect(worst < 2e-5 * largest)
        // The adapter matters: the base model's logits are far from these.
        let plain = Transformer(weights: try ModelWeights.load(config: config, from: base))
        let baseLogits = plain.forward(tokens: seqs, sequences: Array(seqs.indices), cache: KVCache(config: config, capacities: seqs.map(\.count)))
        #expect(zip(baseLogits, logits).map { abs($0 - $1) }.max()! > 100 * worst)
    }

    /// A written adapter reads back with the same values and scaling; with
    /// REALIGN_LORA_EXPORT=DIR it also leaves DIR/adapter and DIR/merged.safetensors for
    /// `scripts/make_lora_fixtures.py check DIR` (PEFT loads it; result committed in
    /// Fixtures/lora/swift-written-check.json).
    @Test func writerRoundTrips() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("realign-lora-\(getpid())").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let baseDir = fixturesDir() + "/tiny-llama"
        let base = try SafetensorsModel(folder: baseDir)
        var rng = SplitMix64(seed: 5)
        let r = 3
        var weights: [LoRAAdapter.Weights] = []
        for l in [0, 2] {
            for m in ["self_attn.q_proj", "self_attn.v_proj", "mlp.down_proj"] {
                let name = "model.layers.\(l).\(m).weight"
                let shape = try base.shape(name)
                weights.append(.init(name: name, a: (0..<r * shape[1]).map { _ in rng.nextUnit() - 0.5 },
                                     b: (0..<shape[0] * r).map { _ in 0.1 * (rng.nextUnit() - 0.5) }))
            }
        }
        let folder = dir + "/adapter"
        try LoRAAdapter.write(to: folder, modules: weights, rank: r, alpha: 5, useRSLoRA: true,
                              targetModules: ["q_proj", "v_proj", "down_proj"], baseModel: "tiny-llama")
        let back = try LoRAAdapter(folder: folder)
        #expect(back.rank == r && back.alpha == 5 && back.useRSLoRA && back.baseModel == "tiny-llama")
        #expect(back.weightNames == weights.map(\.name).sorted())
        for w in weights {
            let m = back.modules[w.name]!
            #expect(m.a == w.a && m.b == w.b && m.rank == r && m.scale == Float(5 / Double(3).squareRoot()))
        }
        // BF16: the values come back rounded to nearest even.
        try LoRAAdapter.write(to: dir + "/bf16", modules: weights, rank: r, alpha: 5, targetModules: ["q_proj", "v_proj", "down_proj"],
                              baseModel: nil, dtype: .bf16)
        let bf = try LoRAAdapter(folder: dir + "/bf16")
        #expect(bf.modules[weights[0].name]!.a == weights[0].a.map { bf16ToFloat(floatToBF16($0)) })
        #expect(bf.modules[weights[0].name]!.scale == Float(5.0 / 3))

        // Writing refuses modules the targets do not select, ranks that do not divide.
        #expect(throws: FormatError.self) { try LoRAAdapter.write(to: dir + "/x", modules: weights, rank: r, alpha: 5, targetModules: ["q_proj"], baseModel: nil) }
        #expect(throws: FormatError.self) { try LoRAAdapter.write(to: dir + "/x", modules: weights, rank: 7, alpha: 5, targetModules: ["q_proj", "v_proj", "down_proj"], baseModel: nil) }

        if let export = ProcessInfo.processInfo.environment["REALIGN_LORA_EXPORT"] {
            try? FileManager.default.removeItem(atPath: export)
            try FileManager.default.createDirectory(atPath: export, withIntermediateDirectories: true)
            try FileManager.default.copyItem(atPath: folder, toPath: export + "/adapter")
            let merged = try LoRAMergedParameters(base: base, adapter: back)
            try SafetensorsWriter.write(base.names.map { n in
                .floats(n, shape: try! base.shape(n), as: .f32) { try merged.read(n, into: $0, count: try base.shape(n).reduce(1, *)) }
            }, to: export + "/merged.safetensors")
        }
    }

    /// What PEFT's Python check recorded for an adapter written by `writerRoundTrips`.
    @Test func peftLoadedASwiftWrittenAdapter() throws {
        let j = try JSONValue.parseFile(fixturesDir() + "/lora/swift-written-check.json")
        #expect(j["tensors_changed_by_adapter"]?.int == 6)
        #expect(j["max_abs_difference_peft_merge_vs_realign"]!.double! < 1e-6)
    }

    /// Each broken adapter: one error naming the file and the problem.
    @Test func badAdaptersAreClearErrors() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("realign-lora-bad-\(getpid())").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let good = fixturesDir() + "/lora/llama-plain"
        let config = try JSONValue.parseFile(good + "/" + LoRAAdapter.configFileName).object!

        func expectError(_ what: String, _ contains: String, edit: (inout JSONObject) -> Void = { _ in },
                         weights: ((String) throws -> Void)? = nil) throws {
            let d = dir + "/" + what
            try? FileManager.default.removeItem(atPath: d)
            try FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
            var c = config
            edit(&c)
            try Data(JSONValue.object(c).pretty().utf8).write(to: URL(fileURLWithPath: d + "/" + LoRAAdapter.configFileName))
            if let weights { try weights(d) } else {
                try FileManager.default.copyItem(atPath: good + "/" + LoRAAdapter.weightsFileName, toPath: d + "/" + LoRAAdapter.weightsFileName)
            }
            do {
                let a = try LoRAAdapter(folder: d)
                try a.checkBase(try ModelConfig(hfConfigAt: fixturesDir() + "/tiny-llama/config.json"), model: "tiny-llama")
                _ = try LoRAMergedParameters(base: try SafetensorsModel(folder: fixturesDir() + "/tiny-llama"), adapter: a)
                Issue.record("\(what): no error")
            } catch let e as FormatError {
                #expect(e.path.hasPrefix(d) && e.problem.contains(contains), "\(what): \(e)")
            }
        }
        try expectError("arch", "trained on \(fixturesDir())/tiny-qwen2 (qwen2") { $0["base_model_name_or_path"] = .string(fixturesDir() + "/tiny-qwen2") }
        // Accepted: target_modules "all-linear" as written by hand (PEFT saves the expanded list).
        let allLinear = dir + "/all-linear"
        try FileManager.default.createDirectory(atPath: allLinear, withIntermediateDirectories: true)
        var c = config
        c["target_modules"] = .string("all-linear")
        try Data(JSONValue.object(c).pretty().utf8).write(to: URL(fileURLWithPath: allLinear + "/" + LoRAAdapter.configFileName))
        try FileManager.default.copyItem(atPath: good + "/" + LoRAAdapter.weightsFileName, toPath: allLinear + "/" + LoRAAdapter.weightsFileName)
        #expect(try LoRAAdapter(folder: allLinear).modules.count == 28)

        try expectError("dora", "DoRA") { $0["use_dora"] = .bool(true) }
        try expectError("bias", "biases") { $0["bias"] = .string("all") }
        try expectError("save", "modules_to_save") { $0["modules_to_save"] = .array([.string("lm_head")]) }
        try expectError("fan", "fan_in_fan_out") { $0["fan_in_fan_out"] = .bool(true) }
        try expectError("pissa", "changes the base weights") { $0["init_lora_weights"] = .string("pissa") }
        try expectError("rank", "config says r = 8") { $0["r"] = .int(8) }
        try expectError("targets", "target_modules does not select") { $0["target_modules"] = .array([.string("q_proj")]) }
        try expectError("bin", "safe_serialization") { _ in } weights: { d in
            try Data([0x80, 0x02]).write(to: URL(fileURLWithPath: d + "/adapter_model.bin"))
        }
        let st = try SafetensorsFile(path: good + "/" + LoRAAdapter.weightsFileName)
        func rewrite(_ d: String, _ change: (String, [Float]) -> (String, [Int], [Float])?) throws {
            try SafetensorsWriter.write(try st.names.compactMap { n in
                change(n, try st.floats(n)).map { SafetensorsEntry.floats($0.0, shape: $0.1, as: .f32, $0.2) }
            }, to: d + "/" + LoRAAdapter.weightsFileName)
        }
        let q0 = "base_model.model.model.layers.0.self_attn.q_proj."
        try expectError("lonely", "lora_A but no lora_B") { _ in } weights: { d in
            try rewrite(d) { n, v in n == q0 + "lora_B.weight" ? nil : (n, st.info(n)!.shape, v) }
        }
        try expectError("nan", "NaN") { _ in } weights: { d in
            try rewrite(d) { n, v in (n, st.info(n)!.shape, n == q0 + "lora_A.weight" ? [.nan] + v.dropFirst() : v) }
        }
        try expectError("shape", "but the base model") { _ in } weights: { d in
            // A wider lora_A: in = 65 where q_proj takes 64.
            try rewrite(d) { n, v in n == q0 + "lora_A.weight" ? (n, [4, 65], v + [0, 0, 0, 0]) : (n, st.info(n)!.shape, v) }
        }
        try expectError("missing", "does not have") { _ in } weights: { d in
            try rewrite(d) { n, v in (n.replacingOccurrences(of: "layers.3.", with: "layers.7."), st.info(n)!.shape, v) }
        }
        // Patterns that are not regular expressions, and sizes out of bounds.
        try expectError("rank-regex", #"rank_pattern key "(" is not a regular expression Realign can match: missing ), unterminated subpattern"#) {
            $0["rank_pattern"] = .object(JSONObject([("(", .int(2))]))
        }
        try expectError("alpha-regex", #"alpha_pattern key "q_proj(?=x)" is not a regular expression Realign can match: lookaround at position 6 is not supported"#) {
            $0["alpha_pattern"] = .object(JSONObject([("q_proj(?=x)", .int(2))]))
        }
        try expectError("target-regex", #"target_modules "(?i).*proj" is not a regular expression Realign can match: the group extension (?i at position 0 is not supported"#) {
            $0["target_modules"] = .string("(?i).*proj")
        }
        try expectError("huge-r", "r is 1099511627776, not an integer in 1...65536") { $0["r"] = .int(1 << 40) }
        try expectError("zero-r", "r is 0, not an integer in 1...65536") { $0["r"] = .int(0) }
        try expectError("huge-rank-pattern", "rank_pattern[q_proj] is 1000000000, not an integer in 1...65536") {
            $0["rank_pattern"] = .object(JSONObject([("q_proj", .int(1_000_000_000))]))
        }
        try expectError("huge-alpha", "lora_alpha 1e+300 with r = 4 gives a scale of inf (beyond Float)") { $0["lora_alpha"] = .double(1e300) }
    }

    /// target_modules and rank_pattern regexes that backtrack exponentially in Python or
    /// Swift's Regex: matched in linear time, with PEFT's answer (here: no match).
    @Test func catastrophicPatternsDoNotHang() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("realign-lora-redos-\(getpid())").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let good = fixturesDir() + "/lora/llama-plain"
        let config = try JSONValue.parseFile(good + "/" + LoRAAdapter.configFileName).object!
        func adapter(_ name: String, _ edit: (inout JSONObject) -> Void) throws -> String {
            let d = dir + "/" + name
            try FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
            var c = config
            edit(&c)
            try Data(JSONValue.object(c).pretty().utf8).write(to: URL(fileURLWithPath: d + "/" + LoRAAdapter.configFileName))
            try FileManager.default.copyItem(atPath: good + "/" + LoRAAdapter.weightsFileName, toPath: d + "/" + LoRAAdapter.weightsFileName)
            return d
        }
        let ranks = try adapter("rank") { $0["rank_pattern"] = .object(JSONObject([("([a-z_.0-9]+)+!", .int(2))])) }
        guard let loaded = within(seconds: 10, { try LoRAAdapter(folder: ranks) }) else { Issue.record("rank_pattern: still matching after 10 s"); return }
        let a = try loaded.get()
        #expect(a.modules.count == 28 && a.modules.values.allSatisfy { $0.rank == 4 })
        let targets = try adapter("targets") { $0["target_modules"] = .string("(([a-z_.0-9])+)+!") }
        guard let refused = within(seconds: 10, { try LoRAAdapter(folder: targets) }) else { Issue.record("target_modules: still matching after 10 s"); return }
        #expect(throws: FormatError.self) { _ = try refused.get() }
        do { _ = try refused.get() } catch let e as FormatError {
            #expect(e.path == targets + "/" + LoRAAdapter.configFileName && e.problem.hasSuffix("which target_modules does not select"), "\(e)")
        }
    }

    /// Finite adapter weights whose merged sum W + s·B·A overflows: the error names the
    /// adapter file and the tensor, not the base model.
    @Test func mergeOverflowNamesTheAdapter() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("realign-lora-overflow-\(getpid())").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let good = fixturesDir() + "/lora/llama-plain"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: good + "/" + LoRAAdapter.configFileName, toPath: dir + "/" + LoRAAdapter.configFileName)
        let st = try SafetensorsFile(path: good + "/" + LoRAAdapter.weightsFileName)
        // lora_A all 1, lora_B all 3e38: finite, but B·A sums r terms of 3e38.
        let q0 = "base_model.model.model.layers.0.self_attn.q_proj."
        try SafetensorsWriter.write(try st.names.map { n in
            let v = try st.floats(n)
            let w: [Float] = n == q0 + "lora_A.weight" ? v.map { _ in 1 } : n == q0 + "lora_B.weight" ? v.map { _ in 3e38 } : v
            return SafetensorsEntry.floats(n, shape: st.info(n)!.shape, as: .f32, w)
        }, to: dir + "/" + LoRAAdapter.weightsFileName)
        let adapter = try LoRAAdapter(folder: dir)
        let baseDir = fixturesDir() + "/tiny-llama"
        let merged = try LoRAMergedParameters(base: try SafetensorsModel(folder: baseDir), adapter: adapter)
        let name = "model.layers.0.self_attn.q_proj.weight"
        let s = adapter.modules[name]!.scale
        #expect(throws: FormatError(dir + "/" + LoRAAdapter.weightsFileName,
                                    "merging into \(name): W + \(s)·B·A overflows Float (lora_A/lora_B of model.layers.0.self_attn.q_proj or lora_alpha too large)")) {
            _ = try ModelWeights.load(config: try ModelConfig(hfConfigAt: baseDir + "/config.json"), from: merged)
        }
    }
}
