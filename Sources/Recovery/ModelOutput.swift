import Foundation
import Formats
import Model
import Tensor

/// Writes the recovered model — the fine-tuned model F with a patch applied — in F's
/// format family: a GGUF file from a GGUF, an HF safetensors folder from an HF folder.
/// Only patched tensors change; every other tensor keeps its type and bytes exactly.
/// When F is a base model plus a PEFT LoRA adapter, the output is the merged model
/// (W + scale·B·A in fp32, then the patch) in the base's family: the adapted tensors
/// change too, stored like patched ones.
public enum ModelOutput {
    /// What was written.
    public struct Summary: Encodable, Equatable {
        public var out: String
        public var format: String                 // "gguf" or "safetensors"
        public var restored: Int                  // weights set from the patch
        public var patched_tensors: Int
        /// GGUF: the type patched tensors are stored as. HF: their (unchanged) dtypes.
        public var patched_tensor_types: [String]
        /// Restored values the stored type cannot hold exactly (rounded to nearest even).
        public var inexact: Int
        public var copied_files: [String]
        public var skipped_files: [String]
        public var notes: [String]
        /// The LoRA adapter merged in, and how many tensors it changed.
        public var adapter: String? = nil
        public var merged_tensors: Int = 0
    }

    /// Checks that `patch` was made for the model at `path` (with `adapter` merged, if
    /// given): same identity (size and fingerprint; the name may differ, e.g. a renamed
    /// copy) unless `ignoreIdentity`, and every patched tensor exists there with the
    /// patch's shape.
    public static func check(_ patch: SparsePatch, against path: String, adapter: String? = nil, ignoreIdentity: Bool = false) throws {
        if let want = patch.model, !ignoreIdentity {
            let have = try ModelIdentity.of(path, adapter: adapter)
            guard have.bytes == want.bytes, have.fingerprint == want.fingerprint else {
                throw PatchError("""
                    the patch was made for \(want.name) (\(want.bytes) bytes, fingerprint \(want.fingerprint.prefix(16))…), \
                    but \(path)\(adapter.map { " + " + $0 } ?? "") is \(have.name) (\(have.bytes) bytes, fingerprint \(have.fingerprint.prefix(16))…)
                    """)
            }
        }
        let source: ParameterSource = isDirectory(path) ? try SafetensorsModel(folder: path) : try GGUFFile(path: path)
        for name in patch.tensorNames {
            guard source.contains(name) else { throw PatchError("the patch restores \(name), which \(path) does not have") }
            let shape = try source.shape(name), want = patch.entries[name]!.shape
            guard shape == want else { throw PatchError("\(name) has shape \(shape) in \(path), the patch expects \(want)") }
        }
    }

    /// Writes F (`finetuned`, with `adapter` merged if given) + `patch` to `out`, via a
    /// temporary file or folder renamed into place at the end. For a GGUF, patched and
    /// adapted tensors are stored as `ggufType` (F32, lossless; F16, Q8_0 or Q4_K round the
    /// whole tensor; see `storedType`); in an HF folder they keep the tensor's dtype.
    /// Does not check the identity: call `check` first.
    @discardableResult
    public static func write(finetuned: String, adapter: String? = nil, patch: SparsePatch, to out: String, ggufType: GGMLType = .f32,
                             overwrite: Bool = false, progress: ((String) -> Void)? = nil) throws -> Summary {
        try checkOutputPath(out, kind: isDirectory(finetuned) ? .folder : .file, inputs: [finetuned] + (adapter.map { [$0] } ?? []))
        if FileManager.default.fileExists(atPath: out) && !overwrite {
            throw PatchError("\(out) already exists (remove it or choose another path)")
        }
        let lora = try adapter.map { try LoRAAdapter(folder: $0) }
        var s: Summary
        if isDirectory(finetuned) {
            guard ggufType == .f32 else { throw PatchError("\(finetuned) is an HF folder: its output keeps the tensors' dtypes (a GGUF type such as \(ggufType.name) applies to GGUF outputs)") }
            s = try writeFolder(finetuned, lora, patch, out, overwrite: overwrite, progress: progress)
        } else {
            guard !isDirectory(out) else { throw PatchError("\(out) is a folder; the output of a GGUF model is a GGUF file") }
            s = try writeGGUF(finetuned, lora, patch, out, type: ggufType, progress: progress)
        }
        if let lora {
            s.adapter = adapter
            s.merged_tensors = lora.modules.count
            s.notes.append("the LoRA adapter \(adapter!) is merged (W + scale·B·A in fp32): its \(lora.modules.count) tensors are stored as \(s.patched_tensor_types.joined(separator: ", ")) (merged values rounded to nearest even where that is F16 or BF16)")
        }
        return s
    }

