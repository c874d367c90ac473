import Foundation
import Testing
@testable import Recovery
import Model
import Formats
import TestSupport
import Tensor

/// The recovered model written to disk is exactly F + patch: touched tensors hold the
/// patched values, untouched ones F's bytes, and its logits are those of F's weights with
/// the patch applied in memory.
@Suite(.serialized) struct ModelOutputTests {
    /// Tensors patched in the tests: a permuted Q and K (llama GGUF), an MLP matrix, a norm
    /// vector and the Q8_0 embedding.
    static let patched = ["model.layers.0.self_attn.q_proj.weight", "model.layers.3.self_attn.k_proj.weight",
                          "model.layers.5.mlp.down_proj.weight", "model.layers.7.input_layernorm.weight",
                          "model.embed_tokens.weight"]

    /// A few thousand random indices over `patched`; values are F's negated, except the
    /// down projection's, which are scaled by 1.0001 (not representable in BF16).
    static func makePatch(_ f: ParameterSource, tensors: [String] = patched, seed: UInt64 = 7) throws -> SparsePatch {
        var rng = SplitMix64(seed: seed)
        var p = SparsePatch(model: try ModelIdentity.of(f.path))
        for name in tensors {
            let shape = try f.shape(name), n = shape.reduce(1, *)
            var values = [Float](repeating: 0, count: n)
            try f.read(name, into: &values, count: n)
            let idx = (0..<(name.hasSuffix("layernorm.weight") || name.hasSuffix(".bias") ? 100 : 1500)).map { _ in Int(rng.next() % UInt64(n)) }
            try p.add(name, shape: shape, indices: idx,
                      values: idx.map { name.contains("down_proj") ? values[$0] * 1.0001 : -values[$0] })
        }
        return p
    }

    static func temp(_ name: String) -> String {
        FileManager.default.temporaryDirectory.appendingPathComponent("modelout-\(getpid())-\(name)").path
    }

    /// `patch` with its values rounded as a tensor of `dtype` stores them.
    static func rounded(_ patch: SparsePatch, _ dtype: SafetensorsDType) throws -> SparsePatch {
        var r = SparsePatch(model: patch.model)
        for (name, e) in patch.entries {
            let values = e.values.map { v -> Float in
                switch dtype {
                case .bf16: return bf16ToFloat(floatToBF16(v))
                case .f16: return halfToFloat(floatToHalf(v))
                default: return v
                }
            }
            try r.add(name, shape: e.shape, indices: e.indices.map(Int.init), values: values)
        }
        return r
    }

    /// Every parameter of `out` equals F's with `patch` applied, bit for bit.
    static func expectPatchedParameters(_ f: ParameterSource, _ out: ParameterSource, _ patch: SparsePatch, config: ModelConfig) throws {
        for name in TensorNames.hfNames(for: config) where f.contains(name) {
            #expect(try out.shape(name) == f.shape(name))
            let n = try f.shape(name).reduce(1, *)
            var want = [Float](repeating: 0, count: n), got = want
            try PatchedParameters(f, patch).read(name, into: &want, count: n)
            try out.read(name, into: &got, count: n)
            let differ = zip(want, got).filter { $0.bitPattern != $1.bitPattern }.count
            #expect(differ == 0, "\(name): \(differ) of \(n) values differ")
        }
    }

    /// Logits of the written model = logits of F's weights with the patch applied in memory.
    static func expectSameLogits(_ written: String, _ f: ParameterSource, _ patch: SparsePatch, config: ModelConfig) throws {
        let m = try LanguageModel.load(written)
        m.decoder.dropQuantized()   // compare weights through the same (BLAS) arithmetic
        let reference = Transformer(weights: try ModelWeights.load(config: config, from: PatchedParameters(f, patch)))
        let ids = [1, 9690, 198, 2683, 314, 253, 5356, 11173, 2]
        let a = m.decoder.forward(tokens: [ids], sequences: [0], cache: KVCache(config: config, capacities: [ids.count]))
        let b = reference.forward(tokens: [ids], sequences: [0], cache: KVCache(config: config, capacities: [ids.count]))
        let same = a == b   // (not inside #expect: a failure would print every logit)
        #expect(same, "logits of \(written) differ from F + patch in memory")
        let plain = try LanguageModel.load(f.path)
        let c = plain.decoder.forward(tokens: [ids], sequences: [0], cache: KVCache(config: config, capacities: [ids.count]))
        let changed = a != c
        #expect(changed, "the patch changes the logits")
    }

