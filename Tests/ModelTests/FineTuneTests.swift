import Foundation
import Testing
@testable import Model
import Tensor
import Formats
import TestSupport

/// Reference made by scripts/make_lora_grad_fixtures.py (PyTorch + PEFT, float64 on the fp32 values).
struct FineTuneReference: Decodable {
    struct Adam: Decodable {
        let lr: Double, weight_decay: Double, max_grad_norm: Double, steps: Int
        let grad_norms: [Double], lrs: [Double]
    }
    let rank: Int
    let alpha: Double
    let sequences: [[Int]]
    let response_starts: [Int]
    let loss: Double
    let adamw: Adam
}

@Suite(.serialized) struct FineTuneTests {
    /// The tiny model with PEFT's adapter (A, B from lora/adapter_model.safetensors) attached.
    static func setUp(_ name: String) throws -> (Transformer, LoRA, FineTuneReference, [TrainingExample]) {
        let dir = fixturesDir() + "/" + name
        let config = try ModelConfig(hfConfigAt: dir + "/config.json")
        let t = Transformer(weights: try ModelWeights.load(config: config, from: try SafetensorsModel(folder: dir)))
        let ref = try JSONDecoder().decode(FineTuneReference.self, from: Data(contentsOf: URL(fileURLWithPath: dir + "/lora_reference.json")))
        let lora = LoRA(config: config, rank: ref.rank, alpha: Float(ref.alpha), targets: LoRATarget.allCases)
        let file = try SafetensorsFile(path: dir + "/lora/adapter_model.safetensors")
        for p in lora.parameters { try file.readFloats(p.name, into: p.value.ptr) }
        t.lora = lora
        let examples = zip(ref.sequences, ref.response_starts).map { TrainingExample(ids: $0, responseStart: $1) }
        return (t, lora, ref, examples)
    }

    /// Loss and dL/dA, dL/dB of all 7 × 4 modules equal PyTorch + PEFT autograd's, with the
    /// base weights frozen (no dW computed) and the loss on response tokens only.
    @Test(arguments: ["tiny-llama", "tiny-qwen2"])
    func gradientsMatchPEFT(_ name: String) throws {
        let (t, lora, ref, examples) = try FineTuneTests.setUp(name)
        let want = try SafetensorsFile(path: fixturesDir() + "/" + name + "/lora_grads.safetensors")
        let total = examples.reduce(0) { $0 + $1.lossTokens }
        lora.zeroGradients()
        let (sum, tokens) = t.responseLoss(examples, normalizer: Double(total), chunkRows: 7)   // several logit chunks
        #expect(tokens == total)
        #expect(abs(sum / Double(total) - ref.loss) < 1e-5 * ref.loss, "loss \(sum / Double(total)) vs \(ref.loss)")
        #expect(lora.parameters.count == 2 * 7 * t.config.numLayers)
        #expect(Set(lora.parameters.map(\.name)) == Set(want.tensors.map(\.name)))
        var worst = 0.0
        for p in lora.parameters {
            let e = relativeError(p.grad.array, try want.floats(p.name))
            worst = max(worst, e)
            #expect(e < 2e-5, "\(name) \(p.name): relative error \(e)")
        }
        print("\(name): loss \(sum / Double(total)) vs \(ref.loss), worst LoRA gradient error \(String(format: "%.1e", worst))")
    }

