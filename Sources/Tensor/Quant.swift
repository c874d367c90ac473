// GGML block dequantisation, bit-for-bit equal to gguf-py's numpy reference
// (gguf/quants.py). Every value is computed with the same float32 operations in the
// same order as numpy does them, e.g. Q4_K is `(d*sc) * q - (dmin*m)` with each
// product rounded to float32 on its own (Swift does not fuse multiply-add unless asked).
// Block layouts are those of ggml-common.h.

/// A dequantisation request that cannot be met (unsupported type, partial block).
/// Not a `FormatError`: it has no file; callers that have one wrap it.
public struct DequantizeError: Error, CustomStringConvertible, Equatable {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

// MARK: - fp16 / bf16 scalars

/// IEEE binary16 bits to float32; exact, NaN payloads kept (as numpy does in software).
@inline(__always)
public func halfToFloat(_ h: UInt16) -> Float {
    // Move exponent+mantissa into float position, rebias, then fix up Inf/NaN and
    // subnormals (the latter by an exact float subtraction of the implicit one).
    let shiftedExp: UInt32 = 0x7c00 << 13
    var o = UInt32(h & 0x7fff) << 13
    let exp = o & shiftedExp
    o &+= (127 - 15) << 23
    if exp == shiftedExp {
        o &+= (128 - 16) << 23
    } else if exp == 0 {
        o &+= 1 << 23
        o = (Float(bitPattern: o) - Float(bitPattern: 113 << 23)).bitPattern
    }
    return Float(bitPattern: o | UInt32(h & 0x8000) << 16)
}

/// float32 to IEEE binary16 bits, round to nearest even; any NaN becomes 0x7e00 with
/// the sign kept (what PyTorch's `.half()` gives).
@inline(__always)
public func floatToHalf(_ x: Float) -> UInt16 {
    var u = x.bitPattern
    let sign = u & 0x8000_0000
    u ^= sign
    var o: UInt32
    if u >= (127 + 16) << 23 {                  // overflows to Inf, or is Inf/NaN
        o = u > 0x7f80_0000 ? 0x7e00 : 0x7c00
    } else if u < 113 << 23 {                   // fp16 subnormal or zero
        // Adding a magic number aligns the 10 mantissa bits at the bottom; the float
        // addition does the round-to-nearest-even.
        let magic: UInt32 = ((127 - 15) + (23 - 10) + 1) << 23
        o = (Float(bitPattern: u) + Float(bitPattern: magic)).bitPattern &- magic
    } else {
        let mantOdd = (u >> 13) & 1
        u &+= UInt32(bitPattern: (15 - 127) << 23) &+ 0xfff &+ mantOdd
        o = u >> 13
    }
    return UInt16(truncatingIfNeeded: o | sign >> 16)
}

/// bfloat16 bits to float32 (exact: the top half of a float32).
@inline(__always)
public func bf16ToFloat(_ b: UInt16) -> Float { Float(bitPattern: UInt32(b) << 16) }

/// float32 to bfloat16 bits, round to nearest even; NaN becomes 0x7fc0 with the sign
/// kept (PyTorch's `.bfloat16()`).
@inline(__always)
public func floatToBF16(_ x: Float) -> UInt16 {
    let u = x.bitPattern
    if u & 0x7fff_ffff > 0x7f80_0000 { return UInt16(truncatingIfNeeded: (u >> 16) & 0x8000) | 0x7fc0 }
    let rounded = u &+ 0x7fff &+ ((u >> 16) & 1)
    return UInt16(truncatingIfNeeded: rounded >> 16)
}

// MARK: - bulk converters (little-endian 16-bit values, any alignment)

public func convertF16ToF32(_ src: UnsafeRawPointer, count: Int, into dst: UnsafeMutablePointer<Float>) {
    for i in 0..<count { dst[i] = halfToFloat(UInt16(littleEndian: src.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self))) }
}
public func convertBF16ToF32(_ src: UnsafeRawPointer, count: Int, into dst: UnsafeMutablePointer<Float>) {
    for i in 0..<count { dst[i] = bf16ToFloat(UInt16(littleEndian: src.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self))) }
}
public func convertF32ToF16(_ src: UnsafePointer<Float>, count: Int, into dst: UnsafeMutableRawPointer) {
    for i in 0..<count { dst.storeBytes(of: floatToHalf(src[i]).littleEndian, toByteOffset: 2 * i, as: UInt16.self) }
}
public func convertF32ToBF16(_ src: UnsafePointer<Float>, count: Int, into dst: UnsafeMutableRawPointer) {
    for i in 0..<count { dst.storeBytes(of: floatToBF16(src[i]).littleEndian, toByteOffset: 2 * i, as: UInt16.self) }
}

