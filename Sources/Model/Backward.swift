import Foundation
import Formats
import Tensor

// The backward pass of alignment recovery (paper §5.2.2, step ❶): gradients of a loss on the
// last-token hidden states after block l−1 with respect to every weight of blocks 0..<l.
// Later blocks are never run. Fine-tuning (Training.swift) runs the same passes to full depth
// with the last block in full and a loss on every row; there the base weights are frozen
// (`grads` nil: no dW, dx still flows through W) and the LoRA terms of `Transformer.lora`
// (LoRA.swift) get their gradients beside each projection's backward.
//
// llm.c style: the forward keeps, per block, what the backward needs (named buffers below);
// the backward walks the blocks in reverse, each op's backward beside its forward in
// Tensor/Kernels.swift, weight gradients accumulated (dW += dYᵀ·X) by one sgemm over all
// packed tokens. Cheap things (RMSNorm outputs, SwiGLU, attention probabilities) are
// recomputed in the backward instead of stored.
//
// The last block shortcut: the loss reads only each sequence's last position after block
// l−1, so in that block only the keys and values are needed at every position; queries,
// attention output, o_proj, MLP and residual are computed (forward and backward) for the
// last position of each sequence only. `lastBlockShortcut: false` runs the last block in
// full (same gradients, used by the tests).
//
// Notation: n = packed tokens of all sequences, S = sequences, m = query rows of a block
// (n, or S in the shortcut last block), H = hidden, Q = heads·headDim, K = kvHeads·headDim,
// I = intermediate.

/// Which rows of a block are query rows: all n packed rows (a full block), or the last row of
/// each sequence (the last block under the shortcut). Query-side buffers have `m` rows;
/// sequence i's query rows start at `start[i]`, there are `count[i]` of them and they are
/// the last `count[i]` positions of the sequence.
struct QueryRows {
    var m: Int
    var start: [Int]
    var count: [Int]
    /// Packed row of each query row; nil when the query rows are all rows in order.
    var packedRow: [Int]?

    /// rows[m × width] = x[packedRow[r]] for each query row; returns `x` itself (no copy) when
    /// the query rows are all rows.
    func gather(_ x: UnsafeMutablePointer<Float>, width: Int, into rows: UnsafeMutablePointer<Float>) -> UnsafeMutablePointer<Float> {
        guard let packedRow else { return x }
        for (r, p) in packedRow.enumerated() { (rows + r * width).update(from: x + p * width, count: width) }
        return rows
    }

    /// x[packedRow[r]] += rows[r] for each query row (x[n × width], rows[m × width]).
    func scatterAdd(_ rows: UnsafePointer<Float>, width: Int, into x: UnsafeMutablePointer<Float>) {
        guard let packedRow else {
            for i in 0..<m * width { x[i] += rows[i] }
            return
        }
        for (r, p) in packedRow.enumerated() {
            let dst = x + p * width, src = rows + r * width
            for j in 0..<width { dst[j] += src[j] }
        }
    }
}

/// What one block's forward keeps for its backward (pointers into `Activations` storage).
struct BlockActivations {
    var xIn: UnsafeMutablePointer<Float>    // [n × H] residual entering the block (= previous block's output)
    var k: UnsafeMutablePointer<Float>      // [n × K] keys after RoPE
    var v: UnsafeMutablePointer<Float>      // [n × K] values
    var q: UnsafeMutablePointer<Float>      // [m × Q] queries after RoPE
    var att: UnsafeMutablePointer<Float>    // [m × Q] attention output, before o_proj
    var xMid: UnsafeMutablePointer<Float>   // [m × H] residual after attention
    var gate: UnsafeMutablePointer<Float>   // [m × I] MLP gate projection (before SiLU)
    var up: UnsafeMutablePointer<Float>     // [m × I] MLP up projection
    var rows: QueryRows
    // Family extras (nil where the family has none):
    var kRaw: UnsafeMutablePointer<Float>? = nil     // [n × K] keys before the per-head norm (qwen3)
    var qRaw: UnsafeMutablePointer<Float>? = nil     // [m × Q] queries before the per-head norm
    var attnOut: UnsafeMutablePointer<Float>? = nil  // [m × H] att · W_oᵀ before gemma2's post-attention norm
    var mlpOut: UnsafeMutablePointer<Float>? = nil   // [m × H] MLP output before gemma2's post-feedforward norm
}

