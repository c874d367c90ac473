import Foundation
import Formats
import Tensor

/// Keys and values of every layer for a set of sequences. Sequence s holds
/// `lengths[s]` positions; each layer's buffer is [capacity × kvDim], grown (doubling) when
/// `forward` appends past it.
public final class KVCache {
    public let layers: Int
    public let kvDim: Int
    public private(set) var capacity: [Int]
    public internal(set) var lengths: [Int]
    var keys: [[FloatBuffer]]    // [layer][sequence]
    var values: [[FloatBuffer]]

    public init(config: ModelConfig, capacities: [Int]) {
        layers = config.numLayers
        kvDim = config.kvDim
        capacity = capacities
        lengths = Array(repeating: 0, count: capacities.count)
        let counts = capacities.map { KVCache.floats(positions: $0, kvDim: config.kvDim) }
        keys = (0..<layers).map { _ in counts.map { FloatBuffer(count: $0, zeroed: false) } }
        values = (0..<layers).map { _ in counts.map { FloatBuffer(count: $0, zeroed: false) } }
    }

    /// Floats of one buffer. Callers bound positions by the context length; a size that still
    /// overflows must stop here, not allocate a wrapped-around buffer (this module is built
    /// without overflow checks).
    static func floats(positions: Int, kvDim: Int) -> Int {
        let (n, overflow) = max(positions, 1).multipliedReportingOverflow(by: kvDim)
        if positions < 0 || overflow || n > Int.max / 4 { fatalError("KV cache of \(positions) positions × \(kvDim) overflows") }
        return n
    }

    /// Room for `positions` positions of sequence s: at least double the capacity, so that
    /// appending a token at a time copies each position a bounded number of times.
    func reserve(_ s: Int, positions: Int) {
        guard positions > capacity[s] else { return }
        let grown = max(positions, capacity[s] > Int.max / 2 ? positions : 2 * capacity[s])
        let count = KVCache.floats(positions: grown, kvDim: kvDim), used = lengths[s] * kvDim
        func grow(_ old: FloatBuffer) -> FloatBuffer {
            let b = FloatBuffer(count: count, zeroed: false)
            b.ptr.update(from: old.ptr, count: used)
            return b
        }
        for l in 0..<layers { keys[l][s] = grow(keys[l][s]); values[l][s] = grow(values[l][s]) }
        capacity[s] = grown
    }

    /// Bytes held.
    public var byteCount: Int { 2 * layers * capacity.reduce(0, +) * kvDim * 4 }
}

/// Called with (hidden-state index, packed hidden states [tokens × hidden]) after the
/// embedding (index 0), after each block i (index i), and after the final norm (index L),
/// matching transformers' `output_hidden_states`.
public typealias HiddenTap = (_ index: Int, _ states: UnsafePointer<Float>) -> Void

/// The one decoder for every supported architecture. Sequences are packed, not padded:
/// the matrix products run over all real tokens of all sequences at once, attention
/// runs per sequence over its own cache, so a batch gives the same numbers as one by one.
public final class Transformer {
    public let config: ModelConfig
    public var weights: ModelWeights
    var rope: RopeTable
    /// The same weights read straight from a GGUF's quantised blocks, for steps of at most
    /// `quantizedMaxRows` tokens (decoding): there, reading 4–8-bit blocks instead of fp32
    /// is what bounds the speed. The values are bit-identical to `weights` as loaded; only
    /// the summation order differs. They mirror the file: call `dropQuantized()` before
    /// changing `weights`.
    public private(set) var quantized: QuantizedWeights?
    public var quantizedMaxRows = 8
    /// LoRA adapters applied by the training passes (`forwardForBackward`/`backward`, see
    /// LoRA.swift); `forward` (generation) ignores them: merge an adapter to generate with it.
    public var lora: LoRA?
    /// The model file the weights came from, named by errors (non-finite activations).
    public var source: String
    /// Activation addition (Arditi et al. 2024; the paper's Table IV steers this way): `vector`
    /// [hidden] is added to every token's residual stream at hidden-state index `layer`, i.e.
    /// after block layer−1, in `forward` (generation, and hidden-state taps, which see it).
    /// The training passes ignore it.
    public var steering: (layer: Int, vector: [Float])? {
        didSet { if let s = steering { precondition(s.vector.count == config.hiddenSize && s.layer >= 1 && s.layer < config.numLayers) } }
    }

