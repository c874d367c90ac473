import ArgumentParser
import Foundation
import Formats
import Model

struct Finetune: ParsableCommand {
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
    @Option(help: "LoRA rank r.") var loraRank = 8
    @Option(help: "LoRA alpha (the update is scaled by alpha / r).") var loraAlpha = 16.0
    @Option(help: "Adapted projections: all-linear, or a comma list (q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj).") var targets = "all-linear"
    @Option(help: "Epochs.") var epochs = 1
    @Option(help: "Peak learning rate.") var lr = 2e-4
    @Option(help: "Sequences per forward/backward pass.") var batch = 4
    @Option(help: "Passes per optimiser step (effective batch = batch × grad-accum).") var gradAccum = 1
    @Option(help: "Longest sequence in tokens (longer ones are cut).") var maxLength = 512
    @Option(help: "Seed of the LoRA initialisation and the data order.") var seed: UInt64 = 0
    @Option(help: "AdamW weight decay.") var weightDecay = 0.0
    @Option(help: "Linear warm-up steps.") var warmupSteps = 0
    @Option(help: "Learning-rate schedule after warm-up: linear (decay to 0) or constant.") var schedule = "linear"
    @Option(help: "Clip the global gradient norm to this (0: off).") var maxGradNorm = 1.0
    @Option(help: "Stop after this many optimiser steps (the schedule still spans the full run).") var maxSteps: Int?
    @Option(help: "Write a checkpoint every N steps.") var checkpointEvery = 10
    @Flag(help: "Continue from OUT/checkpoint.safetensors.") var resume = false
    @Flag(help: "Also write the merged model, OUT/merged.gguf (adapted tensors F32).") var merge = false

    func validate() throws {
        guard loraRank >= 1, epochs >= 1, batch >= 1, gradAccum >= 1, maxLength >= 2, checkpointEvery >= 1 else {
            throw ValidationError("--lora-rank, --epochs, --batch, --grad-accum, --checkpoint-every must be ≥ 1, --max-length ≥ 2")
        }
        guard lr > 0, maxGradNorm >= 0, weightDecay >= 0, warmupSteps >= 0 else { throw ValidationError("--lr must be > 0; --max-grad-norm, --weight-decay, --warmup-steps ≥ 0") }
        guard LRSchedule(rawValue: schedule) != nil else { throw ValidationError("--schedule must be linear or constant") }
        if let maxSteps, maxSteps < 1 { throw ValidationError("--max-steps must be ≥ 1") }
    }

    func run() throws {
        var o = FineTuneOptions()
        o.rank = loraRank; o.alpha = loraAlpha; o.targets = try LoRATarget.parse(targets); o.epochs = epochs; o.lr = lr
        o.batch = batch; o.gradAccum = gradAccum; o.maxLength = maxLength; o.seed = seed; o.weightDecay = weightDecay
        o.warmupSteps = warmupSteps; o.schedule = LRSchedule(rawValue: schedule)!; o.maxGradNorm = maxGradNorm
        o.maxSteps = maxSteps; o.checkpointEvery = checkpointEvery
        guard !data.isEmpty else { throw ValidationError("--data is required") }
        let pairs = try data.flatMap { try readPromptResponsePairs($0) }
        let path = try ModelStore.resolve(base)
        let model = try LanguageModel.load(path)
        if let limit = model.decoder.config.ropeScaling?.lengthLimit, maxLength > limit {
            throw ValidationError("--max-length \(maxLength) is longer than \(path)'s longrope original length \(limit): longer sequences switch to the long factors, which Realign does not run")
        }
        var examples: [TrainingExample] = []
        for p in pairs {
            if let e = try model.chat.trainingExample(prompt: p.prompt, response: p.response, maxLength: maxLength) { examples.append(e) }
        }
        guard !examples.isEmpty else { throw ValidationError("\(data.joined(separator: ", ")): no pair has a response token within --max-length \(maxLength)") }
        let r = FineTuneRun(decoder: model.decoder, baseName: base, examples: examples, options: o, out: out)
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
