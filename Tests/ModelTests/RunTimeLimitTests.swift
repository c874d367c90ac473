import Foundation
import Testing
@testable import Model
import Formats
import Tensor
import TestSupport

/// What a model run refuses or stops at: prompts longer than the context, generation past it,
/// absurd fine-tuning counts, and finite weights that overflow fp32 to NaN at run time.
@Suite struct RunTimeLimitTests {
    /// The tiny random llama (4 layers, context 2048), optionally with a context of `context`
    /// and layer 1's attention norm at 1e30: finite weights whose attention scores overflow.
    static func tiny(context: Int? = nil, hugeLayer: Int? = nil) throws -> Transformer {
        let dir = fixturesDir() + "/tiny-llama"
        var weights = try ModelWeights.load(config: try ModelConfig(hfConfigAt: dir + "/config.json"), from: try SafetensorsModel(folder: dir))
        if let context { weights.config.maxPositions = context }
        if let l = hugeLayer { let w = weights.layers[l].attnNorm; for i in 0..<w.count { w[i] = 1e30 } }
        return Transformer(weights: weights, source: "tiny.gguf")
    }

    @Test func promptLongerThanTheContextIsRefused() throws {
        let chat = try ChatFormat.load(RealModels.smol)
        #expect(chat.contextLength == 8192)
        let e = try #require(throws: PromptTooLongError.self) { try chat.promptIds(String(repeating: " hello", count: 20_000), raw: true) }
        #expect(e.tokens == 20_000 && e.limit == 8192 && e.model == RealModels.smol)
        #expect(e.description == "the prompt has 20000 tokens, more than the context length of \(RealModels.smol) (8192 tokens)")
        #expect(try chat.promptIds(String(repeating: " hello", count: 8192), raw: true).count == 8192)
    }

    /// --max-tokens of 2^63 − 1 once overflowed the KV cache's size: new tokens stop where the
    /// context is full, and a prompt that fills it gets none.
    @Test func generationStopsAtTheContext() throws {
        let t = try RunTimeLimitTests.tiny(context: 12)
        let out = try t.generate(prompts: [[1, 5, 9, 20, 30], Array(1...12), [7]], maxNewTokens: Int.max, stopTokens: [])
        #expect(out.map(\.count) == [7, 0, 11])
        #expect(try t.generate(prompts: [[1, 5, 9, 20, 30]], maxNewTokens: 3, stopTokens: [])[0] == Array(out[0].prefix(3)))
    }

    /// The cache starts with room for 256 new tokens and grows as they come: the tokens are
    /// those of a cache sized for all of them up front.
    @Test func theCacheGrowsAsTokensCome() throws {
        let t = try RunTimeLimitTests.tiny(), prompt = [1, 5, 9, 20, 30], n = 300
        let out = try t.generate(prompts: [prompt], maxNewTokens: n, stopTokens: [])[0]
        let cache = KVCache(config: t.config, capacities: [prompt.count + n])
        var next = prompt, want: [Int] = []
        for _ in 0..<n {
            let logits = t.forward(tokens: [next], sequences: [0], cache: cache)
            want.append(argmax(logits, count: logits.count))
            next = [want.last!]
        }
        #expect(out == want)
        let small = KVCache(config: t.config, capacities: [1])
        #expect(t.forward(tokens: [prompt], sequences: [0], cache: small) == t.forward(tokens: [prompt], sequences: [0], cache: KVCache(config: t.config, capacities: [5])))
        #expect(small.capacity == [5] && small.lengths == [5])
        t.forward(tokens: [[2]], sequences: [0], cache: small)
        #expect(small.capacity == [10] && small.lengths == [6])
    }

    @Test func overflowingWeightsStopGenerationNamingTheLayer() throws {
        let t = try RunTimeLimitTests.tiny(hugeLayer: 1)
        let e = try #require(throws: NonFiniteError.self) { try t.generate(prompts: [[1, 5, 9, 20, 30]], maxNewTokens: 4, stopTokens: []) }
        #expect(e == NonFiniteError(model: "tiny.gguf", what: "logits", firstAt: "layer 1"))
        #expect(e.description == "tiny.gguf: NaN or infinite logits: the activations overflow fp32 from layer 1 on (finite weights, too large)")
        // The sound model is unaffected by the check.
        #expect(try RunTimeLimitTests.tiny().generate(prompts: [[1, 5, 9, 20, 30]], maxNewTokens: 4, stopTokens: [])[0].count == 4)
    }