    public init(weights: ModelWeights, quantized: QuantizedWeights? = nil, source: String = "the model") {
        self.weights = weights
        self.source = source
        config = weights.config
        rope = RopeTable(invFreq: Transformer.ropeInverseFrequencies(weights.config), scale: weights.config.ropeScaling?.attentionFactor ?? 1,
                         maxPositions: 256)
        self.quantized = quantized
    }

    public func dropQuantized() { quantized = nil }

    /// y[n × m] = x[n × k] · Wᵀ (+ y if `accumulate`), from the quantised blocks when the step is small.
    func linear(_ y: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, _ w: FloatBuffer, _ q: QuantMatrix?,
                n: Int, k: Int, m: Int, accumulate: Bool = false, scratch: FloatBuffer) {
        guard let q, n <= quantizedMaxRows else {
            matmulTransposed(y, x, w.ptr, n: n, k: k, m: m, accumulate: accumulate)
            return
        }
        if !accumulate { q.matmul(x: x, y: y, n: n); return }
        q.matmul(x: x, y: scratch.ptr, n: n)
        for i in 0..<(n * m) { y[i] += scratch.ptr[i] }
    }

    /// Appends `tokens[i]` to sequence `sequences[i]` of the cache and runs them through the
    /// first `blocks` blocks (all by default). Returns logits [sequences × vocab] of each
    /// sequence's last new token when `logits` is true and all blocks ran, else [].
    @discardableResult
    public func forward(tokens: [[Int]], sequences: [Int], cache: KVCache, blocks: Int? = nil,
                        logits: Bool = true, tap: HiddenTap? = nil) -> [Float] {
        forward(tokens: tokens, sequences: sequences, cache: cache, blocks: blocks, logits: logits, tap: tap, blockOutput: nil)
    }

