import Foundation
import Testing
@testable import Model
import Tensor
import Formats
import TestSupport

/// Reference made by scripts/make_arch_fixtures.py: a tiny random model of each family made by
/// transformers 4.57.6 (fp32, eager attention) and PyTorch autograd's gradients (float64).
struct ArchitectureReference: Decodable {
    let inv_freq: [Float]
    let prompt: [Int]
    let hidden_states: [[[Float]]]   // [L + 1][tokens][hidden]
    let logits: [[Float]]            // [tokens][vocab]
    let greedy: [Int]
    let blocks: Int
    let batch_size: Int
    let sequences: [[Int]]
    let target: [Float]
    let loss: Double
    let last_states: [[Float]]
}

@Suite(.serialized) struct ArchitectureTests {
    static let families = ["mistral", "llama3", "qwen3", "gemma", "gemma2", "phi3", "phi3-longrope"]

    static func dir(_ family: String) -> String { fixturesDir() + "/arch/" + family }

    static func load(_ family: String) throws -> (Transformer, ArchitectureReference) {
        let d = dir(family)
        let config = try ModelConfig(hfConfigAt: d + "/config.json")
        let weights = try ModelWeights.load(config: config, from: try SafetensorsModel(folder: d))
        let ref = try JSONDecoder().decode(ArchitectureReference.self, from: Data(contentsOf: URL(fileURLWithPath: d + "/reference.json")))
        return (Transformer(weights: weights), ref)
    }

    /// Every hidden state of the prompt (one prefill) and the logits of every position (fed one
    /// token at a time through the KV cache, so windows and caps are checked on the cached path
    /// too) within 1e-4 relative of transformers.
    @Test(arguments: families)
    func forwardMatchesTransformers(_ family: String) throws {
        let (t, ref) = try ArchitectureTests.load(family)
        let c = t.config, H = c.hiddenSize, T = ref.prompt.count
        var states = [[Float]](repeating: [], count: c.numLayers + 1)
        _ = t.forward(tokens: [ref.prompt], sequences: [0], cache: KVCache(config: c, capacities: [T])) { index, x in
            states[index] = Array(UnsafeBufferPointer(start: x, count: T * H))
        }
        var worst = 0.0
        for (i, want) in ref.hidden_states.enumerated() {
            let e = relativeError(states[i], want.flatMap { $0 })
            worst = max(worst, e)
            #expect(e < 1e-4, "\(family) hidden state \(i): relative error \(e)")
        }
        let cache = KVCache(config: c, capacities: [T])
        var worstLogits = 0.0
        for (p, tok) in ref.prompt.enumerated() {
            let logits = t.forward(tokens: [[tok]], sequences: [0], cache: cache)
            let e = relativeError(logits, ref.logits[p])
            worstLogits = max(worstLogits, e)
            #expect(e < 1e-4, "\(family) logits at position \(p): relative error \(e)")
        }
        print("\(family): hidden states worst \(String(format: "%.1e", worst)), logits (cached, per position) worst \(String(format: "%.1e", worstLogits))")
    }

    /// 16 greedy tokens (transformers: argmax of a full recompute per step) are the same.
    @Test(arguments: families)
    func greedyGenerationMatches(_ family: String) throws {
        let (t, ref) = try ArchitectureTests.load(family)
        let out = try t.generate(prompts: [ref.prompt], maxNewTokens: ref.greedy.count, stopTokens: [])
        #expect(out == [ref.greedy], "\(family)")
    }

