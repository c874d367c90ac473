import CBLAS
import CGemm
import Foundation

// Plain kernels over flat row-major Float32 buffers. Matrices of weights are stored
// [out × in] (as in Hugging Face `nn.Linear`), activations [rows × features].

/// y[n × m] = x[n × k] · W[m × k]ᵀ (+ y if `accumulate`). One BLAS call.
@inline(__always)
public func matmulTransposed(_ y: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, _ w: UnsafePointer<Float>,
                             n: Int, k: Int, m: Int, accumulate: Bool = false) {
    if n == 1 {
        cblas_sgemv(CblasRowMajor, CblasNoTrans, Int32(m), Int32(k), 1, w, Int32(k), x, 1, accumulate ? 1 : 0, y, 1)
    } else {
        gemm(transA: false, transB: true, m: n, n: m, k: k, a: x, lda: k, b: w, ldb: k, beta: accumulate ? 1 : 0, c: y, ldc: m)
    }
}

/// Backward of y[n × m] = x[n × k] · W[m × k]ᵀ (+ b): accumulates dW[m × k] += dyᵀ · x,
/// db[m] += Σ_rows dy and dx[n × k] += dy · W. `dx` nil skips the input gradient (first
/// layer), `dw` nil skips the weight gradient (a frozen weight), `db` nil when the layer has
/// no bias or it is frozen. One BLAS call over all n rows for each gradient asked for.
public func matmulTransposedBackward(_ dx: UnsafeMutablePointer<Float>?, _ dw: UnsafeMutablePointer<Float>?,
                                     _ db: UnsafeMutablePointer<Float>?,
                                     _ dy: UnsafePointer<Float>, _ x: UnsafePointer<Float>, _ w: UnsafePointer<Float>,
                                     n: Int, k: Int, m: Int) {
    guard n > 0 else { return }
    // dW[m × k] += dy[n × m]ᵀ · x[n × k]
    if let dw {
        gemm(transA: true, transB: false, m: m, n: k, k: n, a: dy, lda: m, b: x, ldb: k, beta: 1, c: dw, ldc: k)
    }
    if let db { addBiasBackward(db, dy, n: n, m: m) }
    // dx[n × k] += dy[n × m] · W[m × k]
    if let dx {
        gemm(transA: false, transB: false, m: n, n: k, k: m, a: dy, lda: m, b: w, ldb: k, beta: 1, c: dx, ldc: k)
    }
}

/// Whether `gemm` runs our AVX-512 kernel (Sources/CGemm) on this CPU; else OpenBLAS.
/// `REALIGN_GEMM=openblas` forces OpenBLAS (for comparisons).
public let gemmUsesAVX512: Bool = cgemm_available() != 0 && ProcessInfo.processInfo.environment["REALIGN_GEMM"] != "openblas"

/// General strided sgemm, row-major: C[m × n] = alpha · op(A) · op(B) + beta · C. Every matrix
/// product of the engine goes through here. With AVX-512 our kernel does products of 8 rows
/// or more (about twice OpenBLAS's AVX2 rate here; below 8 rows OpenBLAS is as fast or faster),
/// on `blasThreads()` threads.
@inline(__always)
public func gemm(transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Float = 1,
                 a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
                 beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int) {
    if gemmUsesAVX512 && m >= 8 {
        cgemm_sgemm(transA ? 1 : 0, transB ? 1 : 0, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, Int32(blasThreads()))
    } else {
        openblasGemm(transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda, b: b, ldb: ldb, beta: beta, c: c, ldc: ldc)
    }
}

/// `gemm` on OpenBLAS always (the fallback, and the reference the tests and `realign bench` compare with).
public func openblasGemm(transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Float = 1,
                         a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
                         beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int) {
    cblas_sgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
                Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
}

/// Adds a bias row to every row of y[n × m].
public func addBias(_ y: UnsafeMutablePointer<Float>, _ bias: UnsafePointer<Float>, n: Int, m: Int) {
    for r in 0..<n {
        let row = y + r * m
        for j in 0..<m { row[j] += bias[j] }
    }
}

/// Backward of `addBias`: dbias[m] += column sums of dy[n × m].
public func addBiasBackward(_ dbias: UnsafeMutablePointer<Float>, _ dy: UnsafePointer<Float>, n: Int, m: Int) {
    for r in 0..<n {
        let row = dy + r * m
        for j in 0..<m { dbias[j] += row[j] }
    }
}