    /// `forward`, calling `blockOutput(l, x)` with the residual stream x [tokens × hidden] after
    /// every block l, the last one included (`tap` sees the final norm's output there).
    func forward(tokens: [[Int]], sequences: [Int], cache: KVCache, blocks: Int?, logits: Bool, tap: HiddenTap?,
                 blockOutput: ((Int, UnsafePointer<Float>) -> Void)?) -> [Float] {
        let c = config, H = c.hiddenSize
        precondition(blocks != nil || weights.isComplete, "a model loaded with only its first blocks runs only those")
        let nBlocks = min(blocks ?? c.numLayers, weights.layers.count)
        // Row offsets of each sequence in the packed activations.
        var rowStart: [Int] = [], n = 0
        for t in tokens { rowStart.append(n); n += t.count }
        if n == 0 { return [] }
        var maxPos = 0
        for (i, s) in sequences.enumerated() {
            cache.reserve(s, positions: cache.lengths[s] + tokens[i].count)
            maxPos = max(maxPos, cache.lengths[s] + tokens[i].count)
        }
        rope.ensure(maxPos)

        let x = FloatBuffer(count: n * H, zeroed: false)      // residual stream
        let step = ForwardStep(config: c, counts: tokens.map(\.count), maxPos: maxPos,
                               quantizedScratch: quantized != nil && n <= quantizedMaxRows)
        let xn = step.xn, scratch = step.scratch

        embed(tokens, into: x.ptr)
        tap?(0, x.ptr)

        for l in 0..<nBlocks {
            forwardBlock(l, weights.layers[l], quantized?.layers[l], x: x.ptr, step, past: sequences.map { cache.lengths[$0] },
                         keys: sequences.map { cache.keys[l][$0].ptr }, values: sequences.map { cache.values[l][$0].ptr })
            if let s = steering, s.layer == l + 1 {
                s.vector.withUnsafeBufferPointer { v in for r in 0..<n { for j in 0..<H { x[r * H + j] += v[j] } } }
            }
            if l + 1 < c.numLayers { tap?(l + 1, x.ptr) }
            blockOutput?(l, x.ptr)
        }
        for (i, s) in sequences.enumerated() { cache.lengths[s] += tokens[i].count }
        guard nBlocks == c.numLayers else { return [] }

        rmsnormForward(xn.ptr, nil, x.ptr, weights.finalNorm.ptr, n: n, dim: H, eps: c.rmsNormEps)
        tap?(c.numLayers, xn.ptr)
        guard logits else { return [] }
        // Logits of each sequence's last token only.
        let last = FloatBuffer(count: tokens.count * H, zeroed: false)
        for i in 0..<tokens.count {
            (last.ptr + i * H).update(from: xn.ptr + (rowStart[i] + tokens[i].count - 1) * H, count: H)
        }
        var out = [Float](repeating: 0, count: tokens.count * c.vocabSize)
        out.withUnsafeMutableBufferPointer {
            linear($0.baseAddress!, last.ptr, weights.lmHead, quantized?.lmHead, n: tokens.count, k: H, m: c.vocabSize, scratch: scratch)
        }
        if let cap = c.finalLogitSoftcap {   // gemma2
            for i in out.indices { out[i] = cap * tanhf(out[i] / cap) }
        }
        return out
    }