    /// Gradients of the recovery loss for every weight of blocks < l (with phi3's fused
    /// matrices as the file names them) equal PyTorch autograd's; the last-block shortcut
    /// changes nothing.
    @Test(arguments: families)
    func backwardMatchesPyTorch(_ family: String) throws {
        let (t, ref) = try ArchitectureTests.load(family)
        let want = try SafetensorsFile(path: ArchitectureTests.dir(family) + "/grads.safetensors")
        let (loss, states, grads) = lossAndGradients(t, ref.sequences, target: ref.target, blocks: ref.blocks, batchSize: ref.batch_size)
        #expect(relativeError(states, ref.last_states.flatMap { $0 }) < 1e-5)
        #expect(abs(loss - ref.loss) < 1e-5, "loss \(loss) vs \(ref.loss)")
        var names: Set<String> = [], worst = 0.0
        for (b, g) in grads.enumerated() {
            for (tensor, buf) in g.named(layer: b) {
                names.insert(tensor)
                let e = relativeError(buf.array, try want.floats(tensor))
                worst = max(worst, e)
                #expect(e < 1e-4, "\(family) \(tensor): relative error \(e)")
            }
        }
        #expect(names == Set(want.names), "same gradient tensors as PyTorch")
        let full = lossAndGradients(t, ref.sequences, target: ref.target, blocks: ref.blocks, batchSize: ref.batch_size, shortcut: false)
        for b in 0..<ref.blocks {
            for ((tensor, x), (_, y)) in zip(grads[b].named(layer: b), full.grads[b].named(layer: b)) {
                #expect(relativeError(x.array, y.array) < 1e-5, "\(family) shortcut \(tensor)")
            }
        }
        print("\(family): loss \(loss) vs \(ref.loss), worst gradient error \(String(format: "%.1e", worst)) over \(names.count) tensors")
    }

    /// Layer-major passes (one block materialised at a time, as recovery of a model larger
    /// than memory runs) give the resident passes' loss, mean state and gradients bit for bit,
    /// with blocks loaded one by one from the GGUF copy, for every family, with batched loss
    /// terms and with one term over all prompts.
    @Test(arguments: families, [false, true])
    func layerMajorEqualsResident(_ family: String, overAll: Bool) throws {
        let (_, ref) = try ArchitectureTests.load(family)
        let gguf = try GGUFFile(path: ArchitectureTests.dir(family) + "/model.gguf")
        let c = try gguf.modelConfig(), l = ref.blocks
        let lossBatch = overAll ? LossBatch.all : .prompts(ref.batch_size)
        let t = Transformer(weights: try ModelWeights.load(config: c, from: gguf))
        let grads = (0..<l).map { _ in LayerWeights.zeros(config: c) }
        let want = try t.directionGradients(prompts: ref.sequences, target: ref.target, blocks: l, lossBatch: lossBatch, passSize: 2, into: grads)
        let partial = Transformer(weights: try ModelWeights.load(config: c, from: gguf, blocks: 0))
        var loaded: [Int] = [], seen: [Int] = []
        let block = { (i: Int) throws -> LayerWeights in loaded.append(i); return try ModelWeights.loadBlock(i, config: c, from: gguf) }
        let got = try partial.streamedDirectionGradients(prompts: ref.sequences, target: ref.target, blocks: l, lossBatch: lossBatch, passSize: 2,
                                                         block: block) { i, _, gi in
            seen.append(i)
            for ((name, x), (_, y)) in zip(gi.named(layer: i), grads[i].named(layer: i)) {
                let same = x.array == y.array
                #expect(same, "\(family) \(name)")
            }
        }
        #expect(got.loss == want.loss && got.mean == want.mean)
        #expect(seen == Array((0..<l).reversed()) && loaded == Array(0..<l) + Array((0..<l).reversed()))
    }

    /// RoPE inverse frequencies (llama3 scaling, and plain for the others) as transformers.
    @Test(arguments: families)
    func ropeFrequencies(_ family: String) throws {
        let (t, ref) = try ArchitectureTests.load(family)
        let mine = Transformer.ropeInverseFrequencies(t.config)
        #expect(maxRelativeError(mine, ref.inv_freq) < 1e-6, "\(family): \(mine) vs \(ref.inv_freq)")
    }

