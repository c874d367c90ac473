import Dispatch
import Foundation

// Fused dequantise-and-dot kernels: y = W·x with W a GGML-quantised row-major matrix read
// straight from its blocks (e.g. the memory-mapped GGUF file) and x in fp32. Batch-1
// decoding is memory-bound, so reading ~0.5–1 byte per weight instead of 4 is the win.
//
// Exactness. Every weight is the float32 value `Quant.swift`'s dequantiser produces, by
// the same operations (the tests check the bits through `dequantizeRow`, which runs the
// same code). Unlike llama.cpp we never quantise the activations. What differs from a
// plain loop is only the fp32 summation: several SIMD accumulators, products not fused
// with the adds (Swift does not contract a*b+c, and on a baseline x86-64 build an
// explicit fma would be a libm call per lane), and for symmetric types (w = q·d, one
// scale per 16 or 32 columns) the scale multiplies the group's partial sum, d·Σ q·x,
// which is exact algebra: q·d is exact in fp32 (an fp16 scale times a small integer).
//
// How. Each row is decoded in passes over a small per-thread scratch row that stays in
// L1: (1) the quants are unpacked with 32-byte integer SIMD ops into one signed (or, for
// types with an offset, unsigned) byte per column, in natural column order, and the fp16
// scales are collected; (2) the scales are converted eight at a time; (3) a dot-product
// loop converts 8 bytes at a time to floats and multiplies them with x. F32/F16/BF16 and
// Q8_0 rows are read directly.
//
// The passes and the odd-looking SIMD spellings are deliberate. Swift's SIMD bitwise
// ops, shifts and conversions are per-lane loops that LLVM must re-vectorise: it does so
// reliably for ops that keep lanes in place on vectors of up to 16 lanes and for widening
// a memory load, but not for 32-lane byte vectors (those become loops through memory) nor
// for widening a computed vector inside a big kernel (it scalarises lanes). So 32-byte
// bitwise work is done on SIMD4<UInt64>, only the ops Swift implements natively (&-,
// comparisons, concatenation) are used on SIMD32<UInt8>, comparisons are vector against
// vector (the scalar forms are loops), and the bytes go through memory between passes.
//
// Pass 3 is generic over a `WeightSink` receiving the weights eight at a time: a dot
// product (matvec), n dot products sharing each weight vector (small-batch matmul), or a
// store (dequantise a row). Each type's row loop is one function specialised for its
// sink, so a sink's accumulators live in registers: no closures, no allocation per row.

// MARK: - settings

/// Process-wide settings of the quantised kernels.
public enum QuantDot {
    /// Threads `matvec`/`matmul` split rows over when the caller does not say. Defaults
    /// to the active processor count (at most 8).
    nonisolated(unsafe) public static var threads: Int = max(1, min(ProcessInfo.processInfo.activeProcessorCount, 8))
    /// Each thread gets at least this many bytes of weights; smaller products use fewer
    /// threads (handing work to another thread costs microseconds). 0 = no limit.
    nonisolated(unsafe) public static var minBytesPerThread: Int = 48 << 10

    /// Types with a hand-vectorised kernel (others that `dequantize` supports go through
    /// the scalar reference dequantiser, a row at a time).
    public static func hasFastKernel(_ type: GGMLType) -> Bool {
        switch type {
        case .f32, .f16, .bf16, .q4_0, .q4_1, .q5_0, .q5_1, .q8_0, .q4_K, .q5_K, .q6_K: return true
        default: return false
        }
    }
}

// MARK: - the matrix

/// A row-major matrix of `rows` × `columns` GGML elements (each row `columns / blockSize`
/// blocks, `rowBytes` bytes), read in place. Holds on to its owner (e.g. the mapped
/// file) so the memory stays valid.
public struct QuantMatrix: @unchecked Sendable {
    public let type: GGMLType
    public let base: UnsafeRawPointer
    public let rows: Int
    public let columns: Int
    public let rowBytes: Int
    private let owner: AnyObject?

    /// `byteCount` is how many bytes are readable at `base`; it must cover all rows.
    public init(type: GGMLType, base: UnsafeRawPointer, byteCount: Int, rows: Int, columns: Int,
                owner: AnyObject? = nil) throws {
        guard canDequantize(type) else { throw DequantizeError("no matrix-vector kernel for \(type.name) tensors") }
        guard rows >= 0, columns > 0 else { throw DequantizeError("bad matrix shape \(rows) × \(columns)") }
        guard let rb = type.byteCount(elements: columns) else {
            throw DequantizeError("row of \(columns) elements is not a whole number of \(type.name) blocks of \(type.blockSize)")
        }
        let (total, o) = rb.multipliedReportingOverflow(by: rows)
        guard !o, byteCount >= 0, total <= byteCount else {
            throw DequantizeError("\(rows) rows of \(rb) bytes do not fit in \(byteCount) bytes")
        }
        self.type = type; self.base = base; self.rows = rows; self.columns = columns
        self.rowBytes = rb; self.owner = owner
    }

    /// Bytes of weights in the whole matrix.
    public var byteCount: Int { rows * rowBytes }

    /// y[r] = Σ_c W[r,c]·x[c] for r in `rows` (all by default; clamped to the matrix).
    /// `x` holds `columns` floats; `y` is indexed by absolute row number, so it holds at
    /// least `rows.upperBound` floats (rows outside the range are not written).
    /// `threads` overrides `QuantDot.threads`.
    public func matvec(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, rows: Range<Int>? = nil,
                       threads: Int? = nil) {
        let range = (rows ?? 0..<self.rows).clamped(to: 0..<self.rows)
        parallelRows(range, threads: threads) { part, scratch in
            self.run(part, scratch, DotConsumer(x: x, y: y))
        }
    }