/// RMSNorm as transformers computes it in fp32: x · rsqrt(mean(x²) + eps) · w.
/// Keeps 1/rms per row in `rstd` (for the backward pass) when given.
public func rmsnormForward(_ out: UnsafeMutablePointer<Float>, _ rstd: UnsafeMutablePointer<Float>?,
                           _ x: UnsafePointer<Float>, _ w: UnsafePointer<Float>, n: Int, dim: Int, eps: Float) {
    for r in 0..<n {
        let xr = x + r * dim, o = out + r * dim
        var ss: Float = 0
        var i = 0
        var acc = SIMD8<Float>()
        while i + 8 <= dim {
            let v = UnsafeRawPointer(xr + i).loadUnaligned(as: SIMD8<Float>.self)
            acc += v * v
            i += 8
        }
        ss = acc.sum()
        while i < dim { ss += xr[i] * xr[i]; i += 1 }
        let s = 1 / (ss / Float(dim) + eps).squareRoot()
        rstd?[r] = s
        for j in 0..<dim { o[j] = w[j] * (xr[j] * s) }
    }
}

/// Backward of `rmsnormForward` (y = w · x · r, r = 1/rms(x), per row): accumulates
///   dw_j += Σ_rows dy_j · x_j · r
///   dx_i += r · w_i · dy_i − r³/dim · x_i · Σ_j dy_j · w_j · x_j
/// dx[n × dim], dw[dim] (nil: a frozen weight), dy[n × dim], x[n × dim], w[dim], rstd[n] (r of
/// each row, from the forward).
public func rmsnormBackward(_ dx: UnsafeMutablePointer<Float>, _ dw: UnsafeMutablePointer<Float>?,
                            _ dy: UnsafePointer<Float>, _ x: UnsafePointer<Float>, _ w: UnsafePointer<Float>,
                            _ rstd: UnsafePointer<Float>, n: Int, dim: Int) {
    for r in 0..<n {
        let xr = x + r * dim, dyr = dy + r * dim, dxr = dx + r * dim
        let s = rstd[r]
        var dot: Float = 0
        for j in 0..<dim { dot += dyr[j] * w[j] * xr[j] }
        let c = dot * s * s * s / Float(dim)
        for j in 0..<dim { dxr[j] += s * w[j] * dyr[j] - c * xr[j] }
        if let dw { for j in 0..<dim { dw[j] += dyr[j] * xr[j] * s } }
    }
}

/// e^x for 8 lanes, Cephes' expf polynomial: |relative error| < 2e-7 (about 2 ulp) against
/// libm's expf; x clamped to [−87.3, 88] (results stay normal and finite). Plain SSE2
/// lane operations, so the element-wise SwiGLU loops run ~8× faster than calling expf.
@inline(__always)
public func exp8(_ x: SIMD8<Float>) -> SIMD8<Float> {
    // (compare + select: `clamped` calls the generic, unvectorised pointwiseMin/Max)
    let lo = SIMD8<Float>(repeating: -87.3), hi = SIMD8<Float>(repeating: 88)
    let x = x.replacing(with: lo, where: x .< lo).replacing(with: hi, where: x .> hi)
    // n = round(x / ln 2) via the 1.5·2²³ trick: its bits carry n in the low mantissa.
    let magic = SIMD8<Float>(repeating: 12_582_912)
    let t = x * 1.442_695_04 + magic
    let n = t - magic
    let r = x - n * 0.693_359_375 + n * 2.121_944_4e-4          // x − n·ln 2 in two parts
    var p = SIMD8<Float>(repeating: 1.987_569_15e-4)
    p = p * r + 1.398_199_95e-3
    p = p * r + 8.333_451_9e-3
    p = p * r + 4.166_579_59e-2
    p = p * r + 1.666_666_55e-1
    p = p * r + 5.000_000_12e-1
    p = p * (r * r) + r + 1
    // 2ⁿ: exponent field n + 127.
    let nBits = unsafeBitCast(t, to: SIMD8<Int32>.self) &- unsafeBitCast(magic, to: SIMD8<Int32>.self)
    let scale = unsafeBitCast((nBits &+ 127) &<< 23, to: SIMD8<Float>.self)
    return p * scale
}