    // MARK: - GGUF → GGUF

    static func writeGGUF(_ path: String, _ lora: LoRAAdapter?, _ patch: SparsePatch, _ out: String, type: GGMLType,
                          progress: ((String) -> Void)?) throws -> Summary {
        guard ggufTypes.contains(type) else {
            throw PatchError("patched GGUF tensors can be stored as \(ggufTypes.map(\.name).joined(separator: ", ")), not \(type.name)")
        }
        let g = try GGUFFile(path: path)
        let source: ParameterSource = try lora.map { try LoRAMergedParameters(base: g, adapter: $0) } ?? g
        var patchedGGUF: [String: String] = [:]   // GGUF name → HF name of every tensor that changes
        for name in Set(patch.tensorNames + (lora?.weightNames ?? [])).sorted() {
            guard let gname = g.ggufName(name), let info = g.tensor(gname) else {
                throw PatchError("the patch restores \(name), which \(path) does not have")
            }
            if let e = patch.entries[name], Array(info.shape.reversed()) != e.shape {
                throw PatchError("\(name) has shape \(Array(info.shape.reversed())) in \(path), the patch expects \(e.shape)")
            }
            patchedGGUF[gname] = name
        }

        var done = 0, inexact = 0
        let tensors: [GGUFTensorEntry] = g.tensors.map { info in
            guard let hf = patchedGGUF[info.name] else { return .copy(info, of: g) }
            return .floats(info.name, shape: info.shape, as: storedType(info, type)) { dst in
                // F's values in HF layout (dequantised, Q/K rows un-permuted), patched, then
                // put back in the file's row order.
                let n = info.elementCount
                try source.read(hf, into: dst, count: n)
                try patch.apply(to: dst, tensor: hf, count: n)
                if let e = patch.entries[hf] { inexact += try roundedCount(e.indices, of: dst, count: n, as: storedType(info, type)) }
                if let heads = try g.qkPermutationHeads(hf) {
                    try permuteQKRows(dst, rows: info.shape.count == 1 ? n : info.rows, columns: info.shape.count == 1 ? 1 : info.columns,
                                      heads: heads, source: path)
                }
                done += 1
                progress?("patched \(done)/\(patchedGGUF.count) tensors")
            }
        }

        let name = URL(fileURLWithPath: path).lastPathComponent
        var provenance: [GGUFMetadataEntry] = [
            GGUFMetadataEntry("realign.finetuned", .string(name)),
            GGUFMetadataEntry("realign.restored_weights", .uint(UInt64(patch.count)), type: .uint64),
            GGUFMetadataEntry("realign.patched_tensor_type", .string(type.name)),
        ]
        if let lora { provenance.append(GGUFMetadataEntry("realign.lora_adapter", .string(URL(fileURLWithPath: lora.folder).standardizedFileURL.lastPathComponent))) }
        let keep = g.metadataEntries.filter { !$0.key.hasPrefix("realign.") }   // a re-patched file gets fresh keys
        try GGUFWriter.write(metadata: keep + provenance, tensors: tensors, to: out)

        var types = Set<String>(), fallbacks: [String] = []
        for gname in patchedGGUF.keys.sorted() {
            let info = g.tensor(gname)!, t = storedType(info, type)
            types.insert(t.name)
            if t != type && info.type != .f32 { fallbacks.append("\(gname) (\(t.name): rows of \(info.shape[0]) are not whole \(type.name) blocks)") }
        }
        var notes = type == .f32
            ? ["patched tensors are stored as F32 (their original types cannot hold the restored values); the file is larger than the input"]
            : ["\(type.name) is lossy: the patched tensors' values (restored and fine-tuned alike) are rounded to it (F32 norms stay F32); \(inexact) restored values changed"]
        if !fallbacks.isEmpty { notes.append("stored in another type: " + fallbacks.joined(separator: ", ")) }
        return Summary(out: out, format: "gguf", restored: patch.count, patched_tensors: patch.entries.count,
                       patched_tensor_types: types.sorted(), inexact: inexact, copied_files: [], skipped_files: [], notes: notes)
    }

