import Foundation
import Tensor
#if canImport(Glibc)
import Glibc
#endif

// GGUF v3 writing, laid out as gguf-py's GGUFWriter does: header, metadata in the given
// order, tensor infos in the given order with offsets relative to the data area, zero
// padding to the alignment before the data area and after every tensor (the last one
// too). Tensor data is streamed one tensor at a time, so a model is never held twice.

/// A metadata key/value to write, with the type it is stored as.
public struct GGUFMetadataEntry: Equatable, Sendable {
    public var key: String
    public var value: GGUFValue
    public var type: GGUFValueType

    /// `type` defaults to `GGUFValueType.natural(for: value)` (32-bit numbers).
    public init(_ key: String, _ value: GGUFValue, type: GGUFValueType? = nil) {
        self.key = key; self.value = value; self.type = type ?? .natural(for: value)
    }
}

extension GGUFFile {
    /// This file's metadata in file order, with the stored types: writing these back gives
    /// the same bytes.
    public var metadataEntries: [GGUFMetadataEntry] {
        metadataKeys.map { GGUFMetadataEntry($0, metadata[$0]!, type: metadataTypes[$0]!) }
    }
}

/// A tensor to write: its header and a function that writes its data when the writer
/// reaches it.
public struct GGUFTensorEntry {
    public let name: String
    /// ggml order: `shape[0]` is the row length (the fastest-varying dimension).
    public let shape: [Int]
    public let type: GGMLType
    let emit: (FileOutput) throws -> Void

    /// `emit` must write exactly `type.byteCount(elements: product(shape))` bytes.
    public init(name: String, shape: [Int], type: GGMLType, emit: @escaping (FileOutput) throws -> Void) {
        self.name = name; self.shape = shape; self.type = type; self.emit = emit
    }

    /// A tensor of another GGUF file, bytes copied unchanged straight from its mapping.
    public static func copy(_ info: GGUFTensorInfo, of file: GGUFFile, as name: String? = nil) -> GGUFTensorEntry {
        GGUFTensorEntry(name: name ?? info.name, shape: info.shape, type: info.type) { out in
            try out.write(UnsafeRawBufferPointer(start: file.bytes(info), count: info.byteCount))
        }
    }

    /// Bytes already in `type`.
    public static func raw(_ name: String, shape: [Int], type: GGMLType, bytes: [UInt8]) -> GGUFTensorEntry {
        GGUFTensorEntry(name: name, shape: shape, type: type) { out in try bytes.withUnsafeBytes { try out.write($0) } }
    }

    /// Float32 values produced on demand by `produce` (into a buffer of product(shape)
    /// floats, row-major with rows of `shape[0]`), stored as F32, F16, BF16 or Q8_0.
    public static func floats(_ name: String, shape: [Int], as type: GGMLType,
                              produce: @escaping (UnsafeMutablePointer<Float>) throws -> Void) -> GGUFTensorEntry {
        GGUFTensorEntry(name: name, shape: shape, type: type) { out in
            let n = shape.reduce(1, *)
            guard let bytes = type.byteCount(elements: n) else { throw FormatError(name, "\(n) elements is not whole \(type.name) blocks") }
            let values = UnsafeMutablePointer<Float>.allocate(capacity: max(n, 1))
            defer { values.deallocate() }
            try produce(values)
            if type == .f32 { return try out.write(UnsafeRawBufferPointer(start: values, count: bytes)) }
            let encoded = UnsafeMutableRawPointer.allocate(byteCount: max(bytes, 1), alignment: 64)
            defer { encoded.deallocate() }
            do { try quantize(type, values, count: n, into: encoded) } catch { throw FormatError(name, "\(error)") }
            try out.write(UnsafeRawBufferPointer(start: encoded, count: bytes))
        }
    }

    /// Float32 values from an array.
    public static func floats(_ name: String, shape: [Int], as type: GGMLType, _ values: [Float]) -> GGUFTensorEntry {
        floats(name, shape: shape, as: type) { dst in
            guard values.count == shape.reduce(1, *) else { throw FormatError(name, "\(values.count) values for shape \(shape)") }
            values.withUnsafeBufferPointer { dst.update(from: $0.baseAddress!, count: values.count) }
        }
    }
}

