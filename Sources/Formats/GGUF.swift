import Foundation
import Tensor

/// A metadata value in a GGUF file. Integers keep their signedness; arrays may nest.
public indirect enum GGUFValue: Equatable, Sendable {
    case uint(UInt64), int(Int64), float(Double), bool(Bool), string(String), array([GGUFValue])

    public var intValue: Int? {
        switch self {
        case .uint(let v): return v <= UInt64(Int.max) ? Int(v) : nil
        case .int(let v): return Int(v)
        default: return nil
        }
    }
    public var doubleValue: Double? {
        switch self {
        case .float(let v): return v
        case .uint, .int: return intValue.map(Double.init)
        default: return nil
        }
    }
    public var stringValue: String? { if case .string(let s) = self { return s }; return nil }
    public var boolValue: Bool? { if case .bool(let b) = self { return b }; return nil }
    public var arrayValue: [GGUFValue]? { if case .array(let a) = self { return a }; return nil }
}

/// The stored type of a metadata value (GGUF value type codes 0…12). `GGUFValue` folds
/// the integer widths together; this keeps them, so a file's metadata can be written back
/// exactly. An array records its element type; for an array of arrays, that of the first
/// inner array (GGUF lets inner arrays differ; real files do not).
public indirect enum GGUFValueType: Equatable, Sendable {
    case uint8, int8, uint16, int16, uint32, int32, float32, bool, string, uint64, int64, float64
    case array(GGUFValueType)

    /// The type code stored in the file.
    public var code: UInt32 {
        switch self {
        case .uint8: return 0
        case .int8: return 1
        case .uint16: return 2
        case .int16: return 3
        case .uint32: return 4
        case .int32: return 5
        case .float32: return 6
        case .bool: return 7
        case .string: return 8
        case .array: return 9
        case .uint64: return 10
        case .int64: return 11
        case .float64: return 12
        }
    }

    /// A scalar type from its code (nil for arrays and unknown codes).
    public init?(scalarCode: UInt32) {
        let all: [GGUFValueType] = [.uint8, .int8, .uint16, .int16, .uint32, .int32, .float32, .bool, .string, .uint64, .int64, .float64]
        guard let t = all.first(where: { $0.code == scalarCode }) else { return nil }
        self = t
    }

    /// The type gguf-py would choose for a new value: 32-bit integers and floats unless the
    /// value needs 64 bits; an array's type from its first element (strings if empty).
    public static func natural(for value: GGUFValue) -> GGUFValueType {
        switch value {
        case .uint(let v): return v <= UInt64(UInt32.max) ? .uint32 : .uint64
        case .int(let v): return Int64(Int32.min)...Int64(Int32.max) ~= v ? .int32 : .int64
        case .float: return .float32
        case .bool: return .bool
        case .string: return .string
        case .array(let items): return .array(items.first.map(natural) ?? .string)
        }
    }
}

/// One tensor's header: shape in ggml order (`shape[0]` is the fastest-varying, i.e.
/// the row length), element type, and where its bytes are in the file.
public struct GGUFTensorInfo: Sendable {
    public let name: String
    public let shape: [Int]
    public let type: GGMLType
    public let offset: Int      // absolute offset in the file
    public let byteCount: Int
    public var elementCount: Int { shape.reduce(1, *) }
    /// Rows × columns as a row-major matrix (columns = shape[0]).
    public var rows: Int { elementCount / max(shape.first ?? 1, 1) }
    public var columns: Int { shape.first ?? 1 }
}

/// A GGUF v2/v3 file, memory-mapped. The header is parsed once, fully bounds-checked:
/// every count is checked against the bytes left, so a corrupt file cannot make us
/// allocate absurd amounts, and every tensor's data must lie inside the file.
public final class GGUFFile: @unchecked Sendable {
    public let file: MappedFile
    public var path: String { file.path }
    public let version: UInt32
    public let metadata: [String: GGUFValue]
    public let metadataKeys: [String]          // in file order
    public let metadataTypes: [String: GGUFValueType]
    public let tensors: [GGUFTensorInfo]        // in file order
    public let alignment: Int
    public let dataOffset: Int
    private let tensorIndex: [String: Int]

    static let maxDims = 4
    static let maxArrayDepth = 8

    public convenience init(path: String) throws {
        try self.init(file: try MappedFile(path: path))
    }

