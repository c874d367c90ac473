import Foundation
import Formats

/// A mistake in building or applying a patch in memory (files get `FormatError`).
public struct PatchError: Error, CustomStringConvertible, Equatable {
    public let description: String
    public init(_ d: String) { description = d }
}

/// Which fine-tuned model a patch belongs to: cheap to compute, and enough to catch a
/// patch given the wrong model. Not an integrity check of every byte.
public struct ModelIdentity: Equatable, Sendable, Codable {
    /// File name of the GGUF, or the folder's name.
    public var name: String
    /// Size of the GGUF file, or of all the folder's safetensors weight files.
    public var bytes: Int
    /// sha256 over every tensor's name, type, shape and 4 KiB samples of its data at the
    /// start, middle and end (tensors sorted by name). Fine-tuning changes the data of every
    /// tensor it trains, so two fine-tunes of one base differ here; reading ~12 KiB per
    /// tensor keeps it fast on any model size.
    public var fingerprint: String

    public init(name: String, bytes: Int, fingerprint: String) {
        self.name = name; self.bytes = bytes; self.fingerprint = fingerprint
    }

    /// The identity of a base model plus a PEFT LoRA adapter merged into it: name
    /// "BASE + ADAPTER", bytes of both, and a fingerprint over the base's fingerprint and
    /// every byte of the adapter's config and weights (adapters are small). A patch made for
    /// base + adapter therefore never fits the base alone, nor the base with another adapter.
    public static func of(_ path: String, adapter: String?) throws -> ModelIdentity {
        let base = try of(path)
        guard let adapter else { return base }
        var hasher = SHA256()
        hasher.update(Array((base.fingerprint + "\n").utf8))
        var bytes = base.bytes
        for f in [LoRAAdapter.configFileName, LoRAAdapter.weightsFileName] {
            let m = try MappedFile(path: adapter + "/" + f)
            hasher.update(Array("\(f)\t\(m.count)\n".utf8))
            hasher.update(UnsafeRawBufferPointer(start: m.base, count: m.count))
            bytes += m.count
        }
        let name = URL(fileURLWithPath: adapter).standardizedFileURL.lastPathComponent
        return ModelIdentity(name: base.name + " + " + name, bytes: bytes, fingerprint: hasher.finalizeHex())
    }

    /// The identity of a GGUF file or an HF safetensors folder.
    public static func of(_ path: String) throws -> ModelIdentity {
        let name = URL(fileURLWithPath: path).standardizedFileURL.lastPathComponent
        var hasher = SHA256()
        func sample(_ base: UnsafeRawPointer, _ count: Int) {
            let chunk = 4096
            var starts = [0]
            if count > chunk { starts += [count / 2 - chunk / 2, count - chunk] }
            for s in starts { hasher.update(UnsafeRawBufferPointer(start: base + s, count: min(chunk, count))) }
        }
        func describe(_ name: String, _ type: String, _ shape: [Int]) {
            hasher.update(Array("\(name)\t\(type)\t\(shape.map(String.init).joined(separator: ","))\n".utf8))
        }
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir) else { throw FormatError(path, "no such file or folder") }
        if isDir.boolValue {
            let model = try SafetensorsModel(folder: path)
            var bytes = 0
            for f in model.files { bytes += f.file.count }
            for n in model.names {
                let f = model.file(containing: n)!, t = f.info(n)!
                describe(n, t.dtype.rawValue, t.shape)
                sample(f.file.base + t.offset, t.byteCount)
            }
            return ModelIdentity(name: name, bytes: bytes, fingerprint: hasher.finalizeHex())
        }
        let g = try GGUFFile(path: path)
        for t in g.tensors.sorted(by: { $0.name < $1.name }) {
            describe(t.name, t.type.name, t.shape)
            sample(g.bytes(t), t.byteCount)
        }
        return ModelIdentity(name: name, bytes: g.file.count, fingerprint: hasher.finalizeHex())
    }
}