    /// One block of `forward`, in place on the residual stream x [n × H] of the packed
    /// sequences (`step.counts` new tokens each): sequence i appends its keys and values to
    /// keys[i]/values[i] after its `past[i]` cached positions. Layer-major passes
    /// (Streaming.swift) call it block by block with one block's weights at a time.
    func forwardBlock(_ l: Int, _ w: LayerWeights, _ ql: QuantizedWeights.Layer?, x: UnsafeMutablePointer<Float>, _ step: ForwardStep,
                      past cached: [Int], keys: [UnsafeMutablePointer<Float>], values: [UnsafeMutablePointer<Float>]) {
        let c = config, n = step.n, counts = step.counts, rowStart = step.rowStart
        let H = c.hiddenSize, qDim = c.qDim, kvDim = c.kvDim, I = c.intermediateSize, d = c.headDim
        let scale = c.attentionScale, group = c.numHeads / c.numKVHeads
        let maxT = step.maxT, maxPos = step.maxPos, scratch = step.scratch
        let xn = step.xn, q = step.q, k = step.k, v = step.v, att = step.att
        let gate = step.gate, up = step.up, scores = step.scores
        // Attention.
        rmsnormForward(xn.ptr, nil, x, w.attnNorm.ptr, n: n, dim: H, eps: c.rmsNormEps)
        linear(q.ptr, xn.ptr, w.wq, ql?.wq, n: n, k: H, m: qDim, scratch: scratch)
        if ql != nil, n <= quantizedMaxRows, let heads = quantized?.permutedHeads {
            for r in 0..<n { try? unpermuteQKRows(q.ptr + r * qDim, rows: qDim, columns: 1, heads: heads.q) }
        }
        linear(k.ptr, xn.ptr, w.wk, ql?.wk, n: n, k: H, m: kvDim, scratch: scratch)
        if ql != nil, n <= quantizedMaxRows, let heads = quantized?.permutedHeads {
            for r in 0..<n { try? unpermuteQKRows(k.ptr + r * kvDim, rows: kvDim, columns: 1, heads: heads.k) }
        }
        linear(v.ptr, xn.ptr, w.wv, ql?.wv, n: n, k: H, m: kvDim, scratch: scratch)
        if let b = w.bq { addBias(q.ptr, b.ptr, n: n, m: qDim) }
        if let b = w.bk { addBias(k.ptr, b.ptr, n: n, m: kvDim) }
        if let b = w.bv { addBias(v.ptr, b.ptr, n: n, m: kvDim) }
        if let qn = w.qNorm, let kn = w.kNorm {   // per head, before RoPE (in place)
            rmsnormForward(q.ptr, nil, q.ptr, qn.ptr, n: n * c.numHeads, dim: d, eps: c.rmsNormEps)
            rmsnormForward(k.ptr, nil, k.ptr, kn.ptr, n: n * c.numKVHeads, dim: d, eps: c.rmsNormEps)
        }
        let window = c.window(layer: l)
        for i in 0..<counts.count {
            let past = cached[i], t = counts[i], r0 = rowStart[i]
            let kc = keys[i], vc = values[i]
            for j in 0..<t {
                rope.apply(q.ptr + (r0 + j) * qDim, heads: c.numHeads, position: past + j)
                rope.apply(k.ptr + (r0 + j) * kvDim, heads: c.numKVHeads, position: past + j)
            }
            (kc + past * kvDim).update(from: k.ptr + r0 * kvDim, count: t * kvDim)
            (vc + past * kvDim).update(from: v.ptr + r0 * kvDim, count: t * kvDim)
            let total = past + t
            // Heads in parallel (2 workers, each with its own score rows); every head
            // writes its own columns of `att`.
            let workers = t * total >= 4096 ? 2 : 1
            DispatchQueue.concurrentPerform(iterations: workers) { worker in
                let sc = scores.ptr + worker * maxT * maxPos
                for h in stride(from: worker, to: c.numHeads, by: workers) {
                    let g = h / group
                    // scores[t × total] = scale · Q_h K_gᵀ, softmax over the visible keys, then · V_g.
                    gemm(transA: false, transB: true, m: t, n: total, k: d, alpha: scale,
                         a: q.ptr + r0 * qDim + h * d, lda: qDim, b: kc + g * d, ldb: kvDim,
                         c: sc, ldc: total)
                    for j in 0..<t {
                        attentionSoftmaxRow(sc + j * total, position: past + j, total: total, window: window, softcap: c.attnLogitSoftcap)
                    }
                    gemm(transA: false, transB: false, m: t, n: d, k: total,
                         a: sc, lda: total, b: vc + g * d, ldb: kvDim,
                         c: att.ptr + r0 * qDim + h * d, ldc: qDim)
                }
            }
        }
        if let post = w.postAttnNorm {   // gemma2: x += norm(att · W_oᵀ)
            linear(xn.ptr, att.ptr, w.wo, ql?.wo, n: n, k: qDim, m: H, scratch: scratch)
            rmsnormForward(xn.ptr, nil, xn.ptr, post.ptr, n: n, dim: H, eps: c.rmsNormEps)
            for i in 0..<(n * H) { x[i] += xn.ptr[i] }
        } else {
            linear(x, att.ptr, w.wo, ql?.wo, n: n, k: qDim, m: H, accumulate: true, scratch: scratch)
        }
        // MLP.
        rmsnormForward(xn.ptr, nil, x, w.ffnNorm.ptr, n: n, dim: H, eps: c.rmsNormEps)
        linear(gate.ptr, xn.ptr, w.wGate, ql?.wGate, n: n, k: H, m: I, scratch: scratch)
        linear(up.ptr, xn.ptr, w.wUp, ql?.wUp, n: n, k: H, m: I, scratch: scratch)
        c.mlpActivation(gate.ptr, gate.ptr, up.ptr, count: n * I)   // in place
        if let post = w.postFfnNorm {
            linear(xn.ptr, gate.ptr, w.wDown, ql?.wDown, n: n, k: I, m: H, scratch: scratch)
            rmsnormForward(xn.ptr, nil, xn.ptr, post.ptr, n: n, dim: H, eps: c.rmsNormEps)
            for i in 0..<(n * H) { x[i] += xn.ptr[i] }
        } else {
            linear(x, gate.ptr, w.wDown, ql?.wDown, n: n, k: I, m: H, accumulate: true, scratch: scratch)
        }
    }