// MARK: - dequantisation

/// Whether `dequantize` handles this type.
public func canDequantize(_ type: GGMLType) -> Bool {
    switch type {
    case .f32, .f16, .bf16, .q4_0, .q4_1, .q5_0, .q5_1, .q8_0, .q2_K, .q3_K, .q4_K, .q5_K, .q6_K: return true
    default: return false
    }
}

/// Decodes `count` elements of `type` from `src` into float32. `count` must be a whole
/// number of blocks; the caller has checked that `type.byteCount(elements: count)` bytes
/// are readable at `src` (any alignment).
public func dequantize(_ type: GGMLType, _ src: UnsafeRawPointer, count: Int, into dst: UnsafeMutablePointer<Float>) throws {
    guard canDequantize(type) else { throw DequantizeError("cannot dequantize \(type.name) tensors") }
    guard count >= 0, count % type.blockSize == 0 else {
        throw DequantizeError("\(count) elements is not a whole number of \(type.name) blocks of \(type.blockSize)")
    }
    let blocks = count / type.blockSize
    let p = src.assumingMemoryBound(to: UInt8.self)
    switch type {
    case .f32:
        UnsafeMutableRawPointer(dst).copyMemory(from: src, byteCount: 4 * count)
    case .f16: convertF16ToF32(src, count: count, into: dst)
    case .bf16: convertBF16ToF32(src, count: count, into: dst)
    case .q4_0: dequantQ4_0(p, blocks, dst)
    case .q4_1: dequantQ4_1(p, blocks, dst)
    case .q5_0: dequantQ5_0(p, blocks, dst)
    case .q5_1: dequantQ5_1(p, blocks, dst)
    case .q8_0: dequantQ8_0(p, blocks, dst)
    case .q2_K: dequantQ2_K(p, blocks, dst)
    case .q3_K: dequantQ3_K(p, blocks, dst)
    case .q4_K: dequantQ4_K(p, blocks, dst)
    case .q5_K: dequantQ5_K(p, blocks, dst)
    case .q6_K: dequantQ6_K(p, blocks, dst)
    default: throw DequantizeError("cannot dequantize \(type.name) tensors")
    }
}

/// Dequantises rows `rows` of a row-major tensor whose rows hold `rowLength` elements
/// (a whole number of blocks); row `rows.lowerBound` goes to `dst[0]`.
public func dequantizeRows(_ type: GGMLType, _ src: UnsafeRawPointer, rowLength: Int, rows: Range<Int>,
                           into dst: UnsafeMutablePointer<Float>) throws {
    guard let rowBytes = type.byteCount(elements: rowLength) else {
        throw DequantizeError("row of \(rowLength) elements is not a whole number of \(type.name) blocks")
    }
    let (count, o) = rows.count.multipliedReportingOverflow(by: rowLength)
    guard !o, rows.lowerBound >= 0 else { throw DequantizeError("row range \(rows) overflows") }
    try dequantize(type, src + rows.lowerBound * rowBytes, count: count, into: dst)
}

