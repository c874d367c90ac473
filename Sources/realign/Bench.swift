import ArgumentParser
import Foundation
import Model
import Tensor

struct Bench: CheckedCommand {
    static let configuration = CommandConfiguration(
        abstract: "Prefill and decode speed, and peak memory.",
        discussion: "Prefill: a batch of prompts in one forward pass. Decode: new tokens per second at batch 1 and 16 (no stop tokens), after the prompt.")

    @Argument(help: "GGUF file, HF folder or embedded model name.") var model: String
    @Option(parsing: .unconditional, help: "Prompts in the prefill batch.") var prefillBatch = 16
    @Option(parsing: .unconditional, help: "Tokens per prefill prompt (at most the model's context).") var prefillTokens = 128
    @Option(parsing: .unconditional, help: "New tokens per decode measurement (after a \(Bench.decodePromptTokens)-token prompt, within the context).") var decodeTokens = 32
    @Option(parsing: .unconditional, help: "Repetitions (the best is reported; at most \(Bench.maxRepeats)).") var repeats = 3
    @Flag(help: "Print JSON.") var json = false

    /// Prompt tokens before a decode measurement.
    static let decodePromptTokens = 32
    /// Prefill tokens of a batch (prompts × tokens): 32× the default 16 × 128; the activations
    /// of a batch that size already take several GB for a 0.5B model.
    static let maxPrefillTokens = 65_536
    /// Each repetition runs every measurement again (minutes for a large model).
    static let maxRepeats = 100

    func check() throws {
        guard (1...Bench.maxPrefillTokens).contains(prefillBatch) else { throw outOfRange("--prefill-batch", prefillBatch, "in 1...\(Bench.maxPrefillTokens)") }
        guard prefillTokens >= 1 else { throw outOfRange("--prefill-tokens", prefillTokens, "at least 1") }
        guard prefillTokens <= Bench.maxPrefillTokens / prefillBatch else {
            throw ValidationError("--prefill-batch × --prefill-tokens must be at most \(Bench.maxPrefillTokens), not \(prefillBatch) × \(prefillTokens)")
        }
        guard decodeTokens >= 1 else { throw outOfRange("--decode-tokens", decodeTokens, "at least 1") }
        guard (1...Bench.maxRepeats).contains(repeats) else { throw outOfRange("--repeats", repeats, "in 1...\(Bench.maxRepeats)") }
    }

    struct Report: Encodable {
        let model: String
        let threads: Int
        let load_seconds: Double
        let prefill_tokens: Int
        let prefill_seconds: Double
        let prefill_tokens_per_second: Double
        let prefill_gflops: Double
        let sgemm_roof_gflops: Double
        let openblas_sgemm_gflops: Double
        let gemm_kernel: String
        let gemm_shapes: [GemmShape]
        let decode_batch1_tokens_per_second: Double
        let decode_batch16_tokens_per_second: Double
        let peak_resident_bytes: Int
    }