/// The result of a recovery: for each restored tensor (HF name, HF layout), the flat
/// element indices restored and the aligned model's values there. Applying it to the
/// fine-tuned model gives the recovered model; everything else stays the fine-tuned value.
public struct SparsePatch: Equatable {
    public struct Entry: Equatable {
        /// HF shape of the tensor ([out, in] or [n]).
        public let shape: [Int]
        /// Sorted, unique flat indices into the row-major tensor.
        public fileprivate(set) var indices: [UInt32]
        /// The value at each index.
        public fileprivate(set) var values: [Float]
        public var elementCount: Int { shape.reduce(1, *) }
    }

    /// Restored tensors by HF name; a tensor with nothing restored has no entry.
    public private(set) var entries: [String: Entry] = [:]
    /// The fine-tuned model the patch applies to.
    public var model: ModelIdentity?
    /// Free-form notes saved with the patch (e.g. recovery settings).
    public var notes: [String: String] = [:]

    public init(model: ModelIdentity? = nil) { self.model = model }

    public static let format = "realign-patch"
    public static let version = 1
    /// Indices are kept as UInt32 in memory (half the size of Int): tensors are limited to
    /// 2^32 elements, far more than any real weight matrix.
    public static let maxElements = 1 << 32

    /// Number of restored weights.
    public var count: Int { entries.values.reduce(0) { $0 + $1.indices.count } }
    /// Restored weights per tensor.
    public var counts: [String: Int] { entries.mapValues { $0.indices.count } }
    /// Names of the patched tensors, sorted.
    public var tensorNames: [String] { entries.keys.sorted() }

    static func elementCount(_ shape: [Int]) -> Int? {
        guard !shape.isEmpty, shape.count <= 4 else { return nil }
        var n = 1
        for d in shape {
            guard d > 0 else { return nil }
            let (r, o) = n.multipliedReportingOverflow(by: d)
            guard !o, r <= maxElements else { return nil }
            n = r
        }
        return n
    }

    /// Records that `indices` of `tensor` get `values`. A later call for the same tensor
    /// merges: an index given again takes the newer value (within one call, the last one).
    public mutating func add(_ tensor: String, shape: [Int], indices: [Int], values: [Float]) throws {
        guard let n = Self.elementCount(shape) else { throw PatchError("\(tensor): bad shape \(shape)") }
        if let e = entries[tensor], e.shape != shape {
            throw PatchError("\(tensor): shape \(shape) differs from \(e.shape) recorded earlier")
        }
        guard indices.count == values.count else {
            throw PatchError("\(tensor): \(indices.count) indices but \(values.count) values")
        }
        for (i, v) in zip(indices, values) {
            guard i >= 0, i < n else { throw PatchError("\(tensor): index \(i) outside 0..<\(n)") }
            guard v.isFinite else { throw PatchError("\(tensor): value \(v) at index \(i) is not finite") }
        }
        if indices.isEmpty { return }
        // Sort by index, keeping call order among equal indices; then keep each run's last.
        let order = indices.indices.sorted { indices[$0] != indices[$1] ? indices[$0] < indices[$1] : $0 < $1 }
        var newIdx: [UInt32] = [], newVal: [Float] = []
        newIdx.reserveCapacity(order.count); newVal.reserveCapacity(order.count)
        for (k, p) in order.enumerated() where k + 1 == order.count || indices[order[k + 1]] != indices[p] {
            newIdx.append(UInt32(indices[p])); newVal.append(values[p])
        }
        guard let old = entries[tensor] else {
            entries[tensor] = Entry(shape: shape, indices: newIdx, values: newVal)
            return
        }
        // Merge two sorted lists; on a tie the new value wins.
        var idx: [UInt32] = [], val: [Float] = []
        idx.reserveCapacity(old.indices.count + newIdx.count); val.reserveCapacity(old.indices.count + newIdx.count)
        var a = 0, b = 0
        while a < old.indices.count || b < newIdx.count {
            if b == newIdx.count || (a < old.indices.count && old.indices[a] < newIdx[b]) {
                idx.append(old.indices[a]); val.append(old.values[a]); a += 1
            } else {
                if a < old.indices.count && old.indices[a] == newIdx[b] { a += 1 }
                idx.append(newIdx[b]); val.append(newVal[b]); b += 1
            }
        }
        entries[tensor] = Entry(shape: shape, indices: idx, values: val)
    }

