import Foundation
import Tensor
#if canImport(Glibc)
import Glibc
#endif

// safetensors: u64 LE header length N, N bytes of JSON header, then the data area.
// The header maps tensor names to {dtype, shape, data_offsets: [begin, end]} (offsets
// relative to the data area) plus an optional "__metadata__" string→string map. Like
// the reference library, the reader requires the tensors to tile the data area exactly
// (no holes, no overlaps, nothing left over).

public enum SafetensorsDType: String, CaseIterable, Sendable {
    case bool = "BOOL", u8 = "U8", i8 = "I8", f8_e5m2 = "F8_E5M2", f8_e4m3 = "F8_E4M3", f8_e8m0 = "F8_E8M0"
    case i16 = "I16", u16 = "U16", f16 = "F16", bf16 = "BF16", i32 = "I32", u32 = "U32", f32 = "F32"
    case f64 = "F64", i64 = "I64", u64 = "U64"

    public var byteSize: Int {
        switch self {
        case .bool, .u8, .i8, .f8_e5m2, .f8_e4m3, .f8_e8m0: return 1
        case .i16, .u16, .f16, .bf16: return 2
        case .i32, .u32, .f32: return 4
        case .f64, .i64, .u64: return 8
        }
    }
    /// Position in the reference library's dtype enum; its writer lays tensors out by
    /// this rank, largest first, then by name.
    var rank: Int { Self.allCases.firstIndex(of: self)! }
}

public struct SafetensorsTensorInfo: Sendable, Equatable {
    public let name: String
    public let dtype: SafetensorsDType
    public let shape: [Int]
    public let elementCount: Int
    /// Absolute offset in the file and byte count.
    public let offset: Int
    public let byteCount: Int
}

/// One memory-mapped .safetensors file with a validated header.
public final class SafetensorsFile: @unchecked Sendable {
    public static let maxHeaderBytes = 100_000_000

    public let path: String
    public let file: MappedFile
    public let metadata: [String: String]
    /// Tensors in data order.
    public let tensors: [SafetensorsTensorInfo]
    private let byName: [String: Int]

    public init(path: String) throws {
        self.path = path
        file = try MappedFile(path: path)
        func fail(_ m: String) -> FormatError { FormatError(path, m) }
        var cur = ByteCursor(file)
        let n64 = try cur.read(UInt64.self, "safetensors header length")
        guard n64 <= UInt64(Self.maxHeaderBytes) else { throw fail("header length \(n64) exceeds the \(Self.maxHeaderBytes)-byte limit") }
        let n = Int(n64)
        guard n <= file.count - 8 else { throw fail("header length \(n) runs past the end of the file (\(file.count) bytes)") }
        guard n >= 2, file.base.load(fromByteOffset: 8, as: UInt8.self) == UInt8(ascii: "{") else {
            throw fail("header does not start with '{'")
        }
        let header: JSONValue
        do { header = try JSONValue.parse(UnsafeRawBufferPointer(start: file.base + 8, count: n), maxDepth: 8) } catch let e as JSONError {
            throw fail("header: \(e)")
        }
        guard let obj = header.object else { throw fail("header is not a JSON object") }
        let dataStart = 8 + n
        let dataSize = file.count - dataStart

        var meta: [String: String] = [:]
        var infos: [(info: SafetensorsTensorInfo, begin: Int, end: Int)] = []
        for (name, v) in obj.pairs {
            if name == "__metadata__" {
                if v == .null { continue }  // the reference library reads null as "no metadata"
                guard let m = v.object else { throw fail("__metadata__ is not an object") }
                for (k, mv) in m.pairs {
                    guard let s = mv.string else { throw fail("__metadata__[\(k)] is not a string") }
                    meta[k] = s
                }
                continue
            }
            guard let t = v.object else { throw fail("tensor '\(name)': entry is not an object") }
            guard let ds = t["dtype"]?.string else { throw fail("tensor '\(name)': missing dtype") }
            guard let dtype = SafetensorsDType(rawValue: ds) else { throw fail("tensor '\(name)': unsupported dtype '\(ds)'") }
            guard let shapeJ = t["shape"]?.array else { throw fail("tensor '\(name)': missing shape") }
            var shape: [Int] = []
            var elements = 1
            for d in shapeJ {
                guard case .int(let d64) = d, d64 >= 0, let dim = Int(exactly: d64) else { throw fail("tensor '\(name)': bad shape \(shapeJ.map { $0.compact() })") }
                let (e, o) = elements.multipliedReportingOverflow(by: dim)
                guard !o else { throw fail("tensor '\(name)': shape \(shapeJ.map { $0.compact() }) overflows") }
                elements = e; shape.append(dim)
            }
            guard let offs = t["data_offsets"]?.array, offs.count == 2,
                  case .int(let b64) = offs[0], case .int(let e64) = offs[1],
                  b64 >= 0, e64 >= b64 else { throw fail("tensor '\(name)': bad data_offsets") }
            guard e64 <= Int64(dataSize) else {
                throw fail("tensor '\(name)': data_offsets [\(b64), \(e64)] run past the data area (\(dataSize) bytes)")
            }
            let (bytes, o) = elements.multipliedReportingOverflow(by: dtype.byteSize)
            guard !o, bytes == Int(e64 - b64) else {
                throw fail("tensor '\(name)': \(e64 - b64) bytes for shape \(shape) of \(ds) (needs \(o ? "overflow" : String(bytes)))")
            }
            let info = SafetensorsTensorInfo(name: name, dtype: dtype, shape: shape, elementCount: elements,
                                             offset: dataStart + Int(b64), byteCount: bytes)
            infos.append((info, Int(b64), Int(e64)))
        }
        infos.sort { $0.begin != $1.begin ? $0.begin < $1.begin : $0.end < $1.end }
        var expect = 0
        for t in infos {
            guard t.begin == expect else {
                throw fail(t.begin < expect ? "tensor '\(t.info.name)' overlaps the previous tensor"
                                            : "hole in the data area before tensor '\(t.info.name)'")
            }
            expect = t.end
        }
        guard expect == dataSize else { throw fail("tensors cover \(expect) bytes but the data area holds \(dataSize)") }
        metadata = meta
        tensors = infos.map(\.info)
        var idx: [String: Int] = [:]
        for (i, t) in tensors.enumerated() { idx[t.name] = i }
        byName = idx
    }