    @Test func ggufToGGUF() throws {
        let f = try GGUFFile(path: RealModels.smol)
        let config = try f.modelConfig()
        let patch = try Self.makePatch(f)
        #expect(patch.count > 6000)
        let out = Self.temp("smol-recovered.gguf")
        defer { try? FileManager.default.removeItem(atPath: out) }
        try ModelOutput.check(patch, against: RealModels.smol)
        let s = try ModelOutput.write(finetuned: RealModels.smol, patch: patch, to: out)
        #expect(s.format == "gguf" && s.restored == patch.count && s.patched_tensors == 5 && s.patched_tensor_types == ["F32"] && s.inexact == 0)

        let o = try GGUFFile(path: out)
        // Metadata: F's, in F's order and types, plus provenance.
        #expect(Array(o.metadataKeys.prefix(f.metadataKeys.count)) == f.metadataKeys)
        for k in f.metadataKeys { #expect(o.metadata[k] == f.metadata[k] && o.metadataTypes[k] == f.metadataTypes[k]) }
        #expect(o.metadata["realign.restored_weights"] == .uint(UInt64(patch.count)))
        #expect(o.metadata["realign.finetuned"] == .string("smollm2-135m-instruct-q4_1.gguf"))
        // Tensors: same names, order and shapes; untouched ones keep type and bytes, touched are F32.
        #expect(o.tensors.map(\.name) == f.tensors.map(\.name))
        let touched = Set(Self.patched.map { TensorNames.gguf(fromHF: $0)! })
        for (a, b) in zip(o.tensors, f.tensors) {
            #expect(a.shape == b.shape)
            if touched.contains(b.name) {
                #expect(a.type == .f32, "\(a.name)")
            } else {
                #expect(a.type == b.type && a.byteCount == b.byteCount && memcmp(o.bytes(a), f.bytes(b), b.byteCount) == 0, "\(a.name)")
            }
        }
        try Self.expectPatchedParameters(f, o, patch, config: config)
        try Self.expectSameLogits(out, f, patch, config: config)
    }

    /// Qwen2: tensors of five types (F32 bias, Q5_0, Q4_K, Q6_K, Q8_0), rows not permuted.
    @Test func qwenGGUFToGGUF() throws {
        let f = try GGUFFile(path: RealModels.qwen)
        let config = try f.modelConfig()
        let names = ["model.layers.2.self_attn.q_proj.bias", "model.layers.1.self_attn.k_proj.weight",
                     "model.layers.4.mlp.down_proj.weight", "model.layers.9.mlp.down_proj.weight", "model.layers.9.self_attn.v_proj.weight"]
        let patch = try Self.makePatch(f, tensors: names)
        let out = Self.temp("qwen-recovered.gguf")
        defer { try? FileManager.default.removeItem(atPath: out) }
        try ModelOutput.check(patch, against: RealModels.qwen)
        try ModelOutput.write(finetuned: RealModels.qwen, patch: patch, to: out)
        let o = try GGUFFile(path: out)
        let touched = Set(names.map { TensorNames.gguf(fromHF: $0)! })
        #expect(Set(f.tensors.filter { touched.contains($0.name) }.map(\.type)) == [.f32, .q5_0, .q4_K, .q6_K, .q8_0])
        for (a, b) in zip(o.tensors, f.tensors) {
            #expect(a.name == b.name && a.shape == b.shape)
            if touched.contains(b.name) { #expect(a.type == .f32) }
            else { #expect(a.type == b.type && memcmp(o.bytes(a), f.bytes(b), b.byteCount) == 0, "\(a.name)") }
        }
        for name in names {
            let n = try f.shape(name).reduce(1, *)
            var want = [Float](repeating: 0, count: n), got = want
            try PatchedParameters(f, patch).read(name, into: &want, count: n)
            try o.read(name, into: &got, count: n)
            #expect(zip(want, got).allSatisfy { $0.bitPattern == $1.bitPattern }, "\(name)")
        }
        try Self.expectSameLogits(out, f, patch, config: config)
    }

    /// Lossy storage (F16, Q8_0, Q4_K): every touched tensor but an F32 norm holds exactly
    /// what the type's encoder makes of F + patch (rows that are not whole blocks fall back
    /// to Q8_0), and the summary counts the restored values that rounding changed.
    @Test(arguments: ModelOutput.ggufTypes.filter { $0 != .f32 })
    func ggufToGGUFLossy(type: GGMLType) throws {
        let f = try GGUFFile(path: RealModels.smol)
        let patch = try Self.makePatch(f)
        let out = Self.temp("smol-recovered-\(type.name).gguf")
        defer { try? FileManager.default.removeItem(atPath: out) }
        let s = try ModelOutput.write(finetuned: RealModels.smol, patch: patch, to: out, ggufType: type)
        let o = try GGUFFile(path: out)
        var inexact = 0, stored = Set<GGMLType>()
        for name in patch.tensorNames {
            let info = o.tensor(o.ggufName(name)!)!, was = f.tensor(f.ggufName(name)!)!
            let want: GGMLType = was.type == .f32 && was.shape.count == 1 ? .f32 : info.shape[0] % type.blockSize == 0 ? type : .q8_0
            #expect(info.type == want, "\(name)")
            stored.insert(info.type)
            let n = info.elementCount
            var values = [Float](repeating: 0, count: n), got = values
            try PatchedParameters(f, patch).read(name, into: &values, count: n)
            try o.read(name, into: &got, count: n)
            var encoded = [UInt8](repeating: 0, count: want.byteCount(elements: n)!)
            try quantize(want, values, count: n, into: &encoded)
            let rounded = try dequantized(want, encoded, count: n)
            #expect(rounded == got, "\(name)")
            inexact += patch.entries[name]!.indices.filter { rounded[Int($0)] != values[Int($0)] }.count
        }
        #expect(stored.contains(type) && stored.contains(.f32))
        #expect(s.inexact == inexact && inexact > 0 && s.notes.first!.contains("lossy"))
        #expect(s.patched_tensor_types == stored.map(\.name).sorted())
    }

    /// A patched F32 matrix (a merged model's adapted tensors, or an earlier F32 output) takes
    /// the chosen type; an F32 norm stays F32.
    @Test func f32MatricesTakeTheTypeNormsStayF32() throws {
        let path = fixturesDir().replacingOccurrences(of: "RecoveryTests", with: "ModelTests") + "/arch/llama3/model.gguf"
        let names = ["model.layers.0.self_attn.q_proj.weight", "model.layers.0.mlp.down_proj.weight", "model.layers.0.input_layernorm.weight"]
        let f32 = Self.temp("llama3-f32.gguf"), q8 = Self.temp("llama3-q8.gguf")
        defer { for p in [f32, q8] { try? FileManager.default.removeItem(atPath: p) } }
        let f = try GGUFFile(path: path)
        try ModelOutput.write(finetuned: path, patch: try Self.makePatch(f, tensors: names), to: f32)
        let m = try GGUFFile(path: f32)
        #expect(names.map { m.tensor(m.ggufName($0)!)!.type } == [.f32, .f32, .f32])
        try ModelOutput.write(finetuned: f32, patch: try Self.makePatch(m, tensors: names, seed: 8), to: q8, ggufType: .q8_0)
        let o = try GGUFFile(path: q8)
        #expect(names.map { o.tensor(o.ggufName($0)!)!.type } == [.q8_0, .q8_0, .f32])
    }

    /// A GGUF type for an HF folder's output is refused, not ignored.
    @Test func ggufTypeForFolderIsRefused() throws {
        let patch = SparsePatch(model: nil)
        #expect(throws: PatchError.self) {
            try ModelOutput.write(finetuned: fixturesDir().replacingOccurrences(of: "RecoveryTests", with: "ModelTests") + "/tiny-llama",
                                  patch: patch, to: Self.temp("never"), ggufType: .q8_0)
        }
    }

    @Test(arguments: [SafetensorsDType.f32, .bf16])
    func hfFolderToHFFolder(_ dtype: SafetensorsDType) throws {
        let dir = try makeHFFolder(fromGGUF: RealModels.smol, dtype: dtype, name: "modelout")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        // Extra files: copied, except weights in other formats and sub-folders.
        try Data("# model card\n".utf8).write(to: URL(fileURLWithPath: dir + "/README.md"))
        try Data(#"{"bos_token": "<|im_start|>"}"#.utf8).write(to: URL(fileURLWithPath: dir + "/special_tokens_map.json"))
        try Data([1, 2, 3]).write(to: URL(fileURLWithPath: dir + "/pytorch_model.bin"))
        try FileManager.default.createDirectory(atPath: dir + "/original", withIntermediateDirectories: true)

        let f = try SafetensorsModel(folder: dir)
        #expect(f.files.count > 1, "sharded")
        let config = try ModelConfig(hfConfigAt: dir + "/config.json")
        let patch = try Self.makePatch(f)
        let out = Self.temp("hf-out-\(dtype.rawValue)")
        defer { try? FileManager.default.removeItem(atPath: out) }
        try ModelOutput.check(patch, against: dir)
        let s = try ModelOutput.write(finetuned: dir, patch: patch, to: out)

        let inexact = dtype == .bf16 ? patch.entries.values.reduce(0) { $0 + $1.values.filter { bf16ToFloat(floatToBF16($0)) != $0 }.count } : 0
        #expect(s.format == "safetensors" && s.restored == patch.count && s.inexact == inexact && s.patched_tensor_types == [dtype.rawValue])
        if dtype == .bf16 { #expect(inexact >= 1000 && s.notes.first!.contains("rounded")) }
        #expect(s.skipped_files == ["original", "pytorch_model.bin"])

        // Same files (plus realign.json); non-weight files and the index byte-identical.
        let inFiles = Set(try FileManager.default.contentsOfDirectory(atPath: dir)).subtracting(["original", "pytorch_model.bin"])
        #expect(Set(try FileManager.default.contentsOfDirectory(atPath: out)) == inFiles.union(["realign.json"]))
        for name in inFiles where !name.hasSuffix(".safetensors") {
            #expect(try fileBytes(out + "/" + name) == fileBytes(dir + "/" + name), "\(name)")
        }
        // Every shard: same tensors, dtypes, shapes, metadata; untouched tensors' bytes identical.
        let o = try SafetensorsModel(folder: out)
        for (a, b) in zip(o.files, f.files) {
            #expect(URL(fileURLWithPath: a.path).lastPathComponent == URL(fileURLWithPath: b.path).lastPathComponent)
            #expect(a.metadata == b.metadata)
            #expect(a.tensors.map(\.name).sorted() == b.tensors.map(\.name).sorted())
            for t in b.tensors {
                let u = try #require(a.info(t.name))
                #expect(u.dtype == t.dtype && u.shape == t.shape)
                if patch.entries[t.name] == nil { #expect(try a.rawBytes(t.name).elementsEqual(try b.rawBytes(t.name)), "\(t.name)") }
            }
        }
        let stored = try Self.rounded(patch, dtype)
        try Self.expectPatchedParameters(f, o, stored, config: config)
        try Self.expectSameLogits(out, f, stored, config: config)
        let record = try JSONValue.parseFile(out + "/realign.json")
        #expect(record["restored_weights"]?.int == patch.count && record["inexact_restored_values"]?.int == inexact)
    }

    @Test func mismatchesAreClearErrors() throws {
        let f = try GGUFFile(path: RealModels.smol)
        var patch = try Self.makePatch(f)
        // Another model: identity differs.
        #expect(throws: PatchError("the patch was made for smollm2-135m-instruct-q4_1.gguf (98362432 bytes, fingerprint \(patch.model!.fingerprint.prefix(16))…), but \(RealModels.qwen) is qwen2.5-coder-0.5b-instruct-q4_k_m.gguf (491400064 bytes, fingerprint \(try ModelIdentity.of(RealModels.qwen).fingerprint.prefix(16))…)")) {
            try ModelOutput.check(patch, against: RealModels.qwen)
        }
        // Without identity, shapes still catch it.
        patch.model = nil
        #expect(throws: PatchError("model.embed_tokens.weight has shape [151936, 896] in \(RealModels.qwen), the patch expects [49152, 576]")) {
            try ModelOutput.check(patch, against: RealModels.qwen)
        }
        var extra = SparsePatch()
        try extra.add("model.layers.99.mlp.up_proj.weight", shape: [1536, 576], indices: [0], values: [1])
        #expect(throws: PatchError("the patch restores model.layers.99.mlp.up_proj.weight, which \(RealModels.smol) does not have")) {
            try ModelOutput.check(extra, against: RealModels.smol)
        }
        // Existing output, or writing over the input.
        let out = Self.temp("exists.gguf")
        try Data([0]).write(to: URL(fileURLWithPath: out))
        defer { try? FileManager.default.removeItem(atPath: out) }
        #expect(throws: PatchError("\(out) already exists (remove it or choose another path)")) {
            try ModelOutput.write(finetuned: RealModels.smol, patch: SparsePatch(), to: out)
        }
        #expect(throws: FormatError(RealModels.smol, "the output (--out) is the input \(RealModels.smol); choose another path")) {
            try ModelOutput.write(finetuned: RealModels.smol, patch: SparsePatch(), to: RealModels.smol, overwrite: true)
        }
        // An empty patch with overwrite: the same model, plus provenance.
        try ModelOutput.write(finetuned: RealModels.smol, patch: SparsePatch(), to: out, overwrite: true)
        let o = try GGUFFile(path: out)
        #expect(o.tensors.count == f.tensors.count && o.metadata["realign.restored_weights"] == .uint(0))
    }
}