/// Runs `body` over 0..<count split into one contiguous chunk (a multiple of 8 long) per BLAS
/// thread, in parallel; small counts run inline. For element-wise loops between sgemms.
@inline(__always)
func parallelChunks(_ count: Int, _ body: (Range<Int>) -> Void) {
    let threads = min(blasThreads(), 8)
    guard threads > 1, count >= 1 << 16 else { body(0..<count); return }
    let chunk = (count / threads + 7) / 8 * 8
    DispatchQueue.concurrentPerform(iterations: threads) { t in
        let lo = min(t * chunk, count), hi = t == threads - 1 ? count : min(lo + chunk, count)
        body(lo..<hi)
    }
}

/// SwiGLU out of place: out = silu(gate) · up, silu(g) = g / (1 + e^−g) (gate kept for the
/// backward pass; `out` may be `gate` itself). 8 lanes at a time with `exp8`, on all BLAS threads.
public func swigluForward(_ out: UnsafeMutablePointer<Float>, _ gate: UnsafePointer<Float>, _ up: UnsafePointer<Float>, count: Int) {
    parallelChunks(count) { range in
        var i = range.lowerBound
        while i + 8 <= range.upperBound {
            let g = UnsafeRawPointer(gate + i).loadUnaligned(as: SIMD8<Float>.self)
            let u = UnsafeRawPointer(up + i).loadUnaligned(as: SIMD8<Float>.self)
            UnsafeMutableRawPointer(out + i).storeBytes(of: g / (1 + exp8(-g)) * u, as: SIMD8<Float>.self)
            i += 8
        }
        while i < range.upperBound {
            let g = gate[i]
            out[i] = g / (1 + expf(-g)) * up[i]
            i += 1
        }
    }
}

/// Backward of SwiGLU h = silu(g) · u, silu(g) = g·σ(g), silu'(g) = σ(g)·(1 + g·(1 − σ(g))):
/// accumulates dgate += dh · u · silu'(g), dup += dh · silu(g). All buffers [count].
public func swigluBackward(_ dgate: UnsafeMutablePointer<Float>, _ dup: UnsafeMutablePointer<Float>,
                           _ dh: UnsafePointer<Float>, _ gate: UnsafePointer<Float>, _ up: UnsafePointer<Float>, count: Int) {
    parallelChunks(count) { range in
        var i = range.lowerBound
        while i + 8 <= range.upperBound {
            let g = UnsafeRawPointer(gate + i).loadUnaligned(as: SIMD8<Float>.self)
            let u = UnsafeRawPointer(up + i).loadUnaligned(as: SIMD8<Float>.self)
            let d = UnsafeRawPointer(dh + i).loadUnaligned(as: SIMD8<Float>.self)
            let sig = 1 / (1 + exp8(-g))
            let dg = UnsafeRawPointer(dgate + i).loadUnaligned(as: SIMD8<Float>.self) + d * u * sig * (1 + g * (1 - sig))
            let du = UnsafeRawPointer(dup + i).loadUnaligned(as: SIMD8<Float>.self) + d * g * sig
            UnsafeMutableRawPointer(dgate + i).storeBytes(of: dg, as: SIMD8<Float>.self)
            UnsafeMutableRawPointer(dup + i).storeBytes(of: du, as: SIMD8<Float>.self)
            i += 8
        }
        while i < range.upperBound {
            let g = gate[i]
            let sig = 1 / (1 + expf(-g))
            dgate[i] += dh[i] * up[i] * sig * (1 + g * (1 - sig))
            dup[i] += dh[i] * g * sig
            i += 1
        }
    }
}

/// GeGLU: out = gelu(gate) · up, gelu exact (erf) or transformers' gelu_pytorch_tanh
/// 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))) (Gemma). `out` may alias `gate`.
public func gegluForward(_ out: UnsafeMutablePointer<Float>, _ gate: UnsafePointer<Float>, _ up: UnsafePointer<Float>, count: Int, tanh: Bool) {
    parallelChunks(count) { range in
        for i in range {
            let x = gate[i]
            let g = tanh ? 0.5 * x * (1 + tanhf(0.7978845608028654 * (x + 0.044715 * x * x * x))) : 0.5 * x * (1 + erff(x * 0.7071067811865476))
            out[i] = g * up[i]
        }
    }
}