    public init(file: MappedFile) throws {
        self.file = file
        let path = file.path
        var c = ByteCursor(file)
        let magic = try c.read(UInt32.self, "magic")
        guard magic == 0x4655_4747 else { throw FormatError(path, "not a GGUF file (bad magic)") }
        version = try c.read(UInt32.self, "version")
        guard version == 2 || version == 3 else {
            throw FormatError(path, "unsupported GGUF version \(version) (supported: 2, 3)")
        }
        let tensorCount = try c.read(UInt64.self, "tensor count")
        let kvCount = try c.read(UInt64.self, "metadata count")
        // Each key/value takes at least 12 bytes, each tensor info at least 28.
        let left = UInt64(file.count - c.offset)
        guard kvCount <= left / 12 else { throw FormatError(path, "metadata count \(kvCount) is larger than the file allows") }
        guard tensorCount <= left / 28 else { throw FormatError(path, "tensor count \(tensorCount) is larger than the file allows") }

        var meta: [String: GGUFValue] = [:]
        var types: [String: GGUFValueType] = [:]
        var keys: [String] = []
        keys.reserveCapacity(Int(kvCount))
        for _ in 0..<Int(kvCount) {
            let key = try GGUFFile.readString(&c, "metadata key")
            let type = try c.read(UInt32.self, "type of '\(key)'")
            let (value, valueType) = try GGUFFile.readValue(&c, type: type, key: key, depth: 0)
            guard meta.updateValue(value, forKey: key) == nil else { throw FormatError(path, "duplicate metadata key '\(key)'") }
            types[key] = valueType
            keys.append(key)
        }
        metadata = meta
        metadataTypes = types
        metadataKeys = keys

        var align = 32
        if let a = meta["general.alignment"] {
            guard let v = a.intValue, v > 0, v <= 1 << 20, v & (v - 1) == 0 else {
                throw FormatError(path, "general.alignment must be a power of two, got \(a)")
            }
            align = v
        }
        alignment = align

        struct Raw { let name: String; let shape: [Int]; let type: GGMLType; let offset: UInt64; let bytes: Int }
        var raws: [Raw] = []
        raws.reserveCapacity(Int(tensorCount))
        var index: [String: Int] = [:]
        for _ in 0..<Int(tensorCount) {
            let name = try GGUFFile.readString(&c, "tensor name")
            let nDims = try c.read(UInt32.self, "dimension count of '\(name)'")
            guard nDims >= 1, nDims <= GGUFFile.maxDims else {
                throw FormatError(path, "tensor '\(name)' has \(nDims) dimensions (1...\(GGUFFile.maxDims) allowed)")
            }
            var shape: [Int] = []
            var elements = 1
            for _ in 0..<Int(nDims) {
                let d = try c.read(UInt64.self, "shape of '\(name)'")
                guard d > 0, d < 1 << 40 else { throw FormatError(path, "tensor '\(name)' has dimension \(d)") }
                let (e, o) = elements.multipliedReportingOverflow(by: Int(d))
                guard !o, e < 1 << 42 else { throw FormatError(path, "tensor '\(name)' has too many elements") }
                elements = e
                shape.append(Int(d))
            }
            let rawType = try c.read(UInt32.self, "type of '\(name)'")
            guard let type = GGMLType(rawValue: rawType) else {
                throw FormatError(path, "tensor '\(name)' has unknown type \(rawType)")
            }
            guard shape[0] % type.blockSize == 0, let bytes = type.byteCount(elements: elements) else {
                throw FormatError(path, "tensor '\(name)' row length \(shape[0]) is not a multiple of the \(type.name) block size \(type.blockSize)")
            }
            let offset = try c.read(UInt64.self, "offset of '\(name)'")
            guard index.updateValue(raws.count, forKey: name) == nil else { throw FormatError(path, "duplicate tensor '\(name)'") }
            raws.append(Raw(name: name, shape: shape, type: type, offset: offset, bytes: bytes))
        }
        let start = (c.offset + align - 1) / align * align
        dataOffset = start
        var infos: [GGUFTensorInfo] = []
        infos.reserveCapacity(raws.count)
        for r in raws {
            guard r.offset % UInt64(align) == 0 else {
                throw FormatError(path, "tensor '\(r.name)' data offset \(r.offset) is not aligned to \(align)")
            }
            guard r.offset <= UInt64(file.count), start + Int(r.offset) <= file.count,
                  r.bytes <= file.count - start - Int(r.offset) else {
                throw FormatError(path, "tensor '\(r.name)' (\(r.bytes) bytes at data offset \(r.offset)) runs past the end of the file (\(file.count) bytes): truncated?")
            }
            infos.append(GGUFTensorInfo(name: r.name, shape: r.shape, type: r.type, offset: start + Int(r.offset), byteCount: r.bytes))
        }
        tensors = infos
        tensorIndex = index
    }