/// The forward pass of blocks 0..<blocks over packed sequences, kept for `backward`, plus the
/// backward's scratch. Memory: per token and full block 2H + 2Q + 2K + 2I floats (Qwen2.5-0.5B:
/// 13,568 floats = 54 KB; 32 prompts × 40 tokens × 15 blocks ≈ 1.0 GB), the last block under
/// the shortcut only 2K per token (qwen3 keeps q and k before their norms too, gemma2 two more H);
/// scratch about n·(3H + 2K + Q) + 3·n·I + 4·T² floats
/// (T the longest sequence). Pass an `Activations` back to `forwardForBackward(reusing:)` to
/// reuse its buffers.
public final class Activations {
    public private(set) var blocks = 0
    /// Number of sequences S and of packed tokens n.
    public private(set) var sequences = 0
    public private(set) var tokens = 0
    var lengths: [Int] = []     // [S] tokens of each sequence
    var rowStart: [Int] = []    // [S] first packed row of each sequence
    var lastRow: [Int] = []     // [S] packed row of each sequence's last token
    var saved: [BlockActivations] = []
    /// Hidden state of each sequence's last token after block `blocks − 1` (transformers'
    /// `hidden_states[blocks][:, -1]`), [sequences × hidden].
    public private(set) var lastStates: UnsafeMutablePointer<Float>
    /// Output of block `blocks − 1` at every packed row, [tokens × hidden], when the last block
    /// ran in full (`lastBlockShortcut: false`); nil under the shortcut.
    public internal(set) var output: UnsafeMutablePointer<Float>?
    private var storage: [String: FloatBuffer] = [:]

    public init() {
        let b = FloatBuffer(count: 1)
        storage["lastStates"] = b
        lastStates = b.ptr
    }

    /// A named buffer of at least `count` floats, reused across calls (contents undefined).
    func buffer(_ name: String, _ count: Int) -> UnsafeMutablePointer<Float> {
        if let b = storage[name], b.count >= count { return b.ptr }
        let b = FloatBuffer(count: count, zeroed: false)
        storage[name] = b
        return b.ptr
    }

    /// Bytes held (saved activations and scratch).
    public var byteCount: Int { storage.values.reduce(0) { $0 + 4 * $1.count } }

    /// The last states as an array, [sequences × hidden].
    public func lastStatesArray(hidden: Int) -> [Float] { Array(UnsafeBufferPointer(start: lastStates, count: sequences * hidden)) }

    /// FLOPs (2 per multiply-add) of the matrix products `forwardForBackward` and `backward`
    /// run for these sequences; the element-wise ops are not counted.
    public func flops(config c: ModelConfig) -> (forward: Double, backward: Double) {
        let H = Double(c.hiddenSize), Q = Double(c.qDim), K = Double(c.kvDim), I = Double(c.intermediateSize)
        let n = Double(tokens), hd = Double(c.headDim), heads = Double(c.numHeads)
        var forward = 0.0, backward = 0.0
        for s in saved {
            let m = Double(s.rows.m)
            let products = 2 * n * H * 2 * K + 2 * m * H * Q * 2 + 2 * m * H * I * 3
            var attention = 0.0                                  // Q·Kᵀ and P·V
            for (tq, T) in zip(s.rows.count, lengths) { attention += heads * 2 * 2 * Double(tq * T) * hd }
            forward += products + attention
            backward += 2 * products + 2.5 * attention            // dW and dX; recomputed P, dP, dV, dQ, dK
        }
        return (forward, backward)
    }

    /// Lays out the saved buffers for these sequences.
    /// With `sharedBlocks`, every block's saved buffers are one set (layer-major passes keep
    /// one block's activations at a time; see Streaming.swift).
    func prepare(_ seqs: [[Int]], blocks l: Int, shortcut: Bool, config c: ModelConfig, sharedBlocks: Bool = false) {
        blocks = l
        sequences = seqs.count
        lengths = seqs.map(\.count)
        rowStart = []; lastRow = []
        var n = 0
        for t in lengths { rowStart.append(n); n += t; lastRow.append(n - 1) }
        tokens = n
        let H = c.hiddenSize, Q = c.qDim, K = c.kvDim, I = c.intermediateSize, S = sequences
        let all = QueryRows(m: n, start: rowStart, count: lengths, packedRow: nil)
        let last = QueryRows(m: S, start: Array(0..<S), count: Array(repeating: 1, count: S), packedRow: lastRow)
        let t = c.traits
        // (shared: the full blocks come first and ask for the most, so the last block's smaller
        // request gets the same buffers)
        saved = (0..<l).map { b in
            let rows = shortcut && b == l - 1 ? last : all
            let m = rows.m, id = sharedBlocks ? "" : ".\(b)"
            return BlockActivations(
                xIn: buffer("xIn" + id, n * H), k: buffer("k" + id, n * K), v: buffer("v" + id, n * K),
                q: buffer("q" + id, m * Q), att: buffer("att" + id, m * Q), xMid: buffer("xMid" + id, m * H),
                gate: buffer("gate" + id, m * I), up: buffer("up" + id, m * I), rows: rows,
                kRaw: t.qkNorm ? buffer("kRaw" + id, n * K) : nil, qRaw: t.qkNorm ? buffer("qRaw" + id, m * Q) : nil,
                attnOut: t.sandwichNorms ? buffer("attnOut" + id, m * H) : nil, mlpOut: t.sandwichNorms ? buffer("mlpOut" + id, m * H) : nil)
        }
        lastStates = buffer("lastStates", S * H)
    }
}

extension LayerWeights {
    /// Zeroed gradient buffers shaped like one block's weights (llm.c: parameters and their
    /// gradients share one type).
    public static func zeros(config c: ModelConfig) -> LayerWeights {
        // (make() only asks for zeroed buffers of the right shapes; it cannot fail)
        try! LayerWeights.make(0, config: c) { _, shape in FloatBuffer(count: shape.reduce(1, *)) }
    }