    /// For the `n` vectors x[i] = x + i·xStride (each `columns` floats), y[i·yStride + r] =
    /// Σ_c W[r,c]·x[i][c], for r in `rows`. Each weight row is read and decoded once for
    /// up to 8 vectors, which share every decoded weight vector (n > 8: one pass over the
    /// rows per 8 vectors). Strides default to `columns` and `self.rows` (packed
    /// [n × columns] → [n × rows]). Equal to n `matvec`s up to fp32 summation order.
    public func matmul(x: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>, n: Int, rows: Range<Int>? = nil,
                       xStride: Int? = nil, yStride: Int? = nil, threads: Int? = nil) {
        guard n > 0 else { return }
        if n == 1 { return matvec(x, y, rows: rows, threads: threads) }
        let ldx = xStride ?? columns, ldy = yStride ?? self.rows
        let range = (rows ?? 0..<self.rows).clamped(to: 0..<self.rows)
        parallelRows(range, threads: threads) { part, scratch in
            var i = 0
            while i < n {
                let xi = x + i * ldx, yi = y + i * ldy
                switch min(8, n - i) {
                case 1: self.run(part, scratch, DotConsumer(x: xi, y: yi))
                case 2: self.run(part, scratch, MultiDotConsumer<Count2>(x: xi, ldx: ldx, y: yi, ldy: ldy))
                case 3: self.run(part, scratch, MultiDotConsumer<Count3>(x: xi, ldx: ldx, y: yi, ldy: ldy))
                case 4: self.run(part, scratch, MultiDotConsumer<Count4>(x: xi, ldx: ldx, y: yi, ldy: ldy))
                case 5: self.run(part, scratch, MultiDotConsumer<Count5>(x: xi, ldx: ldx, y: yi, ldy: ldy))
                case 6: self.run(part, scratch, MultiDotConsumer<Count6>(x: xi, ldx: ldx, y: yi, ldy: ldy))
                case 7: self.run(part, scratch, MultiDotConsumer<Count7>(x: xi, ldx: ldx, y: yi, ldy: ldy))
                default: self.run(part, scratch, MultiDotConsumer<Count8>(x: xi, ldx: ldx, y: yi, ldy: ldy))
                }
                i += 8
            }
        }
    }

    /// Row r dequantised into dst[0..<columns], bit-equal to `dequantize` (through the
    /// same decoding the products use). Out-of-range rows are ignored.
    public func dequantizeRow(_ r: Int, into dst: UnsafeMutablePointer<Float>) {
        guard r >= 0, r < rows else { return }
        let scratch = RowScratch(columns: columns)
        defer { scratch.free() }
        run(r..<r + 1, scratch, StoreConsumer(dst: dst, firstRow: r, columns: columns))
    }

    /// One dot product, W[r,:]·x (0 for an out-of-range row).
    public func dot(row r: Int, _ x: UnsafePointer<Float>) -> Float {
        guard r >= 0, r < rows else { return 0 }
        var y: Float = 0
        withUnsafeMutablePointer(to: &y) { matvec(x, $0 - r, rows: r..<r + 1, threads: 1) }
        return y
    }

    // MARK: plumbing

    /// Splits `range` over `threads` workers (fewer for small work) in contiguous chunks,
    /// four per worker, handed out as workers come free so that a core busy with something
    /// else does not hold everyone up. Each worker has its own scratch row.
    private func parallelRows(_ range: Range<Int>, threads: Int?, _ body: (Range<Int>, RowScratch) -> Void) {
        let n = range.count
        guard n > 0 else { return }
        var t = max(1, min(threads ?? QuantDot.threads, n))
        let minBytes = QuantDot.minBytesPerThread
        if minBytes > 0 { t = max(1, min(t, n * rowBytes / minBytes)) }
        let c = columns
        if t == 1 {
            let scratch = RowScratch(columns: c)
            defer { scratch.free() }
            return body(range, scratch)
        }
        let chunks = min(n, 4 * t)
        let next = ChunkCounter()
        DispatchQueue.concurrentPerform(iterations: t) { _ in
            let scratch = RowScratch(columns: c)
            defer { scratch.free() }
            while let i = next.take(below: chunks) {
                body(range.lowerBound + n * i / chunks ..< range.lowerBound + n * (i + 1) / chunks, scratch)
            }
        }
    }

    /// Decodes rows `range` into the consumer's sinks, with the type's row loop.
    private func run<R: RowConsumer>(_ range: Range<Int>, _ t: RowScratch, _ consumer: R) {
        let rows = RowSpan(base: base + range.lowerBound * rowBytes, rowBytes: rowBytes, columns: columns, range: range)
        switch type {
        case .f32: runRows(DecodeF32.self, rows, t, consumer)
        case .f16: runRows(DecodeF16.self, rows, t, consumer)
        case .bf16: runRows(DecodeBF16.self, rows, t, consumer)
        case .q8_0: runRows(DecodeQ8_0.self, rows, t, consumer)
        case .q4_0: runRows(DecodeQ4_0.self, rows, t, consumer)
        case .q4_1: runRows(DecodeQ4_1.self, rows, t, consumer)
        case .q5_0: runRows(DecodeQ5_0.self, rows, t, consumer)
        case .q5_1: runRows(DecodeQ5_1.self, rows, t, consumer)
        case .q4_K: runRows(DecodeQ4_K.self, rows, t, consumer)
        case .q5_K: runRows(DecodeQ5_K.self, rows, t, consumer)
        case .q6_K: runRows(DecodeQ6_K.self, rows, t, consumer)
        default:
            // Other types: the reference dequantiser into the scratch row, then fp32.
            var row = rows.base
            for r in range {
                try? dequantize(type, row, count: columns, into: t.floats)
                var s = consumer.sink(row: r)
                DecodeF32.decode(UnsafeRawPointer(t.floats), columns, t, &s)
                consumer.finish(s, row: r)
                row += rowBytes
            }
        }
    }
}