    /// The longest metadata string or name read. Real ones are short (a chat template is a few
    /// KB, the longest a few hundred KB); a larger one would be copied into memory whole before
    /// whatever uses it could refuse it.
    static let maxStringBytes = 16 << 20

    static func readString(_ c: inout ByteCursor, _ what: @autoclosure () -> String) throws -> String {
        let n = try c.read(UInt64.self, "\(what()) length")
        guard n <= UInt64(c.file.count - c.offset) else {
            throw FormatError(c.file.path, "\(what()): length \(n) runs past the end of the file")
        }
        guard n <= UInt64(maxStringBytes) else {
            throw FormatError(c.file.path, "\(what()) is \(n) bytes long, more than the \(maxStringBytes) allowed")
        }
        let p = try c.take(Int(n), what())
        guard let s = String(validating: UnsafeRawBufferPointer(start: p, count: Int(n)), as: UTF8.self) else {
            throw FormatError(c.file.path, "\(what()) at offset \(c.offset - Int(n)) is not valid UTF-8")
        }
        return s
    }

    /// One metadata value and its stored type.
    static func readValue(_ c: inout ByteCursor, type: UInt32, key: String, depth: Int) throws -> (GGUFValue, GGUFValueType) {
        func what() -> String { "value of '\(key)'" }   // built only for an error
        switch type {
        case 0: return (.uint(UInt64(try c.read(UInt8.self, what()))), .uint8)
        case 1: return (.int(Int64(try c.read(Int8.self, what()))), .int8)
        case 2: return (.uint(UInt64(try c.read(UInt16.self, what()))), .uint16)
        case 3: return (.int(Int64(try c.read(Int16.self, what()))), .int16)
        case 4: return (.uint(UInt64(try c.read(UInt32.self, what()))), .uint32)
        case 5: return (.int(Int64(try c.read(Int32.self, what()))), .int32)
        case 6: return (.float(Double(try c.readFloat(what()))), .float32)
        case 7:
            let b = try c.read(UInt8.self, what())
            guard b <= 1 else { throw FormatError(c.file.path, "\(what()): bool byte \(b)") }
            return (.bool(b == 1), .bool)
        case 8: return (.string(try readString(&c, what())), .string)
        case 9:
            guard depth < maxArrayDepth else { throw FormatError(c.file.path, "\(what()): arrays nested deeper than \(maxArrayDepth)") }
            let elemType = try c.read(UInt32.self, "element type of '\(key)'")
            let n = try c.read(UInt64.self, "element count of '\(key)'")
            // Each element takes at least `minimumBytes(elemType)` in the file, so the count is
            // bounded by what is left; arrays of more than 2^26 elements are refused outright.
            let minBytes = UInt64(GGUFFile.minimumBytes(elemType))
            guard n <= UInt64(c.file.count - c.offset) / minBytes, n <= 1 << 26 else {
                throw FormatError(c.file.path, "\(what()): array of \(n) elements is larger than the file allows")
            }
            var items: [GGUFValue] = []
            items.reserveCapacity(Int(n))
            var itemType: GGUFValueType? = GGUFValueType(scalarCode: elemType)
            for _ in 0..<Int(n) {
                let (v, t) = try readValue(&c, type: elemType, key: key, depth: depth + 1)
                items.append(v)
                if itemType == nil { itemType = t }
            }
            if itemType == nil {
                guard elemType == 9 else { throw FormatError(c.file.path, "\(what()): unknown array element type \(elemType)") }
                itemType = .array(.uint8)   // an empty array of arrays: the inner type is never written
            }
            return (.array(items), .array(itemType!))
        case 10: return (.uint(try c.read(UInt64.self, what())), .uint64)
        case 11: return (.int(try c.read(Int64.self, what())), .int64)
        case 12: return (.float(try c.readDouble(what())), .float64)
        default: throw FormatError(c.file.path, "\(what()): unknown value type \(type)")
        }
    }