    /// Every tensor of block `layer` under its HF name (the file's: phi3's fused matrices as
    /// one tensor each), in `ModelConfig.layerSpecs` order.
    public func named(layer: Int) -> [(name: String, buffer: FloatBuffer)] {
        let p = "model.layers.\(layer)."
        var list: [(name: String, buffer: FloatBuffer)] = [(p + "input_layernorm.weight", attnNorm)]
        if let wqkv {
            list.append((p + "self_attn.qkv_proj.weight", wqkv))
        } else {
            list.append((p + "self_attn.q_proj.weight", wq))
            if let bq { list.append((p + "self_attn.q_proj.bias", bq)) }
            list.append((p + "self_attn.k_proj.weight", wk))
            if let bk { list.append((p + "self_attn.k_proj.bias", bk)) }
            list.append((p + "self_attn.v_proj.weight", wv))
            if let bv { list.append((p + "self_attn.v_proj.bias", bv)) }
        }
        if let qNorm, let kNorm { list += [(p + "self_attn.q_norm.weight", qNorm), (p + "self_attn.k_norm.weight", kNorm)] }
        list.append((p + "self_attn.o_proj.weight", wo))
        if let postAttnNorm, let postFfnNorm {
            list += [(p + "post_attention_layernorm.weight", postAttnNorm), (p + "pre_feedforward_layernorm.weight", ffnNorm),
                     (p + "post_feedforward_layernorm.weight", postFfnNorm)]
        } else {
            list.append((p + "post_attention_layernorm.weight", ffnNorm))
        }
        if let wGateUp {
            list.append((p + "mlp.gate_up_proj.weight", wGateUp))
        } else {
            list += [(p + "mlp.gate_proj.weight", wGate), (p + "mlp.up_proj.weight", wUp)]
        }
        list.append((p + "mlp.down_proj.weight", wDown))
        return list
    }

    /// Sets every gradient to zero.
    public func zero() {
        for (_, b) in named(layer: 0) { b.ptr.initialize(repeating: 0, count: b.count) }
    }
}

extension Transformer {
    /// Zeroed gradients for blocks 0..<blocks.
    public func zeroGradients(blocks: Int) -> [LayerWeights] {
        (0..<blocks).map { _ in LayerWeights.zeros(config: config) }
    }

    /// Runs blocks 0..<l over the packed sequences (each from position 0, no cache), keeping
    /// what `backward` needs. `acts.lastStates` [sequences × hidden] is then each sequence's
    /// last-token state after block l−1 (transformers' `hidden_states[l][:, -1]`).
    public func forwardForBackward(tokens seqs: [[Int]], blocks l: Int, reusing: Activations? = nil,
                                   lastBlockShortcut: Bool = true) -> Activations {
        let c = config, H = c.hiddenSize
        precondition(l >= 1 && l <= c.numLayers, "blocks must be in 1...\(c.numLayers)")
        precondition(!seqs.isEmpty && seqs.allSatisfy { !$0.isEmpty }, "every sequence needs a token")
        let a = reusing ?? Activations()
        a.prepare(seqs, blocks: l, shortcut: lastBlockShortcut, config: c)
        rope.ensure(a.lengths.max()!)
        let n = a.tokens

        embed(seqs, into: a.saved[0].xIn)   // xIn of block 0 [n × H]
        // Under the shortcut the last block writes the last states directly (one row per
        // sequence); run in full, it writes all rows and the last ones are gathered.
        let gatherLast = a.saved[l - 1].rows.packedRow == nil
        let xOut = gatherLast ? a.buffer("xOut", n * H) : a.lastStates      // [m × H] output of block l−1
        a.output = gatherLast ? xOut : nil
        for b in 0..<l {
            blockForward(b, a.saved[b], out: b + 1 < l ? a.saved[b + 1].xIn : xOut, a)
        }
        if gatherLast {
            for (i, row) in a.lastRow.enumerated() { (a.lastStates + i * H).update(from: xOut + row * H, count: H) }
        }
        return a
    }

