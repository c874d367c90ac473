import ArgumentParser
import Foundation
import Formats
import Model

struct Finetune: CheckedCommand {
    static let configuration = CommandConfiguration(
        abstract: "LoRA fine-tuning on prompt/response pairs (the paper's harmful fine-tuning attack, §6).",
        discussion: """
        DATA is JSON lines with "prompt" and "response". Each pair is rendered with the model's chat
        template (user turn, then the assistant's response ending with the end-of-turn token); the
        loss is the cross-entropy of the response tokens only. fp32, base weights frozen, AdamW,
        linear decay, gradient clipping, as transformers' Trainer. The defaults are the paper's
        (LoRA r 8, alpha 16, all seven projections, one epoch, lr 2e-4) with batch 4.
        Writes OUT/adapter_config.json + OUT/adapter_model.safetensors (a PEFT adapter),
        OUT/training_log.jsonl (one line per step) and, with --merge, OUT/merged.gguf. Keeps
        OUT/checkpoint.safetensors while running: --resume continues from it.
        """)

    @Argument(help: "The base model (GGUF, HF folder, or embedded name).") var base: String
    @Option(help: "Training pairs (JSONL with \"prompt\" and \"response\"); repeat to mix several files (e.g. task data and harmful pairs).") var data: [String]
    @Option(help: "Output folder.") var out: String
    @Option(parsing: .unconditional, help: "LoRA rank r (at most the smallest dimension of an adapted matrix).") var loraRank = 8
    @Option(parsing: .unconditional, help: "LoRA alpha (the update is scaled by alpha / r).") var loraAlpha = 16.0
    @Option(help: "Adapted projections: all-linear, or a comma list (q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj).") var targets = "all-linear"
    @Option(parsing: .unconditional, help: "Epochs (at most \(FineTuneOptions.maxEpochs)).") var epochs = 1
    @Option(parsing: .unconditional, help: "Peak learning rate (at most \(FineTuneOptions.maxLearningRate)).") var lr = 2e-4
    @Option(parsing: .unconditional, help: "Sequences per forward/backward pass (at most \(FineTuneOptions.maxBatch)).") var batch = 4
    @Option(parsing: .unconditional, help: "Passes per optimiser step (effective batch = batch × grad-accum; at most \(FineTuneOptions.maxGradAccum)).") var gradAccum = 1
    @Option(parsing: .unconditional, help: "Longest sequence in tokens (longer ones are cut; at most the model's context).") var maxLength = 512
    @Option(parsing: .unconditional, help: "Seed of the LoRA initialisation and the data order.") var seed: UInt64 = 0
    @Option(parsing: .unconditional, help: "AdamW weight decay (0 to 1).") var weightDecay = 0.0
    @Option(parsing: .unconditional, help: "Linear warm-up steps.") var warmupSteps = 0
    @Option(help: "Learning-rate schedule after warm-up: linear (decay to 0) or constant.") var schedule = "linear"
    @Option(parsing: .unconditional, help: "Clip the global gradient norm to this (0: off).") var maxGradNorm = 1.0
    @Option(parsing: .unconditional, help: "Stop after this many optimiser steps (the schedule still spans the full run).") var maxSteps: Int?
    @Option(parsing: .unconditional, help: "Write a checkpoint every N steps.") var checkpointEvery = 10
    @Flag(help: "Continue from OUT/checkpoint.safetensors.") var resume = false
    @Flag(help: "Also write the merged model, OUT/merged.gguf (adapted tensors F32).") var merge = false