/// Backward of `gegluForward`: accumulates dgate += dh · up · gelu'(gate), dup += dh · gelu(gate).
public func gegluBackward(_ dgate: UnsafeMutablePointer<Float>, _ dup: UnsafeMutablePointer<Float>,
                          _ dh: UnsafePointer<Float>, _ gate: UnsafePointer<Float>, _ up: UnsafePointer<Float>, count: Int, tanh: Bool) {
    parallelChunks(count) { range in
        for i in range {
            let x = gate[i]
            let g: Float, dg: Float
            if tanh {
                let k: Float = 0.7978845608028654
                let t = tanhf(k * (x + 0.044715 * x * x * x))
                g = 0.5 * x * (1 + t)
                dg = 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * k * (1 + 3 * 0.044715 * x * x)
            } else {
                g = 0.5 * x * (1 + erff(x * 0.7071067811865476))
                dg = 0.5 * (1 + erff(x * 0.7071067811865476)) + x * 0.3989422804014327 * expf(-0.5 * x * x)
            }
            dgate[i] += dh[i] * up[i] * dg
            dup[i] += dh[i] * g
        }
    }
}

/// Rotary embedding tables for positions 0..<maxPos, half-rotation layout (HF `rotate_half`):
/// cos/sin[pos × headDim/2].
public struct RopeTable {
    public let half: Int
    public private(set) var cos: [Float]
    public private(set) var sin: [Float]
    let invFreq: [Float]
    let scale: Float   // longrope's attention factor: cos and sin are multiplied by it (1: plain RoPE)

    public init(headDim: Int, theta: Float, maxPositions: Int = 0) {
        self.init(invFreq: RopeTable.defaultInverseFrequencies(headDim: headDim, theta: theta), maxPositions: maxPositions)
    }

    /// From the inverse frequencies [headDim/2] (scaled ones: see `Transformer.ropeInverseFrequencies`).
    public init(invFreq: [Float], scale: Float = 1, maxPositions: Int = 0) {
        half = invFreq.count
        self.invFreq = invFreq
        self.scale = scale
        cos = []; sin = []
        ensure(maxPositions)
    }

    /// As transformers: inv_freq = 1 / theta^(2i/d) in float32 (angle = pos · inv_freq in float32).
    public static func defaultInverseFrequencies(headDim: Int, theta: Float) -> [Float] {
        (0..<headDim / 2).map { 1 / powf(theta, Float(2 * $0) / Float(headDim)) }
    }

    /// Grows the table to cover positions 0..<n.
    public mutating func ensure(_ n: Int) {
        let have = cos.count / max(half, 1)
        guard n > have else { return }
        cos.reserveCapacity(n * half); sin.reserveCapacity(n * half)
        for p in have..<n {
            for i in 0..<half {
                let a = Float(p) * invFreq[i]
                cos.append(cosf(a) * scale); sin.append(sinf(a) * scale)
            }
        }
    }

    /// Rotates `heads` heads of one token in place by the position's angle θ:
    /// x1' = x1·cos − x2·sin, x2' = x2·cos + x1·sin over x[h·d + i], x[h·d + i + d/2].
    @inline(__always)
    public func apply(_ x: UnsafeMutablePointer<Float>, heads: Int, position: Int) {
        rotate(x, heads: heads, position: position, sinSign: 1)
    }

    /// Backward of `apply`: the rotation is orthogonal (times `scale`), so the gradient is rotated
    /// back by the same angle (−θ), in place: dx1 = dy1·cos + dy2·sin, dx2 = dy2·cos − dy1·sin.
    @inline(__always)
    public func backward(_ d: UnsafeMutablePointer<Float>, heads: Int, position: Int) {
        rotate(d, heads: heads, position: position, sinSign: -1)
    }

    @inline(__always)
    func rotate(_ x: UnsafeMutablePointer<Float>, heads: Int, position: Int, sinSign: Float) {
        cos.withUnsafeBufferPointer { cb in
            sin.withUnsafeBufferPointer { sb in
                let c = cb.baseAddress! + position * half, s = sb.baseAddress! + position * half
                for h in 0..<heads {
                    let a = x + h * 2 * half, b = a + half
                    for i in 0..<half {
                        let x1 = a[i], x2 = b[i], si = sinSign * s[i]
                        a[i] = x1 * c[i] - x2 * si
                        b[i] = x2 * c[i] + x1 * si
                    }
                }
            }
        }
    }
}