    /// Takes `indices` of `tensor` out of the patch (rollback: those weights go back to the
    /// fine-tuned values). Indices not in the patch are ignored. Returns how many were removed.
    @discardableResult
    public mutating func remove(_ tensor: String, indices: [Int]) -> Int {
        guard let e = entries[tensor], !indices.isEmpty else { return 0 }
        let drop = Set(indices.lazy.filter { $0 >= 0 && $0 <= Int(UInt32.max) }.map { UInt32($0) })
        var idx: [UInt32] = [], val: [Float] = []
        idx.reserveCapacity(e.indices.count); val.reserveCapacity(e.indices.count)
        for (i, v) in zip(e.indices, e.values) where !drop.contains(i) { idx.append(i); val.append(v) }
        let removed = e.indices.count - idx.count
        entries[tensor] = idx.isEmpty ? nil : Entry(shape: e.shape, indices: idx, values: val)
        return removed
    }

    /// Writes the patched values of `tensor` into `buffer` (its `count` elements in HF
    /// layout). A tensor the patch does not touch is left alone.
    public func apply(to buffer: UnsafeMutablePointer<Float>, tensor: String, count: Int) throws {
        guard let e = entries[tensor] else { return }
        guard e.elementCount == count else {
            throw PatchError("\(tensor): the patch is for \(e.elementCount) elements (shape \(e.shape)), the buffer holds \(count)")
        }
        e.indices.withUnsafeBufferPointer { idx in
            e.values.withUnsafeBufferPointer { val in
                for k in 0..<idx.count { buffer[Int(idx[k])] = val[k] }
            }
        }
    }

    // MARK: - file

    /// Saves as a safetensors file: `<tensor>/indices` I64 and `<tensor>/values` F32 per
    /// tensor, and metadata (format, version, the model's identity, shapes as JSON, notes
    /// as `note.<key>`). Written atomically.
    public func write(to path: String) throws {
        var meta: [String: String] = ["format": Self.format, "version": String(Self.version)]
        if let m = model {
            meta["model.name"] = m.name
            meta["model.bytes"] = String(m.bytes)
            meta["model.fingerprint"] = m.fingerprint
        }
        var shapes = JSONObject()
        var tensors: [SafetensorsEntry] = []
        for name in tensorNames {
            let e = entries[name]!
            shapes[name] = .array(e.shape.map { .int(Int64($0)) })
            tensors.append(SafetensorsEntry(name: name + "/indices", dtype: .i64, shape: [e.indices.count]) { dst in
                for (k, i) in e.indices.enumerated() { dst.storeBytes(of: Int64(i).littleEndian, toByteOffset: 8 * k, as: Int64.self) }
            })
            tensors.append(.floats(name + "/values", shape: [e.values.count], as: .f32, e.values))
        }
        meta["shapes"] = JSONValue.object(shapes).compact()
        for (k, v) in notes { meta["note." + k] = v }
        try SafetensorsWriter.write(tensors, metadata: meta, to: path)
    }