    /// The embedding rows of the sequences, packed one after another into `x` [tokens × hidden].
    /// Gemma scales them by √hidden, a constant in the activations' dtype (fp32 here).
    func embed(_ seqs: [[Int]], into x: UnsafeMutablePointer<Float>) {
        let H = config.hiddenSize
        var r = 0
        for t in seqs {
            for id in t {
                precondition(id >= 0 && id < config.vocabSize, "token id \(id) outside the vocabulary")
                (x + r * H).update(from: weights.embed.ptr + id * H, count: H)
                r += 1
            }
        }
        guard config.traits.gemmaStyle else { return }
        let scale = Float(Double(H).squareRoot())
        for i in 0..<(r * H) { x[i] *= scale }
    }

    /// RoPE inverse frequencies [headDim/2] with the config's scaling, in float32 step by step
    /// as transformers' `_compute_default_rope_parameters`, `_compute_linear_scaling_rope_parameters`
    /// and `_compute_llama3_parameters` (a Python scalar meets a float32 tensor as float32;
    /// `scalar / t` is `t.reciprocal() * scalar`).
    public static func ropeInverseFrequencies(_ c: ModelConfig) -> [Float] {
        let inv = RopeTable.defaultInverseFrequencies(headDim: c.headDim, theta: c.ropeTheta)
        guard let r = c.ropeScaling else { return inv }
        switch r.type {
        case "linear": return inv.map { $0 / r.factor }
        case "freq_factors": return zip(inv, r.frequencyFactors ?? []).map { $0 / $1 }
        case "longrope":   // 1 / (short_factor · theta^(2i/d)), multiplied before the reciprocal
            return (0..<c.headDim / 2).map { 1 / (r.frequencyFactors![$0] * powf(c.ropeTheta, Float(2 * $0) / Float(c.headDim))) }
        default: break   // llama3
        }
        let old = Double(r.originalMaxPositions)
        let lowWavelen = Float(old / Double(r.lowFreqFactor)), highWavelen = Float(old / Double(r.highFreqFactor))
        let twoPi = Float(2 * Double.pi), oldF = Float(old)
        let lo = r.lowFreqFactor, span = Float(Double(r.highFreqFactor) - Double(r.lowFreqFactor))
        return inv.map { f in
            let wavelen = (1 / f) * twoPi
            let scaled = wavelen > lowWavelen ? f / r.factor : f
            let smooth = ((1 / wavelen) * oldF - lo) / span
            let smoothed = (1 - smooth) * scaled / r.factor + smooth * scaled
            let medium = !(wavelen < highWavelen) && !(wavelen > lowWavelen)
            return medium ? smoothed : scaled
        }
    }
}

extension ModelConfig {
    /// The MLP's gated activation h = act(gate) · up: SwiGLU, or GeGLU for Gemma (`h` may be `gate`).
    func mlpActivation(_ h: UnsafeMutablePointer<Float>, _ gate: UnsafePointer<Float>, _ up: UnsafePointer<Float>, count: Int) {
        switch activation {
        case .silu: swigluForward(h, gate, up, count: count)
        case .gelu: gegluForward(h, gate, up, count: count, tanh: false)
        case .geluTanh: gegluForward(h, gate, up, count: count, tanh: true)
        }
    }