    /// The types a GGUF output can store patched tensors as.
    public static let ggufTypes: [GGMLType] = [.f32, .f16, .q8_0, .q4_K].filter(canQuantize)

    /// A patched tensor's stored type: an F32 vector (a norm) stays F32, as llama.cpp's
    /// quantize keeps it; matrices take `type`, F32 ones too (a merged model's adapted
    /// tensors); rows that are not whole blocks of `type` fall back to Q8_0, then F16
    /// (llama.cpp's quantize falls back too).
    static func storedType(_ info: GGUFTensorInfo, _ type: GGMLType) -> GGMLType {
        if info.type == .f32 && info.shape.count < 2 { return .f32 }
        return [type, .q8_0, .f16].first { info.shape[0] % $0.blockSize == 0 } ?? .f32
    }

    /// How many of the values at `indices` the stored type does not hold exactly
    /// (encoded and decoded as the writer will store them).
    static func roundedCount(_ indices: [UInt32], of values: UnsafePointer<Float>, count: Int, as type: GGMLType) throws -> Int {
        guard type != .f32, let bytes = type.byteCount(elements: count) else { return 0 }
        let encoded = UnsafeMutableRawPointer.allocate(byteCount: max(bytes, 1), alignment: 64)
        let decoded = UnsafeMutablePointer<Float>.allocate(capacity: max(count, 1))
        defer { encoded.deallocate(); decoded.deallocate() }
        try quantize(type, values, count: count, into: encoded)
        try dequantize(type, encoded, count: count, into: decoded)
        return indices.reduce(0) { $0 + (decoded[Int($1)] == values[Int($1)] ? 0 : 1) }
    }

    // MARK: - HF folder → HF folder

    /// Files that hold weights in some other format: not copied, since they would carry
    /// the un-recovered fine-tuned weights next to the recovered ones.
    static let weightExtensions: Set<String> = ["safetensors", "bin", "pt", "pth", "ckpt", "gguf", "h5", "msgpack", "onnx", "npz"]