    func run() throws {
        var t0 = Date()
        let m = try LanguageModel.load(model)
        let load = Date().timeIntervalSince(t0)
        let c = m.config
        guard prefillTokens <= c.maxPositions else {
            throw ValidationError("--prefill-tokens \(prefillTokens) is more than the context length of \(m.path) (\(c.maxPositions) tokens)")
        }
        guard decodeTokens < c.maxPositions - Bench.decodePromptTokens else {
            throw ValidationError("--decode-tokens \(decodeTokens) do not fit the context length of \(m.path) (\(c.maxPositions) tokens) after a \(Bench.decodePromptTokens)-token prompt")
        }
        // Deterministic prompts of real text: the chat template of varied requests, cut to length.
        let base = try m.chat.promptIds("Write a detailed essay about the history of computing, from the abacus to modern GPUs, with examples and dates.")
        func prompt(_ i: Int, _ n: Int) -> [Int] { (0..<n).map { base[($0 + i) % base.count] } }

        var best = Double.infinity
        for _ in 0..<repeats {
            let batch = (0..<prefillBatch).map { prompt($0, prefillTokens) }
            let cache = KVCache(config: c, capacities: batch.map(\.count))
            t0 = Date()
            m.decoder.forward(tokens: batch, sequences: Array(batch.indices), cache: cache)
            best = min(best, Date().timeIntervalSince(t0))
        }
        let n = prefillBatch * prefillTokens
        let perToken = 2.0 * Double(c.numLayers) * Double(c.hiddenSize * (c.qDim + 2 * c.kvDim) + c.qDim * c.hiddenSize + 3 * c.hiddenSize * c.intermediateSize)
        let attention = 2.0 * 2.0 * Double(c.numLayers * c.numHeads * c.headDim) * Double(prefillTokens * prefillTokens) / 2 * Double(prefillBatch)
        let flops = perToken * Double(n) + attention + 2.0 * Double(prefillBatch * c.vocabSize * c.hiddenSize)

        func decodeRate(_ b: Int) throws -> Double {
            var bestRate = 0.0
            for _ in 0..<repeats {
                let prompts = (0..<b).map { prompt($0, Bench.decodePromptTokens) }
                var first: Double? = nil, firstTokens = 0
                _ = try m.decoder.generate(prompts: prompts, maxNewTokens: decodeTokens + 1, stopTokens: []) { p in
                    // Step 1 is the prompt's forward pass: time from after it.
                    if p.step == 1 { first = p.seconds; firstTokens = p.newTokens }
                    if p.active == 0, let f = first {
                        bestRate = max(bestRate, Double(p.newTokens - firstTokens) / (p.seconds - f))
                    }
                }
            }
            return bestRate
        }
        let d1 = try decodeRate(1), d16 = try decodeRate(16)
        let roof = sgemmRate(repeats: repeats), openblasRoof = sgemmRate(repeats: repeats, openblas: true)
        // The prefill's products (n tokens) and the backward's, through `gemm` and through OpenBLAS.
        let H = c.hiddenSize, I = c.intermediateSize
        let shapes = [("x·Wupᵀ", false, true, n, I, H), ("x·Wdownᵀ", false, true, n, H, I), ("x·Woᵀ", false, true, n, H, c.qDim),
                      ("dWup = dyᵀ·x", true, false, I, H, n), ("dWdown = dyᵀ·x", true, false, H, I, n),
                      ("dx = dy·Wup", false, false, n, H, I), ("dx = dy·Wdown", false, false, n, I, H)]
            .map { GemmShape(label: $0.0, transA: $0.1, transB: $0.2, m: $0.3, n: $0.4, k: $0.5, repeats: repeats) }
        let r = Report(model: m.path, threads: blasThreads(), load_seconds: load, prefill_tokens: n, prefill_seconds: best,
                       prefill_tokens_per_second: Double(n) / best, prefill_gflops: flops / best / 1e9, sgemm_roof_gflops: roof,
                       openblas_sgemm_gflops: openblasRoof, gemm_kernel: gemmUsesAVX512 ? "avx512" : "openblas", gemm_shapes: shapes,
                       decode_batch1_tokens_per_second: d1, decode_batch16_tokens_per_second: d16,
                       peak_resident_bytes: peakResidentBytes())
        if json { try printJSON(r); return }
        print("""
        \(m.path) (\(r.threads) BLAS threads)
          load     \(String(format: "%.2f", load)) s
          prefill  \(prefillBatch) × \(prefillTokens) tokens in \(String(format: "%.3f", best)) s: \(String(format: "%.1f", r.prefill_tokens_per_second)) tokens/s, \(String(format: "%.1f", r.prefill_gflops)) GFLOP/s (sgemm roof here: \(String(format: "%.1f", roof)) GFLOP/s)
          sgemm    2048³: \(String(format: "%.1f", roof)) GFLOP/s (\(r.gemm_kernel)), OpenBLAS \(String(format: "%.1f", openblasRoof)) GFLOP/s
        \(shapes.map { "  gemm     \($0.label) [\($0.m)×\($0.k)]·[\($0.k)×\($0.n)]: \(String(format: "%.1f", $0.gflops)) GFLOP/s, OpenBLAS \(String(format: "%.1f", $0.openblas_gflops))" }.joined(separator: "\n"))
          decode   batch 1: \(String(format: "%.1f", d1)) tokens/s; batch 16: \(String(format: "%.1f", d16)) tokens/s
          memory   peak resident \(String(format: "%.2f", Double(r.peak_resident_bytes) / 1_073_741_824)) GiB
        """)
    }
}

/// The machine's sgemm rate on a large square product (2048³) through `gemm` (the engine's
/// entry point) or OpenBLAS, best of `repeats`.
func sgemmRate(repeats: Int, openblas: Bool = false) -> Double {
    gemmRate(transA: false, transB: true, m: 2048, n: 2048, k: 2048, repeats: repeats, openblas: openblas)
}

/// GFLOP/s of C[m × n] = op(A) · op(B) (op(A) m × k), best of `repeats`.
func gemmRate(transA: Bool, transB: Bool, m: Int, n: Int, k: Int, repeats: Int, openblas: Bool) -> Double {
    let a = FloatBuffer(count: m * k), b = FloatBuffer(count: k * n), c = FloatBuffer(count: m * n)
    for i in 0..<(m * k) { a[i] = Float(i % 7) * 0.1 }
    for i in 0..<(k * n) { b[i] = Float(i % 5) * 0.1 }
    let lda = transA ? m : k, ldb = transB ? k : n
    var best = Double.infinity
    for _ in 0..<max(repeats, 1) {
        let t0 = Date()
        if openblas {
            openblasGemm(transA: transA, transB: transB, m: m, n: n, k: k, a: a.ptr, lda: lda, b: b.ptr, ldb: ldb, c: c.ptr, ldc: n)
        } else {
            gemm(transA: transA, transB: transB, m: m, n: n, k: k, a: a.ptr, lda: lda, b: b.ptr, ldb: ldb, c: c.ptr, ldc: n)
        }
        best = min(best, Date().timeIntervalSince(t0))
    }
    return 2 * Double(m * n * k) / best / 1e9
}

struct GemmShape: Encodable {
    let label: String
    let transA: Bool, transB: Bool
    let m: Int, n: Int, k: Int
    let gflops: Double, openblas_gflops: Double

    init(label: String, transA: Bool, transB: Bool, m: Int, n: Int, k: Int, repeats: Int) {
        self.label = label; self.transA = transA; self.transB = transB; self.m = m; self.n = n; self.k = k
        gflops = gemmRate(transA: transA, transB: transB, m: m, n: n, k: k, repeats: repeats, openblas: false)
        openblas_gflops = gemmRate(transA: transA, transB: transB, m: m, n: n, k: k, repeats: repeats, openblas: true)
    }
}
