import Foundation
import Testing
@testable import Recovery
import Model
import Formats
import TestSupport

/// Directions against transformers: the mean of the reference last-token states
/// (Tests/ModelTests/Fixtures/<model>/hidden_last.f32, [prompts, layers+1, hidden]).
@Suite struct DirectionTests {
    struct Ref: Decodable { struct P: Decodable { let ids: [Int] }; let prompts: [P] }

    @Test(arguments: [("smol", RealModels.smol, 20), ("qwen", RealModels.qwen, 16)])
    func meanLastTokenStateMatchesTransformers(_ name: String, _ path: String, _ layer: Int) throws {
        let dir = fixturesDir().replacingOccurrences(of: "RecoveryTests", with: "ModelTests") + "/" + name
        let ref = try JSONDecoder().decode(Ref.self, from: Data(contentsOf: URL(fileURLWithPath: dir + "/reference.json")))
        let m = try LanguageModel.load(path)
        let L = m.config.numLayers, H = m.config.hiddenSize
        #expect(Direction.defaultLayer(layers: L) == layer)
        let states = try Data(contentsOf: URL(fileURLWithPath: dir + "/hidden_last.f32")).withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
        var want = [Double](repeating: 0, count: H)
        for p in 0..<ref.prompts.count { for j in 0..<H { want[j] += Double(states[(p * (L + 1) + layer) * H + j]) } }
        let wantF = want.map { Float($0 / Double(ref.prompts.count)) }
        // Batch size 5 does not divide 22: ragged batches must not change the result.
        let got = m.decoder.meanLastTokenState(ref.prompts.map(\.ids), layer: layer, batchSize: 5)
        #expect(cosineSimilarity(got, wantF) > 1 - 1e-9)
        #expect(maxRelativeError(got, wantF, floor: 1e-1) < 1e-4)
        // One by one gives the same direction as in batches, up to BLAS rounding (gemv vs gemm kernels).
        let single = m.decoder.meanLastTokenState(ref.prompts.map(\.ids), layer: layer, batchSize: 1)
        #expect(maxRelativeError(single, got, floor: 1e-1) < 1e-4)
        // Loaded with only the blocks below the layer (as recovery loads): the same numbers, bit for bit.
        let partial = try LanguageModel.load(path, blocks: layer)
        #expect(partial.decoder.weights.layers.count == layer && !partial.decoder.weights.isComplete)
        #expect(partial.decoder.quantized == nil && partial.decoder.weights.finalNorm.count == 0)
        #expect(partial.decoder.meanLastTokenState(ref.prompts.map(\.ids), layer: layer, batchSize: 5) == got)
    }

    @Test func fileRoundTripAndBadFiles() throws {
        let d = Direction(values: (0..<8).map { Float($0) - 3.5 }, layer: 5, prompts: 3, model: "m.gguf")
        let p = FileManager.default.temporaryDirectory.appendingPathComponent("dir-\(getpid()).safetensors").path
        defer { try? FileManager.default.removeItem(atPath: p) }
        try d.write(to: p)
        #expect(try Direction.read(p) == d)
        #expect(abs(d.cosine(Direction(values: d.values.map { -2 * $0 }, layer: 5, prompts: 3, model: "")) + 1) < 1e-12)
        try SafetensorsWriter.write([.floats("x", shape: [2], as: .f32, [1, 2])], to: p)
        #expect(throws: FormatError(p, "not a direction file written by `realign direction`")) { _ = try Direction.read(p) }
    }

    @Test func recoverySetShipsAsDocumented() throws {
        #expect(RecoverySet.doNotAnswer256.count == 256)
        #expect(Set(RecoverySet.doNotAnswer256).count == 256)
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let lines = try String(contentsOf: root.appendingPathComponent("data/recovery/donotanswer_256.jsonl"), encoding: .utf8)
            .split(separator: "\n").map { try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any] }
        #expect(lines.map { $0["prompt"] as! String } == RecoverySet.doNotAnswer256)
        var perArea: [String: Int] = [:]
        for l in lines { perArea[l["risk_area"] as! String, default: 0] += 1 }
        #expect(perArea.count == 4 && perArea.values.allSatisfy { $0 == 64 })
    }
}
