import Foundation
import Testing
@testable import Formats
import Tensor
import TestSupport

/// The GGUF writer against gguf-py (fixtures by scripts/make_gguf_writer_fixtures.py) and
/// against the real model files: same bytes.
@Suite struct GGUFWriterTests {
    static let dir = fixturesDir() + "/gguf_writer"

    func temp(_ name: String) -> String {
        FileManager.default.temporaryDirectory.appendingPathComponent("ggufw-\(getpid())-\(name)").path
    }

    func floats(_ g: GGUFFile, _ name: String) throws -> [Float] {
        let t = try #require(g.tensor(name))
        return try dequantized(t.type, g.bytes(t), count: t.elementCount)
    }

    @Test func readerKeepsStoredTypes() throws {
        let g = try GGUFFile(path: Self.dir + "/all_types.gguf")
        let want: [String: GGUFValueType] = [
            "general.architecture": .string, "general.alignment": .uint32,
            "t.u8": .uint8, "t.i8": .int8, "t.u16": .uint16, "t.i16": .int16, "t.u32": .uint32, "t.i32": .int32,
            "t.f32": .float32, "t.u64": .uint64, "t.i64": .int64, "t.f64": .float64, "t.true": .bool, "t.false": .bool,
            "t.str": .string, "t.empty_str": .string, "t.arr_i32": .array(.int32), "t.arr_f32": .array(.float32),
            "t.arr_str": .array(.string), "t.arr_bool": .array(.bool), "t.arr_u8": .array(.uint8), "t.arr_i64": .array(.int64),
            "t.arr_f64": .array(.float64), "t.nested": .array(.array(.int32)), "t.nested_str": .array(.array(.string)),
            "t.nested3": .array(.array(.array(.float32))),
        ]
        #expect(g.metadataTypes == want)
        #expect(g.metadata["t.u64"] == .uint(UInt64.max))
        #expect(g.metadata["t.i64"] == .int(Int64.min))
        #expect(g.metadata["t.nested"] == .array([.array([.int(1), .int(2)]), .array([.int(3)]), .array([.int(4), .int(5), .int(6)])]))
        #expect(g.metadata["t.str"] == .string("héllo, wörld — 你好 🙂"))
        #expect(g.alignment == 64)
    }

    /// Metadata copied with its types, tensors re-encoded from float32 (F32, F16, BF16,
    /// Q8_0) or copied: the same file gguf-py wrote, byte for byte.
    @Test func reproducesGGUFPyFileByteForByte() throws {
        let src = Self.dir + "/all_types.gguf"
        let g = try GGUFFile(path: src)
        let x = try floats(g, "x")
        let tensors: [GGUFTensorEntry] = g.tensors.map { t in
            switch t.name {
            case "x": return .floats("x", shape: t.shape, as: .f32, x)
            case "x.f16": return .floats(t.name, shape: t.shape, as: .f16, x)
            case "x.bf16": return .floats(t.name, shape: t.shape, as: .bf16, x)
            case "x.q8_0": return .floats(t.name, shape: t.shape, as: .q8_0, x)
            default: return .copy(t, of: g)
            }
        }
        let out = temp("all_types.gguf")
        defer { try? FileManager.default.removeItem(atPath: out) }
        try GGUFWriter.write(metadata: g.metadataEntries, tensors: tensors, to: out)
        #expect(try fileBytes(out) == fileBytes(src))

        // Read back: identical metadata, names, shapes, types, bytes.
        let h = try GGUFFile(path: out)
        #expect(h.metadataKeys == g.metadataKeys)
        #expect(h.metadata == g.metadata)
        #expect(h.metadataTypes == g.metadataTypes)
        #expect(h.tensors.map(\.name) == g.tensors.map(\.name))
        #expect(h.tensors.map(\.shape) == g.tensors.map(\.shape))
        #expect(h.tensors.map(\.type) == g.tensors.map(\.type))
        for (a, b) in zip(h.tensors, g.tensors) {
            #expect(Data(bytes: h.bytes(a), count: a.byteCount) == Data(bytes: g.bytes(b), count: b.byteCount))
        }
    }