    /// One decoder block, forward: x_out = x_mid + SwiGLU(norm(x_mid)) · W_downᵀ,
    /// x_mid = x_in + Attention(norm(x_in)) · W_oᵀ, with queries and everything after them
    /// only at the block's query rows.
    /// `block`: the block's weights when `weights` does not hold them (layer-major passes).
    func blockForward(_ layer: Int, _ s: BlockActivations, out: UnsafeMutablePointer<Float>, _ a: Activations, block: LayerWeights? = nil) {
        let w = block ?? weights.layers[layer]
        let c = config, n = a.tokens, m = s.rows.m
        let H = c.hiddenSize, Q = c.qDim, K = c.kvDim, I = c.intermediateSize, d = c.headDim
        let scale = c.attentionScale, window = c.window(layer: layer)
        let maxT = a.lengths.max()!

        // Attention input norm and K/V projections, all n rows (qwen3: keys into kRaw, then normed per head).
        let xn = a.buffer("xn", n * H)                        // [n × H] normed input
        rmsnormForward(xn, nil, s.xIn, w.attnNorm.ptr, n: n, dim: H, eps: c.rmsNormEps)
        matmulTransposed(s.kRaw ?? s.k, xn, w.wk.ptr, n: n, k: H, m: K)
        loraForward(layer, .k, s.kRaw ?? s.k, xn, rows: n, a)
        matmulTransposed(s.v, xn, w.wv.ptr, n: n, k: H, m: K)
        loraForward(layer, .v, s.v, xn, rows: n, a)
        if let b = w.bk { addBias(s.k, b.ptr, n: n, m: K) }
        if let b = w.bv { addBias(s.v, b.ptr, n: n, m: K) }
        // Q projection, query rows only.
        let xq = s.rows.packedRow == nil ? xn : s.rows.gather(xn, width: H, into: a.buffer("xq", m * H))   // [m × H]
        matmulTransposed(s.qRaw ?? s.q, xq, w.wq.ptr, n: m, k: H, m: Q)
        loraForward(layer, .q, s.qRaw ?? s.q, xq, rows: m, a)
        if let b = w.bq { addBias(s.q, b.ptr, n: m, m: Q) }
        if let qRaw = s.qRaw, let kRaw = s.kRaw, let qn = w.qNorm, let kn = w.kNorm {
            rmsnormForward(s.q, nil, qRaw, qn.ptr, n: m * c.numHeads, dim: d, eps: c.rmsNormEps)
            rmsnormForward(s.k, nil, kRaw, kn.ptr, n: n * c.numKVHeads, dim: d, eps: c.rmsNormEps)
        }

        let probs = a.buffer("probs", maxT * maxT)              // [tq × T] of one head
        for i in 0..<a.sequences {
            let T = a.lengths[i], tq = s.rows.count[i]
            let kRows = s.k + a.rowStart[i] * K, qRows = s.q + s.rows.start[i] * Q
            for j in 0..<T { rope.apply(kRows + j * K, heads: c.numKVHeads, position: j) }
            for j in 0..<tq { rope.apply(qRows + j * Q, heads: c.numHeads, position: T - tq + j) }
            attentionForward(s.att + s.rows.start[i] * Q, probs, qRows, kRows, s.v + a.rowStart[i] * K,
                             tq: tq, tk: T, heads: c.numHeads, kvHeads: c.numKVHeads, headDim: d, scale: scale, ldq: Q, ldk: K,
                             window: window, softcap: c.attnLogitSoftcap)
        }
        // Residual: x_mid = x_in + att · W_oᵀ at the query rows (gemma2: + norm(att · W_oᵀ)).
        let xInRows = s.rows.gather(s.xIn, width: H, into: s.xMid)
        if xInRows != s.xMid { s.xMid.update(from: xInRows, count: m * H) }
        if let attnOut = s.attnOut, let post = w.postAttnNorm {
            matmulTransposed(attnOut, s.att, w.wo.ptr, n: m, k: Q, m: H)
            loraForward(layer, .o, attnOut, s.att, rows: m, a)
            let normed = a.buffer("postNormed", m * H)
            rmsnormForward(normed, nil, attnOut, post.ptr, n: m, dim: H, eps: c.rmsNormEps)
            for i in 0..<(m * H) { s.xMid[i] += normed[i] }
        } else {
            matmulTransposed(s.xMid, s.att, w.wo.ptr, n: m, k: Q, m: H, accumulate: true)
            loraForward(layer, .o, s.xMid, s.att, rows: m, a)
        }

        // MLP.
        let xn2 = xn                                           // [m × H] normed x_mid (reuses xn)
        rmsnormForward(xn2, nil, s.xMid, w.ffnNorm.ptr, n: m, dim: H, eps: c.rmsNormEps)
        matmulTransposed(s.gate, xn2, w.wGate.ptr, n: m, k: H, m: I)
        loraForward(layer, .gate, s.gate, xn2, rows: m, a)
        matmulTransposed(s.up, xn2, w.wUp.ptr, n: m, k: H, m: I)
        loraForward(layer, .up, s.up, xn2, rows: m, a)
        let h = a.buffer("h", m * I)                           // [m × I] act(gate) · up
        c.mlpActivation(h, s.gate, s.up, count: m * I)
        out.update(from: s.xMid, count: m * H)
        if let mlpOut = s.mlpOut, let post = w.postFfnNorm {
            matmulTransposed(mlpOut, h, w.wDown.ptr, n: m, k: I, m: H)
            loraForward(layer, .down, mlpOut, h, rows: m, a)
            let normed = a.buffer("postNormed", m * H)
            rmsnormForward(normed, nil, mlpOut, post.ptr, n: m, dim: H, eps: c.rmsNormEps)
            for i in 0..<(m * H) { out[i] += normed[i] }
        } else {
            matmulTransposed(out, h, w.wDown.ptr, n: m, k: I, m: H, accumulate: true)
            loraForward(layer, .down, out, h, rows: m, a)
        }
    }

