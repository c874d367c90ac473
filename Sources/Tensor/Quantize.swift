// float32 → GGML storage types, bit-for-bit equal to the reference quantisers: gguf-py's
// `gguf.quants.quantize` for F16, BF16 and Q8_0 (numpy float32 arithmetic in the same
// order), llama.cpp's `quantize_row_q4_K_ref` for Q4_K (gguf-py has none). Only the types
// a writer needs to store new values in.

import Foundation

/// Whether `quantize` can store float32 values as this type.
public func canQuantize(_ type: GGMLType) -> Bool {
    switch type {
    case .f32, .f16, .bf16, .q8_0, .q4_K: return true
    default: return false
    }
}

/// Encodes `count` float32 values as `type` into `dst` (`type.byteCount(elements: count)`
/// bytes, any alignment). `count` must be a whole number of blocks. Q8_0 refuses
/// non-finite values (numpy's and llama.cpp's results for them are undefined).
public func quantize(_ type: GGMLType, _ src: UnsafePointer<Float>, count: Int, into dst: UnsafeMutableRawPointer) throws {
    guard canQuantize(type) else { throw DequantizeError("cannot store values as \(type.name)") }
    guard count >= 0, count % type.blockSize == 0 else {
        throw DequantizeError("\(count) elements is not a whole number of \(type.name) blocks of \(type.blockSize)")
    }
    switch type {
    case .f32: dst.copyMemory(from: src, byteCount: 4 * count)
    case .f16: convertF32ToF16(src, count: count, into: dst)
    case .bf16: convertF32ToBF16(src, count: count, into: dst)
    case .q8_0:
        try requireFinite(type, src, count: count)
        quantizeQ8_0(src, blocks: count / 32, into: dst)
    case .q4_K:
        try requireFinite(type, src, count: count)
        // Q4_K's fit is ~100 flops a value: split big tensors over the cores (blocks are independent).
        let blocks = count / 256
        let workers = blocks >= 4096 ? ProcessInfo.processInfo.activeProcessorCount : 1
        DispatchQueue.concurrentPerform(iterations: workers) { w in
            let first = blocks * w / workers, end = blocks * (w + 1) / workers
            quantizeQ4_K(src + 256 * first, blocks: end - first, into: dst + 144 * first)
        }
    default: throw DequantizeError("cannot store values as \(type.name)")
    }
}

private func requireFinite(_ type: GGMLType, _ src: UnsafePointer<Float>, count: Int) throws {
    for i in 0..<count where !src[i].isFinite {
        throw DequantizeError("element \(i) is \(src[i]); \(type.name) stores finite values only")
    }
}

/// gguf-py `Q8_0.quantize_blocks`: d = max|x| / 127, q = roundf(x · (1/d)) half away from
/// zero, computed as numpy's `np_roundf` does (floor(a) + floor(2·(a − floor(a)))).
/// d is stored as fp16 (round to nearest even; inf when max|x| > 65504·127).
private func quantizeQ8_0(_ src: UnsafePointer<Float>, blocks: Int, into dst: UnsafeMutableRawPointer) {
    for b in 0..<blocks {
        let x = src + 32 * b
        let out = dst + 34 * b
        var amax: Float = 0
        for i in 0..<32 { amax = max(amax, abs(x[i])) }
        let d = amax / 127
        let id: Float = d == 0 ? 0 : 1 / d
        out.storeBytes(of: floatToHalf(d).littleEndian, toByteOffset: 0, as: UInt16.self)
        for i in 0..<32 {
            let v = x[i] * id
            let a = abs(v)
            let floored = a.rounded(.down)
            let r = floored + (2 * (a - floored)).rounded(.down)
            let q = v < 0 ? -r : (v > 0 ? r : 0)
            // A subnormal d makes 1/d infinite and q infinite or NaN: numpy's int8 cast gives 0.
            out.storeBytes(of: q.isFinite ? Int8(q) : 0, toByteOffset: 2 + i, as: Int8.self)
        }
    }
}

/// llama.cpp's `nearest_int`: round half to even by adding 1.5·2^23 and reading the low
/// mantissa bits (exact for |x| < 2^22; beyond that the same wrapped value llama.cpp gets).
@inline(__always)
private func nearestInt(_ x: Float) -> Int32 {
    Int32(bitPattern: (x + 12582912).bitPattern & 0x7F_FFFF) - 0x40_0000
}