/// Hands out 0, 1, 2, … to whichever thread asks first.
private final class ChunkCounter: @unchecked Sendable {
    private let lock = NSLock()
    private var value = 0
    func take(below limit: Int) -> Int? {
        lock.lock()
        defer { lock.unlock() }
        guard value < limit else { return nil }
        value += 1
        return value - 1
    }
}

fileprivate struct RowSpan {
    let base: UnsafeRawPointer
    let rowBytes: Int
    let columns: Int
    let range: Range<Int>
}

/// A type's row decoder: feeds one row's weights to a sink.
fileprivate protocol RowDecoder {
    static func decode<S: WeightSink>(_ row: UnsafeRawPointer, _ columns: Int, _ t: RowScratch, _ s: inout S)
}

/// What happens to each row: a fresh sink, then its result.
fileprivate protocol RowConsumer {
    associatedtype Sink: WeightSink
    func sink(row r: Int) -> Sink
    func finish(_ s: Sink, row r: Int)
}

/// The row loop of one type for one consumer; the decoder and sink are inlined into it.
@inline(never)
fileprivate func runRows<D: RowDecoder, R: RowConsumer>(_: D.Type, _ rows: RowSpan, _ t: RowScratch, _ consumer: R) {
    var row = rows.base
    for r in rows.range {
        var s = consumer.sink(row: r)
        D.decode(row, rows.columns, t, &s)
        consumer.finish(s, row: r)
        row += rows.rowBytes
    }
}

fileprivate struct DotConsumer: RowConsumer {
    let x: UnsafePointer<Float>
    let y: UnsafeMutablePointer<Float>
    @inline(__always) func sink(row r: Int) -> DotSink { DotSink(x) }
    @inline(__always) func finish(_ s: DotSink, row r: Int) { y[r] = s.total }
}

fileprivate struct MultiDotConsumer<C: VectorCount>: RowConsumer {
    let x: UnsafePointer<Float>
    let ldx: Int
    let y: UnsafeMutablePointer<Float>
    let ldy: Int
    @inline(__always) func sink(row r: Int) -> MultiDotSink<C> { MultiDotSink<C>(x, ldx) }
    @inline(__always) func finish(_ s: MultiDotSink<C>, row r: Int) {
        for k in 0..<C.n { y[k * ldy + r] = s.total(k) }
    }
}

/// Row r goes to dst + (r − firstRow)·columns.
fileprivate struct StoreConsumer: RowConsumer {
    let dst: UnsafeMutablePointer<Float>
    let firstRow: Int
    let columns: Int
    @inline(__always) func sink(row r: Int) -> StoreSink { StoreSink(dst: dst + (r - firstRow) * columns) }
    @inline(__always) func finish(_ s: StoreSink, row r: Int) {}
}

// MARK: - scratch row

/// One decoded row: a byte per column (signed quant − offset, or unsigned quant), a
/// scale and an offset per group (block or sub-block), the raw fp16 scale bits while they
/// wait for conversion, and `columns` floats for the fallback types. Allocated once per
/// thread and call, 64-byte aligned.
fileprivate struct RowScratch {
    let q: UnsafeMutablePointer<UInt8>
    let scale: UnsafeMutablePointer<Float>
    let offset: UnsafeMutablePointer<Float>
    let scaleBits: UnsafeMutablePointer<UInt16>
    let offsetBits: UnsafeMutablePointer<UInt16>
    let floats: UnsafeMutablePointer<Float>
    private let raw: UnsafeMutableRawPointer

    init(columns c: Int) {
        func round64(_ n: Int) -> Int { (n + 63) / 64 * 64 }
        let groups = max((c + 15) / 16, 256) + 8     // 256: the fp16 chunk of DecodeF16
        let qBytes = round64(c + 32), fBytes = round64(4 * groups), hBytes = round64(2 * groups)
        let floatCount = (c + 7) / 8 * 8             // conversions write whole vectors of 8
        raw = UnsafeMutableRawPointer.allocate(byteCount: qBytes + 2 * fBytes + 2 * hBytes + 4 * floatCount, alignment: 64)
        var at = raw
        q = at.bindMemory(to: UInt8.self, capacity: qBytes); at += qBytes
        scale = at.bindMemory(to: Float.self, capacity: groups); at += fBytes
        offset = at.bindMemory(to: Float.self, capacity: groups); at += fBytes
        scaleBits = at.bindMemory(to: UInt16.self, capacity: groups); at += hBytes
        offsetBits = at.bindMemory(to: UInt16.self, capacity: groups); at += hBytes
        floats = at.bindMemory(to: Float.self, capacity: floatCount)
    }
    func free() { raw.deallocate() }
}

// MARK: - sinks

fileprivate typealias Float8 = SIMD8<Float>

@inline(__always) private func load8(_ p: UnsafePointer<Float>) -> Float8 {
    UnsafeRawPointer(p).loadUnaligned(as: Float8.self)
}

/// a·b + c. Fused only in builds for a CPU with FMA that also define QUANTDOT_FMA
/// (`-Xswiftc -target-cpu -Xswiftc haswell -Xswiftc -DQUANTDOT_FMA`): without hardware
/// FMA in the target, a fused multiply-add is a libm call per lane. Where it forms a
/// weight d·q + m the product d·q is exact, so fusing does not change the weight's bits.
@inline(__always) private func madd(_ a: Float8, _ b: Float8, _ c: Float8) -> Float8 {
    #if QUANTDOT_FMA
    return c.addingProduct(a, b)
    #else
    return a * b + c
    #endif
}
/// Sum of the lanes, pairwise.
@inline(__always) private func lanesSum(_ v: Float8) -> Float {
    let (a, b) = unsafeBitCast(v, to: (SIMD4<Float>, SIMD4<Float>).self)
    let (c, d) = unsafeBitCast(a + b, to: (SIMD2<Float>, SIMD2<Float>).self)
    let e = c + d
    return e[0] + e[1]
}