    /// Backward of gemma2's norm of a sublayer's output (x += norm(y)): returns dL/dy [m × H]
    /// (in buffer `name`) given dx = dL/dx, and accumulates the norm weight's gradient (if `dw`).
    func postNormBackward(_ name: String, y: UnsafePointer<Float>, w: FloatBuffer, dw: FloatBuffer?, dx: UnsafePointer<Float>,
                          m: Int, _ a: Activations) -> UnsafeMutablePointer<Float> {
        let H = config.hiddenSize
        let rstd = a.buffer("postRstd", m), dy = a.buffer(name, m * H)
        rmsnormForward(a.buffer("postNormed", m * H), rstd, y, w.ptr, n: m, dim: H, eps: config.rmsNormEps)
        dy.initialize(repeating: 0, count: m * H)
        rmsnormBackward(dy, dw?.ptr, dx, y, w.ptr, rstd, n: m, dim: H)
        return dy
    }

    /// Given dL/d(lastStates) [sequences × hidden], accumulates dL/dW for every weight of blocks
    /// 0..<acts.blocks (q/k/v/o and their biases, gate/up/down, both RMSNorm weights) into
    /// `grads` (from `zeroGradients`, or holding earlier gradients to add to); nil `grads`
    /// treats the base weights as frozen (no dW is computed). The LoRA gradients of `lora`, if
    /// set, are accumulated too.
    public func backward(_ a: Activations, dLast: UnsafePointer<Float>, into grads: [LayerWeights]?) {
        let c = config, H = c.hiddenSize, n = a.tokens, S = a.sequences
        precondition(grads == nil || grads!.count >= a.blocks, "need gradients for \(a.blocks) blocks")
        // dx: gradient of the residual stream at the current block's output, [m × H];
        // after each block's backward it holds the gradient at that block's input, [n × H].
        let dx = a.buffer("dx", n * H)
        let top = a.saved[a.blocks - 1].rows
        if top.packedRow != nil {
            dx.update(from: dLast, count: S * H)
        } else {
            dx.initialize(repeating: 0, count: n * H)
            for (i, row) in a.lastRow.enumerated() { (dx + row * H).update(from: dLast + i * H, count: H) }
        }
        backwardBlocks(a, dx: dx, into: grads)
    }

    /// Given dL/d(output) [tokens × hidden] (the full output of the last block, run without the
    /// shortcut), accumulates gradients as `backward(_:dLast:into:)` does.
    public func backward(_ a: Activations, dOutput: UnsafePointer<Float>, into grads: [LayerWeights]?) {
        precondition(a.output != nil, "the last block ran under the shortcut")
        let dx = a.buffer("dx", a.tokens * config.hiddenSize)
        dx.update(from: dOutput, count: a.tokens * config.hiddenSize)
        backwardBlocks(a, dx: dx, into: grads)
    }

    func backwardBlocks(_ a: Activations, dx: UnsafeMutablePointer<Float>, into grads: [LayerWeights]?) {
        for b in (0..<a.blocks).reversed() {
            blockBackward(b, grads?[b], a.saved[b], dx: dx, a)
        }
    }

