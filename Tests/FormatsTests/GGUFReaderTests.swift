import Foundation
import Testing
@testable import Formats
import Tensor
import TestSupport

/// Header facts of the two real models, as gguf-py 0.19.0 reads them.
@Suite struct GGUFReaderTests {
    @Test func qwenHeader() throws {
        let g = try GGUFFile(path: RealModels.qwen)
        #expect(g.version == 3)
        #expect(g.tensors.count == 291)
        #expect(g.metadata.count == 26)
        #expect(try g.string("tokenizer.ggml.pre") == "qwen2")
        #expect(try g.int("tokenizer.ggml.eos_token_id") == 151645)
        #expect(try g.stringArray("tokenizer.ggml.tokens").count == 151936)
        var counts: [GGMLType: Int] = [:]
        for t in g.tensors { counts[t.type, default: 0] += 1 }
        #expect(counts == [.q5_0: 133, .f32: 121, .q8_0: 13, .q6_K: 12, .q4_K: 12])
        let out = try #require(g.tensor("output.weight"))
        #expect(out.shape == [896, 151936])
        #expect(out.offset == 5947776 && g.dataOffset == 5947776)  // first tensor in the data area
        let c = try g.modelConfig()
        #expect(c == ModelConfig(architecture: "qwen2", vocabSize: 151936, hiddenSize: 896, intermediateSize: 4864,
                                 numLayers: 24, numHeads: 14, numKVHeads: 2, headDim: 64, rmsNormEps: 1e-6,
                                 ropeTheta: 1_000_000, maxPositions: 32768, tiedEmbeddings: false, qkvBias: true))
    }

    @Test func smolHeader() throws {
        let g = try GGUFFile(path: RealModels.smol)
        #expect(g.tensors.count == 272)
        #expect(g.metadata.count == 33)
        #expect(g.metadata["general.languages"] == .array([.string("en")]))
        #expect(g.metadata["tokenizer.ggml.add_bos_token"] == .bool(false))
        var counts: [GGMLType: Int] = [:]
        for t in g.tensors { counts[t.type, default: 0] += 1 }
        #expect(counts == [.q4_1: 210, .f32: 61, .q8_0: 1])
        let c = try g.modelConfig()
        #expect(c == ModelConfig(architecture: "llama", vocabSize: 49152, hiddenSize: 576, intermediateSize: 1536,
                                 numLayers: 30, numHeads: 9, numKVHeads: 3, headDim: 64, rmsNormEps: 1e-5,
                                 ropeTheta: 100_000, maxPositions: 8192, tiedEmbeddings: true, qkvBias: false))
    }

    @Test func refusesTruncatedAndForeignFiles() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("realign-gguf-\(getpid())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let real = try MappedFile(path: RealModels.smol)
        // Cut inside the metadata, inside the tensor infos, and inside the tensor data.
        for cut in [3, 20, 5000, 1_700_000, real.count - 1] {
            let p = dir.appendingPathComponent("cut\(cut).gguf").path
            try Data(bytes: real.base, count: cut).write(to: URL(fileURLWithPath: p))   // no fsync: fast
            #expect(throws: FormatError.self) { _ = try GGUFFile(path: p) }
            do { _ = try GGUFFile(path: p) } catch let e as FormatError { #expect(e.path == p) }
        }
        let p = dir.appendingPathComponent("text.gguf").path
        FileManager.default.createFile(atPath: p, contents: Data("hello, this is not a model".utf8))
        #expect(throws: FormatError(p, "not a GGUF file (bad magic)")) { _ = try GGUFFile(path: p) }
        #expect(throws: FormatError.self) { _ = try GGUFFile(path: dir.appendingPathComponent("missing.gguf").path) }
        // A u8 array that claims 2^40 elements must be refused before any allocation.
        var bytes = [UInt8]()
        func u32(_ v: UInt32) { withUnsafeBytes(of: v.littleEndian) { bytes += $0 } }
        func u64(_ v: UInt64) { withUnsafeBytes(of: v.littleEndian) { bytes += $0 } }
        u32(0x4655_4747); u32(3); u64(0); u64(1)
        u64(3); bytes += Array("big".utf8); u32(9); u32(0); u64(1 << 40)
        bytes += [UInt8](repeating: 0, count: 64)
        let big = dir.appendingPathComponent("bigarray.gguf").path
        try Data(bytes).write(to: URL(fileURLWithPath: big))
        #expect(throws: FormatError(big, "value of 'big': array of 1099511627776 elements is larger than the file allows")) { _ = try GGUFFile(path: big) }
        // A 17 MiB metadata string (say, a chat template) is refused before it is copied.
        bytes = []
        let n = 17 << 20
        u32(0x4655_4747); u32(3); u64(0); u64(1)
        u64(20); bytes += Array("tokenizer.chat_templ".utf8); u32(8); u64(UInt64(n))
        bytes += [UInt8](repeating: 0x20, count: n)
        let long = dir.appendingPathComponent("longstring.gguf").path
        try Data(bytes).write(to: URL(fileURLWithPath: long))
        #expect(throws: FormatError(long, "value of 'tokenizer.chat_templ' is 17825792 bytes long, more than the 16777216 allowed")) { _ = try GGUFFile(path: long) }
    }
}