/// The whole tensor as a new array.
public func dequantized(_ type: GGMLType, _ src: UnsafeRawPointer, count: Int) throws -> [Float] {
    guard canDequantize(type) else { throw DequantizeError("cannot dequantize \(type.name) tensors") }
    guard count >= 0, count % type.blockSize == 0 else {
        throw DequantizeError("\(count) elements is not a whole number of \(type.name) blocks of \(type.blockSize)")
    }
    return try [Float](unsafeUninitializedCapacity: count) { buf, n in
        if count > 0 { try dequantize(type, src, count: count, into: buf.baseAddress!) }
        n = count
    }
}

@inline(__always) private func f16(_ p: UnsafePointer<UInt8>, _ at: Int) -> Float {
    halfToFloat(UInt16(p[at]) | UInt16(p[at + 1]) << 8)
}

// ggml block_q4_0: d(f16), qs[16]; element j<16 is the low nibble of qs[j], j>=16 the high nibble of qs[j-16].
private func dequantQ4_0(_ src: UnsafePointer<UInt8>, _ blocks: Int, _ dst: UnsafeMutablePointer<Float>) {
    for b in 0..<blocks {
        let blk = src + b * 18, y = dst + b * 32
        let d = f16(blk, 0)
        let qs = blk + 2
        for j in 0..<16 {
            y[j] = d * Float(Int32(qs[j] & 0xF) - 8)
            y[j + 16] = d * Float(Int32(qs[j] >> 4) - 8)
        }
    }
}

// block_q4_1: d, m, qs[16]; value = d*q + m.
private func dequantQ4_1(_ src: UnsafePointer<UInt8>, _ blocks: Int, _ dst: UnsafeMutablePointer<Float>) {
    for b in 0..<blocks {
        let blk = src + b * 20, y = dst + b * 32
        let d = f16(blk, 0), m = f16(blk, 2)
        let qs = blk + 4
        for j in 0..<16 {
            y[j] = d * Float(qs[j] & 0xF) + m
            y[j + 16] = d * Float(qs[j] >> 4) + m
        }
    }
}

@inline(__always) private func u32(_ p: UnsafePointer<UInt8>, _ at: Int) -> UInt32 {
    UInt32(p[at]) | UInt32(p[at + 1]) << 8 | UInt32(p[at + 2]) << 16 | UInt32(p[at + 3]) << 24
}

// block_q5_0: d, qh (u32, bit j = 5th bit of element j), qs[16]; value = d*(q-16).
private func dequantQ5_0(_ src: UnsafePointer<UInt8>, _ blocks: Int, _ dst: UnsafeMutablePointer<Float>) {
    for b in 0..<blocks {
        let blk = src + b * 22, y = dst + b * 32
        let d = f16(blk, 0)
        let qh = u32(blk, 2)
        let qs = blk + 6
        for j in 0..<16 {
            let lo = Int32(qs[j] & 0xF) | Int32((qh >> UInt32(j)) & 1) << 4
            let hi = Int32(qs[j] >> 4) | Int32((qh >> UInt32(j + 16)) & 1) << 4
            y[j] = d * Float(lo - 16)
            y[j + 16] = d * Float(hi - 16)
        }
    }
}

// block_q5_1: d, m, qh, qs[16]; value = d*q + m.
private func dequantQ5_1(_ src: UnsafePointer<UInt8>, _ blocks: Int, _ dst: UnsafeMutablePointer<Float>) {
    for b in 0..<blocks {
        let blk = src + b * 24, y = dst + b * 32
        let d = f16(blk, 0), m = f16(blk, 2)
        let qh = u32(blk, 4)
        let qs = blk + 8
        for j in 0..<16 {
            let lo = UInt32(qs[j] & 0xF) | ((qh >> UInt32(j)) & 1) << 4
            let hi = UInt32(qs[j] >> 4) | ((qh >> UInt32(j + 16)) & 1) << 4
            y[j] = d * Float(lo) + m
            y[j + 16] = d * Float(hi) + m
        }
    }
}

