import Foundation
import Testing
@testable import Formats
import Tensor
import TestSupport

/// One record of `quant_blocks.bin` (see scripts/make_quant_fixtures.py).
struct QuantFixture: CustomStringConvertible {
    let type: GGMLType
    let count: Int
    let raw: [UInt8]
    let expected: [UInt32]
    var description: String { type.name }

    static let all: [QuantFixture] = {
        let bytes = [UInt8](fixtureBytes(fixturesDir() + "/quant_blocks.bin"))
        var at = 0
        func u32() -> UInt32 {
            defer { at += 4 }
            return UInt32(bytes[at]) | UInt32(bytes[at + 1]) << 8 | UInt32(bytes[at + 2]) << 16 | UInt32(bytes[at + 3]) << 24
        }
        var out: [QuantFixture] = []
        while at < bytes.count {
            let t = GGMLType(rawValue: u32())!, n = Int(u32()), nb = Int(u32())
            let raw = Array(bytes[at..<at + nb]); at += nb
            let exp = (0..<n).map { _ in u32() }
            out.append(QuantFixture(type: t, count: n, raw: raw, expected: exp))
        }
        return out
    }()
}

/// Bit-equal, or both NaN (NaN payloads after fp16 conversion are not compared).
func sameBits(_ a: Float, _ b: UInt32) -> Bool {
    let fb = Float(bitPattern: b)
    return fb.isNaN ? a.isNaN : a.bitPattern == b
}

@Test func quantFixtureCoversEveryType() {
    let types = Set(QuantFixture.all.map(\.type))
    #expect(types == Set(GGMLType.allCases.filter(canDequantize)))
}

@Test(arguments: QuantFixture.all)
func dequantizeMatchesGGUFPyBitForBit(_ f: QuantFixture) throws {
    #expect(f.type.byteCount(elements: f.count) == f.raw.count)
    let out = try f.raw.withUnsafeBytes { try dequantized(f.type, $0.baseAddress!, count: f.count) }
    var mismatches = 0
    for i in 0..<f.count where !sameBits(out[i], f.expected[i]) {
        if mismatches < 5 {
            Issue.record("\(f.type.name)[\(i)]: got \(out[i]) (\(String(out[i].bitPattern, radix: 16))), want \(Float(bitPattern: f.expected[i])) (\(String(f.expected[i], radix: 16)))")
        }
        mismatches += 1
    }
    #expect(mismatches == 0)
    // Unaligned source must give the same result.
    var shifted = [UInt8](repeating: 0, count: f.raw.count + 1)
    shifted.replaceSubrange(1..., with: f.raw)
    let out2 = try shifted.withUnsafeBytes { try dequantized(f.type, $0.baseAddress! + 1, count: f.count) }
    #expect(zip(out, out2).allSatisfy { $0.bitPattern == $1.bitPattern })
}

@Test func dequantizeRejectsPartialBlocksAndUnsupportedTypes() {
    let raw = [UInt8](repeating: 0, count: 1024)
    raw.withUnsafeBytes { p in
        let dst = UnsafeMutablePointer<Float>.allocate(capacity: 512); defer { dst.deallocate() }
        #expect(throws: DequantizeError.self) { try dequantize(.q4_0, p.baseAddress!, count: 33, into: dst) }
        #expect(throws: DequantizeError.self) { try dequantize(.q4_K, p.baseAddress!, count: 32, into: dst) }
        #expect(throws: DequantizeError.self) { try dequantize(.q8_K, p.baseAddress!, count: 256, into: dst) }
        #expect(throws: DequantizeError.self) { try dequantize(.i32, p.baseAddress!, count: 4, into: dst) }
        #expect(throws: Never.self) { try dequantize(.q4_K, p.baseAddress!, count: 0, into: dst) }
    }
}

@Test func dequantizeRowsPicksTheRightRows() throws {
    let f = QuantFixture.all.first { $0.type == .q4_0 }!
    let rows = f.count / 64  // rows of 64 elements = 2 blocks
    let all = try f.raw.withUnsafeBytes { try dequantized(.q4_0, $0.baseAddress!, count: f.count) }
    var part = [Float](repeating: 0, count: 64 * 2)
    try f.raw.withUnsafeBytes { p in
        try part.withUnsafeMutableBufferPointer { try dequantizeRows(.q4_0, p.baseAddress!, rowLength: 64, rows: (rows - 2)..<rows, into: $0.baseAddress!) }
    }
    #expect(zip(part, all[(f.count - 128)...]).allSatisfy { $0.bitPattern == $1.bitPattern })
}