    /// The same model as llama.cpp's convert_hf_to_gguf.py lays it out (F16 matrices): every
    /// tensor reads back as in the HF folder (Q/K rows un-permuted, gemma norms, phi3's fused
    /// matrices), the config is the same but for what GGUF does not store, and the logits are
    /// those of the HF weights run with the GGUF's config.
    @Test(arguments: families)
    func ggufLoadsTheSameModel(_ family: String) throws {
        let (hf, ref) = try ArchitectureTests.load(family)
        let g = try GGUFFile(path: ArchitectureTests.dir(family) + "/model.gguf")
        let gc = try g.modelConfig()
        var expected = hf.config
        switch family {
        case "mistral":    // llama.cpp converts Mistral as llama, without the window
            expected.architecture = "llama"; expected.slidingWindow = nil
        case "llama3":     // the scaled frequencies as rope_freqs.weight
            #expect(gc.ropeScaling?.type == "freq_factors")
            expected.ropeScaling = gc.ropeScaling
        case "gemma2":     // no query_pre_attn_scalar in GGUF: llama.cpp uses headDim
            expected.queryPreAttnScalar = Float(gc.headDim)
        case "phi3-longrope":   // rope_factors_short/long.weight, the attention factor and the original length as metadata
            #expect(gc.ropeScaling?.type == "longrope" && gc.ropeScaling?.attentionFactor == Float(1.1902380714238083))
        default: break
        }
        expected.maxPositions = gc.maxPositions
        #expect(gc == expected, "\(family): \(gc) vs \(expected)")
        let gw = try ModelWeights.load(config: gc, from: g)
        var worst = 0.0
        for l in 0..<gc.numLayers {
            for ((name, a), (_, b)) in zip(gw.layers[l].named(layer: l), hf.weights.layers[l].named(layer: l)) {
                let e = relativeError(a.array, b.array)
                worst = max(worst, e)
                #expect(e < 1e-6, "\(family) \(name): \(e)")
            }
        }
        #expect(relativeError(gw.embed.array, hf.weights.embed.array) == 0)
        #expect(relativeError(gw.finalNorm.array, hf.weights.finalNorm.array) < 1e-6)
        #expect(relativeError(gw.lmHead.array, hf.weights.lmHead.array) == 0)

        var sameConfig = hf.weights
        sameConfig.config = gc
        let a = Transformer(weights: gw), b = Transformer(weights: sameConfig)
        let la = a.forward(tokens: [ref.prompt], sequences: [0], cache: KVCache(config: gc, capacities: [ref.prompt.count]))
        let lb = b.forward(tokens: [ref.prompt], sequences: [0], cache: KVCache(config: gc, capacities: [ref.prompt.count]))
        #expect(relativeError(la, lb) < 1e-5, "\(family)")
        if ["qwen3", "gemma", "phi3", "phi3-longrope", "llama3"].contains(family) {   // the same model: transformers' logits
            #expect(relativeError(la, ref.logits[ref.prompt.count - 1]) < 1e-4, "\(family)")
        }
        print("\(family): GGUF tensors worst \(String(format: "%.1e", worst)), logits vs HF weights \(String(format: "%.1e", relativeError(la, lb)))")
    }

    /// An HF config of a family the decoder does not run is refused with the supported list.
    @Test func unsupportedFamilyIsAClearError() throws {
        let json = try JSONValue.parse(#"{"model_type": "mamba", "hidden_size": 64}"#)
        #expect(throws: FormatError("x/config.json", "config.json: unsupported model_type 'mamba' (supported: gemma, gemma2, llama, mistral, phi3, qwen2, qwen3)")) {
            _ = try ModelConfig(hfConfig: json, source: "x/config.json")
        }
        let rs = try JSONValue.parse(#"{"model_type": "llama", "hidden_size": 64, "rope_scaling": {"rope_type": "yarn", "factor": 4.0}}"#)
        #expect(throws: FormatError("x/config.json", #"config.json: rope_scaling {"rope_type":"yarn","factor":4.0} is not supported (default, linear, llama3, longrope)"#)) {
            _ = try ModelConfig(hfConfig: rs, source: "x/config.json")
        }
        // longrope needs both factor lists, one value per rotary pair.
        let short = try JSONValue.parse(#"{"model_type": "phi3", "vocab_size": 10, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 4, "rope_scaling": {"type": "longrope", "short_factor": [1, 1, 1, 1], "long_factor": [1, 2]}}"#)
        #expect(throws: FormatError("x/config.json", "bad model config: longrope long factors")) {
            _ = try ModelConfig(hfConfig: short, source: "x/config.json")
        }
    }

