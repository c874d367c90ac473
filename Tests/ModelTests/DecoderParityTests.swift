import Foundation
import Testing
@testable import Model
import Tensor
import Formats
import TestSupport

/// Reference values made by scripts/make_model_fixtures.py (transformers 4.57.6, fp32, on the
/// same GGUF files). Relative error of a hidden-state vector is ‖a − b‖ / ‖b‖.
struct ModelReference: Decodable {
    struct Prompt: Decodable {
        let prompt: String
        let text: String
        let ids: [Int]
        let top10_ids: [Int]
        let top10_logits: [Float]
        let greedy_ids: [Int]
    }
    struct Config: Decodable { let layers: Int; let hidden: Int }
    let eos_token_id: EOS
    let prompts: [Prompt]
    let config: Config

    enum EOS: Decodable {
        case one(Int), many([Int])
        init(from d: Decoder) throws {
            let c = try d.singleValueContainer()
            if let i = try? c.decode(Int.self) { self = .one(i) } else { self = .many(try c.decode([Int].self)) }
        }
        var set: Set<Int> { switch self { case .one(let i): return [i]; case .many(let a): return Set(a) } }
    }
}

struct BatchReference: Decodable {
    let input_ids: [[Int]]
    let attention_mask: [[Int]]
    let top10_ids: [[Int]]
    let last_hidden: [String: [[Float]]]
}

func readFloats(_ path: String) throws -> [Float] {
    let d = try Data(contentsOf: URL(fileURLWithPath: path))
    return d.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
}

func vectorRelativeError(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, count: Int) -> Float {
    var num: Double = 0, den: Double = 0
    for i in 0..<count {
        let d = Double(a[i]) - Double(b[i])
        num += d * d
        den += Double(b[i]) * Double(b[i])
    }
    let e = Float((num / max(den, 1e-30)).squareRoot())
    return e.isNaN ? .infinity : e   // so that max() never hides a NaN
}

/// Indices of the 10 largest logits, largest first (ties: lower id first).
func top10(_ logits: UnsafePointer<Float>, vocab: Int) -> [Int] {
    var best: [Int] = []
    for i in 0..<vocab {
        if best.count < 10 || logits[i] > logits[best[best.count - 1]] {
            best.append(i)
            best.sort { logits[$0] > logits[$1] || (logits[$0] == logits[$1] && $0 < $1) }
            if best.count > 10 { best.removeLast() }
        }
    }
    return best
}

final class LoadedReference: @unchecked Sendable {
    let decoder: Transformer
    let ref: ModelReference
    let dir: String

    init(model: String, fixture: String) throws {
        decoder = try LanguageModel.load(model).decoder
        dir = fixturesDir() + "/" + fixture
        ref = try JSONDecoder().decode(ModelReference.self, from: Data(contentsOf: URL(fileURLWithPath: dir + "/reference.json")))
    }

    static let qwen = Result { try LoadedReference(model: RealModels.qwen, fixture: "qwen") }
    static let smol = Result { try LoadedReference(model: RealModels.smol, fixture: "smol") }
    static func named(_ n: String) throws -> LoadedReference { try (n == "qwen" ? qwen : smol).get() }
}

@Suite(.serialized) struct DecoderParityTests {
    static let models = ["smol", "qwen"]