/// Receives a row's weights in column order: eight at a time (`i` = first column, a
/// multiple of 8; `slot` = a small number the feeder cycles through so that a sink can
/// keep independent accumulators), groups that share a scale, or one at a time.
fileprivate protocol WeightSink {
    mutating func take(_ w: Float8, _ i: Int, _ slot: Int)
    mutating func take1(_ w: Float, _ i: Int)
    /// Sixteen weights w = q·d, columns i ..< i+16 (q exact small integers, d splat).
    mutating func take16(_ q0: Float8, _ q1: Float8, _ d: Float8, _ i: Int, _ slot: Int)
    /// Thirty-two weights w = q·d, columns i ..< i+32.
    mutating func take32(_ q0: Float8, _ q1: Float8, _ q2: Float8, _ q3: Float8, _ d: Float8, _ i: Int, _ slot: Int)
}
fileprivate extension WeightSink {
    @inline(__always) mutating func take16(_ q0: Float8, _ q1: Float8, _ d: Float8, _ i: Int, _ slot: Int) {
        take(q0 * d, i, slot)
        take(q1 * d, i + 8, slot + 1)
    }
    @inline(__always)
    mutating func take32(_ q0: Float8, _ q1: Float8, _ q2: Float8, _ q3: Float8, _ d: Float8, _ i: Int, _ slot: Int) {
        take(q0 * d, i, slot)
        take(q1 * d, i + 8, slot + 1)
        take(q2 * d, i + 16, slot + 2)
        take(q3 * d, i + 24, slot + 3)
    }
}

/// Σ w·x with four vector accumulators.
fileprivate struct DotSink: WeightSink {
    let x: UnsafePointer<Float>
    var a0 = Float8(), a1 = Float8(), a2 = Float8(), a3 = Float8()
    var tail: Float = 0
    @inline(__always) init(_ x: UnsafePointer<Float>) { self.x = x }
    /// acc[slot] += a·b
    @inline(__always) mutating func add(_ a: Float8, _ b: Float8, _ slot: Int) {
        switch slot & 3 {
        case 0: a0 = madd(a, b, a0)
        case 1: a1 = madd(a, b, a1)
        case 2: a2 = madd(a, b, a2)
        default: a3 = madd(a, b, a3)
        }
    }
    @inline(__always) mutating func take(_ w: Float8, _ i: Int, _ slot: Int) { add(w, load8(x + i), slot) }
    @inline(__always) mutating func take1(_ w: Float, _ i: Int) { tail += w * x[i] }
    @inline(__always) mutating func take16(_ q0: Float8, _ q1: Float8, _ d: Float8, _ i: Int, _ slot: Int) {
        add(madd(q1, load8(x + i + 8), q0 * load8(x + i)), d, slot)
    }
    @inline(__always)
    mutating func take32(_ q0: Float8, _ q1: Float8, _ q2: Float8, _ q3: Float8, _ d: Float8, _ i: Int, _ slot: Int) {
        let p = x + i
        add(madd(q1, load8(p + 8), q0 * load8(p)) + madd(q3, load8(p + 24), q2 * load8(p + 16)), d, slot)
    }
    @inline(__always) var total: Float { lanesSum((a0 + a1) + (a2 + a3)) + tail }
}

/// A compile-time vector count for `MultiDotSink` (generic specialisation turns the
/// `if C.n > k` tests into straight-line code).
fileprivate protocol VectorCount { static var n: Int { get } }
fileprivate enum Count2: VectorCount { static var n: Int { 2 } }
fileprivate enum Count3: VectorCount { static var n: Int { 3 } }
fileprivate enum Count4: VectorCount { static var n: Int { 4 } }
fileprivate enum Count5: VectorCount { static var n: Int { 5 } }
fileprivate enum Count6: VectorCount { static var n: Int { 6 } }
fileprivate enum Count7: VectorCount { static var n: Int { 7 } }
fileprivate enum Count8: VectorCount { static var n: Int { 8 } }

/// C.n dot products sharing each weight vector: x[k] = x + k·ldx. Up to four vectors get
/// two accumulators each (alternating by slot), more get one (registers run out).
fileprivate struct MultiDotSink<C: VectorCount>: WeightSink {
    let x: UnsafePointer<Float>
    let ldx: Int
    var a0 = Float8(), a1 = Float8(), a2 = Float8(), a3 = Float8()
    var a4 = Float8(), a5 = Float8(), a6 = Float8(), a7 = Float8()
    var b0 = Float8(), b1 = Float8(), b2 = Float8(), b3 = Float8()
    var tails = SIMD8<Float>()
    @inline(__always) init(_ x: UnsafePointer<Float>, _ ldx: Int) { self.x = x; self.ldx = ldx }

    @inline(__always) mutating func take(_ w: Float8, _ i: Int, _ slot: Int) {
        let p = x + i, ld = ldx
        if C.n <= 4 && slot & 1 == 1 {
            b0 = madd(w, load8(p), b0)
            if C.n > 1 { b1 = madd(w, load8(p + ld), b1) }
            if C.n > 2 { b2 = madd(w, load8(p + 2 * ld), b2) }
            if C.n > 3 { b3 = madd(w, load8(p + 3 * ld), b3) }
        } else {
            a0 = madd(w, load8(p), a0)
            if C.n > 1 { a1 = madd(w, load8(p + ld), a1) }
            if C.n > 2 { a2 = madd(w, load8(p + 2 * ld), a2) }
            if C.n > 3 { a3 = madd(w, load8(p + 3 * ld), a3) }
            if C.n > 4 { a4 = madd(w, load8(p + 4 * ld), a4) }
            if C.n > 5 { a5 = madd(w, load8(p + 5 * ld), a5) }
            if C.n > 6 { a6 = madd(w, load8(p + 6 * ld), a6) }
            if C.n > 7 { a7 = madd(w, load8(p + 7 * ld), a7) }
        }
    }
    @inline(__always) mutating func take1(_ w: Float, _ i: Int) {
        for k in 0..<C.n { tails[k] += w * x[k * ldx + i] }
    }
    @inline(__always) func total(_ k: Int) -> Float {
        let v: Float8
        switch k {
        case 0: v = a0 + b0
        case 1: v = a1 + b1
        case 2: v = a2 + b2
        case 3: v = a3 + b3
        case 4: v = a4
        case 5: v = a5
        case 6: v = a6
        default: v = a7
        }
        return lanesSum(v) + tails[k]
    }
}