// MARK: - hand-built blocks

private func le16(_ v: UInt16) -> [UInt8] { [UInt8(v & 0xff), UInt8(v >> 8)] }
private func deq(_ t: GGMLType, _ raw: [UInt8]) throws -> [Float] {
    #expect(raw.count == t.typeSize)
    return try raw.withUnsafeBytes { try dequantized(t, $0.baseAddress!, count: t.blockSize) }
}

@Test func handBuiltQ8_0() throws {
    // d = 0.5, q = -16...15
    let qs = (0..<32).map { UInt8(bitPattern: Int8($0 - 16)) }
    let y = try deq(.q8_0, le16(0x3800) + qs)
    #expect(y == (0..<32).map { Float($0 - 16) * 0.5 })
}

@Test func handBuiltQ4_0() throws {
    // d = 2; byte j holds j in the low nibble (element j) and 15-j in the high (element j+16)
    let qs = (0..<16).map { UInt8($0 | (15 - $0) << 4) }
    let y = try deq(.q4_0, le16(0x4000) + qs)
    let lo: [Float] = (0..<16).map { (j: Int) -> Float in Float(j - 8) * 2 }
    let hi: [Float] = (0..<16).map { (j: Int) -> Float in Float(7 - j) * 2 }
    #expect(Array(y[0..<16]) == lo)
    #expect(Array(y[16..<32]) == hi)
}

@Test func handBuiltQ4_1() throws {
    // d = 0.25, m = -3
    let qs = (0..<16).map { UInt8($0 | (15 - $0) << 4) }
    let y = try deq(.q4_1, le16(0x3400) + le16(0xC200) + qs)
    let lo: [Float] = (0..<16).map { (j: Int) -> Float in Float(j) * 0.25 - 3 }
    let hi: [Float] = (0..<16).map { (j: Int) -> Float in Float(15 - j) * 0.25 - 3 }
    #expect(Array(y[0..<16]) == lo)
    #expect(Array(y[16..<32]) == hi)
}

@Test func handBuiltQ5_0() throws {
    // d = 1; qh sets the 5th bit of the odd elements; all nibbles 0x7 / 0x3
    let qh: UInt32 = 0xAAAA_AAAA
    let qs = [UInt8](repeating: 0x37, count: 16)
    let raw = le16(0x3C00) + [UInt8(qh & 0xff), UInt8(qh >> 8 & 0xff), UInt8(qh >> 16 & 0xff), UInt8(qh >> 24)] + qs
    let y = try deq(.q5_0, raw)
    for j in 0..<32 {
        let q = (j < 16 ? 7 : 3) + (j % 2 == 1 ? 16 : 0)
        #expect(y[j] == Float(q - 16), "element \(j)")
    }
}

@Test func handBuiltQ4_K() throws {
    // d = 1, dmin = 0.5; sub-block j has scale j+1 and min j (6-bit packing of ggml).
    var scales = [UInt8](repeating: 0, count: 12)
    for j in 0..<8 {
        let sc = UInt8(j + 1), m = UInt8(j)
        if j < 4 { scales[j] = sc; scales[j + 4] = m } else {
            scales[j + 4] = (sc & 0xF) | (m & 0xF) << 4
            scales[j - 4] |= (sc >> 4) << 6
            scales[j] |= (m >> 4) << 6
        }
    }
    let qs = [UInt8](repeating: 0x5A, count: 128)  // low nibble 10, high nibble 5
    let y = try deq(.q4_K, le16(0x3C00) + le16(0x3800) + scales + qs)
    for e in 0..<256 {
        let sub = e / 32, q: Float = sub % 2 == 0 ? 10 : 5
        #expect(y[e] == Float(sub + 1) * q - 0.5 * Float(sub), "element \(e)")
    }
}