    @Test func q8_0MatchesGGUFPyBitForBit() throws {
        let data = try fileBytes(Self.dir + "/q8_0.bin")
        let n = Int(data.withUnsafeBytes { $0.loadUnaligned(as: UInt32.self) })
        let x = data.withUnsafeBytes { p in (0..<n).map { Float(bitPattern: p.loadUnaligned(fromByteOffset: 4 + 4 * $0, as: UInt32.self)) } }
        let want = [UInt8](data[(4 + 4 * n)...])
        #expect(want.count == n / 32 * 34)
        var got = [UInt8](repeating: 0, count: want.count)
        try x.withUnsafeBufferPointer { xs in try got.withUnsafeMutableBytes { try quantize(.q8_0, xs.baseAddress!, count: n, into: $0.baseAddress!) } }
        for b in 0..<(n / 32) where got[(34 * b)..<(34 * b + 34)] != want[(34 * b)..<(34 * b + 34)] {
            Issue.record("block \(b): got \(Array(got[(34 * b)..<(34 * b + 34)])), want \(Array(want[(34 * b)..<(34 * b + 34)]))")
        }
        // Dequantising our blocks gives back values within half a step of the input.
        let back = try got.withUnsafeBytes { try dequantized(.q8_0, $0.baseAddress!, count: 32) }
        let d = back.map(abs).max()! / 127
        #expect(zip(back, x.prefix(32)).allSatisfy { abs($0 - $1) <= d * 0.51 + 1e-6 })
    }

