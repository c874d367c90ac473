import Foundation
import Testing
@testable import Recovery
import Model
import Formats
import Tensor
import TestSupport

/// Layer-major recovery (one block in memory at a time) against the resident rounds.
@Suite(.serialized) struct StreamingTests {
    /// Two rounds on Qwen2.5-0.5B, two passes per round: the same patch, log and model file, bit
    /// for bit, with batched loss terms and with the paper's one term over all prompts.
    @Test(arguments: [LossBatch.prompts(2), .all])
    func layerMajorRoundsEqualResidentRoundsBitForBit(_ lossBatch: LossBatch) throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("realign-stream-\(getpid())-\(lossBatch)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        // Qwen2.5-0.5B (q/k/v biases, Q4_K/Q6_K tensors) with 3 % of the weights of its first six blocks shifted.
        let (finetuned, _) = try RecoverTests.makeFinetuned(dir, model: RealModels.qwen, blocks: 6, seed: 7)
        var o = RecoveryOptions()
        o.layer = 8; o.rounds = 2; o.rate = 0.002; o.lossBatch = lossBatch; o.passSize = 4
        o.prompts = Array(RecoverySet.doNotAnswer256.prefix(8))
        var logs: [[RoundLog]] = [], patches: [SparsePatch] = [], models: [Data] = []
        for streaming in [false, true] {
            let r = RecoveryRun(aligned: RealModels.qwen, finetuned: finetuned, out: dir + "/r-\(streaming).gguf", options: o, log: { _ in })
            r.streaming = streaming
            logs.append(untimed(try r.run()).map { var x = $0; x.seconds_load = nil; return x })
            patches.append(try SparsePatch.read(r.paths.patch))
            models.append(try Data(contentsOf: URL(fileURLWithPath: r.paths.out)))
        }
        #expect(patches[0].count == 2 * 238_569, "\(patches[0].count)")   // k = round(0.002 × 8 blocks × 14,910,592), twice
        #expect(patches[1] == patches[0])
        #expect(logs[1] == logs[0])
        #expect(models[1] == models[0])
        #expect(logs[0][1].cosine_after! > logs[0][0].cosine_before)
    }

    /// The streaming cut against the one-shot cut on data with many equal |g| (ties across
    /// tensors and blocks), fed block by block from the last one, with a list cut many times.
    @Test func streamingTopKEqualsGreedySignTopK() throws {
        var rng = SplitMix64(seed: 3)
        let blocks = 4, perBlock = 3
        var tensors: [EligibleTensor] = [], targets: [String: [Float]] = [:]
        for b in 0..<blocks {
            for j in 0..<perBlock {
                let n = 500 + 37 * j + b
                let w = FloatBuffer(count: n), g = FloatBuffer(count: n)
                var a = [Float](repeating: 0, count: n)
                for i in 0..<n {
                    w[i] = Float(Int(rng.next() % 5)) - 2
                    a[i] = rng.next() % 4 == 0 ? w[i] : Float(Int(rng.next() % 5)) - 2
                    g[i] = (Float(Int(rng.next() % 9)) - 4) * 0.25    // few distinct values: many ties
                }
                let name = "model.layers.\(b).t\(j)"
                targets[name] = a
                tensors.append(EligibleTensor(name: name, current: w, gradient: g))
            }
        }
        let read: (String, UnsafeMutablePointer<Float>, Int) throws -> Void = { name, dst, n in
            targets[name]!.withUnsafeBufferPointer { dst.update(from: $0.baseAddress!, count: n) }
        }
        for k in [0, 1, 7, 100, 1000, 100_000] {
            let want = try greedySignTopK(tensors, k: k, apply: false, readTarget: read)
            var top = StreamingTopK(k: k)
            for b in (0..<blocks).reversed() {
                try top.add(Array(tensors[(b * perBlock)..<((b + 1) * perBlock)]), firstIndex: b * perBlock, readTarget: read)
            }
            let got = top.result()
            #expect(got.candidates == want.candidates)
            #expect(got.restores == want.restores, "k = \(k)")
            #expect(got.selected == min(k, want.candidates))
        }
    }
}