@Test func handBuiltQ6_K() throws {
    // d = 1, scale of sub-block i = i-8, all q bits zero so q = -32.
    let scales = (0..<16).map { UInt8(bitPattern: Int8($0 - 8)) }
    let raw = [UInt8](repeating: 0, count: 128 + 64) + scales + le16(0x3C00)
    let y = try deq(.q6_K, raw)
    for e in 0..<256 { #expect(y[e] == Float(e / 16 - 8) * -32, "element \(e)") }
}

@Test func handBuiltQ2_K() throws {
    // d = 1, dmin = 1; every scale byte = 0x21 (scale 1, min 2); every q = 3
    let raw = [UInt8](repeating: 0x21, count: 16) + [UInt8](repeating: 0xFF, count: 64) + le16(0x3C00) + le16(0x3C00)
    let y = try deq(.q2_K, raw)
    #expect(y.allSatisfy { $0 == 1 })
}

// MARK: - fp16 / bf16 conversions

@Test func halfToFloatIsExactForAllHalves() {
    for h in 0...UInt16.max {
        let want = Float(Float16(bitPattern: h))
        let got = halfToFloat(h)
        if want.isNaN {
            #expect(got.isNaN)
            // payload kept: top mantissa bits of the float are the half's mantissa
            #expect((got.bitPattern >> 13) & 0x3ff == UInt32(h & 0x3ff))
        } else {
            #expect(got.bitPattern == want.bitPattern, "half \(String(h, radix: 16))")
        }
    }
}

@Test func floatToHalfRoundsToNearestEven() {
    var rng = SystemRandomNumberGenerator()
    var specials: [Float] = [0, -0.0, 1, -1, 65504, 65519.99, 65520, -65520, .infinity, -.infinity,
                             Float(bitPattern: 0x3380_0000), Float(bitPattern: 0x3380_0001), // 2^-24 ties
                             Float(bitPattern: 0x3300_0000), Float(bitPattern: 0x3300_0001), 1e-9, 6.1e-5, 6.0e-5,
                             .leastNonzeroMagnitude, .greatestFiniteMagnitude]
    for _ in 0..<200_000 { specials.append(Float(bitPattern: UInt32.random(in: 0...UInt32.max, using: &rng))) }
    // all halves round trip, and midpoints between neighbouring halves
    for h in 0...UInt16.max { specials.append(Float(Float16(bitPattern: h))) }
    for x in specials {
        let got = floatToHalf(x)
        if x.isNaN { #expect(got & 0x7fff == 0x7e00); continue }
        let want = Float16(x).bitPattern
        if got != want { Issue.record("\(x) (\(String(x.bitPattern, radix: 16))): got \(String(got, radix: 16)) want \(String(want, radix: 16))") }
    }
}

@Test func bf16Conversions() {
    #expect(floatToBF16(1) == 0x3F80)
    #expect(floatToBF16(Float(bitPattern: 0x3F80_8000)) == 0x3F80) // tie to even (down)
    #expect(floatToBF16(Float(bitPattern: 0x3F81_8000)) == 0x3F82) // tie to even (up)
    #expect(floatToBF16(Float(bitPattern: 0x3F80_8001)) == 0x3F81)
    #expect(floatToBF16(.infinity) == 0x7F80)
    #expect(floatToBF16(Float(bitPattern: 0x7F7F_FFFF)) == 0x7F80) // rounds up to inf
    #expect(floatToBF16(.nan) == 0x7FC0)
    #expect(floatToBF16(Float(bitPattern: 0xFF80_0001)) == 0xFFC0)
    for b in stride(from: 0, through: 0xFFFF, by: 1) where (b & 0x7fff) <= 0x7f80 {
        #expect(floatToBF16(bf16ToFloat(UInt16(b))) == UInt16(b))
    }
}

@Test func bulkConvertersRoundTrip() {
    let xs: [Float] = (0..<1001).map { Float($0) * 0.37 - 150 }
    var half = [UInt8](repeating: 0, count: 2 * xs.count + 1)
    var back = [Float](repeating: 0, count: xs.count)
    half.withUnsafeMutableBytes { h in
        convertF32ToF16(xs, count: xs.count, into: h.baseAddress! + 1)
        back.withUnsafeMutableBufferPointer { convertF16ToF32(UnsafeRawPointer(h.baseAddress! + 1), count: xs.count, into: $0.baseAddress!) }
    }
    #expect(zip(xs, back).allSatisfy { Float(Float16($0)) == $1 })
    half.withUnsafeMutableBytes { h in
        convertF32ToBF16(xs, count: xs.count, into: h.baseAddress!)
        back.withUnsafeMutableBufferPointer { convertBF16ToF32(UnsafeRawPointer(h.baseAddress!), count: xs.count, into: $0.baseAddress!) }
    }
    #expect(zip(xs, back).allSatisfy { bf16ToFloat(floatToBF16($0)) == $1 && abs($0 - $1) <= abs($0) / 128 })
}