    public var names: [String] { tensors.map(\.name) }

    public func info(_ name: String) -> SafetensorsTensorInfo? { byName[name].map { tensors[$0] } }

    func require(_ name: String) throws -> SafetensorsTensorInfo {
        guard let t = info(name) else { throw FormatError(path, "no tensor named '\(name)'") }
        return t
    }

    /// The stored bytes of a tensor (little-endian, any alignment).
    public func rawBytes(_ name: String) throws -> UnsafeRawBufferPointer {
        let t = try require(name)
        return UnsafeRawBufferPointer(start: try file.bytes(at: t.offset, count: t.byteCount, what: name), count: t.byteCount)
    }

    /// An F32/F16/BF16 tensor as float32 into `dst` (room for `elementCount` values).
    public func readFloats(_ name: String, into dst: UnsafeMutablePointer<Float>) throws {
        let t = try require(name)
        let src = try rawBytes(name)
        guard let base = src.baseAddress else { return }
        switch t.dtype {
        case .f32: UnsafeMutableRawPointer(dst).copyMemory(from: base, byteCount: t.byteCount)
        case .f16: convertF16ToF32(base, count: t.elementCount, into: dst)
        case .bf16: convertBF16ToF32(base, count: t.elementCount, into: dst)
        default: throw FormatError(path, "tensor '\(name)' has dtype \(t.dtype.rawValue), not F32/F16/BF16")
        }
    }

    /// An F32/F16/BF16 tensor as a float32 array.
    public func floats(_ name: String) throws -> [Float] {
        let t = try require(name)
        guard t.dtype == .f32 || t.dtype == .f16 || t.dtype == .bf16 else {
            throw FormatError(path, "tensor '\(name)' has dtype \(t.dtype.rawValue), not F32/F16/BF16")
        }
        return try [Float](unsafeUninitializedCapacity: t.elementCount) { buf, n in
            if t.elementCount > 0 { try readFloats(name, into: buf.baseAddress!) }
            n = t.elementCount
        }
    }
}

/// A model folder of safetensors: `model.safetensors`, or `model.safetensors.index.json`
/// with its shards. Tensors are looked up by name across shards.
public final class SafetensorsModel: @unchecked Sendable {
    public static let singleFileName = "model.safetensors"
    public static let indexFileName = "model.safetensors.index.json"