    @Test func q8_0RefusesNonFiniteValues() throws {
        var x = [Float](repeating: 1, count: 64)
        x[40] = .nan
        var out = [UInt8](repeating: 0, count: 68)
        #expect(throws: DequantizeError("element 40 is nan; Q8_0 stores finite values only")) {
            try x.withUnsafeBufferPointer { xs in try out.withUnsafeMutableBytes { try quantize(.q8_0, xs.baseAddress!, count: 64, into: $0.baseAddress!) } }
        }
    }

    /// llama.cpp's `quantize_row_q4_K_ref` on weight-like, flat, zero, tiny, huge and
    /// offset blocks (scripts/make_q4k_fixtures.sh): the same 144 bytes per block.
    @Test func q4_KMatchesLlamaCppBitForBit() throws {
        let data = try fileBytes(Self.dir + "/q4_k.bin")
        #expect(data.prefix(4) == Data("Q4KF".utf8))
        let blocks = Int(data.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: 4, as: UInt32.self) })
        let n = 256 * blocks
        let x = data.withUnsafeBytes { p in (0..<n).map { Float(bitPattern: p.loadUnaligned(fromByteOffset: 8 + 4 * $0, as: UInt32.self)) } }
        let want = [UInt8](data[(8 + 4 * n)...])
        #expect(blocks == 24 && want.count == blocks * 144)
        var got = [UInt8](repeating: 0, count: want.count)
        try x.withUnsafeBufferPointer { xs in try got.withUnsafeMutableBytes { try quantize(.q4_K, xs.baseAddress!, count: n, into: $0.baseAddress!) } }
        for b in 0..<blocks where got[(144 * b)..<(144 * b + 144)] != want[(144 * b)..<(144 * b + 144)] {
            Issue.record("block \(b): got \(Array(got[(144 * b)..<(144 * b + 144)])), want \(Array(want[(144 * b)..<(144 * b + 144)]))")
        }
        // The weight-like blocks come back within a few per cent of their spread.
        let back = try got.withUnsafeBytes { try dequantized(.q4_K, $0.baseAddress!, count: 256) }
        let rms = (x.prefix(256).map { $0 * $0 }.reduce(0, +) / 256).squareRoot()
        let err = (zip(back, x.prefix(256)).map { ($0 - $1) * ($0 - $1) }.reduce(0, +) / 256).squareRoot()
        #expect(err < 0.15 * rms && err > 0)
    }

    @Test func q4_KRefusesNonFiniteValues() throws {
        var x = [Float](repeating: 1, count: 512)
        x[300] = -.infinity
        var out = [UInt8](repeating: 0, count: 288)
        #expect(throws: DequantizeError("element 300 is -inf; Q4_K stores finite values only")) {
            try x.withUnsafeBufferPointer { xs in try out.withUnsafeMutableBytes { try quantize(.q4_K, xs.baseAddress!, count: 512, into: $0.baseAddress!) } }
        }
    }

    /// Copying a real model's metadata and tensors gives back the very same file.
    @Test(arguments: [RealModels.smol, RealModels.qwen])
    func copyOfRealModelIsIdentical(_ path: String) throws {
        let g = try GGUFFile(path: path)
        let out = temp(URL(fileURLWithPath: path).lastPathComponent)
        defer { try? FileManager.default.removeItem(atPath: out) }
        try GGUFWriter.write(metadata: g.metadataEntries, tensors: g.tensors.map { .copy($0, of: g) }, to: out)
        let a = try MappedFile(path: out)
        #expect(a.count == g.file.count)
        #expect(a.count == g.file.count && memcmp(a.base, g.file.base, a.count) == 0)
    }

    @Test func badInputIsAClearErrorAndLeavesNoFile() throws {
        let out = temp("bad.gguf")
        let folder = URL(fileURLWithPath: out).deletingLastPathComponent().path
        func leftovers() throws -> [String] {
            try FileManager.default.contentsOfDirectory(atPath: folder).filter { $0.hasPrefix(".ggufw-\(getpid())-bad.gguf") }
        }
        let t = GGUFTensorEntry.floats("t", shape: [32, 2], as: .f32, [Float](repeating: 1, count: 64))
        #expect(throws: FormatError(out, "duplicate metadata key 'a'")) {
            try GGUFWriter.write(metadata: [.init("a", .uint(1)), .init("a", .uint(2))], tensors: [], to: out)
        }
        #expect(throws: FormatError(out, "metadata 'a': uint(300) does not fit uint8")) {
            try GGUFWriter.write(metadata: [.init("a", .uint(300), type: .uint8)], tensors: [], to: out)
        }
        #expect(throws: FormatError(out, "metadata 'a': string(\"x\") is not an integer (type int32)")) {
            try GGUFWriter.write(metadata: [.init("a", .array([.int(1), .string("x")]))], tensors: [], to: out)
        }
        #expect(throws: FormatError(out, "general.alignment must be a power of two, got uint(24)")) {
            try GGUFWriter.write(metadata: [.init("general.alignment", .uint(24))], tensors: [], to: out)
        }
        #expect(throws: FormatError(out, "duplicate tensor 't'")) { try GGUFWriter.write(metadata: [], tensors: [t, t], to: out) }
        #expect(throws: FormatError(out, "tensor 'q': row length 48 is not a multiple of the Q8_0 block size 32")) {
            try GGUFWriter.write(metadata: [], tensors: [.floats("q", shape: [48], as: .q8_0, [Float](repeating: 0, count: 48))], to: out)
        }
        #expect(throws: FormatError(out, "tensor 'z': shape [4, 0] (1 to 4 positive dimensions)")) {
            try GGUFWriter.write(metadata: [], tensors: [.raw("z", shape: [4, 0], type: .f32, bytes: [])], to: out)
        }
        // Data of the wrong size is caught while streaming; the temporary file goes away.
        #expect(throws: FormatError(out, "tensor 'r': wrote 12 bytes, its shape and type need 16")) {
            try GGUFWriter.write(metadata: [], tensors: [t, .raw("r", shape: [4], type: .f32, bytes: [UInt8](repeating: 0, count: 12))], to: out)
        }
        #expect(!FileManager.default.fileExists(atPath: out))
        #expect(try leftovers().isEmpty)
    }

    /// New metadata gets 32-bit types unless a value needs 64 bits; a file with no tensors
    /// and an empty array reads back.
    @Test func naturalTypesAndEmptyArrays() throws {
        let out = temp("natural.gguf")
        defer { try? FileManager.default.removeItem(atPath: out) }
        try GGUFWriter.write(metadata: [
            .init("u", .uint(7)), .init("big", .uint(1 << 40)), .init("neg", .int(-1 << 40)), .init("f", .float(0.25)),
            .init("empty", .array([])), .init("e2", .array([]), type: .array(.array(.int32))),
        ], tensors: [], to: out)
        let g = try GGUFFile(path: out)
        #expect(g.metadataTypes == ["u": .uint32, "big": .uint64, "neg": .int64, "f": .float32, "empty": .array(.string), "e2": .array(.array(.uint8))])
        #expect(g.metadata["big"] == .uint(1 << 40))
        #expect(g.tensors.isEmpty)
    }
}