/// Softmax of one row in place (max-subtracted, as torch does).
public func softmaxInPlace(_ x: UnsafeMutablePointer<Float>, count: Int) {
    var mx = -Float.infinity
    for i in 0..<count { mx = max(mx, x[i]) }
    var sum: Float = 0
    var i = 0
    var acc = SIMD8<Float>()
    let m8 = SIMD8<Float>(repeating: mx)
    while i + 8 <= count {   // 8 lanes with exp8 (within 2e-7 of expf)
        let e = exp8(UnsafeRawPointer(x + i).loadUnaligned(as: SIMD8<Float>.self) - m8)
        UnsafeMutableRawPointer(x + i).storeBytes(of: e, as: SIMD8<Float>.self)
        acc += e
        i += 8
    }
    sum = acc.sum()
    while i < count { let e = expf(x[i] - mx); x[i] = e; sum += e; i += 1 }
    let inv = 1 / sum
    for i in 0..<count { x[i] *= inv }
}

/// Backward of softmax y = softmax(x) over one row: accumulates dx_i += y_i · (dy_i − Σ_j y_j · dy_j).
public func softmaxBackward(_ dx: UnsafeMutablePointer<Float>, _ dy: UnsafePointer<Float>, _ y: UnsafePointer<Float>, count: Int) {
    var dot: Float = 0
    for i in 0..<count { dot += y[i] * dy[i] }
    for i in 0..<count { dx[i] += y[i] * (dy[i] - dot) }
}

/// Softmax of the attention scores row[0..<total] of the query at position `pos`: keys after
/// it are masked (causal) and, with a sliding window W, keys before pos − W + 1 too
/// (transformers: kv > q − W); with a soft-cap the visible scores become cap·tanh(score/cap)
/// first (Gemma-2), tanh values kept in `tanhOut` for the backward. Masked entries become 0.
@inline(__always)
public func attentionSoftmaxRow(_ row: UnsafeMutablePointer<Float>, position pos: Int, total: Int, window: Int?,
                                softcap: Float?, tanhOut: UnsafeMutablePointer<Float>? = nil) {
    let first = window.map { max(0, pos - $0 + 1) } ?? 0
    if let cap = softcap {
        for m in first...pos {
            let t = tanhf(row[m] / cap)
            tanhOut?[m] = t
            row[m] = t * cap
        }
    }
    softmaxInPlace(row + first, count: pos + 1 - first)
    for m in 0..<first { row[m] = 0 }
    for m in (pos + 1)..<max(total, pos + 1) { row[m] = 0 }
}

/// Causal attention probabilities of head h of one sequence, whose queries are the last `tq`
/// of its `tk` positions (query j sits at position tk − tq + j and sees positions 0...that):
/// probs[tq × tk] = softmax(scale · Q_h K_gᵀ), masked entries 0, g = h / (heads / kvHeads).
/// q[tq × heads·d] rows `ldq` apart, k[tk × kvHeads·d] rows `ldk` apart.
/// `window` and `softcap` as `attentionSoftmaxRow` (tanh values in tanhOut[tq × tk]).
public func attentionProbs(_ probs: UnsafeMutablePointer<Float>, _ q: UnsafePointer<Float>, _ k: UnsafePointer<Float>, head h: Int,
                           tq: Int, tk: Int, heads: Int, kvHeads: Int, headDim d: Int, scale: Float, ldq: Int, ldk: Int,
                           window: Int? = nil, softcap: Float? = nil, tanhOut: UnsafeMutablePointer<Float>? = nil) {
    gemm(transA: false, transB: true, m: tq, n: tk, k: d, alpha: scale,
         a: q + h * d, lda: ldq, b: k + (h / (heads / kvHeads)) * d, ldb: ldk, c: probs, ldc: tk)
    for j in 0..<tq {
        attentionSoftmaxRow(probs + j * tk, position: tk - tq + j, total: tk, window: window, softcap: softcap,
                            tanhOut: tanhOut.map { $0 + j * tk })
    }
}

/// Causal attention of one sequence, all heads (see `attentionProbs`): out_h[tq × d] = P_h · V_g.
/// out[tq × heads·d] rows `ldq` apart, v[tk × kvHeads·d] rows `ldk` apart, scratch[tq × tk].
/// The probabilities are not kept: the backward recomputes them (one small sgemm per head).
public func attentionForward(_ out: UnsafeMutablePointer<Float>, _ scratch: UnsafeMutablePointer<Float>,
                             _ q: UnsafePointer<Float>, _ k: UnsafePointer<Float>, _ v: UnsafePointer<Float>,
                             tq: Int, tk: Int, heads: Int, kvHeads: Int, headDim d: Int, scale: Float, ldq: Int, ldk: Int,
                             window: Int? = nil, softcap: Float? = nil) {
    let probs = scratch
    for h in 0..<heads {
        attentionProbs(probs, q, k, head: h, tq: tq, tk: tk, heads: heads, kvHeads: kvHeads, headDim: d, scale: scale, ldq: ldq, ldk: ldk,
                       window: window, softcap: softcap)
        gemm(transA: false, transB: false, m: tq, n: d, k: tk,
             a: probs, lda: tk, b: v + (h / (heads / kvHeads)) * d, ldb: ldk, c: out + h * d, ldc: ldq)
    }
}