    public let folder: String
    public let files: [SafetensorsFile]
    private let location: [String: Int]   // tensor name → index in files

    public init(folder: String) throws {
        self.folder = folder
        let indexPath = folder + "/" + Self.indexFileName
        let singlePath = folder + "/" + Self.singleFileName
        if FileManager.default.fileExists(atPath: indexPath) {
            let json = try JSONValue.parseFile(indexPath)
            guard let map = json["weight_map"]?.object else { throw FormatError(indexPath, "missing weight_map object") }
            var shardIndex: [String: Int] = [:]
            var shards: [SafetensorsFile] = []
            var loc: [String: Int] = [:]
            for (name, v) in map.pairs {
                guard let shard = v.string, !shard.isEmpty, !shard.contains("/"), shard != ".", shard != ".." else {
                    throw FormatError(indexPath, "weight_map['\(name)'] is not a file name in the folder")
                }
                if shardIndex[shard] == nil {
                    shardIndex[shard] = shards.count
                    shards.append(try SafetensorsFile(path: folder + "/" + shard))
                }
                let i = shardIndex[shard]!
                guard shards[i].info(name) != nil else {
                    throw FormatError(indexPath, "tensor '\(name)' is not in shard \(shard)")
                }
                loc[name] = i
            }
            files = shards
            location = loc
        } else if FileManager.default.fileExists(atPath: singlePath) {
            let f = try SafetensorsFile(path: singlePath)
            files = [f]
            var loc: [String: Int] = [:]
            for t in f.tensors { loc[t.name] = 0 }
            location = loc
        } else {
            throw FormatError(folder, "no \(Self.singleFileName) or \(Self.indexFileName) in the folder")
        }
    }

    /// All tensor names, sorted.
    public var names: [String] { location.keys.sorted() }

    public func file(containing name: String) -> SafetensorsFile? { location[name].map { files[$0] } }

    public func info(_ name: String) -> SafetensorsTensorInfo? { file(containing: name)?.info(name) }

    public func floats(_ name: String) throws -> [Float] {
        guard let f = file(containing: name) else { throw FormatError(folder, "no tensor named '\(name)'") }
        return try f.floats(name)
    }

    public func readFloats(_ name: String, into dst: UnsafeMutablePointer<Float>) throws {
        guard let f = file(containing: name) else { throw FormatError(folder, "no tensor named '\(name)'") }
        try f.readFloats(name, into: dst)
    }

    public func rawBytes(_ name: String) throws -> UnsafeRawBufferPointer {
        guard let f = file(containing: name) else { throw FormatError(folder, "no tensor named '\(name)'") }
        return try f.rawBytes(name)
    }
}

// MARK: - writing

/// A tensor to write: its header fields and a function that fills its bytes when the
/// writer reaches it (so a whole model need not be held in memory at once).
public struct SafetensorsEntry {
    public let name: String
    public let dtype: SafetensorsDType
    public let shape: [Int]
    let fill: (UnsafeMutableRawBufferPointer) throws -> Void

    /// `fill` must write exactly product(shape) * dtype.byteSize little-endian bytes.
    public init(name: String, dtype: SafetensorsDType, shape: [Int], fill: @escaping (UnsafeMutableRawBufferPointer) throws -> Void) {
        self.name = name; self.dtype = dtype; self.shape = shape; self.fill = fill
    }

    /// Raw bytes already in `dtype`.
    public static func raw(_ name: String, dtype: SafetensorsDType, shape: [Int], bytes: [UInt8]) -> SafetensorsEntry {
        SafetensorsEntry(name: name, dtype: dtype, shape: shape) { dst in
            guard bytes.count == dst.count else { throw FormatError(name, "has \(bytes.count) bytes, shape needs \(dst.count)") }
            dst.copyBytes(from: bytes)
        }
    }

    /// Float32 values stored as F32, F16 or BF16 (round to nearest even).
    public static func floats(_ name: String, shape: [Int], as dtype: SafetensorsDType, _ values: [Float]) -> SafetensorsEntry {
        floats(name, shape: shape, as: dtype) { dst in
            values.withUnsafeBufferPointer { dst.update(from: $0.baseAddress!, count: values.count) }
        }
    }

