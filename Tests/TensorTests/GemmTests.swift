import CGemm
import Foundation
import Testing
import Tensor

private let hasAVX512 = cgemm_available() != 0

/// Our AVX-512 sgemm (Sources/CGemm) and the engine's entry point `gemm` (that kernel, or
/// OpenBLAS without AVX-512) against a naive product in Double: every transpose, edge sizes
/// around the 12 × 32 tile and the 256-step k blocks, alpha/beta, padded leading dimensions
/// (the padding columns of C must stay untouched), one and two threads.
@Suite struct GemmTests {
    /// fp32 accumulation of k products in any order is off by at most k·u relative to the
    /// sum of the terms' magnitudes (Higham, Accuracy and Stability, 3.1), u = 2⁻²⁴; with
    /// random rounding errors the error grows as √k·u instead (Higham and Mary 2019). The
    /// measured worst here is 1.1 √(k+2)·u for the edge sizes and 0.2 for the model's sizes,
    /// with our kernel and with OpenBLAS (k+2: alpha and beta·C add two roundings); 4 leaves
    /// room for other summation orders and stays 17× under k·u at the model's k = 4864.
    static let roundingFactor = 4.0

    /// A product's inputs: op(A) (m × k) and op(B) (k × n) as logical row-major matrices,
    /// stored transposed or not by `stored`; C (m × (n + pad)) as it is before the product.
    struct Product {
        let m, n, k, pad: Int
        let alpha, beta: Float
        let a, b, c: [Float]
        var ldc: Int { n + pad }

        init(m: Int, n: Int, k: Int, alpha: Float, beta: Float, pad: Int, seed: UInt64) {
            self.m = m; self.n = n; self.k = k; self.pad = pad; self.alpha = alpha; self.beta = beta
            var rng = SplitMix64(seed: seed)
            a = (0..<(m * k)).map { _ in rng.nextUnit() * 2 - 1 }
            b = (0..<(k * n)).map { _ in rng.nextUnit() * 2 - 1 }
            c = (0..<(m * (n + pad))).map { _ in beta == 0 ? Float.nan : rng.nextUnit() * 2 - 1 }   // beta 0 never reads C
        }

        /// `rows × columns` laid out row-major (or transposed) with `pad` unused elements after
        /// each stored row, filled with a value no product may pick up.
        static func stored(_ x: [Float], rows: Int, columns: Int, transposed: Bool, pad: Int) -> (values: [Float], ld: Int) {
            let storedRows = transposed ? columns : rows, ld = (transposed ? rows : columns) + pad
            var out = [Float](repeating: 1e30, count: storedRows * ld)
            for i in 0..<rows {
                for j in 0..<columns { out[transposed ? j * ld + i : i * ld + j] = x[i * columns + j] }
            }
            return (out, ld)
        }

        /// C in Double and, per element, the sum of its terms' magnitudes (the scale of its error).
        func reference() -> (c: [Double], scale: [Double]) {
            var c = [Double](repeating: 0, count: m * n), scale = c
            let alpha = Double(self.alpha), beta = Double(self.beta)
            let bd = b.map(Double.init), bAbs = b.map { abs(Double($0)) }
            c.withUnsafeMutableBufferPointer { c in
                scale.withUnsafeMutableBufferPointer { s in
                    bd.withUnsafeBufferPointer { bd in
                        bAbs.withUnsafeBufferPointer { bAbs in
                            // Rows in blocks, so that each row of B is read from cache for all of them.
                            for i0 in stride(from: 0, to: m, by: 16) {
                                for p in 0..<k {
                                    for i in i0..<min(i0 + 16, m) {
                                        let x = alpha * Double(a[i * k + p]), xAbs = abs(x)
                                        for j in 0..<n {
                                            c[i * n + j] += x * bd[p * n + j]
                                            s[i * n + j] += xAbs * bAbs[p * n + j]
                                        }
                                    }
                                }
                            }
                            for i in 0..<m {
                                if beta != 0 {
                                    for j in 0..<n {
                                        let y = beta * Double(self.c[i * ldc + j])
                                        c[i * n + j] += y
                                        s[i * n + j] += abs(y)
                                    }
                                }
                            }
                        }
                    }
                }
            }
            return (c, scale)
        }

        /// C after `sgemm(transA, transB, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc)`.
        func run(transA: Bool, transB: Bool,
                 _ sgemm: (Bool, Bool, [Float], Int, [Float], Int, inout [Float]) -> Void) -> [Float] {
            let (sa, lda) = Product.stored(a, rows: m, columns: k, transposed: transA, pad: pad)
            let (sb, ldb) = Product.stored(b, rows: k, columns: n, transposed: transB, pad: pad)
            var got = c
            sgemm(transA, transB, sa, lda, sb, ldb, &got)
            return got
        }