/// Backward of `attentionForward`, per head h (group g), with P_h recomputed:
///   dP = dO_h · V_gᵀ,  dV_g += P_hᵀ · dO_h,  dS = softmax backward of dP,
///   dQ_h += scale · dS · K_g,  dK_g += scale · dSᵀ · Q_h.
/// With a soft-cap, dS is multiplied by the cap's derivative 1 − tanh² on the way.
/// Accumulates into dq[tq × heads·d] (stride ldq), dk, dv[tk × kvHeads·d] (stride ldk).
/// dout[tq × heads·d] (stride ldq), scratch[4 · tq × tk].
public func attentionBackward(_ dq: UnsafeMutablePointer<Float>, _ dk: UnsafeMutablePointer<Float>, _ dv: UnsafeMutablePointer<Float>,
                              _ scratch: UnsafeMutablePointer<Float>, _ dout: UnsafePointer<Float>,
                              _ q: UnsafePointer<Float>, _ k: UnsafePointer<Float>, _ v: UnsafePointer<Float>,
                              tq: Int, tk: Int, heads: Int, kvHeads: Int, headDim d: Int, scale: Float, ldq: Int, ldk: Int,
                              window: Int? = nil, softcap: Float? = nil) {
    let group = heads / kvHeads
    let p = scratch, dP = scratch + tq * tk, dS = scratch + 2 * tq * tk    // [tq × tk] each
    let tanhs = softcap == nil ? nil : scratch + 3 * tq * tk
    for h in 0..<heads {
        let g = h / group
        attentionProbs(p, q, k, head: h, tq: tq, tk: tk, heads: heads, kvHeads: kvHeads, headDim: d, scale: scale, ldq: ldq, ldk: ldk,
                       window: window, softcap: softcap, tanhOut: tanhs)
        // dP[tq × tk] = dO_h[tq × d] · V_g[tk × d]ᵀ
        gemm(transA: false, transB: true, m: tq, n: tk, k: d, a: dout + h * d, lda: ldq, b: v + g * d, ldb: ldk, c: dP, ldc: tk)
        // dV_g[tk × d] += P_h[tq × tk]ᵀ · dO_h[tq × d]
        gemm(transA: true, transB: false, m: tk, n: d, k: tq, a: p, lda: tk, b: dout + h * d, ldb: ldq,
             beta: 1, c: dv + g * d, ldc: ldk)
        // dS = softmax backward over each row's visible part (masked entries have P = 0 → dS = 0).
        dS.initialize(repeating: 0, count: tq * tk)
        for j in 0..<tq {
            // (entries outside the window have P = 0 and get dS = 0 too)
            softmaxBackward(dS + j * tk, dP + j * tk, p + j * tk, count: tk - tq + j + 1)
            if let tanhs {
                let first = window.map { max(0, tk - tq + j - $0 + 1) } ?? 0
                for m in first..<(tk - tq + j + 1) { let t = tanhs[j * tk + m]; dS[j * tk + m] *= 1 - t * t }
            }
        }
        // dQ_h[tq × d] += scale · dS · K_g;  dK_g[tk × d] += scale · dSᵀ · Q_h
        gemm(transA: false, transB: false, m: tq, n: d, k: tk, alpha: scale, a: dS, lda: tk, b: k + g * d, ldb: ldk,
             beta: 1, c: dq + h * d, ldc: ldq)
        gemm(transA: true, transB: false, m: tk, n: d, k: tq, alpha: scale, a: dS, lda: tk, b: q + h * d, ldb: ldq,
             beta: 1, c: dk + g * d, ldc: ldk)
    }
}

/// Index of the largest value (first one on ties, as torch.argmax).
public func argmax(_ x: UnsafePointer<Float>, count: Int) -> Int {
    var best = 0
    var bv = x[0]
    for i in 1..<count where x[i] > bv { bv = x[i]; best = i }
    return best
}

/// Sets the number of threads OpenBLAS uses.
public func setBLASThreads(_ n: Int) { openblas_set_num_threads(Int32(n)) }
public func blasThreads() -> Int { Int(openblas_get_num_threads()) }
