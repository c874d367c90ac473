import Foundation
import Tensor

/// How to pick the next token. Temperature 0 is greedy (argmax, first on ties).
public struct SamplingOptions: Sendable {
    public var temperature: Float = 0
    public var topK: Int = 0          // 0: no limit
    public var topP: Float = 1        // 1: no nucleus cut
    public var seed: UInt64 = 0
    public init(temperature: Float = 0, topK: Int = 0, topP: Float = 1, seed: UInt64 = 0) {
        self.temperature = temperature; self.topK = topK; self.topP = topP; self.seed = seed
    }
}

/// Picks a token from one row of logits.
public func sampleToken(_ logits: UnsafePointer<Float>, vocab: Int, options: SamplingOptions,
                        rng: inout SplitMix64) -> Int {
    if options.temperature <= 0 { return argmax(logits, count: vocab) }
    // Candidates sorted by logit (descending), cut to top-k, softmax at temperature, cut to top-p.
    var order = Array(0..<vocab)
    order.sort { logits[$0] > logits[$1] || (logits[$0] == logits[$1] && $0 < $1) }
    if options.topK > 0 && options.topK < vocab { order.removeLast(vocab - options.topK) }
    let mx = logits[order[0]]
    var probs = order.map { expf((logits[$0] - mx) / options.temperature) }
    let total = probs.reduce(0, +)
    for i in probs.indices { probs[i] /= total }
    if options.topP < 1 {
        var cum: Float = 0, keep = probs.count
        for (i, p) in probs.enumerated() { cum += p; if cum >= options.topP { keep = i + 1; break } }
        probs.removeLast(probs.count - keep)
        order.removeLast(order.count - keep)
        let s = probs.reduce(0, +)
        for i in probs.indices { probs[i] /= s }
    }
    let u = rng.nextUnit()
    var cum: Float = 0
    for (i, p) in probs.enumerated() { cum += p; if u < cum { return order[i] } }
    return order[order.count - 1]
}

/// Progress of a batched generation, reported after every decoding step.
public struct GenerationProgress {
    public let step: Int
    public let active: Int
    public let newTokens: Int
    public let seconds: Double
}

extension Transformer {
    /// New tokens the KV cache has room for before it first grows: the default --max-tokens.
    static let initialNewTokens = 256

    /// Generates up to `maxNewTokens` for each prompt (all in one batch), stopping a prompt
    /// at the first token in `stopTokens` (which is kept, as transformers does), or when prompt
    /// and new tokens fill the context (as llama.cpp stops). Prompt i samples with seed
    /// `options.seed + i`, so batching does not change a sample. Non-finite logits (weights that
    /// overflow fp32) throw `NonFiniteError` instead of sampling token 0.
    public func generate(prompts: [[Int]], maxNewTokens: Int, stopTokens: Set<Int>,
                         options: SamplingOptions = SamplingOptions(),
                         progress: ((GenerationProgress) -> Void)? = nil) throws -> [[Int]] {
        let b = prompts.count
        guard b > 0 else { return [] }
        // New tokens per prompt: at most what the context leaves. The cache starts with room for
        // a typical answer and grows as tokens come, so memory follows the tokens generated,
        // not --max-tokens (a 128k context would need GBs of cache up front).
        let limits = prompts.map { min(max(maxNewTokens, 0), max(config.maxPositions - $0.count, 0)) }
        let cache = KVCache(config: config, capacities: (0..<b).map { prompts[$0].count + min(limits[$0], Transformer.initialNewTokens) })
        var rngs = (0..<b).map { SplitMix64(seed: options.seed &+ UInt64($0)) }
        var out = Array(repeating: [Int](), count: b)
        let start = Date()
        var active = Array(0..<b).filter { !prompts[$0].isEmpty && limits[$0] > 0 }
        var next = prompts
        var produced = 0
        var step = 0
        while !active.isEmpty {
            let logits = forward(tokens: active.map { next[$0] }, sequences: active, cache: cache)
            var still: [Int] = [], bad: Int? = nil
            logits.withUnsafeBufferPointer { lp in
                for (i, s) in active.enumerated() {
                    let row = lp.baseAddress! + i * config.vocabSize
                    guard allFinite(row, count: config.vocabSize) else { bad = s; return }
                    let tok = sampleToken(row, vocab: config.vocabSize, options: options, rng: &rngs[s])
                    out[s].append(tok)
                    produced += 1
                    next[s] = [tok]
                    if !stopTokens.contains(tok) && out[s].count < limits[s] { still.append(s) }
                }
            }
            if let s = bad { throw nonFiniteError("logits", sequences: [prompts[s] + out[s]]) }
            active = still
            step += 1
            progress?(GenerationProgress(step: step, active: active.count, newTokens: produced,
                                         seconds: Date().timeIntervalSince(start)))
        }
        return out
    }
}