    /// Float32 values produced on demand by `produce` (into a buffer of product(shape)
    /// floats), stored as F32, F16 or BF16.
    public static func floats(_ name: String, shape: [Int], as dtype: SafetensorsDType,
                              produce: @escaping (UnsafeMutablePointer<Float>) throws -> Void) -> SafetensorsEntry {
        SafetensorsEntry(name: name, dtype: dtype, shape: shape) { dst in
            let n = dst.count / dtype.byteSize
            guard n > 0 else { return }
            if dtype == .f32 {
                try produce(dst.baseAddress!.bindMemory(to: Float.self, capacity: n))
                return
            }
            let tmp = UnsafeMutablePointer<Float>.allocate(capacity: n)
            defer { tmp.deallocate() }
            try produce(tmp)
            switch dtype {
            case .f16: convertF32ToF16(tmp, count: n, into: dst.baseAddress!)
            case .bf16: convertF32ToBF16(tmp, count: n, into: dst.baseAddress!)
            default: throw FormatError(name, "cannot store floats as \(dtype.rawValue)")
            }
        }
    }

    func byteCount() throws -> Int {
        var n = dtype.byteSize
        for d in shape {
            guard d >= 0 else { throw FormatError(name, "negative dimension in shape \(shape)") }
            let (r, o) = n.multipliedReportingOverflow(by: d)
            guard !o else { throw FormatError(name, "shape \(shape) overflows") }
            n = r
        }
        return n
    }
}

public enum SafetensorsWriter {
    /// Writes one .safetensors file atomically (temporary file in the same folder, then
    /// rename). Layout is the reference library's: tensors ordered by dtype then name,
    /// compact header JSON padded with spaces to a multiple of 8 bytes. Metadata keys are
    /// written sorted (the reference library uses hash order, so files with more than
    /// one metadata key differ from its output only in that order).
    public static func write(_ entries: [SafetensorsEntry], metadata: [String: String]? = nil, to path: String) throws {
        var seen = Set<String>()
        for e in entries {
            guard e.name != "__metadata__" else { throw FormatError(path, "'__metadata__' is not a valid tensor name") }
            guard seen.insert(e.name).inserted else { throw FormatError(path, "duplicate tensor name '\(e.name)'") }
        }
        let ordered = entries.sorted { a, b in
            a.dtype.rank != b.dtype.rank ? a.dtype.rank > b.dtype.rank : Array(a.name.utf8).lexicographicallyPrecedes(Array(b.name.utf8))
        }
        var header = "{"
        var first = true
        if let meta = metadata {
            header += "\"__metadata__\":{"
            for (i, k) in meta.keys.sorted(by: { Array($0.utf8).lexicographicallyPrecedes(Array($1.utf8)) }).enumerated() {
                if i > 0 { header += "," }
                appendJSONString(k, to: &header); header += ":"; appendJSONString(meta[k]!, to: &header)
            }
            header += "}"
            first = false
        }
        var offset = 0
        var sizes: [Int] = []
        for e in ordered {
            let n = try e.byteCount()
            sizes.append(n)
            if !first { header += "," }
            first = false
            appendJSONString(e.name, to: &header)
            header += ":{\"dtype\":\"\(e.dtype.rawValue)\",\"shape\":[\(e.shape.map(String.init).joined(separator: ","))],\"data_offsets\":[\(offset),\(offset + n)]}"
            offset += n
        }
        header += "}"
        var headerBytes = Array(header.utf8)
        headerBytes += [UInt8](repeating: 0x20, count: (8 - headerBytes.count % 8) % 8)

        try writeAtomically(path) { out in
            var len = UInt64(headerBytes.count).littleEndian
            try withUnsafeBytes(of: &len) { try out.write($0) }
            try headerBytes.withUnsafeBytes { try out.write($0) }
            let buf = UnsafeMutableRawBufferPointer.allocate(byteCount: max(1, sizes.max() ?? 1), alignment: 64)
            defer { buf.deallocate() }
            for (e, n) in zip(ordered, sizes) where n > 0 {
                let dst = UnsafeMutableRawBufferPointer(rebasing: buf[0..<n])
                try e.fill(dst)
                try out.write(UnsafeRawBufferPointer(dst))
            }
        }
    }

