import Foundation
import Testing
@testable import Model
import Tensor
import Formats
import TestSupport

/// Reference made by scripts/make_backward_fixtures.py (PyTorch autograd in float64 on the
/// same fp32 weights: the exact gradients, so errors are ours alone).
struct GradientReference: Decodable {
    struct Sample: Decodable { let indices: [Int]; let values: [Float] }
    let blocks: Int
    let batch_size: Int
    let sequences: [[Int]]?
    let loss_prompts: [Int]?
    let target: [Float]
    let loss: Double
    let last_states: [[Float]]
    let norms: [String: Double]?
    let samples: [String: Sample]?

    static func load(_ dir: String) throws -> GradientReference {
        try JSONDecoder().decode(GradientReference.self, from: Data(contentsOf: URL(fileURLWithPath: dir + "/reference.json")))
    }
}

func relativeError(_ a: [Float], _ b: [Float]) -> Double {
    precondition(a.count == b.count)
    var num = 0.0, den = 0.0
    for i in a.indices { let d = Double(a[i]) - Double(b[i]); num += d * d; den += Double(b[i]) * Double(b[i]) }
    let e = (num / max(den, 1e-300)).squareRoot()
    return e.isNaN ? .infinity : e
}

func norm(_ a: FloatBuffer) -> Double { a.array.reduce(0.0) { $0 + Double($1) * Double($1) }.squareRoot() }

/// Runs the recovery loss's forward and backward; returns the loss, the last states and the gradients.
func lossAndGradients(_ t: Transformer, _ seqs: [[Int]], target: [Float], blocks: Int, batchSize: Int,
                      shortcut: Bool = true) -> (loss: Double, states: [Float], grads: [LayerWeights]) {
    let a = t.forwardForBackward(tokens: seqs, blocks: blocks, lastBlockShortcut: shortcut)
    let H = t.config.hiddenSize
    var dLast = [Float](repeating: 0, count: seqs.count * H)
    let loss = directionLoss(&dLast, states: a.lastStates, count: seqs.count, hidden: H, target: target, batchSize: batchSize)
    let grads = t.zeroGradients(blocks: blocks)
    t.backward(a, dLast: dLast, into: grads)
    return (loss, a.lastStatesArray(hidden: H), grads)
}

@Suite(.serialized) struct BackwardTests {
    static func tinyModel(_ name: String) throws -> (Transformer, GradientReference, SafetensorsFile) {
        let dir = fixturesDir() + "/" + name
        let config = try ModelConfig(hfConfigAt: dir + "/config.json")
        let weights = try ModelWeights.load(config: config, from: try SafetensorsModel(folder: dir))
        return (Transformer(weights: weights), try GradientReference.load(dir), try SafetensorsFile(path: dir + "/grads.safetensors"))
    }

    /// Every gradient of blocks < l of a tiny random llama / qwen2 model equals PyTorch
    /// autograd's (relative error ‖a − b‖ / ‖b‖ per tensor; about 1e-6 here).
    @Test(arguments: ["tiny-llama", "tiny-qwen2"])
    func tinyModelMatchesPyTorch(_ name: String) throws {
        let (t, ref, want) = try BackwardTests.tinyModel(name)
        let seqs = try #require(ref.sequences)
        let (loss, states, grads) = lossAndGradients(t, seqs, target: ref.target, blocks: ref.blocks, batchSize: ref.batch_size)
        let stateError = relativeError(states, ref.last_states.flatMap { $0 })
        #expect(stateError < 1e-5)
        #expect(abs(loss - ref.loss) < 1e-5, "loss \(loss) vs \(ref.loss)")
        var names: Set<String> = []
        var worst = 0.0, report: [String] = []
        for (b, g) in grads.enumerated() {
            for (tensor, buf) in g.named(layer: b) {
                names.insert(tensor)
                let e = relativeError(buf.array, try want.floats(tensor))
                worst = max(worst, e)
                report.append("\(tensor.replacingOccurrences(of: "model.layers.", with: "")) \(String(format: "%.1e", e))")
                #expect(e < 1e-5, "\(name) \(tensor): relative error \(e)")
            }
        }
        print("\(name): last states \(String(format: "%.1e", stateError)), loss \(loss) vs \(ref.loss), worst gradient error \(String(format: "%.1e", worst))")
        print("  " + report.joined(separator: ", "))
        #expect(names == Set(want.names), "same gradient tensors as PyTorch")
    }

