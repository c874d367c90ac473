import Foundation
import Formats
import Tensor

// Layer-major passes: every prompt goes through block i before any goes through block i+1,
// so only one block's weights (materialised by `block(i)`, e.g. from the file plus a patch)
// and, in the backward, one block's gradients are in memory at a time. What a model larger
// than memory costs instead: the forward keeps each block's input hidden states (the
// checkpoints, tokens × hidden floats per block), and the backward recomputes each block's
// forward from its checkpoint before running its backward. The kernels and the packing
// into passes are those of `lastTokenStates` and `directionGradients`, so the numbers are
// the same bit for bit.

extension Transformer {
    /// `lastTokenStates` layer-major: [prompts × hidden], the last-token states at
    /// hidden-state index `layer`, with blocks from `block` (`weights` needs only the embedding).
    public func streamedLastTokenStates(_ prompts: [[Int]], layer: Int, batchSize: Int = 16,
                                        block: (Int) throws -> LayerWeights) throws -> [Float] {
        let c = config, H = c.hiddenSize
        let batches = stride(from: 0, to: prompts.count, by: max(batchSize, 1)).map { Array(prompts[$0..<min($0 + batchSize, prompts.count)]) }
        let x = batches.map { embedded($0) }                     // residual stream of each batch [n × H]
        rope.ensure(prompts.map(\.count).max() ?? 1)
        for l in 0..<min(layer, c.numLayers) {
            let w = try block(l)
            for (b, batch) in batches.enumerated() {
                let counts = batch.map(\.count)
                let step = ForwardStep(config: c, counts: counts, maxPos: counts.max()!, quantizedScratch: false)
                let keys = counts.map { FloatBuffer(count: max($0, 1) * c.kvDim, zeroed: false) }
                let values = counts.map { FloatBuffer(count: max($0, 1) * c.kvDim, zeroed: false) }
                withExtendedLifetime((keys, values)) {
                    forwardBlock(l, w, nil, x: x[b].ptr, step, past: counts.map { _ in 0 }, keys: keys.map(\.ptr), values: values.map(\.ptr))
                }
                try checkFinite(x[b], after: l)
            }
        }
        var out = [Float](repeating: 0, count: prompts.count * H)
        var p = 0
        for (b, batch) in batches.enumerated() {
            var row = 0
            for t in batch {
                row += t.count
                for j in 0..<H { out[p * H + j] = x[b][(row - 1) * H + j] }
                p += 1
            }
        }
        return out
    }

    /// `meanLastTokenState` layer-major (see `streamedLastTokenStates`).
    public func streamedMeanLastTokenState(_ prompts: [[Int]], layer: Int, batchSize: Int = 16,
                                           block: (Int) throws -> LayerWeights) throws -> [Float] {
        meanOfRows(try streamedLastTokenStates(prompts, layer: layer, batchSize: batchSize, block: block), width: config.hiddenSize)
    }