    /// The recovery's forward/backward pass, resident and layer-major.
    @Test func overflowingWeightsStopTheRecoveryGradients() throws {
        let t = try RunTimeLimitTests.tiny(hugeLayer: 1)
        let grads = t.zeroGradients(blocks: 3)
        let target = [Float](repeating: 1, count: t.config.hiddenSize)
        let e = try #require(throws: NonFiniteError.self) {
            try t.directionGradients(prompts: [[1, 5, 9], [2, 4]], target: target, blocks: 3, into: grads)
        }
        #expect(e == NonFiniteError(model: "tiny.gguf", what: "hidden states", firstAt: "layer 1"))
        let streamed = try #require(throws: NonFiniteError.self) {
            try t.streamedDirectionGradients(prompts: [[1, 5, 9], [2, 4]], target: target, blocks: 3,
                                             block: { t.weights.layers[$0] }, gradient: { _, _, _ in })
        }
        #expect(streamed == e)
        #expect(throws: NonFiniteError.self) { try t.streamedMeanLastTokenState([[1, 5, 9]], layer: 3) { t.weights.layers[$0] } }
        // Blocks below the huge one are fine.
        #expect(allFinite(try t.directionGradients(prompts: [[1, 5, 9], [2, 4]], target: target, blocks: 1,
                                                   into: t.zeroGradients(blocks: 1)).mean))
    }

    static let examples = [TrainingExample(ids: [1, 5, 9, 20, 30], responseStart: 2), TrainingExample(ids: [3, 4, 8, 2], responseStart: 1),
                           TrainingExample(ids: [7, 7, 9], responseStart: 2), TrainingExample(ids: [11, 12, 13, 14], responseStart: 3)]

    @Test func overflowingWeightsStopFineTuningBeforeAnyFile() throws {
        let out = FileManager.default.temporaryDirectory.appendingPathComponent("realign-nan-ft-\(getpid())").path
        defer { try? FileManager.default.removeItem(atPath: out) }
        var o = FineTuneOptions()
        o.rank = 2; o.batch = 2; o.checkpointEvery = 1
        let r = FineTuneRun(decoder: try RunTimeLimitTests.tiny(hugeLayer: 1), baseName: "tiny", examples: RunTimeLimitTests.examples, options: o, out: out)
        let e = try #require(throws: NonFiniteError.self) { try r.run(resume: false) { _ in } }
        #expect(e == NonFiniteError(model: "tiny.gguf", what: "loss at step 1", firstAt: "layer 1"))
        #expect(try FileManager.default.contentsOfDirectory(atPath: out).isEmpty)
    }

    /// A learning rate that makes training diverge on a sound model: the message says so.
    @Test func divergingFineTuningIsNamedAsSuch() throws {
        let out = FileManager.default.temporaryDirectory.appendingPathComponent("realign-diverge-ft-\(getpid())").path
        defer { try? FileManager.default.removeItem(atPath: out) }
        var o = FineTuneOptions()
        o.rank = 2; o.batch = 1; o.lr = 1e30; o.maxGradNorm = 0; o.epochs = 50; o.checkpointEvery = 1000
        let r = FineTuneRun(decoder: try RunTimeLimitTests.tiny(), baseName: "tiny", examples: RunTimeLimitTests.examples, options: o, out: out)
        let e = try #require(throws: NonFiniteError.self) { try r.run(resume: false) { _ in } }
        #expect(e.firstAt == nil && e.model == "tiny.gguf" && e.what.contains("the training diverged"), "\(e)")
        #expect(!FileManager.default.fileExists(atPath: r.checkpointPath))
    }

    /// Epochs and grad-accum of 2^62 once wrapped the step count to 0 (and divided by zero):
    /// the counts saturate, and --max-steps still ends the run.
    @Test func stepCountsSaturateAndMaxStepsIsHonoured() throws {
        let out = FileManager.default.temporaryDirectory.appendingPathComponent("realign-steps-ft-\(getpid())").path
        defer { try? FileManager.default.removeItem(atPath: out) }
        let t = try RunTimeLimitTests.tiny()
        var o = FineTuneOptions()
        o.rank = 2; o.batch = 1; o.epochs = 1 << 62; o.maxSteps = 2
        let r = FineTuneRun(decoder: t, baseName: "tiny", examples: RunTimeLimitTests.examples, options: o, out: out)
        #expect(r.stepsPerEpoch == 4 && r.totalSteps == Int.max)
        #expect(try r.run(resume: false) { _ in }.steps == 2)
        var g = FineTuneOptions()
        g.batch = 4; g.gradAccum = 1 << 62
        let accum = FineTuneRun(decoder: t, baseName: "tiny", examples: RunTimeLimitTests.examples, options: g, out: out)
        #expect(accum.stepsPerEpoch == 1 && accum.totalSteps == 1)
    }

    @Test func loraRankIsBoundedByTheAdaptedMatrices() throws {
        let c = try RunTimeLimitTests.tiny().config   // hidden 64, q 64, k/v 32, intermediate 128
        #expect(FineTuneOptions.maxRank(c, targets: LoRATarget.allCases) == 32)
        #expect(FineTuneOptions.maxRank(c, targets: [.q, .down]) == 64)
    }
}