public enum GGUFWriter {
    /// Writes a GGUF v3 file atomically (temporary file in the same folder, then rename).
    /// The alignment is `general.alignment` when the metadata has it, else 32.
    public static func write(metadata: [GGUFMetadataEntry], tensors: [GGUFTensorEntry], to path: String) throws {
        func fail(_ m: String) -> FormatError { FormatError(path, m) }
        var header = ByteWriter()
        header.u32(0x4655_4747)
        header.u32(3)
        header.u64(UInt64(tensors.count))
        header.u64(UInt64(metadata.count))

        var alignment = 32
        var keys = Set<String>()
        for e in metadata {
            guard keys.insert(e.key).inserted else { throw fail("duplicate metadata key '\(e.key)'") }
            if e.key == "general.alignment" {
                guard let a = e.value.intValue, a > 0, a <= 1 << 20, a & (a - 1) == 0 else {
                    throw fail("general.alignment must be a power of two, got \(e.value)")
                }
                alignment = a
            }
            header.string(e.key)
            header.u32(e.type.code)
            do { try header.value(e.value, as: e.type) } catch let m as ValueMismatch {
                throw fail("metadata '\(e.key)': \(m.message)")
            }
        }

        var names = Set<String>()
        var sizes: [Int] = []
        var offset = 0
        for t in tensors {
            guard names.insert(t.name).inserted else { throw fail("duplicate tensor '\(t.name)'") }
            guard (1...4).contains(t.shape.count), t.shape.allSatisfy({ $0 > 0 }) else {
                throw fail("tensor '\(t.name)': shape \(t.shape) (1 to 4 positive dimensions)")
            }
            var elements = 1
            for d in t.shape {
                let (e, o) = elements.multipliedReportingOverflow(by: d)
                guard !o else { throw fail("tensor '\(t.name)': shape \(t.shape) overflows") }
                elements = e
            }
            guard t.shape[0] % t.type.blockSize == 0, let n = t.type.byteCount(elements: elements) else {
                throw fail("tensor '\(t.name)': row length \(t.shape[0]) is not a multiple of the \(t.type.name) block size \(t.type.blockSize)")
            }
            header.string(t.name)
            header.u32(UInt32(t.shape.count))
            for d in t.shape { header.u64(UInt64(d)) }
            header.u32(t.type.rawValue)
            header.u64(UInt64(offset))
            sizes.append(n)
            offset += padded(n, alignment)
        }
        header.pad(to: alignment)

        try writeAtomically(path) { out in
            try header.bytes.withUnsafeBytes { try out.write($0) }
            let zeros = [UInt8](repeating: 0, count: alignment)
            var at = header.bytes.count
            for (t, n) in zip(tensors, sizes) {
                try t.emit(out)
                let now = Int(lseek(out.fd, 0, SEEK_CUR))
                guard now == at + n else { throw fail("tensor '\(t.name)': wrote \(now - at) bytes, its shape and type need \(n)") }
                let pad = padded(n, alignment) - n
                try zeros.withUnsafeBytes { try out.write(UnsafeRawBufferPointer(rebasing: $0[0..<pad])) }
                at = now + pad
            }
        }
    }

    static func padded(_ n: Int, _ alignment: Int) -> Int { (n + alignment - 1) / alignment * alignment }
}

struct ValueMismatch: Error { let message: String }

/// Little-endian encoding of the GGUF header.
struct ByteWriter {
    var bytes: [UInt8] = []

    mutating func u32(_ v: UInt32) { withUnsafeBytes(of: v.littleEndian) { bytes += $0 } }
    mutating func u64(_ v: UInt64) { withUnsafeBytes(of: v.littleEndian) { bytes += $0 } }
    mutating func string(_ s: String) { u64(UInt64(s.utf8.count)); bytes += s.utf8 }
    mutating func pad(to alignment: Int) { bytes += [UInt8](repeating: 0, count: GGUFWriter.padded(bytes.count, alignment) - bytes.count) }

    /// A value as `type`; integers must fit the type's range, and kinds must match.
    mutating func value(_ v: GGUFValue, as type: GGUFValueType) throws {
        func shown() -> String { String(String(describing: v).prefix(60)) }   // only for an error
        func int<T: FixedWidthInteger>(_: T.Type) throws {
            let x: T?
            switch v {
            case .uint(let u): x = T(exactly: u)
            case .int(let i): x = T(exactly: i)
            default: throw ValueMismatch(message: "\(shown()) is not an integer (type \(type))")
            }
            guard let x else { throw ValueMismatch(message: "\(shown()) does not fit \(type)") }
            withUnsafeBytes(of: x.littleEndian) { bytes += $0 }
        }
        switch type {
        case .uint8: try int(UInt8.self)
        case .int8: try int(Int8.self)
        case .uint16: try int(UInt16.self)
        case .int16: try int(Int16.self)
        case .uint32: try int(UInt32.self)
        case .int32: try int(Int32.self)
        case .uint64: try int(UInt64.self)
        case .int64: try int(Int64.self)
        case .float32:
            guard case .float(let d) = v else { throw ValueMismatch(message: "\(shown()) is not a float") }
            u32(Float(d).bitPattern)
        case .float64:
            guard case .float(let d) = v else { throw ValueMismatch(message: "\(shown()) is not a float") }
            u64(d.bitPattern)
        case .bool:
            guard case .bool(let b) = v else { throw ValueMismatch(message: "\(shown()) is not a bool") }
            bytes.append(b ? 1 : 0)
        case .string:
            guard case .string(let s) = v else { throw ValueMismatch(message: "\(shown()) is not a string") }
            string(s)
        case .array(let element):
            guard case .array(let items) = v else { throw ValueMismatch(message: "\(shown()) is not an array") }
            u32(element.code)
            u64(UInt64(items.count))
            for item in items { try value(item, as: element) }
        }
    }
}