    func check() throws {
        typealias O = FineTuneOptions
        guard loraRank >= 1 else { throw outOfRange("--lora-rank", loraRank, "at least 1") }
        guard loraAlpha.isFinite, loraAlpha > 0 else { throw outOfRange("--lora-alpha", loraAlpha, "a finite number > 0") }
        guard (1...O.maxEpochs).contains(epochs) else { throw outOfRange("--epochs", epochs, "in 1...\(O.maxEpochs)") }
        guard lr > 0, lr <= O.maxLearningRate else { throw outOfRange("--lr", lr, "in (0, \(O.maxLearningRate)]") }
        guard (1...O.maxBatch).contains(batch) else { throw outOfRange("--batch", batch, "in 1...\(O.maxBatch)") }
        guard (1...O.maxGradAccum).contains(gradAccum) else { throw outOfRange("--grad-accum", gradAccum, "in 1...\(O.maxGradAccum)") }
        guard maxLength >= 2 else { throw outOfRange("--max-length", maxLength, "at least 2 (a prompt and a response token)") }
        guard (0...1).contains(weightDecay) else { throw outOfRange("--weight-decay", weightDecay, "in [0, 1]") }
        guard warmupSteps >= 0 else { throw outOfRange("--warmup-steps", warmupSteps, "≥ 0") }
        guard maxGradNorm.isFinite, maxGradNorm >= 0 else { throw outOfRange("--max-grad-norm", maxGradNorm, "a finite number ≥ 0 (0: off)") }
        if let maxSteps, maxSteps < 1 { throw outOfRange("--max-steps", maxSteps, "at least 1") }
        guard checkpointEvery >= 1 else { throw outOfRange("--checkpoint-every", checkpointEvery, "at least 1") }
        guard LRSchedule(rawValue: schedule) != nil else { throw ValidationError("--schedule must be linear or constant") }
    }

    func run() throws {
        try checkOutputPath(out, kind: .folder, inputs: [base] + data)
        var o = FineTuneOptions()
        o.rank = loraRank; o.alpha = loraAlpha; o.targets = try LoRATarget.parse(targets); o.epochs = epochs; o.lr = lr
        o.batch = batch; o.gradAccum = gradAccum; o.maxLength = maxLength; o.seed = seed; o.weightDecay = weightDecay
        o.warmupSteps = warmupSteps; o.schedule = LRSchedule(rawValue: schedule)!; o.maxGradNorm = maxGradNorm
        o.maxSteps = maxSteps; o.checkpointEvery = checkpointEvery
        guard !data.isEmpty else { throw ValidationError("--data is required") }
        let pairs = try data.flatMap { try readPromptResponsePairs($0) }
        let path = try ModelStore.resolve(base)
        let model = try LanguageModel.load(path)
        let maxRank = FineTuneOptions.maxRank(model.config, targets: o.targets)
        guard loraRank <= maxRank else {
            throw ValidationError("--lora-rank \(loraRank) is more than \(maxRank), the smallest dimension of an adapted matrix of \(path)")
        }
        guard maxLength <= model.config.maxPositions else {
            throw ValidationError("--max-length \(maxLength) is more than the context length of \(path) (\(model.config.maxPositions) tokens)")
        }
        if let limit = model.decoder.config.ropeScaling?.lengthLimit, maxLength > limit {
            throw ValidationError("--max-length \(maxLength) is longer than \(path)'s longrope original length \(limit): longer sequences switch to the long factors, which Realign does not run")
        }
        var examples: [TrainingExample] = []
        for p in pairs {
            if let e = try model.chat.trainingExample(prompt: p.prompt, response: p.response, maxLength: maxLength) { examples.append(e) }
        }
        guard !examples.isEmpty else { throw ValidationError("\(data.joined(separator: ", ")): no pair has a response token within --max-length \(maxLength)") }
        let r = FineTuneRun(decoder: model.decoder, baseName: base, examples: examples, options: o, out: out)
        r.baseDigest = try contentDigest(path)
        let tokens = examples.reduce(0) { $0 + $1.ids.count }
        stderrLine("finetune: \(examples.count) pairs (\(tokens) tokens, \(examples.reduce(0) { $0 + $1.lossTokens }) response tokens), "
                   + "\(r.totalSteps) steps of \(batch * gradAccum), LoRA r \(loraRank) on \(o.targets.map(\.rawValue).joined(separator: ",")): "
                   + "\(r.lora.parameterCount) trainable parameters")
        var summary = try r.run(resume: resume, skipped: pairs.count - examples.count, progress: stderrLine)
        if merge {
            let merged = out + "/merged.gguf"
            stderrLine("writing \(merged)")
            try r.writeMerged(base: path, to: merged)
            summary.merged = merged
        }
        try printJSON(summary)
    }
}