// block_q8_0: d, qs[32] (int8); value = q*d.
private func dequantQ8_0(_ src: UnsafePointer<UInt8>, _ blocks: Int, _ dst: UnsafeMutablePointer<Float>) {
    for b in 0..<blocks {
        let blk = src + b * 34, y = dst + b * 32
        let d = f16(blk, 0)
        let qs = blk + 2
        for j in 0..<32 { y[j] = Float(Int8(bitPattern: qs[j])) * d }
    }
}

// block_q2_K: scales[16] (low nibble scale, high nibble min), qs[64], d, dmin.
// Element h*128 + s*32 + l (h<2, s<4, l<32) is bits 2s..2s+1 of qs[h*32+l], in
// sub-block (of 16) h*8 + s*2 + l/16; value = (d*sc)*q - (dmin*m).
private func dequantQ2_K(_ src: UnsafePointer<UInt8>, _ blocks: Int, _ dst: UnsafeMutablePointer<Float>) {
    for b in 0..<blocks {
        let blk = src + b * 84, y = dst + b * 256
        let scales = blk, qs = blk + 16
        let d = f16(blk, 80), dmin = f16(blk, 82)
        for h in 0..<2 {
            for s in 0..<4 {
                let shift = UInt8(2 * s)
                for k in 0..<2 {
                    let sc = scales[h * 8 + s * 2 + k]
                    let dl = d * Float(sc & 0xF), ml = dmin * Float(sc >> 4)
                    let q = qs + h * 32 + k * 16
                    let out = y + h * 128 + s * 32 + k * 16
                    for l in 0..<16 { out[l] = dl * Float((q[l] >> shift) & 3) - ml }
                }
            }
        }
    }
}

// block_q3_K: hmask[32], qs[64], scales[12] (16 packed 6-bit scales), d.
// Element e = h*128 + s*32 + l: low 2 bits from qs[h*32+l] >> 2s, and 4 is subtracted
// when bit e/32 of hmask[l] is clear; value = (d*(scale-32)) * q.
private func dequantQ3_K(_ src: UnsafePointer<UInt8>, _ blocks: Int, _ dst: UnsafeMutablePointer<Float>) {
    withUnsafeTemporaryAllocation(of: Float.self, capacity: 16) { dlBuf in
        let dl = dlBuf.baseAddress!
        for b in 0..<blocks {
            let blk = src + b * 110, y = dst + b * 256
            let hmask = blk, qs = blk + 32, sc = blk + 96
            let d = f16(blk, 108)
            for i in 0..<16 {
                let low = i < 8 ? sc[i] & 0xF : sc[i - 8] >> 4
                let high = (sc[8 + i % 4] >> UInt8(2 * (i / 4))) & 3
                dl[i] = d * Float(Int32(low | high << 4) - 32)
            }
            for h in 0..<2 {
                for s in 0..<4 {
                    let shift = UInt8(2 * s), hbit = UInt8(h * 4 + s)
                    for k in 0..<2 {
                        let scale = dl[h * 8 + s * 2 + k]
                        let out = y + h * 128 + s * 32 + k * 16
                        for l in 0..<16 {
                            let i = k * 16 + l
                            let q = Int32((qs[h * 32 + i] >> shift) & 3) - (((hmask[i] >> hbit) & 1) == 0 ? 4 : 0)
                            out[l] = scale * Float(q)
                        }
                    }
                }
            }
        }
    }
}

// The 8 (scale, min) pairs of Q4_K/Q5_K, 6 bits each, packed in 12 bytes.
@inline(__always)
func scaleMinK4(_ j: Int, _ s: UnsafePointer<UInt8>) -> (UInt8, UInt8) {
    if j < 4 { return (s[j] & 63, s[j + 4] & 63) }
    return ((s[j + 4] & 0xF) | (s[j - 4] >> 6) << 4, (s[j + 4] >> 4) | (s[j] >> 6) << 4)
}

