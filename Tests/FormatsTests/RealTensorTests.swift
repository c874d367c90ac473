import Foundation
import Testing
@testable import Formats
import Tensor
import TestSupport

/// One entry of real_tensor_digests.json (scripts/make_real_tensor_digests.py).
struct RealTensorDigest: CustomStringConvertible, Sendable {
    let model: String, name: String, type: String
    let shape: [Int]
    let elements: Int, prefixElements: Int
    let sha256: String, prefixSHA256: String
    let first: [UInt32]
    var description: String { "\(model):\(name)" }

    static let all: [RealTensorDigest] = {
        let path = fixturesDir() + "/real_tensor_digests.json"
        guard let j = try? JSONValue.parse([UInt8](fixtureBytes(path))), let models = j.object else { badFixture(path, "not a JSON object") }
        var out: [RealTensorDigest] = []
        for (model, m) in models.pairs {
            for t in m["tensors"]?.array ?? [] {
                out.append(RealTensorDigest(model: model, name: t["name"]!.string!, type: t["type"]!.string!,
                                            shape: t["shape"]!.array!.map { $0.int! }, elements: t["elements"]!.int!,
                                            prefixElements: t["prefix_elements"]!.int!, sha256: t["sha256"]!.string!,
                                            prefixSHA256: t["prefix_sha256"]!.string!, first: t["first"]!.array!.map { UInt32($0.int!) }))
            }
        }
        return out
    }()
}

@Test func realDigestsCoverEveryTypeOfBothModels() throws {
    for (model, path) in [("qwen", RealModels.qwen), ("smol", RealModels.smol)] {
        let g = try GGUFFile(path: path)
        let inFile = Set(g.tensors.map { $0.type.name })
        let digested = Set(RealTensorDigest.all.filter { $0.model == model }.map(\.type))
        #expect(inFile == digested, "\(model)")
    }
    #expect(RealTensorDigest.all.contains { $0.model == "qwen" && $0.name == "token_embd.weight" })
}

/// Dequantises the tensor from the real file in row chunks, hashing the float32 bytes;
/// the whole tensor in release builds, the first rows (as digested) in debug builds.
@Test(arguments: RealTensorDigest.all)
func realTensorDequantMatchesGGUFPy(_ e: RealTensorDigest) throws {
    let g = try GGUFFile(path: e.model == "qwen" ? RealModels.qwen : RealModels.smol)
    let t = try #require(g.tensor(e.name))
    #expect(t.type.name == e.type)
    #expect(t.shape == e.shape)
    #expect(t.elementCount == e.elements)
    #if DEBUG
    let count = e.prefixElements, want = e.prefixSHA256
    #else
    let count = e.elements, want = e.sha256
    #endif
    let rowLength = t.columns
    let rows = count / rowLength
    let chunkRows = max(1, (1 << 20) / rowLength)
    let buf = UnsafeMutablePointer<Float>.allocate(capacity: chunkRows * rowLength)
    defer { buf.deallocate() }
    var hasher = SHA256()
    var seconds = 0.0
    var row = 0
    while row < rows {
        let n = min(chunkRows, rows - row)
        let t0 = DispatchTime.now().uptimeNanoseconds
        try dequantizeRows(t.type, g.bytes(t), rowLength: rowLength, rows: row..<(row + n), into: buf)
        seconds += Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
        if row == 0 {
            for i in 0..<min(64, n * rowLength) { #expect(sameBits(buf[i], e.first[i]), "\(e.name)[\(i)]") }
        }
        hasher.update(UnsafeRawBufferPointer(start: buf, count: n * rowLength * 4))
        row += n
    }
    #expect(hasher.finalizeHex() == want, "\(e)")
    if count >= 1 << 22 {
        print("dequant \(e.type) \(e.name): \(count) elements in \(String(format: "%.3f", seconds)) s = \(String(format: "%.0f", Double(count) / seconds / 1e6)) M elements/s")
    }
}