    /// Backward of `mlpActivation`: accumulates into dgate, dup.
    func mlpActivationBackward(_ dgate: UnsafeMutablePointer<Float>, _ dup: UnsafeMutablePointer<Float>, _ dh: UnsafePointer<Float>,
                               _ gate: UnsafePointer<Float>, _ up: UnsafePointer<Float>, count: Int) {
        switch activation {
        case .silu: swigluBackward(dgate, dup, dh, gate, up, count: count)
        case .gelu: gegluBackward(dgate, dup, dh, gate, up, count: count, tanh: false)
        case .geluTanh: gegluBackward(dgate, dup, dh, gate, up, count: count, tanh: true)
        }
    }
}

/// Quantised views of a GGUF's projection matrices (see `Transformer.quantized`).
public struct QuantizedWeights {
    public struct Layer { public var wq, wk, wv, wo, wGate, wUp, wDown: QuantMatrix }
    public var layers: [Layer]
    public var lmHead: QuantMatrix?
    /// llama-family files store Q/K rows permuted: outputs are un-permuted with these head counts.
    public var permutedHeads: (q: Int, k: Int)?

    /// Views over `g`'s tensors, or nil when a projection's type has no fast kernel.
    public static func from(_ g: GGUFFile, config c: ModelConfig) throws -> QuantizedWeights? {
        func m(_ name: String) throws -> QuantMatrix? {
            guard let t = g.tensor(name), QuantDot.hasFastKernel(t.type) else { return nil }
            return try QuantMatrix(gguf: g, tensor: t)
        }
        var layers: [Layer] = []
        for l in 0..<c.numLayers {
            let p = "blk.\(l)."
            guard let wq = try m(p + "attn_q.weight"), let wk = try m(p + "attn_k.weight"), let wv = try m(p + "attn_v.weight"),
                  let wo = try m(p + "attn_output.weight"), let wGate = try m(p + "ffn_gate.weight"),
                  let wUp = try m(p + "ffn_up.weight"), let wDown = try m(p + "ffn_down.weight") else { return nil }
            layers.append(Layer(wq: wq, wk: wk, wv: wv, wo: wo, wGate: wGate, wUp: wUp, wDown: wDown))
        }
        let head = try m(c.tiedEmbeddings ? "token_embd.weight" : "output.weight")
        let permuted = ArchitectureTraits.table[c.architecture]?.permutesQK == true ? (q: c.numHeads, k: c.numKVHeads) : nil
        return QuantizedWeights(layers: layers, lmHead: head, permutedHeads: permuted)
    }
}

/// Sizes and scratch buffers of one `forward` step over packed sequences.
final class ForwardStep {
    let counts: [Int]          // new tokens of each sequence
    let rowStart: [Int]        // first packed row of each sequence
    let n: Int                 // packed rows
    let maxT: Int              // most new tokens of a sequence
    let maxPos: Int            // most positions a sequence attends to (cached + new)
    let xn, q, k, v, att, gate, up, scores, scratch: FloatBuffer

    init(config c: ModelConfig, counts: [Int], maxPos: Int, quantizedScratch: Bool) {
        self.counts = counts
        var starts: [Int] = [], n = 0
        for t in counts { starts.append(n); n += t }
        rowStart = starts; self.n = n
        maxT = counts.max() ?? 0; self.maxPos = maxPos
        let H = c.hiddenSize, I = c.intermediateSize
        xn = FloatBuffer(count: n * H, zeroed: false)     // normed
        q = FloatBuffer(count: n * c.qDim, zeroed: false)
        k = FloatBuffer(count: n * c.kvDim, zeroed: false)
        v = FloatBuffer(count: n * c.kvDim, zeroed: false)
        att = FloatBuffer(count: n * c.qDim, zeroed: false)
        gate = FloatBuffer(count: n * I, zeroed: false)
        up = FloatBuffer(count: n * I, zeroed: false)
        scores = FloatBuffer(count: 2 * maxT * maxPos, zeroed: false)   // one block per attention worker
        scratch = FloatBuffer(count: quantizedScratch ? n * max(H, I) : 0, zeroed: false)
    }
}