    /// The fewest bytes one value of a metadata type occupies (strings: their u64 length).
    static func minimumBytes(_ type: UInt32) -> Int {
        switch type {
        case 0, 1, 7: return 1
        case 2, 3: return 2
        case 4, 5, 6: return 4
        case 8, 10, 11, 12: return 8
        case 9: return 12
        default: return 1
        }
    }

    public func tensor(_ name: String) -> GGUFTensorInfo? { tensorIndex[name].map { tensors[$0] } }

    /// The raw bytes of a tensor (checked against the file size when the header was read).
    public func bytes(_ t: GGUFTensorInfo) -> UnsafeRawPointer { file.base + t.offset }

    // Typed metadata access with errors that name the file and key.
    public func string(_ key: String) throws -> String {
        guard let v = metadata[key]?.stringValue else { throw FormatError(path, "metadata '\(key)' missing or not a string") }
        return v
    }
    public func int(_ key: String) throws -> Int {
        guard let v = try optionalInt(key) else { throw FormatError(path, "metadata '\(key)' missing or not an integer") }
        return v
    }
    public func double(_ key: String) throws -> Double {
        guard let v = try optionalDouble(key) else { throw FormatError(path, "metadata '\(key)' missing or not a number") }
        return v
    }
    /// nil when the key is absent; an error when it is there but not an integer (or one
    /// beyond Int), rather than falling back to a default.
    public func optionalInt(_ key: String) throws -> Int? {
        guard let m = metadata[key] else { return nil }
        if case .uint(let u) = m, u > UInt64(Int.max) { throw FormatError(path, "metadata '\(key)' is \(u), out of range") }
        guard let v = m.intValue else { throw FormatError(path, "metadata '\(key)' is not an integer") }
        return v
    }
    /// nil when the key is absent; an error when it is there but not a number.
    public func optionalDouble(_ key: String) throws -> Double? {
        guard let m = metadata[key] else { return nil }
        guard let v = m.doubleValue else { throw FormatError(path, "metadata '\(key)' is not a number") }
        return v
    }
    public func stringArray(_ key: String) throws -> [String] {
        guard let a = metadata[key]?.arrayValue else { throw FormatError(path, "metadata '\(key)' missing or not an array") }
        var out: [String] = []
        out.reserveCapacity(a.count)
        for v in a {
            guard let s = v.stringValue else { throw FormatError(path, "metadata '\(key)' holds a non-string") }
            out.append(s)
        }
        return out
    }
    public func intArray(_ key: String) throws -> [Int] {
        guard let a = metadata[key]?.arrayValue else { throw FormatError(path, "metadata '\(key)' missing or not an array") }
        return try a.map { v in
            guard let i = v.intValue else { throw FormatError(path, "metadata '\(key)' holds a non-integer") }
            return i
        }
    }