    /// Writes `entries` as `model.safetensors`, or, when they exceed `maxShardBytes`, as
    /// `model-0000i-of-0000n.safetensors` shards (in the given order, a new shard when the
    /// next tensor would overflow the current one) plus `model.safetensors.index.json`
    /// like transformers' `save_pretrained`. Returns the file names written.
    @discardableResult
    public static func writeModel(_ entries: [SafetensorsEntry], metadata: [String: String]? = ["format": "pt"],
                                  folder: String, maxShardBytes: Int = 5_000_000_000) throws -> [String] {
        var shards: [[SafetensorsEntry]] = [[]]
        var current = 0
        var total = 0
        for e in entries {
            let n = try e.byteCount()
            total += n
            if !shards[shards.count - 1].isEmpty, current + n > maxShardBytes { shards.append([]); current = 0 }
            shards[shards.count - 1].append(e)
            current += n
        }
        if shards.count == 1 {
            try write(entries, metadata: metadata, to: folder + "/" + SafetensorsModel.singleFileName)
            return [SafetensorsModel.singleFileName]
        }
        var names: [String] = []
        var weightMap = JSONObject()
        for (i, shard) in shards.enumerated() {
            let name = String(format: "model-%05d-of-%05d.safetensors", i + 1, shards.count)
            try write(shard, metadata: metadata, to: folder + "/" + name)
            names.append(name)
            for e in shard { weightMap[e.name] = .string(name) }
        }
        let index = JSONValue.object(JSONObject([
            ("metadata", .object(JSONObject([("total_size", .int(Int64(total)))]))),
            ("weight_map", .object(weightMap)),
        ]))
        let text = Array((index.pretty(indent: 2, sortKeys: true) + "\n").utf8)
        try writeAtomically(folder + "/" + SafetensorsModel.indexFileName) { out in try text.withUnsafeBytes { try out.write($0) } }
        names.append(SafetensorsModel.indexFileName)
        return names
    }
}

/// An open file descriptor that writes everything it is given or throws.
public struct FileOutput {
    let fd: Int32
    let path: String
    public func write(_ bytes: UnsafeRawBufferPointer) throws {
        guard var p = bytes.baseAddress else { return }
        var left = bytes.count
        while left > 0 {
            let n = Glibc.write(fd, p, min(left, 1 << 30))
            if n < 0 {
                if errno == EINTR { continue }
                throw FormatError(path, "write failed: \(String(cString: strerror(errno)))")
            }
            p += n; left -= n
        }
    }
}

/// Writes a file via a temporary file in the same folder renamed over `path` at the end,
/// so readers never see a half-written file. The temporary file is removed on error.
public func writeAtomically(_ path: String, _ body: (FileOutput) throws -> Void) throws {
    let tmp = temporaryPath(for: path)
    let fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
    guard fd >= 0 else { throw FormatError(path, "cannot create \(tmp): \(String(cString: strerror(errno)))") }
    do {
        defer { close(fd) }
        try body(FileOutput(fd: fd, path: path))
        guard fsync(fd) == 0 else { throw FormatError(path, "fsync failed: \(String(cString: strerror(errno)))") }
    } catch {
        unlink(tmp)
        throw error
    }
    guard rename(tmp, path) == 0 else {
        let msg = String(cString: strerror(errno))
        unlink(tmp)
        throw FormatError(path, "cannot rename temporary file into place: \(msg)")
    }
}

/// `writeAtomically` for bytes already in memory.
public func writeAtomically(_ data: Data, to path: String) throws {
    try writeAtomically(path) { out in try data.withUnsafeBytes { try out.write($0) } }
}

extension SafetensorsModel: ParameterSource {
    public var path: String { folder }
    public func contains(_ hfName: String) -> Bool { location[hfName] != nil }
    public func shape(_ hfName: String) throws -> [Int] {
        guard let t = info(hfName) else { throw FormatError(folder, "missing tensor \(hfName)") }
        return t.shape
    }
    public func read(_ hfName: String, into dst: UnsafeMutablePointer<Float>, count: Int) throws {
        guard let f = file(containing: hfName), let t = f.info(hfName) else { throw FormatError(folder, "missing tensor \(hfName)") }
        guard t.elementCount == count else { throw FormatError(f.path, "tensor \(hfName): \(t.elementCount) elements, expected \(count)") }
        try f.readFloats(hfName, into: dst)
    }
    public func releasePages(_ hfName: String) {
        if let f = file(containing: hfName), let t = f.info(hfName) { f.file.releasePages(f.file.base + t.offset, count: t.byteCount) }
    }
}