/// Writes the weights out (a vectorised dequantiser).
fileprivate struct StoreSink: WeightSink {
    let dst: UnsafeMutablePointer<Float>
    @inline(__always) mutating func take(_ w: Float8, _ i: Int, _ slot: Int) {
        UnsafeMutableRawPointer(dst + i).storeBytes(of: w, as: Float8.self)
    }
    @inline(__always) mutating func take1(_ w: Float, _ i: Int) { dst[i] = w }
}

// MARK: - scratch row → sink

@inline(__always) private func signedFloats(_ q: UnsafePointer<UInt8>, _ i: Int) -> Float8 {
    Float8(SIMD8<Int32>(truncatingIfNeeded: UnsafeRawPointer(q + i).loadUnaligned(as: SIMD8<Int8>.self)))
}
@inline(__always) private func unsignedFloats(_ q: UnsafePointer<UInt8>, _ i: Int) -> Float8 {
    Float8(SIMD8<Int32>(truncatingIfNeeded: UnsafeRawPointer(q + i).loadUnaligned(as: SIMD8<UInt8>.self)))
}

/// w = q·scale[g] for signed bytes q, 32 columns per group.
@inline(__always)
private func feedSigned32<S: WeightSink>(_ t: RowScratch, _ groups: Int, _ s: inout S) {
    @inline(__always) func group(_ g: Int, _ slot: Int) {
        let i = 32 * g
        s.take32(signedFloats(t.q, i), signedFloats(t.q, i + 8), signedFloats(t.q, i + 16), signedFloats(t.q, i + 24),
                 Float8(repeating: t.scale[g]), i, slot)
    }
    var g = 0
    while g + 2 <= groups { group(g, 0); group(g + 1, 1); g += 2 }
    if g < groups { group(g, 2) }
}

/// w = q·scale[g] for signed bytes q, 16 columns per group.
@inline(__always)
private func feedSigned16<S: WeightSink>(_ t: RowScratch, _ groups: Int, _ s: inout S) {
    var g = 0
    while g + 2 <= groups {
        let i = 16 * g
        s.take16(signedFloats(t.q, i), signedFloats(t.q, i + 8), Float8(repeating: t.scale[g]), i, 0)
        s.take16(signedFloats(t.q, i + 16), signedFloats(t.q, i + 24), Float8(repeating: t.scale[g + 1]), i + 16, 1)
        g += 2
    }
    if g < groups {
        s.take16(signedFloats(t.q, 16 * g), signedFloats(t.q, 16 * g + 8), Float8(repeating: t.scale[g]), 16 * g, 2)
    }
}

/// w = scale[g]·q + offset[g] for unsigned bytes q, 32 columns per group (the order of
/// Quant.swift's `d*q + m`; for `d*q - m` the offset is stored negated, and a − b is
/// a + (−b) exactly).
@inline(__always)
private func feedAffine32<S: WeightSink>(_ t: RowScratch, _ groups: Int, _ s: inout S) {
    for g in 0..<groups {
        let i = 32 * g
        let d = Float8(repeating: t.scale[g]), m = Float8(repeating: t.offset[g])
        s.take(madd(d, unsignedFloats(t.q, i), m), i, 0)
        s.take(madd(d, unsignedFloats(t.q, i + 8), m), i + 8, 1)
        s.take(madd(d, unsignedFloats(t.q, i + 16), m), i + 16, 2)
        s.take(madd(d, unsignedFloats(t.q, i + 24), m), i + 24, 3)
    }
}

// MARK: - fp16 scales

@inline(__always) private func half(_ p: UnsafeRawPointer, _ at: Int) -> Float {
    halfToFloat(halfBits(p, at))
}
@inline(__always) private func halfBits(_ p: UnsafeRawPointer, _ at: Int) -> UInt16 {
    UInt16(littleEndian: p.loadUnaligned(fromByteOffset: at, as: UInt16.self))
}
/// Eight 16-bit values from memory, zero-extended (a widening load vectorises reliably).
@inline(__always) private func widen16(_ p: UnsafeRawPointer, _ at: Int) -> SIMD8<UInt32> {
    SIMD8<UInt32>(truncatingIfNeeded: p.loadUnaligned(fromByteOffset: at, as: SIMD8<UInt16>.self))
}

/// Eight fp16 values to float32, exactly: the exponent and mantissa moved into float
/// position make the float 2^-112 times the value (subnormal halves become subnormal
/// floats), and multiplying by 2^112 is exact (assumes the CPU does not flush subnormal
/// inputs to zero, which Swift never asks for). Inf/NaN (exponent 31) come out finite,
/// so `special` collects a flag for them; the caller then redoes the lot in scalar.
@inline(__always)
private func halvesToFloats(_ h: SIMD8<UInt32>, _ special: inout SIMD8<UInt32>) -> Float8 {
    let f = unsafeBitCast((h & 0x7fff) &<< 13, to: Float8.self) * Float8(repeating: 0x1p112)
    special |= (h & 0x7c00) &+ 0x0400            // bit 15 set iff the exponent is all ones
    return unsafeBitCast(unsafeBitCast(f, to: SIMD8<UInt32>.self) | (h & 0x8000) &<< 16, to: Float8.self)
}