    /// Every hidden state (all layers, all positions) of the first prompt.
    @Test(arguments: models) func allHiddenStatesOfOnePrompt(_ name: String) throws {
        let m = try LoadedReference.named(name)
        let c = m.decoder.config
        let ids = m.ref.prompts[0].ids
        let want = try readFloats(m.dir + "/hidden_full.f32")
        let T = ids.count, H = c.hiddenSize
        #expect(want.count == (c.numLayers + 1) * T * H)
        var worst: [Float] = Array(repeating: 0, count: c.numLayers + 1)
        let cache = KVCache(config: c, capacities: [T])
        m.decoder.forward(tokens: [ids], sequences: [0], cache: cache) { index, states in
            want.withUnsafeBufferPointer { w in
                for t in 0..<T {
                    let e = vectorRelativeError(states + t * H, w.baseAddress! + (index * T + t) * H, count: H)
                    worst[index] = max(worst[index], e)
                }
            }
        }
        print("\(name) worst relative error per hidden-state index:", worst.map { String(format: "%.1e", $0) }.joined(separator: " "))
        for (i, e) in worst.enumerated() { #expect(e < 1e-4, "hidden state \(i)") }
    }

    /// Last-token hidden states at every layer and the top-10 next tokens of every prompt, in one packed batch.
    @Test(arguments: models) func lastTokenStatesAndTop10(_ name: String) throws {
        let m = try LoadedReference.named(name)
        let c = m.decoder.config, H = c.hiddenSize
        let prompts = m.ref.prompts
        let want = try readFloats(m.dir + "/hidden_last.f32")
        #expect(want.count == prompts.count * (c.numLayers + 1) * H)
        var lastRow: [Int] = [], r = 0
        for p in prompts { r += p.ids.count; lastRow.append(r - 1) }
        var worst: Float = 0
        let cache = KVCache(config: c, capacities: prompts.map { $0.ids.count })
        let logits = m.decoder.forward(tokens: prompts.map(\.ids), sequences: Array(prompts.indices), cache: cache) { index, states in
            want.withUnsafeBufferPointer { w in
                for (p, row) in lastRow.enumerated() {
                    let e = vectorRelativeError(states + row * H, w.baseAddress! + (p * (c.numLayers + 1) + index) * H, count: H)
                    worst = max(worst, e)
                }
            }
        }
        print("\(name) worst last-token relative error over \(prompts.count) prompts:", worst)
        #expect(worst < 1e-4)
        try logits.withUnsafeBufferPointer { lp in
            for (p, ref) in prompts.enumerated() {
                let top = top10(lp.baseAddress! + p * c.vocabSize, vocab: c.vocabSize)
                #expect(top == ref.top10_ids, "prompt \(p): \(ref.prompt)")
                let l0 = lp[p * c.vocabSize + ref.top10_ids[0]]
                #expect(abs(l0 - ref.top10_logits[0]) < 1e-3 * max(1, abs(ref.top10_logits[0])))
                _ = try #require(top.count == 10)
            }
        }
    }

    /// Greedy continuations (64 new tokens, batched, KV cache) equal transformers' generate().
    @Test(arguments: models) func greedyContinuations(_ name: String) throws {
        let m = try LoadedReference.named(name)
        let prompts = m.ref.prompts
        #expect(prompts.count >= 20)
        // The first 11 in batches of 4 (decode steps of ≤ 8 rows read the quantised blocks),
        // the other 11 in one batch (decode steps through BLAS on the fp32 weights).
        #expect(m.decoder.quantized != nil)
        var got: [[Int]] = []
        for b in stride(from: 0, to: 11, by: 4) {
            got += try m.decoder.generate(prompts: prompts[b..<min(b + 4, 11)].map(\.ids), maxNewTokens: 64, stopTokens: m.ref.eos_token_id.set)
        }
        got += try m.decoder.generate(prompts: prompts[11...].map(\.ids), maxNewTokens: 64, stopTokens: m.ref.eos_token_id.set)
        for (p, ref) in prompts.enumerated() {
            #expect(got[p] == ref.greedy_ids, "prompt \(p): \(ref.prompt)")
        }
    }

    /// transformers' left-padded batch gives the same last-token states and top-10 as our packed batch.
    @Test(arguments: models) func leftPaddedBatch(_ name: String) throws {
        let m = try LoadedReference.named(name)
        let c = m.decoder.config, H = c.hiddenSize
        let b = try JSONDecoder().decode(BatchReference.self, from: Data(contentsOf: URL(fileURLWithPath: m.dir + "/batch.json")))
        let seqs = zip(b.input_ids, b.attention_mask).map { ids, mask in zip(ids, mask).filter { $0.1 == 1 }.map(\.0) }
        var lastRow: [Int] = [], r = 0
        for s in seqs { r += s.count; lastRow.append(r - 1) }
        let cache = KVCache(config: c, capacities: seqs.map(\.count))
        var worst: Float = 0
        let logits = m.decoder.forward(tokens: seqs, sequences: Array(seqs.indices), cache: cache) { index, states in
            guard let rows = b.last_hidden[String(index)] else { return }
            for (i, row) in lastRow.enumerated() {
                rows[i].withUnsafeBufferPointer { worst = max(worst, vectorRelativeError(states + row * H, $0.baseAddress!, count: H)) }
            }
        }
        #expect(worst < 1e-4)
        logits.withUnsafeBufferPointer { lp in
            for i in seqs.indices { #expect(top10(lp.baseAddress! + i * c.vocabSize, vocab: c.vocabSize) == b.top10_ids[i]) }
        }
    }
}

/// The whole text path: chat template + tokenizer give transformers' prompt ids.
@Suite struct PromptPipelineTests {
    @Test(arguments: [("smol", RealModels.smol), ("qwen", RealModels.qwen)])
    func chatPromptIds(_ name: String, _ path: String) throws {
        let dir = fixturesDir() + "/" + name
        let ref = try JSONDecoder().decode(ModelReference.self, from: Data(contentsOf: URL(fileURLWithPath: dir + "/reference.json")))
        let chat = try ChatFormat.load(path)
        for p in ref.prompts {
            #expect(try chat.chatPrompt(p.prompt) == p.text)
            #expect(try chat.promptIds(p.prompt) == p.ids, "\(p.prompt)")
        }
        #expect(chat.stopTokens.isSuperset(of: ref.eos_token_id.set))
    }
}