    /// Three AdamW steps (weight decay, gradient clipping, linear decay) with each step's batch
    /// split into two micro-batches give PyTorch's parameters (one batch per step there).
    @Test(arguments: ["tiny-llama", "tiny-qwen2"])
    func adamWStepsMatchPyTorch(_ name: String) throws {
        let (t, lora, ref, examples) = try FineTuneTests.setUp(name)
        let want = try SafetensorsFile(path: fixturesDir() + "/" + name + "/lora_adamw3.safetensors")
        let a = ref.adamw
        let params = lora.parameters
        let opt = AdamW(sizes: params.map(\.value.count))
        opt.weightDecay = Float(a.weight_decay)
        let total = examples.reduce(0) { $0 + $1.lossTokens }
        for step in 0..<a.steps {
            lora.zeroGradients()
            _ = t.responseLoss(Array(examples[0..<2]), normalizer: Double(total))
            _ = t.responseLoss(Array(examples[2...]), normalizer: Double(total))
            let norm = clipGradientNorm(params.map(\.grad), maxNorm: Float(a.max_grad_norm))
            #expect(abs(norm - a.grad_norms[step]) < 1e-5 * a.grad_norms[step], "step \(step): gradient norm \(norm) vs \(a.grad_norms[step])")
            let lr = LRSchedule.linear.rate(step: step, total: a.steps, warmup: 0, peak: a.lr)
            #expect(abs(lr - a.lrs[step]) < 1e-15)
            opt.update(params.map { ($0.value, $0.grad) }, lr: Float(lr))
        }
        var worst = 0.0
        for p in params {
            let e = relativeError(p.value.array, try want.floats(p.name))
            worst = max(worst, e)
            #expect(e < 1e-5, "\(name) \(p.name) after \(a.steps) steps: relative error \(e)")
        }
        print("\(name): parameters after \(a.steps) AdamW steps, worst relative error \(String(format: "%.1e", worst))")
    }

    /// transformers' schedules, by hand: warm-up 2 of 10 steps, peak 1.
    @Test func learningRateSchedules() {
        let linear = (0...10).map { LRSchedule.linear.rate(step: $0, total: 10, warmup: 2, peak: 1) }
        #expect(linear == [0, 0.5, 1, 0.875, 0.75, 0.625, 0.5, 0.375, 0.25, 0.125, 0])
        let constant = (0..<4).map { LRSchedule.constant.rate(step: $0, total: 10, warmup: 2, peak: 1) }
        #expect(constant == [0, 0.5, 1, 1])
    }