/// dst[i] = halfToFloat(src[i]) for i < n (bit-equal). Reads and writes up to 7 entries
/// past n (the scratch arrays have room), zeroing the extra source entries first.
@inline(__always)
private func convertHalves(_ src: UnsafeMutablePointer<UInt16>, _ dst: UnsafeMutablePointer<Float>, _ n: Int) {
    var special = SIMD8<UInt32>()
    for k in n..<(n + 7) / 8 * 8 { src[k] = 0 }
    var i = 0
    while i < n {
        UnsafeMutableRawPointer(dst + i).storeBytes(of: halvesToFloats(widen16(src + i, 0), &special), as: Float8.self)
        i += 8
    }
    if (special & 0x8000).max() != 0 {
        for k in 0..<n { dst[k] = halfToFloat(src[k]) }
    }
}

// MARK: - direct rows

fileprivate enum DecodeF32: RowDecoder {
    @inline(__always)
    static func decode<S: WeightSink>(_ row: UnsafeRawPointer, _ n: Int, _ t: RowScratch, _ s: inout S) {
        var i = 0
        while i + 32 <= n {
            s.take(row.loadUnaligned(fromByteOffset: 4 * i, as: Float8.self), i, 0)
            s.take(row.loadUnaligned(fromByteOffset: 4 * i + 32, as: Float8.self), i + 8, 1)
            s.take(row.loadUnaligned(fromByteOffset: 4 * i + 64, as: Float8.self), i + 16, 2)
            s.take(row.loadUnaligned(fromByteOffset: 4 * i + 96, as: Float8.self), i + 24, 3)
            i += 32
        }
        while i + 8 <= n { s.take(row.loadUnaligned(fromByteOffset: 4 * i, as: Float8.self), i, 0); i += 8 }
        while i < n { s.take1(row.loadUnaligned(fromByteOffset: 4 * i, as: Float.self), i); i += 1 }
    }
}

// fp16 rows: converted in chunks of up to 256 values into the scratch floats (the
// vector conversion above, with the scalar redo for Inf/NaN), then read as fp32.
fileprivate enum DecodeF16: RowDecoder {
    @inline(__always)
    static func decode<S: WeightSink>(_ row: UnsafeRawPointer, _ n: Int, _ t: RowScratch, _ s: inout S) {
        let src = row.assumingMemoryBound(to: UInt16.self)
        var i = 0
        while i < n {
            let k = min(256, n - i)
            t.scaleBits.update(from: src + i, count: k)      // a copy: convertHalves pads
            convertHalves(t.scaleBits, t.floats, k)
            var j = 0
            while j + 8 <= k { s.take(load8(t.floats + j), i + j, j >> 3); j += 8 }
            while j < k { s.take1(t.floats[j], i + j); j += 1 }
            i += k
        }
    }
}

fileprivate enum DecodeBF16: RowDecoder {
    @inline(__always) static func bf16x8(_ row: UnsafeRawPointer, _ at: Int) -> Float8 {
        unsafeBitCast(widen16(row, at) &<< 16, to: Float8.self)
    }
    @inline(__always)
    static func decode<S: WeightSink>(_ row: UnsafeRawPointer, _ n: Int, _ t: RowScratch, _ s: inout S) {
        var i = 0
        while i + 16 <= n {
            s.take(bf16x8(row, 2 * i), i, 0)
            s.take(bf16x8(row, 2 * i + 16), i + 8, 1)
            i += 16
        }
        while i + 8 <= n { s.take(bf16x8(row, 2 * i), i, 2); i += 8 }
        while i < n { s.take1(bf16ToFloat(halfBits(row, 2 * i)), i); i += 1 }
    }
}

// block_q8_0 (34 bytes): d, qs[32] int8; w = q·d. The quants are already signed bytes,
// read in place after a first pass that converts the row's scales.
fileprivate enum DecodeQ8_0: RowDecoder {
    @inline(__always)
    static func decode<S: WeightSink>(_ row: UnsafeRawPointer, _ columns: Int, _ t: RowScratch, _ s: inout S) {
        let blocks = columns / 32
        for b in 0..<blocks { t.scaleBits[b] = halfBits(row, 34 * b) }
        convertHalves(t.scaleBits, t.scale, blocks)
        let q = row.assumingMemoryBound(to: UInt8.self) + 2
        for b in 0..<blocks {
            let blk = q + 34 * b
            s.take32(signedFloats(blk, 0), signedFloats(blk, 8), signedFloats(blk, 16), signedFloats(blk, 24),
                     Float8(repeating: t.scale[b]), 32 * b, b & 1)
        }
    }
}

// MARK: - unpacking blocks into the scratch row
//
// Each mirrors its scalar twin in Quant.swift operation for operation (the comment there
// gives the block layout). Little-endian only, like the rest of the GGUF reader.

fileprivate typealias Bytes32 = SIMD32<UInt8>
fileprivate typealias Words4 = SIMD4<UInt64>     // 32 bytes for bitwise ops and shifts (see the top)

private let nibbleMask: UInt64 = 0x0f0f_0f0f_0f0f_0f0f