    /// `directionGradients` layer-major: the same loss, mean state and gradients, bit for bit.
    /// Blocks come from `block(i)` (called twice per block: forward, then backward); block i's
    /// gradients, summed over all passes, go to `gradient(i, weights, gradients)` as soon as
    /// they are complete, from block l−1 down to 0 (the buffers are reused for the next block).
    /// Memory: one block's weights and gradients, the checkpoints (n·H floats per block for
    /// n tokens of all prompts), and one pass's activations of one block.
    public func streamedDirectionGradients(prompts: [[Int]], target: [Float], blocks l: Int, lossBatch: LossBatch = .all, passSize: Int = 32,
                                           block: (Int) throws -> LayerWeights,
                                           gradient: (Int, LayerWeights, LayerWeights) throws -> Void) throws -> (loss: Double, mean: [Float]) {
        let c = config, H = c.hiddenSize
        precondition(target.count == H && l >= 1 && l <= c.numLayers)
        let passes = Self.passes(prompts, lossBatch: lossBatch, passSize: passSize)
        let a = Activations()
        // inputs[p][b]: the input of block b for pass p [n_p × H]; last[p]: the last-token
        // states after block l−1 [S_p × H].
        var inputs: [[FloatBuffer]] = passes.map { [embedded($0)] }
        let last = passes.map { FloatBuffer(count: $0.count * H, zeroed: false) }
        rope.ensure(prompts.map(\.count).max() ?? 1)
        for b in 0..<l {
            let w = try block(b)
            for (p, seqs) in passes.enumerated() {
                a.prepare(seqs, blocks: l, shortcut: true, config: c, sharedBlocks: true)
                var s = a.saved[b]
                s.xIn = inputs[p][b].ptr
                let out = b + 1 < l ? FloatBuffer(count: a.tokens * H, zeroed: false) : last[p]
                blockForward(b, s, out: out.ptr, a, block: w)
                try checkFinite(out, after: b)
                if b + 1 < l { inputs[p].append(out) }
            }
        }
        // The loss as `directionGradients` sums it; dx[p] starts as dL/d(last states) of pass p.
        var loss = 0.0
        var stateSum = [Double](repeating: 0, count: H)
        let dx = inputs.map { FloatBuffer(count: $0[0].count, zeroed: false) }
        for (p, seqs) in passes.enumerated() {
            rowSum(last[p].ptr, count: seqs.count, hidden: H, into: &stateSum)
            if case .prompts(let batchSize) = lossBatch {
                loss += target.withUnsafeBufferPointer {
                    directionLoss(dx[p].ptr, states: last[p].ptr, count: seqs.count, hidden: H, target: $0.baseAddress!, batchSize: batchSize)
                }
            }
        }
        // The passes' backward order: the one `directionGradients` uses, so the sums agree bit for bit.
        var order = Array(passes.indices)
        if lossBatch == .all {
            let (l0, row) = target.withUnsafeBufferPointer {
                negativeCosine(mean: stateSum.map { $0 / Double(max(prompts.count, 1)) }, count: prompts.count, target: $0.baseAddress!)
            }
            loss = l0
            for (p, seqs) in passes.enumerated() { for r in 0..<seqs.count { (dx[p].ptr + r * H).update(from: row, count: H) } }
            order = Self.allLossBackwardOrder(passes.count)
        }
        if !loss.isFinite { throw NonFiniteError(model: source, what: "recovery loss (finite hidden states: a zero or non-finite target?)", firstAt: nil) }
        let g = LayerWeights.zeros(config: c)
        for b in (0..<l).reversed() {
            let w = try block(b)
            g.zero()
            for p in order {
                let seqs = passes[p]
                a.prepare(seqs, blocks: l, shortcut: true, config: c, sharedBlocks: true)
                var s = a.saved[b]
                s.xIn = inputs[p][b].ptr
                blockForward(b, s, out: a.buffer("xOut", a.tokens * H), a, block: w)   // the activations the backward needs
                blockBackward(b, g, s, dx: dx[p].ptr, a, block: w)
                inputs[p].removeLast()                                                   // block b's checkpoint is done
            }
            try gradient(b, w, g)
        }
        return (loss, stateSum.map { Float($0 / Double(max(prompts.count, 1))) })
    }

    /// Layer-major passes check every block's output (n·H additions per block, next to its
    /// matrix products): there the layer is known without a second pass.
    func checkFinite(_ x: FloatBuffer, after block: Int) throws {
        if !allFinite(x.ptr, count: x.count) { throw NonFiniteError(model: source, what: "hidden states", firstAt: "layer \(block)") }
    }

    /// Embedding rows of the packed sequences [n × H], in a buffer of their own.
    func embedded(_ seqs: [[Int]]) -> FloatBuffer {
        let x = FloatBuffer(count: seqs.reduce(0) { $0 + $1.count } * config.hiddenSize, zeroed: false)
        embed(seqs, into: x.ptr)
        return x
    }
}

/// The mean of the rows of `rows` [count × width], accumulated in Double.
public func meanOfRows(_ rows: [Float], width: Int) -> [Float] {
    let count = rows.count / max(width, 1)
    var sum = [Double](repeating: 0, count: width)
    rowSum(rows, count: count, hidden: width, into: &sum)
    return sum.map { Float($0 / Double(max(count, 1))) }
}