    /// The config written back as config.json reads as the same config (windows, caps, scaling).
    @Test(arguments: families)
    func configRoundTrips(_ family: String) throws {
        let c = try ModelConfig(hfConfigAt: ArchitectureTests.dir(family) + "/config.json")
        #expect(try ModelConfig(hfConfig: c.hfConfigJSON(), source: "round trip") == c)
    }
}

/// transformers' RoPE scalings and GeGLU on their own (scripts/make_arch_fixtures.py ops).
struct ArchitectureOpsReference: Decodable {
    struct Rope: Decodable {
        struct Scaling: Decodable {
            let rope_type: String; let factor: Float
            let low_freq_factor: Float?; let high_freq_factor: Float?; let original_max_position_embeddings: Int?
        }
        let rope_scaling: Scaling; let head_dim: Int; let rope_theta: Float; let inv_freq: [Float]
    }
    struct GegluOut: Decodable { let h: [Float]; let dgate: [Float]; let dup: [Float] }
    struct Geglu: Decodable {
        let gate: [Float]; let up: [Float]; let dh: [Float]
        let gelu: GegluOut; let gelu_pytorch_tanh: GegluOut
    }
    let rope: [Rope]
    let geglu: Geglu

    static func load() throws -> ArchitectureOpsReference {
        try JSONDecoder().decode(ArchitectureOpsReference.self,
                                 from: Data(contentsOf: URL(fileURLWithPath: fixturesDir() + "/arch/ops.json")))
    }
}

@Test func ropeScalingsMatchTransformers() throws {
    for r in try ArchitectureOpsReference.load().rope {
        var c = ModelConfig(architecture: "llama", vocabSize: 10, hiddenSize: 64, intermediateSize: 8, numLayers: 1, numHeads: 2,
                            numKVHeads: 2, headDim: r.head_dim, rmsNormEps: 1e-5, ropeTheta: r.rope_theta, maxPositions: 131072,
                            tiedEmbeddings: true, qkvBias: false)
        let s = r.rope_scaling
        c.ropeScaling = .init(type: s.rope_type, factor: s.factor, lowFreqFactor: s.low_freq_factor ?? 1,
                              highFreqFactor: s.high_freq_factor ?? 4, originalMaxPositions: s.original_max_position_embeddings ?? 8192)
        try c.validate(source: "ops.json")
        let mine = Transformer.ropeInverseFrequencies(c)
        #expect(maxRelativeError(mine, r.inv_freq) < 1e-6, "\(s.rope_type) \(s.factor): \(mine) vs \(r.inv_freq)")
        #expect(mine != RopeTable.defaultInverseFrequencies(headDim: r.head_dim, theta: r.rope_theta))
    }
}

@Test(arguments: [true, false])
func gegluMatchesTorch(_ tanh: Bool) throws {
    let g = try ArchitectureOpsReference.load().geglu
    let want = tanh ? g.gelu_pytorch_tanh : g.gelu
    let n = g.gate.count
    var h = [Float](repeating: 0, count: n), dgate = h, dup = h
    gegluForward(&h, g.gate, g.up, count: n, tanh: tanh)
    gegluBackward(&dgate, &dup, g.dh, g.gate, g.up, count: n, tanh: tanh)
    // (‖a − b‖ / ‖b‖: elementwise, 1 + erf(x) for x ≪ 0 cancels and amplifies erf's last-bit
    // differences on values near 0)
    #expect(relativeError(h, want.h) < 1e-6)
    #expect(relativeError(dgate, want.dgate) < 1e-6)
    #expect(relativeError(dup, want.dup) < 1e-6)
    print("geglu \(tanh ? "tanh" : "erf"): h \(relativeError(h, want.h)), dgate \(relativeError(dgate, want.dgate)), dup \(relativeError(dup, want.dup))")
}