        /// The worst error over C in units of √(k+2)·u·(its scale); nil when a padding
        /// element of C changed.
        func error(of got: [Float], against ref: (c: [Double], scale: [Double])) -> Double? {
            let unit = (Double(k + 2)).squareRoot() * Double(Float.ulpOfOne / 2)
            var worst = 0.0
            for i in 0..<m {
                for j in 0..<ldc {
                    let g = got[i * ldc + j]
                    if j >= n {
                        let was = c[i * ldc + j]
                        if !(was.isNaN && g.isNaN) && was.bitPattern != g.bitPattern { return nil }
                        continue
                    }
                    let diff = abs(Double(g) - ref.c[i * n + j]), scale = ref.scale[i * n + j]
                    let e = diff == 0 ? 0 : diff.isNaN ? .infinity : diff / (unit * scale)
                    worst = max(worst, e)
                }
            }
            return worst
        }
    }

    /// The engine's entry point, as every product of the model calls it.
    static func engine(m: Int, n: Int, k: Int, alpha: Float, beta: Float, ldc: Int) -> (Bool, Bool, [Float], Int, [Float], Int, inout [Float]) -> Void {
        { transA, transB, a, lda, b, ldb, c in
            gemm(transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda, b: b, ldb: ldb, beta: beta, c: &c, ldc: ldc)
        }
    }

    /// Edge sizes through the engine's entry point (on any machine) and, with AVX-512, through
    /// our kernel directly on one and two threads (the entry point sends fewer than 8 rows to OpenBLAS).
    @Test func edgeSizes() {
        let sizes = [1, 7, 13, 31, 33, 64, 65, 127]
        var cases = 0, worst = 0.0
        for (im, m) in sizes.enumerated() {
            for (iN, n) in sizes.enumerated() {
                for (ik, k) in sizes.enumerated() where ik % 2 == 0 || k == 127 {
                    let v = im + iN + ik
                    let p = Product(m: m, n: n, k: k, alpha: v % 3 == 0 ? 1 : -0.5, beta: [0, 1, 0.7][v % 3],
                                    pad: v % 4 == 1 ? 3 : 0, seed: UInt64(v))
                    let ref = p.reference()
                    for transA in [false, true] {
                        for transB in [false, true] {
                            var runs = [("gemm", GemmTests.engine(m: m, n: n, k: k, alpha: p.alpha, beta: p.beta, ldc: p.ldc))]
                            if hasAVX512 {
                                let threads = Int32(1 + v % 2)
                                runs.append(("cgemm_sgemm, \(threads) threads", { tA, tB, a, lda, b, ldb, c in
                                    cgemm_sgemm(tA ? 1 : 0, tB ? 1 : 0, m, n, k, p.alpha, a, lda, b, ldb, p.beta, &c, p.ldc, threads)
                                }))
                            }
                            for (name, sgemm) in runs {
                                let e = p.error(of: p.run(transA: transA, transB: transB, sgemm), against: ref)
                                #expect(e != nil && e! <= GemmTests.roundingFactor,
                                        "\(name) \(transA) \(transB) m \(m) n \(n) k \(k): \(String(describing: e))")
                                worst = max(worst, e ?? .infinity)
                                cases += 1
                            }
                        }
                    }
                }
            }
        }
        #expect(cases == 4 * 8 * 8 * 5 * (hasAVX512 ? 2 : 1))
        #expect(worst <= GemmTests.roundingFactor)
    }

    /// The model's sizes (Qwen 0.5B: 896, 4864) through the engine's entry point, two threads.
    @Test func modelSizes() {
        let shapes = [(130, 4864, 896), (257, 896, 4864), (4864, 33, 300), (896, 129, 1000), (100, 896, 896), (8, 4864, 896)]
        for (i, (m, n, k)) in shapes.enumerated() {
            let p = Product(m: m, n: n, k: k, alpha: 1, beta: i % 2 == 0 ? 0 : 1, pad: i % 3, seed: UInt64(100 + i))
            let ref = p.reference()
            for transA in [false, true] {
                for transB in [false, true] {
                    let got = p.run(transA: transA, transB: transB, GemmTests.engine(m: m, n: n, k: k, alpha: 1, beta: p.beta, ldc: p.ldc))
                    let e = p.error(of: got, against: ref)
                    #expect(e != nil && e! <= GemmTests.roundingFactor, "\(transA) \(transB) m \(m) n \(n) k \(k): \(String(describing: e))")
                }
            }
        }
    }

    /// alpha 0 or k 0: C = beta · C, as BLAS (beta 0 sets C to 0 even when it held NaN).
    @Test(.enabled(if: hasAVX512, "our kernel runs only on a CPU with AVX-512"))
    func nothingToMultiply() {
        let a: [Float] = [1, 2], b: [Float] = [3, 4]
        var c: [Float] = [.nan, 5, 6, 7]
        cgemm_sgemm(0, 0, 2, 2, 0, 1, a, 1, b, 2, 0, &c, 2, 1)
        #expect(c == [0, 0, 0, 0])
        c = [1, 2, 3, 4]
        cgemm_sgemm(0, 0, 2, 2, 1, 0, a, 1, b, 2, 2, &c, 2, 1)
        #expect(c == [2, 4, 6, 8])
    }

    /// On an AVX-512 machine (this project's) the engine runs our kernel unless told otherwise.
    @Test(.enabled(if: hasAVX512, "without AVX-512 the engine has only OpenBLAS"))
    func kernelChosenOnAVX512() {
        #expect(gemmUsesAVX512 == (ProcessInfo.processInfo.environment["REALIGN_GEMM"] != "openblas"))
    }
}
