import Foundation
import Formats
import Tensor

// `realign finetune`: LoRA supervised fine-tuning with the loss on response tokens only, as
// transformers' Trainer / TRL's SFTTrainer run it (AdamW, linear decay, gradient clipping at
// 1.0, shuffled epochs), in fp32 on the CPU. Checkpoints are atomic; `resume` continues a run
// bit for bit.

public struct FineTuneOptions: Codable, Equatable, Sendable {
    public var rank = 8
    public var alpha = 16.0
    public var targets: [LoRATarget] = LoRATarget.allCases
    public var epochs = 1
    public var lr = 2e-4
    /// Sequences per forward/backward pass (micro-batch).
    public var batch = 4
    /// Micro-batches per optimiser step: the effective batch is batch × gradAccum.
    public var gradAccum = 1
    public var maxLength = 512
    public var seed: UInt64 = 0
    public var weightDecay = 0.0
    public var warmupSteps = 0
    public var schedule = LRSchedule.linear
    /// 0 disables clipping.
    public var maxGradNorm = 1.0
    /// Stop after this many optimiser steps (the schedule still spans the full run).
    public var maxSteps: Int?
    public var checkpointEvery = 10
    public init() {}

    // Caps on the counts: far above any useful value, low enough that the step arithmetic
    // (batch × grad-accum, epochs × steps per epoch) stays far from overflow and a typo fails
    // at once instead of allocating terabytes or running for ever.
    /// The paper fine-tunes for 1–5 epochs.
    public static let maxEpochs = 1_000
    /// Sequences per pass: 1024 of 512 tokens already need tens of GB of activations.
    public static let maxBatch = 1_024
    /// An effective batch of 1024 × 4096 sequences is more than any data set here.
    public static let maxGradAccum = 4_096
    /// AdamW moves each weight by about lr per step: above 1 a step rewrites the adapter wholesale.
    public static let maxLearningRate = 1.0

    /// The largest LoRA rank for `targets` of a model: A [r × in] and B [out × r] of rank above
    /// min(out, in) of an adapted matrix add parameters, not rank.
    public static func maxRank(_ config: ModelConfig, targets: [LoRATarget]) -> Int {
        targets.map { min($0.shape(config).out, $0.shape(config).in) }.min() ?? 0
    }
}