    /// PEFT's initialisation: A uniform in ±1/√in (kaiming_uniform_, a = √5), B zero, so the
    /// adapted model's loss equals the base model's; the same seed gives the same A.
    @Test func initialisationLeavesTheModelUnchanged() throws {
        let (t, _, _, examples) = try FineTuneTests.setUp("tiny-qwen2")
        let c = t.config
        let lora = LoRA(config: c, rank: 8, alpha: 16, targets: try LoRATarget.parse("q_proj,v,down_proj"))
        #expect(lora.targets == [.q, .v, .down])
        lora.initialise(seed: 3)
        var maxA: Float = 0
        for p in lora.parameters {
            if p.name.hasSuffix("lora_B.weight") { #expect(p.value.array.allSatisfy { $0 == 0 }) }
            else { maxA = max(maxA, p.value.array.map(abs).max()! * Float(p.shape[1]).squareRoot()) }
        }
        #expect(maxA <= 1 && maxA > 0.9)
        let again = LoRA(config: c, rank: 8, alpha: 16, targets: [.q, .v, .down])
        again.initialise(seed: 3)
        #expect(again.parameters[0].value.array == lora.parameters[0].value.array)
        t.lora = nil
        let base = t.responseLoss(examples, normalizer: 1).lossSum
        t.lora = lora
        let adapted = t.responseLoss(examples, normalizer: 1).lossSum
        #expect(abs(base - adapted) < 1e-9 * base)
        #expect(throws: FormatError.self) { try LoRATarget.parse("qkv") }
    }

    /// Prompt and response token ids of three BeaverTails pairs with Qwen2.5's chat template
    /// equal transformers' (TRL's prompt-completion masking), exactly.
    @Test func responseMaskMatchesTransformers() throws {
        struct Case: Decodable { let prompt: String; let response: String; let ids: [Int]; let response_start: Int }
        struct Fixture: Decodable { let cases: [Case] }
        let fx = try JSONDecoder().decode(Fixture.self, from: Data(contentsOf: URL(fileURLWithPath: fixturesDir() + "/lora-mask.json")))
        let chat = try ChatFormat.load(RealModels.qwen)
        for c in fx.cases {
            let e = try #require(try chat.trainingExample(prompt: c.prompt, response: c.response, maxLength: 512))
            #expect(e.ids == c.ids)
            #expect(e.responseStart == c.response_start)
            let cut = try #require(try chat.trainingExample(prompt: c.prompt, response: c.response, maxLength: c.response_start + 3))
            #expect(cut.ids == Array(c.ids[..<(c.response_start + 3)]))
        }
        #expect(try chat.trainingExample(prompt: fx.cases[0].prompt, response: "x", maxLength: fx.cases[0].response_start) == nil)
    }

    /// A run stopped after 2 of 4 steps (--max-steps) and resumed from its checkpoint ends with
    /// the same adapter, bit for bit, as the run done in one go; the adapter folder has PEFT's
    /// tensor names and shapes and the config's r, alpha and targets.
    @Test func resumeIsBitIdenticalAndAdapterHasPEFTNames() throws {
        let (t, _, ref, examples) = try FineTuneTests.setUp("tiny-qwen2")
        t.lora = nil
        let data = examples + examples.map { TrainingExample(ids: Array($0.ids.reversed()), responseStart: $0.responseStart) }
        var o = FineTuneOptions()
        o.rank = 4; o.alpha = 8; o.batch = 1; o.gradAccum = 2; o.lr = 1e-2; o.weightDecay = 0.01; o.warmupSteps = 1
        let tmp = FileManager.default.temporaryDirectory.appendingPathComponent("realign-ft-\(getpid())").path
        defer { try? FileManager.default.removeItem(atPath: tmp) }
        let whole = FineTuneRun(decoder: t, baseName: "tiny", examples: data, options: o, out: tmp + "/whole")
        let s1 = try whole.run(resume: false) { _ in }
        #expect(s1.steps == 4 && s1.total_steps == 4)
        #expect(!FileManager.default.fileExists(atPath: whole.checkpointPath))
        var half = o
        half.maxSteps = 2
        let first = FineTuneRun(decoder: t, baseName: "tiny", examples: data, options: half, out: tmp + "/split")
        #expect(try first.run(resume: false) { _ in }.steps == 2)
        #expect(FileManager.default.fileExists(atPath: first.checkpointPath))
        let second = FineTuneRun(decoder: t, baseName: "tiny", examples: data, options: o, out: tmp + "/split")
        var lines: [String] = []
        #expect(try second.run(resume: true) { lines.append($0) }.steps == 4)
        #expect(lines.first?.hasPrefix("resumed") == true && lines.count == 3)
        let a = try SafetensorsFile(path: tmp + "/whole/adapter_model.safetensors")
        let b = try SafetensorsFile(path: tmp + "/split/adapter_model.safetensors")
        let peft = try SafetensorsFile(path: fixturesDir() + "/tiny-qwen2/lora/adapter_model.safetensors")
        #expect(a.tensors.map(\.name).sorted() == peft.tensors.map(\.name).sorted())
        for info in peft.tensors {
            #expect(a.info(info.name)?.shape == info.shape)
            #expect(try a.floats(info.name) == (try b.floats(info.name)), "\(info.name) differs after resume")
        }
        let cfg = try JSONValue.parseFile(tmp + "/whole/adapter_config.json")
        #expect(cfg["r"]?.int == ref.rank && cfg["peft_type"]?.string == "LORA")
        #expect(cfg["target_modules"] == .array(LoRATarget.allCases.map { .string($0.rawValue) }))
        // A checkpoint of other options is refused.
        var other = half
        other.lr = 1e-3
        let wrong = FineTuneRun(decoder: t, baseName: "tiny", examples: data, options: other, out: tmp + "/split")
        try first.run(resume: false) { _ in }
        #expect(throws: FormatError.self) { try wrong.run(resume: true) { _ in } }
        // So is the checkpoint of another base model (its content digest differs).
        let otherBase = FineTuneRun(decoder: t, baseName: "tiny", examples: data, options: o, out: tmp + "/split")
        otherBase.baseDigest = "0123456789abcdef"
        #expect(throws: FormatError.self) { try otherBase.run(resume: true) { _ in } }
        // A killed write's temporary file is removed by the next run.
        let stale = tmp + "/split/.checkpoint.safetensors.tmp-99999999-1"
        try Data(count: 10).write(to: URL(fileURLWithPath: stale))
        try second.run(resume: true) { _ in }
        #expect(!FileManager.default.fileExists(atPath: stale))
    }

    /// phi3 stores q/k/v and gate/up fused, so PEFT can only adapt qkv_proj and gate_up_proj:
    /// the adapter is written on those (A stacked, B block-diagonal, rank and alpha × parts;
    /// k left out here, so its rows of B are zero) and, read back and merged into the base,
    /// gives the trained LoRA model's loss.
    @Test func fusedProjectionsGetOneAdapterPerFusedModule() throws {
        let dir = fixturesDir() + "/arch/phi3"
        let config = try ModelConfig(hfConfigAt: dir + "/config.json")
        let base = try SafetensorsModel(folder: dir)
        let t = Transformer(weights: try ModelWeights.load(config: config, from: base))
        var rng = SplitMix64(seed: 7)
        let examples = (0..<4).map { _ in TrainingExample(ids: (0..<12).map { _ in Int(rng.next() % UInt64(config.vocabSize)) }, responseStart: 5) }
        var o = FineTuneOptions()
        o.rank = 2; o.alpha = 4; o.batch = 2; o.lr = 5e-2
        o.targets = [.q, .v, .o, .gate, .up, .down]
        let tmp = FileManager.default.temporaryDirectory.appendingPathComponent("realign-ft-phi3-\(getpid())").path
        defer { try? FileManager.default.removeItem(atPath: tmp) }
        let run = FineTuneRun(decoder: t, baseName: "phi3", examples: examples, options: o, out: tmp)
        #expect(try run.run(resume: false) { _ in }.steps == 2)

        let cfg = try JSONValue.parseFile(tmp + "/adapter_config.json")
        #expect(cfg["target_modules"] == .array(["qkv_proj", "o_proj", "gate_up_proj", "down_proj"].map { .string($0) }))
        #expect(cfg["rank_pattern"] == .object(JSONObject([("qkv_proj", .int(4)), ("gate_up_proj", .int(4))])))
        #expect(cfg["alpha_pattern"] == .object(JSONObject([("qkv_proj", .int(8)), ("gate_up_proj", .int(8))])))
        let adapter = try LoRAAdapter(folder: tmp)
        let qkv = adapter.modules["model.layers.0.self_attn.qkv_proj.weight"]!
        #expect(qkv.rank == 4 && qkv.scale == 2 && qkv.outFeatures == config.qDim + 2 * config.kvDim)
        let kRows = (config.qDim * 4)..<((config.qDim + config.kvDim) * 4)
        #expect(qkv.b[kRows].allSatisfy { $0 == 0 } && qkv.b.contains { $0 != 0 })

        let total = Double(examples.reduce(0) { $0 + $1.lossTokens })
        let before = t.responseLoss(examples, normalizer: total).lossSum
        t.lora = run.lora
        let trained = t.responseLoss(examples, normalizer: total).lossSum
        t.lora = nil
        let merged = Transformer(weights: try ModelWeights.load(config: config, from: try LoRAMergedParameters(base: base, adapter: adapter)))
        let got = merged.responseLoss(examples, normalizer: total).lossSum
        #expect(abs(trained - before) > 1e-3 * before, "training changed the loss: \(before) → \(trained)")
        #expect(abs(got - trained) < 1e-5 * trained, "merged adapter loss \(got) vs trained LoRA \(trained)")
    }
}