    static func writeFolder(_ dir: String, _ lora: LoRAAdapter?, _ patch: SparsePatch, _ out: String, overwrite: Bool,
                            progress: ((String) -> Void)?) throws -> Summary {
        let model = try SafetensorsModel(folder: dir)
        let source: ParameterSource = try lora.map { try LoRAMergedParameters(base: model, adapter: $0) } ?? model
        for name in lora?.weightNames ?? [] {
            guard let t = model.info(name), [.f32, .f16, .bf16].contains(t.dtype) else { throw PatchError("the adapter changes \(name), which is not an F32, F16 or BF16 tensor of \(dir)") }
        }
        for name in patch.tensorNames {
            guard let t = model.info(name) else { throw PatchError("the patch restores \(name), which \(dir) does not have") }
            guard t.shape == patch.entries[name]!.shape else {
                throw PatchError("\(name) has shape \(t.shape) in \(dir), the patch expects \(patch.entries[name]!.shape)")
            }
            guard [.f32, .f16, .bf16].contains(t.dtype) else { throw PatchError("\(name) is \(t.dtype.rawValue); only F32, F16 and BF16 tensors can be patched") }
        }

        let outURL = URL(fileURLWithPath: out).standardizedFileURL
        let parent = outURL.deletingLastPathComponent().path
        let tmp = temporaryPath(for: out)
        try FileManager.default.createDirectory(atPath: tmp, withIntermediateDirectories: false)
        var finished = false
        defer { if !finished { try? FileManager.default.removeItem(atPath: tmp) } }

        // Every shard rewritten with the same tensors, dtypes and metadata.
        var inexact = 0
        var types = Set<String>()
        let shardNames = Set(model.files.map { URL(fileURLWithPath: $0.path).lastPathComponent })
        for (k, f) in model.files.enumerated() {
            let entries: [SafetensorsEntry] = f.tensors.map { t in
                guard patch.entries[t.name] != nil || lora?.modules[t.name] != nil else {
                    return SafetensorsEntry(name: t.name, dtype: t.dtype, shape: t.shape) { dst in
                        dst.copyMemory(from: try f.rawBytes(t.name))
                        model.releasePages(t.name)   // (a model larger than memory: keep only this tensor's pages)
                    }
                }
                types.insert(t.dtype.rawValue)
                return .floats(t.name, shape: t.shape, as: t.dtype) { dst in
                    try source.read(t.name, into: dst, count: t.elementCount)
                    source.releasePages(t.name)
                    try patch.apply(to: dst, tensor: t.name, count: t.elementCount)
                }
            }
            for t in f.tensors {
                guard let e = patch.entries[t.name] else { continue }
                switch t.dtype {
                case .bf16: for v in e.values where bf16ToFloat(floatToBF16(v)) != v { inexact += 1 }
                case .f16: for v in e.values where halfToFloat(floatToHalf(v)) != v { inexact += 1 }
                default: break
                }
            }
            let name = URL(fileURLWithPath: f.path).lastPathComponent
            try SafetensorsWriter.write(entries, metadata: f.metadata.isEmpty ? nil : f.metadata, to: tmp + "/" + name)
            progress?("wrote shard \(k + 1)/\(model.files.count)")
        }

        // Everything else at the top level: configs, tokenizer, chat template, index, README.
        var copied: [String] = [], skipped: [String] = []
        for name in try FileManager.default.contentsOfDirectory(atPath: dir).sorted() where !shardNames.contains(name) {
            let src = dir + "/" + name
            var isDir: ObjCBool = false
            guard FileManager.default.fileExists(atPath: src, isDirectory: &isDir), !name.hasPrefix(".") else { continue }
            if isDir.boolValue || weightExtensions.contains(URL(fileURLWithPath: name).pathExtension.lowercased()) || name == "realign.json" {
                if name != "realign.json" { skipped.append(name) }
                continue
            }
            try FileManager.default.copyItem(atPath: src, toPath: tmp + "/" + name)
            copied.append(name)
        }

        let identity = try ModelIdentity.of(dir, adapter: lora?.folder)
        let record = JSONValue.object(JSONObject([
            ("finetuned", .object(JSONObject([("name", .string(identity.name)), ("bytes", .int(Int64(identity.bytes))),
                                               ("fingerprint", .string(identity.fingerprint))]))),
            ("lora_adapter_merged", lora.map { .string(URL(fileURLWithPath: $0.folder).standardizedFileURL.lastPathComponent) } ?? .null),
            ("restored_weights", .int(Int64(patch.count))),
            ("patched_tensors", .int(Int64(patch.entries.count))),
            ("inexact_restored_values", .int(Int64(inexact))),
        ]))
        try writeAtomically(Data((record.pretty() + "\n").utf8), to: tmp + "/realign.json")

        // Into place: the old output (with overwrite) moves aside first and is removed after.
        var old: String? = nil
        if FileManager.default.fileExists(atPath: out) {
            old = parent + "/.\(outURL.lastPathComponent).old-\(getpid())"
            try FileManager.default.moveItem(atPath: out, toPath: old!)
        }
        do { try FileManager.default.moveItem(atPath: tmp, toPath: out) } catch {
            if let o = old { try? FileManager.default.moveItem(atPath: o, toPath: out) }
            throw PatchError("cannot move the finished folder into \(out): \(error)")
        }
        finished = true
        if let o = old { try? FileManager.default.removeItem(atPath: o) }

        var notes: [String] = []
        if inexact > 0 {
            notes.append("\(inexact) restored values are not exactly representable in the folder's dtype (\(types.sorted().joined(separator: ", "))) and were rounded to nearest even")
        }
        if !skipped.isEmpty { notes.append("not copied (sub-folders, or other weight files that would hold the un-recovered weights): \(skipped.joined(separator: ", "))") }
        return Summary(out: out, format: "safetensors", restored: patch.count, patched_tensors: patch.entries.count,
                       patched_tensor_types: types.sorted(), inexact: inexact, copied_files: copied + ["realign.json"],
                       skipped_files: skipped, notes: notes)
    }
}