    /// The last-block shortcut (queries, attention output, o_proj and MLP at the last token
    /// only) gives the gradients of the full computation.
    @Test(arguments: ["tiny-llama", "tiny-qwen2"])
    func lastBlockShortcutChangesNothing(_ name: String) throws {
        let (t, ref, _) = try BackwardTests.tinyModel(name)
        let seqs = try #require(ref.sequences)
        let fast = lossAndGradients(t, seqs, target: ref.target, blocks: ref.blocks, batchSize: ref.batch_size, shortcut: true)
        let full = lossAndGradients(t, seqs, target: ref.target, blocks: ref.blocks, batchSize: ref.batch_size, shortcut: false)
        #expect(relativeError(fast.states, full.states) < 1e-6)
        var worst = 0.0
        for b in 0..<ref.blocks {
            for ((tensor, x), (_, y)) in zip(fast.grads[b].named(layer: b), full.grads[b].named(layer: b)) {
                let e = relativeError(x.array, y.array)
                worst = max(worst, e)
                #expect(e < 1e-5, "\(tensor): \(e)")
            }
        }
        print("\(name): shortcut vs full computation, worst gradient difference \(String(format: "%.1e", worst))")
    }

    /// Blocks = all layers (l = L), one-token sequences, and l = 1: the shortcut still gives
    /// the full computation's gradients, and the last states equal the decoder's hidden states.
    @Test func edgeCases() throws {
        let (t, ref, _) = try BackwardTests.tinyModel("tiny-qwen2")
        let L = t.config.numLayers, H = t.config.hiddenSize
        for (seqs, l) in [([[5], [17], [250]], L), (try #require(ref.sequences), L), (try #require(ref.sequences), 1)] {
            let fast = lossAndGradients(t, seqs, target: ref.target, blocks: l, batchSize: 2, shortcut: true)
            let full = lossAndGradients(t, seqs, target: ref.target, blocks: l, batchSize: 2, shortcut: false)
            #expect(relativeError(fast.states, full.states) < 1e-6)
            for b in 0..<l {
                for ((tensor, x), (_, y)) in zip(fast.grads[b].named(layer: b), full.grads[b].named(layer: b)) {
                    #expect(relativeError(x.array, y.array) < 1e-5, "\(tensor)")
                }
            }
            if l < L {
                // The decoder's tap at index l is the raw output of block l−1.
                var want: [Float] = []
                for s in seqs {
                    t.forward(tokens: [s], sequences: [0], cache: KVCache(config: t.config, capacities: [s.count]), blocks: l,
                              logits: false) { index, states in
                        if index == l { want += Array(UnsafeBufferPointer(start: states + (s.count - 1) * H, count: H)) }
                    }
                }
                #expect(relativeError(fast.states, want) < 1e-6)
            }
        }
    }

    /// Gradients accumulate: several passes (`directionGradients` with a small pass size)
    /// give the sum of the passes, equal to one pass over everything — for batched loss terms,
    /// and for the paper's one term over all prompts (its mean comes from all passes before any
    /// backward).
    @Test(arguments: [LossBatch.prompts(2), .all])
    func passesAccumulate(_ lossBatch: LossBatch) throws {
        let (t, ref, _) = try BackwardTests.tinyModel("tiny-llama")
        let seqs = try #require(ref.sequences)
        let one = t.zeroGradients(blocks: ref.blocks), two = t.zeroGradients(blocks: ref.blocks)
        let l1 = try t.directionGradients(prompts: seqs + seqs, target: ref.target, blocks: ref.blocks, lossBatch: lossBatch, passSize: 100, into: one).loss
        let l2 = try t.directionGradients(prompts: seqs + seqs, target: ref.target, blocks: ref.blocks, lossBatch: lossBatch, passSize: 2, into: two).loss
        #expect(abs(l1 - l2) < 1e-6)
        for b in 0..<ref.blocks {
            for ((tensor, x), (_, y)) in zip(one[b].named(layer: b), two[b].named(layer: b)) {
                #expect(relativeError(x.array, y.array) < 1e-5, "\(tensor)")
            }
        }
    }

    /// SmolLM2-135M (the real GGUF), l = 20 of 30, 12 chat prompts in batches of 8 and 4:
    /// loss, every gradient's norm and 64 sampled elements of each tensor of layers 0, 1, 9,
    /// 18, 19 against PyTorch.
    @Test func smolMatchesPyTorch() throws {
        let dir = fixturesDir() + "/smol-grad"
        let ref = try GradientReference.load(dir)
        let prompts = try JSONDecoder().decode(ModelReference.self, from: Data(contentsOf: URL(fileURLWithPath: fixturesDir() + "/smol/reference.json"))).prompts
        let g = try GGUFFile(path: RealModels.smol)
        let t = Transformer(weights: try ModelWeights.load(config: try g.modelConfig(), from: g))
        let seqs = try #require(ref.loss_prompts).map { prompts[$0].ids }
        let grads = t.zeroGradients(blocks: ref.blocks)
        let a = Activations()
        let start = Date()
        // Two passes (8 + 4 prompts): also checks that passes accumulate.
        let loss = try t.directionGradients(prompts: seqs, target: ref.target, blocks: ref.blocks, lossBatch: .prompts(ref.batch_size),
                                        passSize: 8, into: grads, reusing: a).loss
        let seconds = Date().timeIntervalSince(start)
        #expect(abs(loss - ref.loss) < 1e-5 * max(1, abs(ref.loss)), "loss \(loss) vs \(ref.loss)")
        let norms = try #require(ref.norms), samples = try #require(ref.samples)
        var worstNorm = 0.0, worstSample = 0.0, count = 0, worstNormTensor = ""
        for b in 0..<ref.blocks {
            for (tensor, buf) in grads[b].named(layer: b) {
                let want = try #require(norms[tensor])
                let e = abs(norm(buf) - want) / want
                if e > worstNorm { worstNorm = e; worstNormTensor = tensor }
                #expect(e < 1e-4, "\(tensor) norm \(norm(buf)) vs \(want)")
                if let s = samples[tensor] {
                    let got = s.indices.map { buf[$0] }
                    let se = relativeError(got, s.values)
                    worstSample = max(worstSample, se)
                    count += 1
                    #expect(se < 1e-4, "\(tensor) sampled elements: \(se)")
                }
            }
        }
        #expect(count == samples.count)
        print("smol l=20, 12 prompts: loss \(loss) vs \(ref.loss), worst gradient-norm error \(String(format: "%.1e", worstNorm)) (\(worstNormTensor)), "
              + "worst sampled-elements error \(String(format: "%.1e", worstSample)) (\(count) tensors); \(String(format: "%.2f", seconds)) s")
    }
}

/// Forward + backward speed on Qwen2.5-0.5B: 32 chat prompts (the 22 of Fixtures/qwen, then
/// the first 10 again), l = 16 of 24. A printout, not a timed test; runs when REALIGN_BENCH
/// is set. PyTorch's side: `scripts/make_backward_fixtures.py bench`.
@Suite struct BackwardBenchmark {
    @Test(.enabled(if: ProcessInfo.processInfo.environment["REALIGN_BENCH"] != nil))
    func qwenForwardBackward() throws {
        let g = try GGUFFile(path: RealModels.qwen)
        let t = Transformer(weights: try ModelWeights.load(config: try g.modelConfig(), from: g))
        let c = t.config
        let ref = try JSONDecoder().decode(ModelReference.self, from: Data(contentsOf: URL(fileURLWithPath: fixturesDir() + "/qwen/reference.json")))
        var prompts = ref.prompts.map(\.ids)
        prompts += prompts.prefix(10)
        let l = 16, n = prompts.reduce(0) { $0 + $1.count }
        var rng = SeededRandom(0)
        let target = rng.normals(c.hiddenSize)
        let grads = t.zeroGradients(blocks: l)
        let a = Activations()
        // Model FLOPs as PyTorch does them (no shortcut): 3 × the forward's matrix products, all tokens, l blocks.
        let perTokenBlock = 2.0 * Double(c.hiddenSize * (2 * c.qDim + 2 * c.kvDim) + 3 * c.hiddenSize * c.intermediateSize)
        let modelFLOPs = 3 * perTokenBlock * Double(n * l)
        print("Qwen2.5-0.5B forward+backward, \(prompts.count) prompts (\(n) tokens), l = \(l), BLAS threads \(blasThreads())")
        // What the machine gives one large sgemm right now (the host may be shared): the ceiling.
        let x = FloatBuffer(count: n * c.intermediateSize), w = FloatBuffer(count: c.intermediateSize * c.hiddenSize)
        let y = FloatBuffer(count: n * c.intermediateSize)
        var best = Double.infinity
        for _ in 0..<3 {
            let t0 = Date()
            matmulTransposed(y.ptr, x.ptr, w.ptr, n: n, k: c.hiddenSize, m: c.intermediateSize)
            best = min(best, Date().timeIntervalSince(t0))
        }
        print(String(format: "  one sgemm [%d × %d]·[%d × %d]ᵀ: %.1f GFLOP/s", n, c.hiddenSize, c.intermediateSize, c.hiddenSize,
                     2 * Double(n * c.hiddenSize * c.intermediateSize) / best / 1e9))
        for run in 0..<3 {
            let t0 = Date()
            _ = t.forwardForBackward(tokens: prompts, blocks: l, reusing: a)
            let t1 = Date()
            var dLast = [Float](repeating: 0, count: prompts.count * c.hiddenSize)
            let loss = directionLoss(&dLast, states: a.lastStates, count: prompts.count, hidden: c.hiddenSize, target: target, batchSize: 8)
            t.backward(a, dLast: dLast, into: grads)
            let t2 = Date()
            let (f, b) = a.flops(config: c)
            let fs = t1.timeIntervalSince(t0), bs = t2.timeIntervalSince(t1), total = fs + bs
            print(String(format: "  run %d: forward %.2f s (%.1f GFLOP/s), backward %.2f s (%.1f GFLOP/s), total %.2f s: %.1f GFLOP/s done, %.1f model-GFLOP/s (%.2f TFLOP as PyTorch counts); loss %.4f; activations %.2f GB",
                         run, fs, f / fs / 1e9, bs, b / bs / 1e9, total, (f + b) / total / 1e9, modelFLOPs / total / 1e9, modelFLOPs / 1e12,
                         loss, Double(a.byteCount) / 1e9))
        }
    }
}