// block_q4_K: d, dmin, scales[12], qs[128]. Element c*64 + s*32 + l is nibble s of
// qs[c*32+l], in sub-block (of 32) c*2+s; value = (d*sc)*q - (dmin*m).
private func dequantQ4_K(_ src: UnsafePointer<UInt8>, _ blocks: Int, _ dst: UnsafeMutablePointer<Float>) {
    for b in 0..<blocks {
        let blk = src + b * 144, y = dst + b * 256
        let d = f16(blk, 0), dmin = f16(blk, 2)
        let scales = blk + 4, qs = blk + 16
        for c in 0..<4 {
            let (sc0, m0) = scaleMinK4(2 * c, scales), (sc1, m1) = scaleMinK4(2 * c + 1, scales)
            let d0 = d * Float(sc0), dm0 = dmin * Float(m0)
            let d1 = d * Float(sc1), dm1 = dmin * Float(m1)
            let q = qs + c * 32, out = y + c * 64
            for l in 0..<32 {
                out[l] = d0 * Float(q[l] & 0xF) - dm0
                out[l + 32] = d1 * Float(q[l] >> 4) - dm1
            }
        }
    }
}

// block_q5_K: d, dmin, scales[12], qh[32], qs[128]. As Q4_K, plus bit (c*2+s) of qh[l]
// as the 5th bit.
private func dequantQ5_K(_ src: UnsafePointer<UInt8>, _ blocks: Int, _ dst: UnsafeMutablePointer<Float>) {
    for b in 0..<blocks {
        let blk = src + b * 176, y = dst + b * 256
        let d = f16(blk, 0), dmin = f16(blk, 2)
        let scales = blk + 4, qh = blk + 16, qs = blk + 48
        for c in 0..<4 {
            let (sc0, m0) = scaleMinK4(2 * c, scales), (sc1, m1) = scaleMinK4(2 * c + 1, scales)
            let d0 = d * Float(sc0), dm0 = dmin * Float(m0)
            let d1 = d * Float(sc1), dm1 = dmin * Float(m1)
            let q = qs + c * 32, out = y + c * 64
            let b0 = UInt8(2 * c), b1 = UInt8(2 * c + 1)
            for l in 0..<32 {
                let lo = (q[l] & 0xF) | ((qh[l] >> b0) & 1) << 4
                let hi = (q[l] >> 4) | ((qh[l] >> b1) & 1) << 4
                out[l] = d0 * Float(lo) - dm0
                out[l + 32] = d1 * Float(hi) - dm1
            }
        }
    }
}

// block_q6_K: ql[128], qh[64], scales[16] (int8), d. Element h*128 + s*32 + l takes its
// low 4 bits from ql[h*64 + (s%2)*32 + l] (nibble s/2) and its high 2 bits from
// qh[h*32+l] >> 2s; sub-block (of 16) h*8 + s*2 + l/16; value = (d*scale) * (q-32).
private func dequantQ6_K(_ src: UnsafePointer<UInt8>, _ blocks: Int, _ dst: UnsafeMutablePointer<Float>) {
    for b in 0..<blocks {
        let blk = src + b * 210, y = dst + b * 256
        let ql = blk, qh = blk + 128, scales = blk + 192
        let d = f16(blk, 208)
        for h in 0..<2 {
            for s in 0..<4 {
                let lshift = UInt8(4 * (s / 2)), hshift = UInt8(2 * s)
                let lq = ql + h * 64 + (s % 2) * 32, hq = qh + h * 32
                for k in 0..<2 {
                    let scale = d * Float(Int8(bitPattern: scales[h * 8 + s * 2 + k]))
                    let out = y + h * 128 + s * 32 + k * 16
                    for l in 0..<16 {
                        let i = k * 16 + l
                        let q = Int32(((lq[i] >> lshift) & 0xF) | ((hq[i] >> hshift) & 3) << 4) - 32
                        out[l] = scale * Float(q)
                    }
                }
            }
        }
    }
}