    /// The decoder settings this file describes.
    public func modelConfig() throws -> ModelConfig {
        let arch = try string("general.architecture")
        guard let hf = ArchitectureTraits.hfName(forGGUF: arch) else {
            throw FormatError(path, "unknown architecture '\(arch)' (supported: \(ArchitectureTraits.table.values.map(\.ggufName).sorted().joined(separator: ", ")))")
        }
        guard let embd = tensor("token_embd.weight"), embd.shape.count == 2 else {
            throw FormatError(path, "no 2-D token_embd.weight tensor")
        }
        let heads = try int("\(arch).attention.head_count")
        let hidden = try int("\(arch).embedding_length")
        let headDim = try optionalInt("\(arch).attention.key_length")
        if headDim == nil, heads > 0, hidden % heads != 0 {
            throw FormatError(path, "\(arch).embedding_length \(hidden) is not a multiple of \(arch).attention.head_count \(heads), and no \(arch).attention.key_length is given")
        }
        var c = ModelConfig(
            architecture: hf,
            vocabSize: embd.shape[1],
            hiddenSize: hidden,
            intermediateSize: try int("\(arch).feed_forward_length"),
            numLayers: try int("\(arch).block_count"),
            numHeads: heads,
            numKVHeads: try optionalInt("\(arch).attention.head_count_kv") ?? heads,
            headDim: headDim,
            rmsNormEps: Float(try double("\(arch).attention.layer_norm_rms_epsilon")),
            ropeTheta: Float(try optionalDouble("\(arch).rope.freq_base") ?? 10000),
            maxPositions: try optionalInt("\(arch).context_length") ?? 2048,
            tiedEmbeddings: tensor("output.weight") == nil,
            qkvBias: tensor("blk.0.attn_q.bias") != nil)
        // GGUF's names of the fields `validate` checks.
        let keys = ["vocab_size": "token_embd.weight rows", "hidden_size": "\(arch).embedding_length",
                    "intermediate_size": "\(arch).feed_forward_length", "num_layers": "\(arch).block_count",
                    "num_heads": "\(arch).attention.head_count", "num_kv_heads": "\(arch).attention.head_count_kv",
                    "head_dim": "\(arch).attention.key_length", "rms_norm_eps": "\(arch).attention.layer_norm_rms_epsilon",
                    "rope_theta": "\(arch).rope.freq_base", "max_positions": "\(arch).context_length",
                    "sliding_window": "\(arch).attention.sliding_window"]
        try c.validate(source: path, keys: keys)   // before any size is used below
        if c.traits.gemmaStyle { c.activation = .geluTanh }   // llama.cpp runs every Gemma with tanh-approximated GELU
        // Llama-3 RoPE scaling: convert_hf_to_gguf.py stores the per-frequency divisors as
        // rope_freqs.weight; linear scaling as metadata.
        // Phi-3.5's longrope: rope_factors_short/long.weight, the attention factor and the original length as metadata.
        func ropeFactors(_ name: String) throws -> [Float]? {
            guard let t = tensor(name) else { return nil }
            guard t.elementCount == c.headDim / 2 else { throw FormatError(path, "\(name) has \(t.elementCount) values, expected \(c.headDim / 2)") }
            var f = [Float](repeating: 0, count: t.elementCount)
            try f.withUnsafeMutableBufferPointer { try dequantize(t.type, bytes(t), count: t.elementCount, into: $0.baseAddress!) }
            return f
        }
        if let f = try ropeFactors("rope_freqs.weight") {
            c.ropeScaling = .init(type: "freq_factors", factor: 1, frequencyFactors: f)
        } else if let short = try ropeFactors("rope_factors_short.weight") {
            guard let long = try ropeFactors("rope_factors_long.weight"),
                  let original = try optionalInt("\(arch).rope.scaling.original_context_length"), original > 1 else {
                throw FormatError(path, "rope_factors_short.weight without rope_factors_long.weight or \(arch).rope.scaling.original_context_length")
            }
            c.ropeScaling = .longrope(short: short, long: long, maxPositions: c.maxPositions, originalMaxPositions: original,
                                      attentionFactor: try optionalDouble("\(arch).rope.scaling.attn_factor"))
        } else if let type = metadata["\(arch).rope.scaling.type"]?.stringValue, type != "none" {
            guard type == "linear", let factor = try optionalDouble("\(arch).rope.scaling.factor") else {
                throw FormatError(path, "rope scaling '\(type)' is not supported (linear, or llama3 as rope_freqs.weight)")
            }
            c.ropeScaling = .init(type: "linear", factor: Float(factor))
        }
        if let w = try optionalInt("\(arch).attention.sliding_window"), w != 0, ["gemma2", "phi3"].contains(hf) {
            c.slidingWindow = w
            if hf == "gemma2" { c.slidingLayers = Array(stride(from: 0, to: c.numLayers, by: 2)) }   // llama.cpp: every other layer from 0
        }
        if hf == "gemma2" {
            c.attnLogitSoftcap = try optionalDouble("gemma2.attn_logit_softcapping").map(Float.init)
            c.finalLogitSoftcap = try optionalDouble("gemma2.final_logit_softcapping").map(Float.init)
            // GGUF has no query_pre_attn_scalar: llama.cpp scales by 1/√headDim, or 1/√(hidden/heads)
            // for the 27B model (46 layers), which is what those configs say.
            c.queryPreAttnScalar = Float(c.numLayers == 46 ? c.hiddenSize / c.numHeads : c.headDim)
        }
        try c.validate(source: path, keys: keys)
        return c
    }
}