/// An HF folder plus a PEFT LoRA adapter (the tiny-llama fixture, BF16, and the llama-plain
/// adapter of scripts/make_lora_fixtures.py): the output is the merged model with the patch,
/// adapted tensors rounded to the folder's BF16, every other tensor byte-identical.
@Suite struct AdapterOutputTests {
    @Test func hfFolderPlusAdapter() throws {
        let models = fixturesDir().replacingOccurrences(of: "RecoveryTests", with: "ModelTests")
        let base = models + "/tiny-llama", adapterDir = models + "/lora/llama-plain"
        let f = try SafetensorsModel(folder: base)
        let merged = try LoRAMergedParameters(base: f, adapter: try LoRAAdapter(folder: adapterDir))
        // The identity covers the adapter.
        let identity = try ModelIdentity.of(base, adapter: adapterDir)
        let plainIdentity = try ModelIdentity.of(base)
        #expect(identity.name == "tiny-llama + llama-plain" && identity != plainIdentity)
        var patch = SparsePatch(model: identity)
        let patchedName = "model.layers.1.mlp.up_proj.weight"
        try patch.add(patchedName, shape: [128, 64], indices: [0, 5, 700], values: [0.5, -0.25, 1])
        #expect(throws: PatchError.self) { try ModelOutput.check(patch, against: base) }
        try ModelOutput.check(patch, against: base, adapter: adapterDir)

        let out = FileManager.default.temporaryDirectory.appendingPathComponent("realign-adapter-out-\(getpid())").path
        defer { try? FileManager.default.removeItem(atPath: out) }
        let s = try ModelOutput.write(finetuned: base, adapter: adapterDir, patch: patch, to: out)
        #expect(s.merged_tensors == 28 && s.patched_tensor_types == ["BF16"] && s.notes.contains { $0.contains("merged") })
        let o = try SafetensorsModel(folder: out)
        for name in f.names {
            let n = try f.shape(name).reduce(1, *)
            #expect(o.info(name)?.dtype == .bf16)
            var want = [Float](repeating: 0, count: n), got = want
            try PatchedParameters(merged, patch).read(name, into: &want, count: n)
            try o.read(name, into: &got, count: n)
            #expect(zip(want, got).allSatisfy { bf16ToFloat(floatToBF16($0)) == $1 }, "\(name)")
            if merged.adapter.modules[name] == nil && name != patchedName {
                let (x, y) = (Array(try o.rawBytes(name)), Array(try f.rawBytes(name)))
                #expect(x == y, "\(name)")
            }
        }
        let record = try JSONValue.parseFile(out + "/realign.json")
        #expect(record["lora_adapter_merged"]?.string == "llama-plain")
    }
}