    /// Reads and validates a patch file: every tensor has both parts, I64 indices sorted,
    /// unique and inside its recorded shape, as many finite F32 values.
    public static func read(_ path: String) throws -> SparsePatch {
        func fail(_ m: String) -> FormatError { FormatError(path, m) }
        let f = try SafetensorsFile(path: path)
        guard f.metadata["format"] == format else { throw fail("not a patch file written by realign (metadata format is not \"\(format)\")") }
        guard let v = f.metadata["version"].flatMap(Int.init), v == version else {
            throw fail("patch version \(f.metadata["version"] ?? "none") is not supported (this realign reads version \(version))")
        }
        var patch = SparsePatch()
        if let name = f.metadata["model.name"] {
            guard let b = f.metadata["model.bytes"].flatMap(Int.init), b >= 0, let fp = f.metadata["model.fingerprint"] else {
                throw fail("model identity is incomplete (needs model.name, model.bytes, model.fingerprint)")
            }
            patch.model = ModelIdentity(name: name, bytes: b, fingerprint: fp)
        }
        for (k, v) in f.metadata where k.hasPrefix("note.") { patch.notes[String(k.dropFirst(5))] = v }

        guard let shapesText = f.metadata["shapes"] else { throw fail("metadata has no \"shapes\"") }
        let shapesJSON: JSONValue
        do { shapesJSON = try JSONValue.parse(shapesText, maxDepth: 4) } catch { throw fail("metadata \"shapes\": \(error)") }
        guard let shapes = shapesJSON.object else { throw fail("metadata \"shapes\" is not a JSON object") }

        var seen = Set<String>()
        for (name, s) in shapes.pairs {
            guard let dims = s.array?.compactMap(\.int), dims.count == s.array?.count, let n = elementCount(dims) else {
                throw fail("tensor '\(name)': bad shape \(s.compact()) (1 to 4 positive dimensions, at most \(maxElements) elements)")
            }
            guard let it = f.info(name + "/indices"), let vt = f.info(name + "/values") else {
                throw fail("tensor '\(name)' lacks '\(name)/indices' or '\(name)/values'")
            }
            seen.insert(it.name); seen.insert(vt.name)
            guard it.dtype == .i64, it.shape.count == 1 else { throw fail("'\(it.name)' must be a 1-D I64 tensor, is \(it.dtype.rawValue) \(it.shape)") }
            guard vt.dtype == .f32, vt.shape.count == 1 else { throw fail("'\(vt.name)' must be a 1-D F32 tensor, is \(vt.dtype.rawValue) \(vt.shape)") }
            guard it.elementCount == vt.elementCount else {
                throw fail("tensor '\(name)': \(it.elementCount) indices but \(vt.elementCount) values")
            }
            guard it.elementCount > 0 else { continue }
            let rawIdx = try f.rawBytes(it.name), rawVal = try f.rawBytes(vt.name)
            var idx = [UInt32](), val = [Float]()
            idx.reserveCapacity(it.elementCount); val.reserveCapacity(it.elementCount)
            var previous: Int64 = -1
            for k in 0..<it.elementCount {
                let i = Int64(littleEndian: rawIdx.loadUnaligned(fromByteOffset: 8 * k, as: Int64.self))
                guard i > previous else {
                    throw fail("tensor '\(name)': indices are not sorted and unique (\(i) after \(previous) at position \(k))")
                }
                guard i < Int64(n) else { throw fail("tensor '\(name)': index \(i) is outside shape \(dims) (\(n) elements)") }
                let x = Float(bitPattern: UInt32(littleEndian: rawVal.loadUnaligned(fromByteOffset: 4 * k, as: UInt32.self)))
                guard x.isFinite else { throw fail("tensor '\(name)': value at index \(i) is \(x)") }
                idx.append(UInt32(i)); val.append(x)
                previous = i
            }
            patch.entries[name] = Entry(shape: dims, indices: idx, values: val)
        }
        if let extra = f.names.first(where: { !seen.contains($0) }) {
            throw fail("tensor '\(extra)' is not part of any patched tensor listed in \"shapes\"")
        }
        return patch
    }
}

/// A model's parameters with a patch applied as they are read: the recovered model in
/// memory, without writing it (e.g. `ModelWeights.load(config:from:)`).
public struct PatchedParameters: ParameterSource {
    public let base: ParameterSource
    public let patch: SparsePatch
    public init(_ base: ParameterSource, _ patch: SparsePatch) { self.base = base; self.patch = patch }

    public var path: String { base.path }
    public func contains(_ hfName: String) -> Bool { base.contains(hfName) }
    public func shape(_ hfName: String) throws -> [Int] { try base.shape(hfName) }
    public func read(_ hfName: String, into dst: UnsafeMutablePointer<Float>, count: Int) throws {
        try base.read(hfName, into: dst, count: count)
        try patch.apply(to: dst, tensor: hfName, count: count)
    }
    public func releasePages(_ hfName: String) { base.releasePages(hfName) }
}