    /// One decoder block, backward: on entry dx[m × H] = dL/dx_out, on return dx[n × H] = dL/dx_in.
    func blockBackward(_ layer: Int, _ g: LayerWeights?, _ s: BlockActivations, dx: UnsafeMutablePointer<Float>, _ a: Activations,
                       block: LayerWeights? = nil) {
        let w = block ?? weights.layers[layer]
        let c = config, n = a.tokens, m = s.rows.m
        let H = c.hiddenSize, Q = c.qDim, K = c.kvDim, I = c.intermediateSize, d = c.headDim
        let scale = c.attentionScale, window = c.window(layer: layer)
        let maxT = a.lengths.max()!

        // MLP: x_out = x_mid + h · W_downᵀ, h = silu(gate) · up, gate/up = norm(x_mid) · W_gate/upᵀ.
        let xn = a.buffer("xn", n * H)                         // [m × H] normed x_mid, recomputed
        let rstd = a.buffer("rstd", n)                         // [m] its 1/rms
        rmsnormForward(xn, rstd, s.xMid, w.ffnNorm.ptr, n: m, dim: H, eps: c.rmsNormEps)
        let h = a.buffer("h", m * I)                           // [m × I] recomputed
        c.mlpActivation(h, s.gate, s.up, count: m * I)
        let dh = a.buffer("dh", m * I)                         // [m × I]
        dh.initialize(repeating: 0, count: m * I)
        var dMLP = UnsafePointer(dx)                           // [m × H] dL/d(h · W_downᵀ)
        if let mlpOut = s.mlpOut, let post = w.postFfnNorm {
            dMLP = UnsafePointer(postNormBackward("dMLP", y: mlpOut, w: post, dw: g?.postFfnNorm, dx: dx, m: m, a))
        }
        matmulTransposedBackward(dh, g?.wDown.ptr, nil, dMLP, h, w.wDown.ptr, n: m, k: I, m: H)
        loraBackward(layer, .down, dx: dh, dy: dMLP, x: h, rows: m, a)
        let dgate = h                                          // [m × I] (h is no longer needed)
        dgate.initialize(repeating: 0, count: m * I)
        let dup = a.buffer("dup", m * I)                       // [m × I]
        dup.initialize(repeating: 0, count: m * I)
        c.mlpActivationBackward(dgate, dup, dh, s.gate, s.up, count: m * I)
        let dxn = a.buffer("dxn", n * H)                       // [m × H] dL/d norm(x_mid)
        dxn.initialize(repeating: 0, count: m * H)
        matmulTransposedBackward(dxn, g?.wGate.ptr, nil, dgate, xn, w.wGate.ptr, n: m, k: H, m: I)
        loraBackward(layer, .gate, dx: dxn, dy: dgate, x: xn, rows: m, a)
        matmulTransposedBackward(dxn, g?.wUp.ptr, nil, dup, xn, w.wUp.ptr, n: m, k: H, m: I)
        loraBackward(layer, .up, dx: dxn, dy: dup, x: xn, rows: m, a)
        // dx += norm backward: now dL/dx_mid (the residual carries dL/dx_out through).
        rmsnormBackward(dx, g?.ffnNorm.ptr, dxn, s.xMid, w.ffnNorm.ptr, rstd, n: m, dim: H)

        // x_mid = x_in + att · W_oᵀ.
        let datt = a.buffer("datt", m * Q)                     // [m × Q]
        datt.initialize(repeating: 0, count: m * Q)
        var dAttn = UnsafePointer(dx)                          // [m × H] dL/d(att · W_oᵀ)
        if let attnOut = s.attnOut, let post = w.postAttnNorm {
            dAttn = UnsafePointer(postNormBackward("dAttn", y: attnOut, w: post, dw: g?.postAttnNorm, dx: dx, m: m, a))
        }
        matmulTransposedBackward(datt, g?.wo.ptr, nil, dAttn, s.att, w.wo.ptr, n: m, k: Q, m: H)
        loraBackward(layer, .o, dx: datt, dy: dAttn, x: s.att, rows: m, a)

        // Attention per sequence (probabilities recomputed per head); then RoPE backward.
        let dq = a.buffer("dq", m * Q)                         // [m × Q]
        let dk = a.buffer("dk", n * K), dv = a.buffer("dv", n * K)   // [n × K]
        dq.initialize(repeating: 0, count: m * Q)
        dk.initialize(repeating: 0, count: n * K)
        dv.initialize(repeating: 0, count: n * K)
        let scratch = a.buffer("attScratch", 4 * maxT * maxT)        // [4 × tq × T] of one head
        for i in 0..<a.sequences {
            let T = a.lengths[i], tq = s.rows.count[i]
            let q0 = s.rows.start[i] * Q, k0 = a.rowStart[i] * K
            attentionBackward(dq + q0, dk + k0, dv + k0, scratch, datt + q0, s.q + q0, s.k + k0, s.v + k0,
                              tq: tq, tk: T, heads: c.numHeads, kvHeads: c.numKVHeads, headDim: d, scale: scale, ldq: Q, ldk: K,
                              window: window, softcap: c.attnLogitSoftcap)
            for j in 0..<T { rope.backward(dk + k0 + j * K, heads: c.numKVHeads, position: j) }
            for j in 0..<tq { rope.backward(dq + q0 + j * Q, heads: c.numHeads, position: T - tq + j) }
        }

        // qwen3: through the per-head norms of q and k (dq, dk become gradients of the raw projections).
        var dqIn = dq, dkIn = dk
        if let qRaw = s.qRaw, let kRaw = s.kRaw, let qn = w.qNorm, let kn = w.kNorm {
            let rstdHeads = a.buffer("rstdHeads", max(m * c.numHeads, n * c.numKVHeads)), tmp = a.buffer("headNormed", max(m * Q, n * K))
            dqIn = a.buffer("dqRaw", m * Q); dkIn = a.buffer("dkRaw", n * K)
            dqIn.initialize(repeating: 0, count: m * Q); dkIn.initialize(repeating: 0, count: n * K)
            rmsnormForward(tmp, rstdHeads, qRaw, qn.ptr, n: m * c.numHeads, dim: d, eps: c.rmsNormEps)
            rmsnormBackward(dqIn, g?.qNorm?.ptr, dq, qRaw, qn.ptr, rstdHeads, n: m * c.numHeads, dim: d)
            rmsnormForward(tmp, rstdHeads, kRaw, kn.ptr, n: n * c.numKVHeads, dim: d, eps: c.rmsNormEps)
            rmsnormBackward(dkIn, g?.kNorm?.ptr, dk, kRaw, kn.ptr, rstdHeads, n: n * c.numKVHeads, dim: d)
        }

        // Projections: k/v = norm(x_in) · W_k/vᵀ + b (all rows), q likewise at the query rows.
        rmsnormForward(xn, rstd, s.xIn, w.attnNorm.ptr, n: n, dim: H, eps: c.rmsNormEps)   // [n × H] recomputed
        dxn.initialize(repeating: 0, count: n * H)             // [n × H] dL/d norm(x_in)
        matmulTransposedBackward(dxn, g?.wk.ptr, g?.bk?.ptr, dkIn, xn, w.wk.ptr, n: n, k: H, m: K)
        loraBackward(layer, .k, dx: dxn, dy: dkIn, x: xn, rows: n, a)
        matmulTransposedBackward(dxn, g?.wv.ptr, g?.bv?.ptr, dv, xn, w.wv.ptr, n: n, k: H, m: K)
        loraBackward(layer, .v, dx: dxn, dy: dv, x: xn, rows: n, a)
        if s.rows.packedRow == nil {
            matmulTransposedBackward(dxn, g?.wq.ptr, g?.bq?.ptr, dqIn, xn, w.wq.ptr, n: n, k: H, m: Q)
            loraBackward(layer, .q, dx: dxn, dy: dqIn, x: xn, rows: n, a)
        } else {
            let xq = s.rows.gather(xn, width: H, into: a.buffer("xq", m * H))     // [m × H]
            let dxq = a.buffer("dxq", m * H)                                      // [m × H]
            dxq.initialize(repeating: 0, count: m * H)
            matmulTransposedBackward(dxq, g?.wq.ptr, g?.bq?.ptr, dqIn, xq, w.wq.ptr, n: m, k: H, m: Q)
            loraBackward(layer, .q, dx: dxq, dy: dqIn, x: xq, rows: m, a)
            s.rows.scatterAdd(dxq, width: H, into: dxn)
        }

        // x_mid = x_in + …: dL/dx_in = dL/dx_mid at the query rows + the input norm's backward.
        if s.rows.packedRow != nil {
            let dxMid = a.buffer("dxMid", m * H)               // [m × H]
            dxMid.update(from: dx, count: m * H)
            dx.initialize(repeating: 0, count: n * H)
            s.rows.scatterAdd(dxMid, width: H, into: dx)
        }
        rmsnormBackward(dx, g?.attnNorm.ptr, dxn, s.xIn, w.attnNorm.ptr, rstd, n: n, dim: H)
    }
}