/// Reads a JSONL file of {"prompt": …, "response": …} objects.
public func readPromptResponsePairs(_ path: String) throws -> [(prompt: String, response: String)] {
    let text = try MappedFile.text(path, maxBytes: FileLimits.dataBytes)
    var pairs: [(prompt: String, response: String)] = []
    for (i, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated()
    where !line.trimmingCharacters(in: .whitespaces).isEmpty {
        let v: JSONValue
        do { v = try JSONValue.parse(String(line)) } catch { throw FormatError(path, "line \(i + 1): not JSON (\(error))") }
        guard let p = v["prompt"]?.string, let r = v["response"]?.string else {
            throw FormatError(path, "line \(i + 1): needs string fields \"prompt\" and \"response\"")
        }
        pairs.append((p, r))
    }
    guard !pairs.isEmpty else { throw FormatError(path, "no prompt/response pairs") }
    return pairs
}

/// One optimiser step's record (a line of OUT/training_log.jsonl).
public struct StepRecord: Codable, Sendable {
    public var step: Int          // 1-based
    public var epoch: Double      // fractional, as transformers logs it
    public var loss: Double       // mean cross-entropy over the step's response tokens (nats)
    public var lr: Double
    public var grad_norm: Double  // before clipping
    public var tokens: Int        // all tokens run (prompt + response)
    public var loss_tokens: Int
    public var seconds: Double
    public var gflops: Double     // matrix-product FLOPs of the step / seconds
}

public struct FineTuneSummary: Codable, Sendable {
    public var out: String
    public var adapter: String
    public var merged: String?
    public var examples: Int
    public var skipped_examples: Int
    public var steps: Int
    public var total_steps: Int
    public var first_loss: Double
    public var last_loss: Double
    public var tokens_per_second: Double
    public var gflops_per_second: Double
    public var seconds: Double
    public var seconds_per_epoch: Double
    public var peak_memory_mb: Double
    public var trainable_parameters: Int
}

public final class FineTuneRun {
    public let decoder: Transformer
    public let baseName: String
    /// The base model's content digest (`contentDigest`): a checkpoint of another base is refused.
    public var baseDigest = ""
    public let examples: [TrainingExample]
    public let options: FineTuneOptions
    public let out: String
    public let lora: LoRA
    public var checkpointPath: String { out + "/checkpoint.safetensors" }
    public var logPath: String { out + "/training_log.jsonl" }

    public init(decoder: Transformer, baseName: String, examples: [TrainingExample], options: FineTuneOptions, out: String) {
        precondition(!examples.isEmpty)
        self.decoder = decoder; self.baseName = baseName; self.examples = examples; self.options = options; self.out = out
        lora = LoRA(config: decoder.config, rank: options.rank, alpha: Float(options.alpha), targets: options.targets)
        lora.initialise(seed: options.seed)
    }

    /// Examples per optimiser step (batch × grad-accum; saturates instead of overflowing).
    var perStep: Int {
        let (n, overflow) = max(options.batch, 1).multipliedReportingOverflow(by: max(options.gradAccum, 1))
        return overflow ? Int.max : n
    }
    public var stepsPerEpoch: Int { examples.count / perStep + (examples.count % perStep == 0 ? 0 : 1) }
    /// epochs × steps per epoch, saturating (this module is built without overflow checks).
    public var totalSteps: Int {
        let (n, overflow) = max(options.epochs, 1).multipliedReportingOverflow(by: stepsPerEpoch)
        return overflow ? Int.max : n
    }

    /// The examples of epoch e in training order: a Fisher–Yates shuffle from SplitMix64(seed + 1 + e).
    func order(epoch e: Int) -> [Int] {
        var idx = Array(0..<examples.count)
        var rng = SplitMix64(seed: options.seed &+ 1 &+ UInt64(e))
        for i in stride(from: idx.count - 1, to: 0, by: -1) { idx.swapAt(i, Int(rng.next() % UInt64(i + 1))) }
        return idx
    }

    /// Identity of the run a checkpoint must match: options (but where to stop and how often to
    /// checkpoint), base model, data.
    var fingerprint: String {
        var options = options
        options.maxSteps = nil; options.checkpointEvery = 0
        var h = SHA256()
        for e in examples { for id in e.ids { withUnsafeBytes(of: Int32(id).littleEndian) { h.update($0) } }; h.update([UInt8(e.responseStart & 255)]) }
        let opts = (try? String(data: JSONEncoder.sorted.encode(options), encoding: .utf8)) ?? ""
        return "\(baseName)|\(baseDigest)|\(opts)|\(h.finalizeHex())"
    }

    public func run(resume: Bool, skipped: Int = 0, progress: (String) -> Void) throws -> FineTuneSummary {
        try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
        removeStaleTemporaries(of: out, everything: true)   // a killed run's half-written checkpoint or model
        let t = decoder
        t.lora = lora
        defer { t.lora = nil }
        let params = lora.parameters
        let opt = AdamW(sizes: params.map(\.value.count))
        opt.weightDecay = Float(options.weightDecay)
        var log: [StepRecord] = []
        if resume, FileManager.default.fileExists(atPath: checkpointPath) {
            log = try loadCheckpoint(opt)
            progress("resumed from \(checkpointPath) at step \(log.count)/\(totalSteps)")
        }
        let lastStep = min(totalSteps, options.maxSteps ?? totalSteps)
        let acts = Activations()
        let started = Date()
        var runSeconds = 0.0, runTokens = 0, runFlops = 0.0, runSteps = 0
        var order = order(epoch: log.count / stepsPerEpoch)
        for s in log.count..<lastStep {
            let epoch = s / stepsPerEpoch, k = s % stepsPerEpoch
            if k == 0 { order = self.order(epoch: epoch) }
            let chosen = order[(k * perStep)..<min((k + 1) * perStep, examples.count)].map { examples[$0] }
            let normalizer = chosen.reduce(0) { $0 + $1.lossTokens }
            let t0 = Date()
            lora.zeroGradients()
            var lossSum = 0.0, tokens = 0, flops = 0.0
            for m in stride(from: 0, to: chosen.count, by: options.batch) {
                let micro = Array(chosen[m..<min(m + options.batch, chosen.count)])
                let r = t.responseLoss(micro, normalizer: Double(normalizer), reusing: acts)
                lossSum += r.lossSum
                tokens += acts.tokens
                flops += t.trainingFlops(acts, lossTokens: r.tokens)
            }
            // A NaN must stop the run before it reaches the adapter, the log or a checkpoint.
            if !lossSum.isFinite { throw nonFinite("loss at step \(s + 1)", chosen) }
            let norm = clipGradientNorm(params.map(\.grad), maxNorm: Float(options.maxGradNorm))
            if !norm.isFinite { throw nonFinite("gradient norm at step \(s + 1)", chosen) }
            let lr = options.schedule.rate(step: s, total: totalSteps, warmup: options.warmupSteps, peak: options.lr)
            opt.update(params.map { ($0.value, $0.grad) }, lr: Float(lr))
            let secs = Date().timeIntervalSince(t0)
            let rec = StepRecord(step: s + 1, epoch: Double(s + 1) / Double(stepsPerEpoch), loss: lossSum / Double(normalizer), lr: lr,
                                 grad_norm: norm, tokens: tokens, loss_tokens: normalizer, seconds: secs, gflops: flops / secs / 1e9)
            log.append(rec)
            runSeconds += secs; runTokens += tokens; runFlops += flops; runSteps += 1
            let eta = runSeconds / Double(runSteps) * Double(lastStep - s - 1)
            progress(String(format: "step %ld/%ld  epoch %.2f  loss %.4f  lr %.2e  |g| %.3f  %.0f tokens/s  %.1f GFLOP/s  ETA %@",
                            s + 1, lastStep, rec.epoch, rec.loss, lr, norm, Double(tokens) / secs, rec.gflops, formatDuration(eta)))
            if (s + 1) % options.checkpointEvery == 0 && s + 1 < lastStep { try saveCheckpoint(opt, log) }
        }
        try writeLog(log)
        let adapterDir = out
        try writeAdapter(to: adapterDir)
        // Stopped early (--max-steps): keep a checkpoint so that --resume can finish the run.
        if log.count < totalSteps { try saveCheckpoint(opt, log) } else { try? FileManager.default.removeItem(atPath: checkpointPath) }
        let wall = Date().timeIntervalSince(started)
        let tokensPerEpoch = Double(examples.reduce(0) { $0 + $1.ids.count })
        let tps = runSeconds > 0 ? Double(runTokens) / runSeconds : 0
        return FineTuneSummary(
            out: out, adapter: adapterDir, merged: nil, examples: examples.count, skipped_examples: skipped, steps: log.count,
            total_steps: totalSteps, first_loss: log.first?.loss ?? .nan, last_loss: log.last?.loss ?? .nan,
            tokens_per_second: tps, gflops_per_second: runSeconds > 0 ? runFlops / runSeconds / 1e9 : 0, seconds: wall,
            seconds_per_epoch: tps > 0 ? tokensPerEpoch / tps : 0, peak_memory_mb: peakMemoryMB(),
            trainable_parameters: lora.parameterCount)
    }

    /// The error for a non-finite loss or gradient on `chosen`: where the base model's own forward
    /// pass overflows, or, when it does not, a diverging run.
    func nonFinite(_ what: String, _ chosen: [TrainingExample]) -> NonFiniteError {
        let e = decoder.nonFiniteError(what, sequences: chosen.map(\.ids))
        if e.firstAt != nil { return e }
        return NonFiniteError(model: e.model, what: what + " (the model's own activations are finite: the training diverged; try a lower --lr)", firstAt: nil)
    }

    // MARK: - files

    /// The adapter as a PEFT folder (adapter_config.json + adapter_model.safetensors, F32),
    /// by `LoRAAdapter.write`. A model that stores q/k/v and gate/up fused (phi3) has no
    /// q_proj … up_proj modules for PEFT to adapt: their adapters are written as one LoRA on
    /// the fused module, A = the parts' A stacked, B = their B block-diagonal (zero rows for
    /// parts not targeted), rank and alpha × the number of parts (rank_pattern,
    /// alpha_pattern) so the scale stays alpha/r. That is the same W + s·B·A, exactly.
    public func writeAdapter(to dir: String) throws {
        let c = decoder.config, r = lora.rank
        let groups: [(module: String, parts: [LoRATarget])] = c.traits.fusedProjections
            ? [("self_attn.qkv_proj", [.q, .k, .v]), ("self_attn.o_proj", [.o]), ("mlp.gate_up_proj", [.gate, .up]), ("mlp.down_proj", [.down])]
            : LoRATarget.allCases.map { ($0.modulePath, [$0]) }
        var modules: [LoRAAdapter.Weights] = [], targetModules: [String] = []
        var rankPattern: [(String, Int)] = [], alphaPattern: [(String, Double)] = []
        for g in groups {
            let targeted = g.parts.filter(lora.targets.contains)
            guard !targeted.isEmpty else { continue }
            let name = String(g.module.split(separator: ".").last!), rank = r * targeted.count
            targetModules.append(name)
            if targeted.count > 1 {
                rankPattern.append((name, rank)); alphaPattern.append((name, Double(lora.alpha) * Double(targeted.count)))
            }
            let rows = g.parts.map { $0.shape(c).out }, inFeatures = g.parts[0].shape(c).in
            for (l, layer) in lora.modules.enumerated() {
                var a: [Float] = [], b = [Float](repeating: 0, count: rows.reduce(0, +) * rank)
                var row0 = 0
                for (part, n) in zip(g.parts, rows) {
                    defer { row0 += n }
                    guard let m = layer[part], let slot = targeted.firstIndex(of: part) else { continue }
                    a += m.a.array                                  // [r × in] rows slot·r ..< (slot+1)·r
                    for i in 0..<n { for j in 0..<r { b[(row0 + i) * rank + slot * r + j] = m.b.ptr[i * r + j] } }
                }
                precondition(a.count == rank * inFeatures)
                modules.append(LoRAAdapter.Weights(name: "model.layers.\(l).\(g.module).weight", a: a, b: b))
            }
        }
        try LoRAAdapter.write(to: dir, modules: modules, rank: r, alpha: Double(lora.alpha), rankPattern: rankPattern,
                              alphaPattern: alphaPattern, targetModules: targetModules, baseModel: baseName)
    }

    func writeLog(_ log: [StepRecord]) throws {
        let enc = JSONEncoder.sorted
        var text = ""
        for r in log { text += String(data: try enc.encode(r), encoding: .utf8)! + "\n" }
        try writeAtomically(Data(text.utf8), to: logPath)
    }

    func saveCheckpoint(_ opt: AdamW, _ log: [StepRecord]) throws {
        var entries: [SafetensorsEntry] = []
        for (k, p) in lora.parameters.enumerated() {
            entries.append(.floats(p.name, shape: p.shape, as: .f32, p.value.array))
            entries.append(.floats("adam_m." + p.name, shape: p.shape, as: .f32, opt.m[k].array))
            entries.append(.floats("adam_v." + p.name, shape: p.shape, as: .f32, opt.v[k].array))
        }
        let logJSON = String(data: try JSONEncoder.sorted.encode(log), encoding: .utf8)!
        try SafetensorsWriter.write(entries, metadata: ["run": fingerprint, "log": logJSON, "adam_step": String(opt.step)], to: checkpointPath)
    }

    func loadCheckpoint(_ opt: AdamW) throws -> [StepRecord] {
        let f = try SafetensorsFile(path: checkpointPath)
        guard f.metadata["run"] == fingerprint else {
            throw FormatError(checkpointPath, "was written by a run with other options, base model or data; remove it or drop --resume")
        }
        guard let logText = f.metadata["log"], let step = f.metadata["adam_step"].flatMap(Int.init) else {
            throw FormatError(checkpointPath, "has no training log")
        }
        let log = try JSONDecoder().decode([StepRecord].self, from: Data(logText.utf8))
        for (k, p) in lora.parameters.enumerated() {
            try f.readFloats(p.name, into: p.value.ptr)
            try f.readFloats("adam_m." + p.name, into: opt.m[k].ptr)
            try f.readFloats("adam_v." + p.name, into: opt.v[k].ptr)
        }
        opt.step = step
        return log
    }
}

extension JSONEncoder {
    static var sorted: JSONEncoder { let e = JSONEncoder(); e.outputFormatting = [.sortedKeys]; return e }
}

/// "1h02m", "4m05s", "12s".
public func formatDuration(_ s: Double) -> String {
    guard s.isFinite, abs(s) < 1e12 else { return "?" }   // an ETA from a zero or absurd rate
    let t = Int(s.rounded())
    if t >= 3600 { return String(format: "%ldh%02ldm", t / 3600, t % 3600 / 60) }
    if t >= 60 { return String(format: "%ldm%02lds", t / 60, t % 60) }
    return "\(t)s"
}

/// Peak resident memory of this process (VmHWM), in MB; 0 where /proc is absent.
public func peakMemoryMB() -> Double {
    guard let s = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
          let line = s.split(separator: "\n").first(where: { $0.hasPrefix("VmHWM:") }),
          let kb = line.split(separator: " ").dropFirst().first.flatMap({ Double($0) }) else { return 0 }
    return kb / 1024
}

extension FineTuneRun {
    /// The base model with the adapter (as written in OUT) merged, W + s·B·A by
    /// `LoRAMergedParameters`, as a GGUF: every adapted tensor stored F32 (its dequantised base
    /// values plus the delta), every other tensor and all metadata (tokenizer, chat template)
    /// copied unchanged.
    public func writeMerged(base path: String, to outPath: String) throws {
        guard !isDirectory(path) else {
            throw FormatError(path, "--merge writes GGUF from a GGUF base; for an HF folder base use the adapter (realign … --adapter, or PEFT)")
        }
        let g = try GGUFFile(path: path)
        let merged = try LoRAMergedParameters(base: g, adapter: try LoRAAdapter(folder: out))
        var adapted: [String: String] = [:]     // GGUF name → HF name
        for hf in merged.adapter.weightNames {
            guard let gname = TensorNames.gguf(fromHF: hf), g.tensor(gname) != nil else { throw FormatError(path, "has no tensor for \(hf)") }
            adapted[gname] = hf
        }
        let tensors: [GGUFTensorEntry] = g.tensors.map { info in
            guard let hf = adapted[info.name] else { return .copy(info, of: g) }
            return .floats(info.name, shape: info.shape, as: .f32) { dst in
                try merged.read(hf, into: dst, count: info.elementCount)          // HF layout [out × in]
                if let heads = try g.qkPermutationHeads(hf) {                      // back to the file's row order
                    try permuteQKRows(dst, rows: info.rows, columns: info.columns, heads: heads, source: path)
                }
            }
        }
        let keep = g.metadataEntries.filter { !$0.key.hasPrefix("realign.") }
        let provenance = [GGUFMetadataEntry("realign.lora_merged", .string(URL(fileURLWithPath: out).lastPathComponent))]
        try GGUFWriter.write(metadata: keep + provenance, tensors: tensors, to: outPath)
    }
}
