import Foundation

/// NaN or infinity where a model should give finite numbers: finite weights too large for fp32
/// make the activations overflow, or a training run diverged.
public struct NonFiniteError: Error, CustomStringConvertible, Equatable {
    /// The model file.
    public let model: String
    /// What came out non-finite: "logits", "hidden states", "loss at step 3", …
    public let what: String
    /// Where a plain forward pass first overflows: "the token embedding", "layer 3" (0-based, as
    /// in blk.3 and model.layers.3), "the final norm" or "the output projection"; nil when it
    /// does not (the NaN came from elsewhere, e.g. a diverging training run).
    public let firstAt: String?
    public init(model: String, what: String, firstAt: String?) { self.model = model; self.what = what; self.firstAt = firstAt }
    public var description: String {
        "\(model): NaN or infinite \(what)" + (firstAt.map { ": the activations overflow fp32 from \($0) on (finite weights, too large)" } ?? "")
    }
}

/// True when x[0..<count] holds no NaN or infinity. The sum is the cheap test (it is NaN or
/// infinite when an element is, or when it overflows); only then are the elements looked at.
public func allFinite(_ x: UnsafePointer<Float>, count: Int) -> Bool {
    var acc = SIMD8<Float>()
    var i = 0
    while i + 8 <= count { acc += UnsafeRawPointer(x + i).loadUnaligned(as: SIMD8<Float>.self); i += 8 }
    var s = acc.sum()
    while i < count { s += x[i]; i += 1 }
    if s.isFinite { return true }
    for j in 0..<count where !x[j].isFinite { return false }
    return true
}

public func allFinite(_ x: [Float]) -> Bool { x.withUnsafeBufferPointer { $0.isEmpty || allFinite($0.baseAddress!, count: $0.count) } }

extension Transformer {
    /// The error for non-finite `what` computed from `sequences`, naming where a plain forward
    /// pass of the first sequence that overflows (through the first `blocks` blocks; by default all
    /// of them and the output projection) first has a NaN or infinity. It runs the sequences
    /// again, one by one, checking every block's output: call it only once a cheap check failed.
    public func nonFiniteError(_ what: String, sequences: [[Int]], blocks: Int? = nil) -> NonFiniteError {
        for s in sequences where !s.isEmpty {
            if let at = firstOverflow(s, blocks: blocks) { return NonFiniteError(model: source, what: what, firstAt: at) }
        }
        return NonFiniteError(model: source, what: what, firstAt: nil)
    }

    func firstOverflow(_ tokens: [Int], blocks: Int?) -> String? {
        let n = tokens.count * config.hiddenSize, L = config.numLayers
        var found: String? = nil
        let cache = KVCache(config: config, capacities: [tokens.count])
        let logits = forward(tokens: [tokens], sequences: [0], cache: cache, blocks: blocks, logits: (blocks ?? L) >= L,
                             tap: { index, states in
            guard found == nil, index == 0 || index == L, !allFinite(states, count: n) else { return }
            found = index == 0 ? "the token embedding" : "the final norm"
        }, blockOutput: { l, x in
            if found == nil && !allFinite(x, count: n) { found = "layer \(l)" }
        })
        if found == nil && !allFinite(logits) { found = "the output projection" }
        return found
    }
}