/// llama.cpp `quantize_row_q4_K_ref`, operation for operation (no fused multiply-adds):
/// each block of 256 is 8 sub-blocks of 32; each sub-block gets a 4-bit grid
/// `scale·q − min` fitted by weighted least squares (`make_qkx2_quants`, weights
/// rms + |x|, 21 trial scales); the 8 scales and mins are then stored as 6-bit multiples
/// of the block's fp16 `d` and `dmin`, and the values re-quantised to those.
private func quantizeQ4_K(_ src: UnsafePointer<Float>, blocks: Int, into dst: UnsafeMutableRawPointer) {
    var levels = [UInt8](repeating: 0, count: 256), trial = [UInt8](repeating: 0, count: 32)
    var weights = [Float](repeating: 0, count: 32)
    var scales = [Float](repeating: 0, count: 8), mins = [Float](repeating: 0, count: 8)
    levels.withUnsafeMutableBufferPointer { L in
    trial.withUnsafeMutableBufferPointer { Laux in
    weights.withUnsafeMutableBufferPointer { w in
        for b in 0..<blocks {
            let x = src + 256 * b
            let out = (dst + 144 * b).assumingMemoryBound(to: UInt8.self)
            var maxScale: Float = 0, maxMin: Float = 0
            for j in 0..<8 {
                let xs = x + 32 * j
                var sumX2: Float = 0
                for l in 0..<32 { sumX2 += xs[l] * xs[l] }
                let avX = (sumX2 / 32).squareRoot()
                for l in 0..<32 { w[l] = avX + abs(xs[l]) }
                let (scale, min) = fitQ4Grid(xs, w.baseAddress!, L.baseAddress! + 32 * j, Laux.baseAddress!)
                scales[j] = scale; mins[j] = min
                if scale > maxScale { maxScale = scale }
                if min > maxMin { maxMin = min }
            }
            let invScale: Float = maxScale > 0 ? 63 / maxScale : 0
            let invMin: Float = maxMin > 0 ? 63 / maxMin : 0
            let packed = out + 4
            for i in 0..<12 { packed[i] = 0 }
            for j in 0..<8 {
                let ls = Swift.min(63, UInt8(truncatingIfNeeded: nearestInt(invScale * scales[j])))
                let lm = Swift.min(63, UInt8(truncatingIfNeeded: nearestInt(invMin * mins[j])))
                if j < 4 {
                    packed[j] = ls; packed[j + 4] = lm
                } else {
                    packed[j + 4] = (ls & 0xF) | (lm & 0xF) << 4
                    packed[j - 4] |= (ls >> 4) << 6
                    packed[j] |= (lm >> 4) << 6
                }
            }
            let dHalf = floatToHalf(maxScale / 63), dminHalf = floatToHalf(maxMin / 63)
            UnsafeMutableRawPointer(out).storeBytes(of: dHalf.littleEndian, toByteOffset: 0, as: UInt16.self)
            UnsafeMutableRawPointer(out).storeBytes(of: dminHalf.littleEndian, toByteOffset: 2, as: UInt16.self)
            let d = halfToFloat(dHalf), dmin = halfToFloat(dminHalf)
            for j in 0..<8 {
                let (sc, m) = scaleMinK4(j, packed)
                let dj = d * Float(sc)
                // A zero scale keeps the levels of the sub-block fit, as llama.cpp does.
                if dj == 0 { continue }
                let dmj = dmin * Float(m)
                for i in 0..<32 {
                    let l = nearestInt((x[32 * j + i] + dmj) / dj)
                    L[32 * j + i] = UInt8(Swift.max(0, Swift.min(15, l)))
                }
            }
            let qs = out + 16
            for c in 0..<4 {
                for l in 0..<32 { qs[32 * c + l] = L[64 * c + l] | L[64 * c + l + 32] << 4 }
            }
        }
    }
    }
    }
}

/// llama.cpp `make_qkx2_quants(32, 15, x, w, L, &min, Laux, -1, 0.1, 20, false)`: the
/// 4-bit levels `L` and (scale, min) minimising Σ w·(scale·L + min' − x)², min' ≤ 0,
/// over the plain min–max grid and 21 stretched ones. Returns (scale, −min').
private func fitQ4Grid(_ x: UnsafePointer<Float>, _ w: UnsafePointer<Float>,
                       _ L: UnsafeMutablePointer<UInt8>, _ Laux: UnsafeMutablePointer<UInt8>) -> (Float, Float) {
    let n = 32, nmax: Float = 15
    var min = x[0], max = x[0]
    var sumW = w[0]
    var sumX = sumW * x[0]
    for i in 1..<n {
        if x[i] < min { min = x[i] }
        if x[i] > max { max = x[i] }
        sumW += w[i]
        sumX += w[i] * x[i]
    }
    if min > 0 { min = 0 }
    if max == min {
        for i in 0..<n { L[i] = 0 }
        return (0, -min)
    }
    var iscale = nmax / (max - min)
    var scale = 1 / iscale
    var bestMad: Float = 0
    for i in 0..<n {
        let l = Swift.max(0, Swift.min(15, nearestInt(iscale * (x[i] - min))))
        L[i] = UInt8(l)
        let diff = scale * Float(l) + min - x[i]
        bestMad += w[i] * (diff * diff)
    }
    // As in llama.cpp, a better fit's min moves the origin of the later trial grids.
    for step in 0...20 {
        iscale = (-1 + 0.1 * Float(step) + nmax) / (max - min)
        var sumL: Float = 0, sumL2: Float = 0, sumXL: Float = 0
        for i in 0..<n {
            let l = Swift.max(0, Swift.min(15, nearestInt(iscale * (x[i] - min))))
            Laux[i] = UInt8(l)
            let wl = w[i] * Float(l)
            sumL += wl
            sumL2 += wl * Float(l)
            sumXL += wl * x[i]
        }
        let D = sumW * sumL2 - sumL * sumL
        guard D > 0 else { continue }
        var thisScale = (sumW * sumXL - sumX * sumL) / D
        var thisMin = (sumL2 * sumX - sumL * sumXL) / D
        if thisMin > 0 {
            thisMin = 0
            thisScale = sumXL / sumL2
        }
        var mad: Float = 0
        for i in 0..<n {
            let diff = thisScale * Float(Laux[i]) + thisMin - x[i]
            mad += w[i] * (diff * diff)
        }
        if mad < bestMad {
            for i in 0..<n { L[i] = Laux[i] }
            bestMad = mad
            scale = thisScale
            min = thisMin
        }
    }
    return (scale, -min)
}