@inline(__always) private func words(_ b: Bytes32) -> Words4 { unsafeBitCast(b, to: Words4.self) }
@inline(__always) private func bytes(_ w: Words4) -> Bytes32 { unsafeBitCast(w, to: Bytes32.self) }
@inline(__always) private func load32(_ p: UnsafeRawPointer, _ at: Int) -> Words4 {
    p.loadUnaligned(fromByteOffset: at, as: Words4.self)
}
@inline(__always) private func put32(_ w: Words4, _ t: RowScratch, _ at: Int) {
    UnsafeMutableRawPointer(t.q + at).storeBytes(of: w, as: Words4.self)
}
/// Byte-wise q − k (wrapping), with Swift's native byte subtraction.
@inline(__always) private func minus(_ w: Words4, _ k: UInt8) -> Words4 {
    words(bytes(w) &- Bytes32(repeating: k))
}
/// 16 quant bytes → 32 nibbles in element order: the 16 low nibbles, then the 16 high.
@inline(__always) private func nibbles(_ p: UnsafeRawPointer, _ at: Int) -> Words4 {
    let v = p.loadUnaligned(fromByteOffset: at, as: SIMD2<UInt64>.self)
    let lo = unsafeBitCast(v & nibbleMask, to: SIMD16<UInt8>.self)
    let hi = unsafeBitCast((v &>> 4) & nibbleMask, to: SIMD16<UInt8>.self)
    return words(Bytes32(lowHalf: lo, highHalf: hi))
}
/// Bit j of `bits` → byte j all ones, else zero: byte k of `bits` splat to bytes 8k…8k+7,
/// one bit tested in each.
@inline(__always) private func bitMask32(_ bits: UInt32) -> Words4 {
    @inline(__always) func splat(_ k: UInt32) -> SIMD8<UInt8> { SIMD8(repeating: UInt8(truncatingIfNeeded: bits &>> (8 * k))) }
    let spread = Bytes32(lowHalf: SIMD16(lowHalf: splat(0), highHalf: splat(1)), highHalf: SIMD16(lowHalf: splat(2), highHalf: splat(3)))
    let m = Words4(repeating: 0x8040_2010_0804_0201)
    return unsafeBitCast(bytes(words(spread) & m) .== bytes(m), to: Words4.self)
}

// block_q4_0 (18): d, qs[16]; element j<16 low nibble of qs[j], j≥16 high nibble of
// qs[j-16]; w = d·(q−8).
fileprivate enum DecodeQ4_0: RowDecoder {
    @inline(__always)
    static func decode<S: WeightSink>(_ row: UnsafeRawPointer, _ columns: Int, _ t: RowScratch, _ s: inout S) {
        let blocks = columns / 32
        var blk = row
        for b in 0..<blocks {
            t.scaleBits[b] = halfBits(blk, 0)
            put32(minus(nibbles(blk, 2), 8), t, 32 * b)
            blk += 18
        }
        convertHalves(t.scaleBits, t.scale, blocks)
        feedSigned32(t, blocks, &s)
    }
}

// block_q4_1 (20): d, m, qs[16]; w = d·q + m.
fileprivate enum DecodeQ4_1: RowDecoder {
    @inline(__always)
    static func decode<S: WeightSink>(_ row: UnsafeRawPointer, _ columns: Int, _ t: RowScratch, _ s: inout S) {
        let blocks = columns / 32
        var blk = row
        for b in 0..<blocks {
            t.scaleBits[b] = halfBits(blk, 0); t.offsetBits[b] = halfBits(blk, 2)
            put32(nibbles(blk, 4), t, 32 * b)
            blk += 20
        }
        convertHalves(t.scaleBits, t.scale, blocks)
        convertHalves(t.offsetBits, t.offset, blocks)
        feedAffine32(t, blocks, &s)
    }
}

// block_q5_0 (22): d, qh (bit j = 5th bit of element j), qs[16]; w = d·(q−16), and
// q − 16 in two's complement is the low nibble with 0xF0 or-ed in where the 5th bit is 0.
fileprivate enum DecodeQ5_0: RowDecoder {
    @inline(__always)
    static func decode<S: WeightSink>(_ row: UnsafeRawPointer, _ columns: Int, _ t: RowScratch, _ s: inout S) {
        let blocks = columns / 32
        var blk = row
        for b in 0..<blocks {
            t.scaleBits[b] = halfBits(blk, 0)
            let high = bitMask32(UInt32(littleEndian: blk.loadUnaligned(fromByteOffset: 2, as: UInt32.self)))
            put32(nibbles(blk, 6) | (~high & Words4(repeating: 0xf0f0_f0f0_f0f0_f0f0)), t, 32 * b)
            blk += 22
        }
        convertHalves(t.scaleBits, t.scale, blocks)
        feedSigned32(t, blocks, &s)
    }
}

// block_q5_1 (24): d, m, qh, qs[16]; w = d·q + m.
fileprivate enum DecodeQ5_1: RowDecoder {
    @inline(__always)
    static func decode<S: WeightSink>(_ row: UnsafeRawPointer, _ columns: Int, _ t: RowScratch, _ s: inout S) {
        let blocks = columns / 32
        var blk = row
        for b in 0..<blocks {
            t.scaleBits[b] = halfBits(blk, 0); t.offsetBits[b] = halfBits(blk, 2)
            let high = bitMask32(UInt32(littleEndian: blk.loadUnaligned(fromByteOffset: 4, as: UInt32.self)))
            put32(nibbles(blk, 8) | (high & Words4(repeating: 0x1010_1010_1010_1010)), t, 32 * b)
            blk += 24
        }
        convertHalves(t.scaleBits, t.scale, blocks)
        convertHalves(t.offsetBits, t.offset, blocks)
        feedAffine32(t, blocks, &s)
    }
}