// MARK: - The recovery loss

/// The recovery loss of states whose mean is `mean` (paper eq. 2 with Definition 1):
/// L = −cos(x̄, d), d the aligned model's direction [H]; every one of the `count` states
/// x_r behind x̄ gets the same gradient
///   dL/dx_r = −(1/count) · (d / (|x̄|·|d|) − cos · x̄ / |x̄|²).
/// Computed in Double; returns the loss and that gradient row.
public func negativeCosine(mean x̄: [Double], count: Int, target d: UnsafePointer<Float>) -> (loss: Double, row: [Float]) {
    let H = x̄.count
    var dot = 0.0, mm = 0.0, dd = 0.0
    for j in 0..<H {
        let dj = Double(d[j])
        dot += x̄[j] * dj; mm += x̄[j] * x̄[j]; dd += dj * dj
    }
    let nm = mm.squareRoot(), nd = dd.squareRoot(), cos = dot / (nm * nd)
    let row = (0..<H).map { j in Float(-(Double(d[j]) / (nm * nd) - cos * x̄[j] / mm) / Double(count)) }
    return (-cos, row)
}

/// Adds the rows of x[count × H] to `sum` (in Double).
func rowSum(_ x: UnsafePointer<Float>, count: Int, hidden H: Int, into sum: inout [Double]) {
    for r in 0..<count { for j in 0..<H { sum[j] += Double(x[r * H + j]) } }
}

/// The recovery loss of one batch: −cos(mean of the rows of x[count × H], d).
public func negativeCosineForward(meanOf x: UnsafePointer<Float>, count: Int, hidden H: Int, target d: UnsafePointer<Float>) -> Double {
    var sum = [Double](repeating: 0, count: H)
    rowSum(x, count: count, hidden: H, into: &sum)
    return negativeCosine(mean: sum.map { $0 / Double(count) }, count: count, target: d).loss
}

/// Backward of `negativeCosineForward`: the common gradient row written (not accumulated)
/// into every row of dx[count × H].
public func negativeCosineBackward(_ dx: UnsafeMutablePointer<Float>, meanOf x: UnsafePointer<Float>, count: Int, hidden H: Int,
                                   target d: UnsafePointer<Float>) {
    var sum = [Double](repeating: 0, count: H)
    rowSum(x, count: count, hidden: H, into: &sum)
    let row = negativeCosine(mean: sum.map { $0 / Double(count) }, count: count, target: d).row
    for r in 0..<count { (dx + r * H).update(from: row, count: H) }
}

/// The recovery loss as the authors' code batches it: consecutive batches of `batchSize` rows
/// of states[count × H] (the last one may be shorter), loss = Σ over batches of −cos(batch
/// mean, d). Writes dL/dstates into dStates[count × H]; returns the loss.
public func directionLoss(_ dStates: UnsafeMutablePointer<Float>, states: UnsafePointer<Float>, count: Int, hidden H: Int,
                          target d: UnsafePointer<Float>, batchSize: Int) -> Double {
    precondition(batchSize > 0)
    var loss = 0.0
    var r = 0
    while r < count {
        let rows = min(batchSize, count - r)
        loss += negativeCosineForward(meanOf: states + r * H, count: rows, hidden: H, target: d)
        negativeCosineBackward(dStates + r * H, meanOf: states + r * H, count: rows, hidden: H, target: d)
        r += rows
    }
    return loss
}