/// Scales and negated mins of the 8 sub-blocks of 32 of each Q4_K/Q5_K block of a row,
/// w = (d·sc)·q − (dmin·m): the fp16 d and dmin of all blocks converted eight at a time,
/// then the 8 packed 6-bit (sc, m) pairs of a block unpacked in the 8 lanes of a vector,
/// as `scaleMinK4` does one at a time: for j < 4, sc = s[j] & 63 and m = s[j+4] & 63; for
/// j ≥ 4, sc = (s[j+4] & 15) | (s[j-4] >> 6) << 4 and m = (s[j+4] >> 4) | (s[j] >> 6) << 4.
@inline(__always) private func scalesK(_ row: UnsafeRawPointer, _ blocks: Int, _ blockBytes: Int, _ t: RowScratch) {
    for b in 0..<blocks {
        t.scaleBits[b] = halfBits(row, blockBytes * b)
        t.offsetBits[b] = halfBits(row, blockBytes * b + 2)
    }
    let padded = (blocks + 7) / 8 * 8
    let d = t.floats, dmin = t.floats + padded      // free at this point; ≥ 2·padded floats
    convertHalves(t.scaleBits, d, blocks)
    convertHalves(t.offsetBits, dmin, blocks)
    typealias U = SIMD8<UInt32>
    let low4 = U(~0, ~0, ~0, ~0, 0, 0, 0, 0)
    @inline(__always) func bytes8(_ p: UnsafeRawPointer) -> U { U(truncatingIfNeeded: p.loadUnaligned(as: SIMD8<UInt8>.self)) }
    @inline(__always) func floats(_ u: U) -> Float8 {   // exact for u < 2^23: 2^23 + u, minus 2^23
        unsafeBitCast(u | 0x4B00_0000, to: Float8.self) - Float8(repeating: 8_388_608)
    }
    for b in 0..<blocks {
        let blk = row + blockBytes * b
        let a = bytes8(blk + 4), hi = bytes8(blk + 8), lo = bytes8(blk)    // s[j], s[j+4], s[j-4] (lanes ≥ 4)
        let sc = (low4 & (a & 63)) | (~low4 & ((hi & 15) | (lo &>> 6) &<< 4))
        let m = (low4 & (hi & 63)) | (~low4 & ((hi &>> 4) | (a &>> 6) &<< 4))
        UnsafeMutableRawPointer(t.scale + 8 * b).storeBytes(of: floats(sc) * Float8(repeating: d[b]), as: Float8.self)
        // m·(−dmin) = −(dmin·m) exactly, signed zeros included (SIMD's prefix minus is
        // 0 − x, which turns −(+0) into +0).
        UnsafeMutableRawPointer(t.offset + 8 * b).storeBytes(of: floats(m) * Float8(repeating: -dmin[b]), as: Float8.self)
    }
}

// block_q4_K (144): d, dmin, scales[12], qs[128]; element c·64 + l is the low nibble of
// qs[c·32 + l] (sub-block 2c), c·64 + 32 + l the high nibble (sub-block 2c+1).
fileprivate enum DecodeQ4_K: RowDecoder {
    @inline(__always)
    static func decode<S: WeightSink>(_ row: UnsafeRawPointer, _ columns: Int, _ t: RowScratch, _ s: inout S) {
        let blocks = columns / 256
        scalesK(row, blocks, 144, t)
        var blk = row
        for b in 0..<blocks {
            for c in 0..<4 {
                let v = load32(blk, 16 + 32 * c)
                put32(v & nibbleMask, t, 256 * b + 64 * c)
                put32((v &>> 4) & nibbleMask, t, 256 * b + 64 * c + 32)
            }
            blk += 144
        }
        feedAffine32(t, 8 * blocks, &s)
    }
}

// block_q5_K (176): d, dmin, scales[12], qh[32], qs[128]; as Q4_K with bit 2c (low
// nibbles) or 2c+1 (high nibbles) of qh[l] as the 5th bit.
fileprivate enum DecodeQ5_K: RowDecoder {
    @inline(__always)
    static func decode<S: WeightSink>(_ row: UnsafeRawPointer, _ columns: Int, _ t: RowScratch, _ s: inout S) {
        let blocks = columns / 256
        let ones: UInt64 = 0x0101_0101_0101_0101
        scalesK(row, blocks, 176, t)
        var blk = row
        for b in 0..<blocks {
            let qh = load32(blk, 16)
            for c in 0..<4 {
                let v = load32(blk, 48 + 32 * c)
                put32((v & nibbleMask) | ((qh &>> UInt64(2 * c)) & ones) &<< 4, t, 256 * b + 64 * c)
                put32(((v &>> 4) & nibbleMask) | ((qh &>> UInt64(2 * c + 1)) & ones) &<< 4, t, 256 * b + 64 * c + 32)
            }
            blk += 176
        }
        feedAffine32(t, 8 * blocks, &s)
    }
}

// block_q6_K (210): ql[128], qh[64], scales[16] int8, d. Element h·128 + s·32 + l: low 4
// bits from ql[h·64 + (s%2)·32 + l] (nibble s/2), high 2 bits from qh[h·32 + l] >> 2s;
// scale h·8 + 2s + l/16, i.e. one per 16 columns in order; w = (d·scale)·(q − 32).
fileprivate enum DecodeQ6_K: RowDecoder {
    @inline(__always)
    static func decode<S: WeightSink>(_ row: UnsafeRawPointer, _ columns: Int, _ t: RowScratch, _ s: inout S) {
        let blocks = columns / 256
        let two: UInt64 = 0x0303_0303_0303_0303
        var blk = row
        for b in 0..<blocks {
            let d = Float8(repeating: half(blk, 208))
            let sc = blk + 192
            // The 16 int8 scales, converted from memory (a clean widening load).
            UnsafeMutableRawPointer(t.scale + 16 * b).storeBytes(of: signedFloats(sc.assumingMemoryBound(to: UInt8.self), 0) * d,
                                                                 as: Float8.self)
            UnsafeMutableRawPointer(t.scale + 16 * b + 8).storeBytes(of: signedFloats(sc.assumingMemoryBound(to: UInt8.self), 8) * d,
                                                                     as: Float8.self)
            for h in 0..<2 {
                let l0 = load32(blk, 64 * h), l1 = load32(blk, 64 * h + 32), qh = load32(blk, 128 + 32 * h)
                let o = 256 * b + 128 * h
                put32(minus((l0 & nibbleMask) | (qh & two) &<< 4, 32), t, o)
                put32(minus((l1 & nibbleMask) | ((qh &>> 2) & two) &<< 4, 32), t, o + 32)
                put32(minus(((l0 &>> 4) & nibbleMask) | ((qh &>> 4) & two) &<< 4, 32), t, o + 64)
                put32(minus(((l1 &>> 4) & nibbleMask) | ((qh &>> 6) & two) &<< 4, 32), t, o + 96)
            }
            blk += 210
        }
        feedSigned16(t, 16 * blocks, &s)
    }
}