/// Which prompts share a term of the recovery loss.
public enum LossBatch: Codable, Equatable, Sendable, CustomStringConvertible {
    /// One term over the whole recovery set: −cos(d_f, d_o), d_f the mean last-token state over
    /// all prompts — the paper's eq. 2 with its Definition 1 of a direction, and
    /// ../shared/bench/ref_recover.py. The default.
    case all
    /// Σ over consecutive batches of this many prompts of −cos(batch mean, d_o): the authors'
    /// published code (batches of 8). Its gradient is not zero at d_f = d_o (each batch's mean
    /// strays from the whole set's), so it restores other weights than the paper's loss.
    case prompts(Int)

    public var description: String {
        switch self { case .all: "all"; case .prompts(let n): String(n) }
    }
}

extension Transformer {
    /// Gradients of the recovery loss (`LossBatch`) of the last-token states after block l−1
    /// for every weight of blocks 0..<l, accumulated into `grads`; returns the loss and the mean
    /// last-token state over all prompts (the current direction). Runs `passSize` prompts per
    /// forward/backward pass (memory grows with it, see `Activations`; with batches, a multiple
    /// of the batch). With `.all` and more than one pass, the mean must be known before any
    /// backward: every pass runs forward first, then the last pass (whose activations are still
    /// held) and the others, forward again, run backward — in that order, which the
    /// layer-major `streamedDirectionGradients` follows so both sum the gradients alike.
    /// Non-finite states or loss throw `NonFiniteError`.
    public func directionGradients(prompts: [[Int]], target: [Float], blocks l: Int, lossBatch: LossBatch = .all,
                                   passSize: Int = 32, into grads: [LayerWeights], reusing: Activations? = nil) throws -> (loss: Double, mean: [Float]) {
        precondition(target.count == config.hiddenSize)
        let H = config.hiddenSize
        let passes = Self.passes(prompts, lossBatch: lossBatch, passSize: passSize)
        let a = reusing ?? Activations()
        var loss = 0.0
        var stateSum = [Double](repeating: 0, count: H)
        func forward(_ chunk: [[Int]]) throws {
            _ = forwardForBackward(tokens: chunk, blocks: l, reusing: a)
            if !allFinite(a.lastStates, count: chunk.count * H) { throw nonFiniteError("hidden states", sequences: chunk, blocks: l) }
        }
        switch lossBatch {
        case .prompts(let batchSize):
            for chunk in passes {
                try forward(chunk)
                rowSum(a.lastStates, count: chunk.count, hidden: H, into: &stateSum)
                let dLast = a.buffer("dLast", chunk.count * H)
                loss += target.withUnsafeBufferPointer {
                    directionLoss(dLast, states: a.lastStates, count: chunk.count, hidden: H, target: $0.baseAddress!, batchSize: batchSize)
                }
                backward(a, dLast: dLast, into: grads)
            }
        case .all:
            for chunk in passes {
                try forward(chunk)
                rowSum(a.lastStates, count: chunk.count, hidden: H, into: &stateSum)
            }
            let (l0, row) = target.withUnsafeBufferPointer {
                negativeCosine(mean: stateSum.map { $0 / Double(max(prompts.count, 1)) }, count: prompts.count, target: $0.baseAddress!)
            }
            loss = l0
            for (k, p) in Self.allLossBackwardOrder(passes.count).enumerated() {
                if k > 0 { try forward(passes[p]) }
                let dLast = a.buffer("dLast", passes[p].count * H)
                for r in 0..<passes[p].count { (dLast + r * H).update(from: row, count: H) }
                backward(a, dLast: dLast, into: grads)
            }
        }
        if !loss.isFinite { throw NonFiniteError(model: source, what: "recovery loss (finite hidden states: a zero or non-finite target?)", firstAt: nil) }
        return (loss, stateSum.map { Float($0 / Double(max(prompts.count, 1))) })
    }

    /// The prompts of each forward/backward pass: consecutive runs of `passSize` (with batches,
    /// rounded down to whole batches, at least one batch).
    static func passes(_ prompts: [[Int]], lossBatch: LossBatch, passSize: Int) -> [[[Int]]] {
        var pass = max(passSize, 1)
        if case .prompts(let b) = lossBatch { precondition(b > 0); pass = max(b, pass / b * b) }
        return stride(from: 0, to: prompts.count, by: pass).map { Array(prompts[$0..<min($0 + pass, prompts.count)]) }
    }

    /// The order of the backward passes of the `.all` loss: the last pass first (its
    /// activations are still held after the mean's forward passes), then the others.
    static func allLossBackwardOrder(_ passes: Int) -> [Int] {
        passes == 0 ? [] : [passes - 1] + Array(0..<(passes - 1))
    }
}
