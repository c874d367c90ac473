import ArgumentParser
import Foundation
import Formats
import Model
import Recovery

struct Baseline: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Alternatives to set beside `realign recover`, writing a model the same way.",
        discussion: """
        magnitude and random restore as many weights as a recovery did (--like its patch, or --count), \
        chosen without a gradient: by |fine-tuned − aligned|, or uniformly among the weights fine-tuning \
        changed. reset-blocks sets every weight of the blocks below --layer back to the aligned model's. \
        Each writes OUT (in the fine-tuned model's format), OUT.patch.safetensors and OUT.summary.json. \
        resta adds RESTA's safety vector λ·(aligned − unaligned) and writes OUT, OUT.safety-adapter/ and \
        OUT.summary.json; safe-lora projects a LoRA adapter's updates onto the alignment subspace \
        (aligned − base) and writes OUT, OUT.safe-adapter/ and OUT.summary.json. `realign eval` measures the result.
        """,
        subcommands: [Magnitude.self, Random.self, ResetBlocks.self, Resta.self, SafeLoRA.self])

    /// The models and the output, as `recover` takes them.
    struct Models: ParsableArguments {
        @Option(help: "The aligned model (GGUF, HF folder, or embedded name).") var aligned: String
        @Option(help: "The fine-tuned model (same architecture and sizes); with --adapter, the base the adapter was trained on.") var finetuned: String
        @Option(help: "A PEFT LoRA adapter folder: the fine-tuned model is --finetuned with it merged (fp32).") var adapter: String?
        @Option(help: "Where to write the model (a .gguf file, or a folder for an HF model).") var out: String
        @Option(help: ggufOutputTypeHelp) var dtype: String = "f32"
        @Flag(help: "Print the summary as JSON.") var json = false

        func validate() throws { _ = try ggufOutputType(dtype) }

        var inputs: [String] { [aligned, finetuned] + (adapter.map { [$0] } ?? []) }
    }

    /// The blocks a restore may touch.
    struct Layer: ParsableArguments {
        @Option(parsing: .unconditional, help: "Restore only in the blocks below this hidden-state index, as recover (default ⌊2/3 · layers⌋).") var layer: Int?

        func validate() throws {
            if let layer, layer < 1 { throw outOfRange("--layer", layer, "at least 1 (a block's output)") }
        }
    }

    /// How many weights to restore: a recovery's count, or a number.
    struct Count: ParsableArguments {
        @Option(help: "A recovery's patch (OUT.patch.safetensors of `realign recover`): restore as many weights as it does.") var like: String?
        @Option(parsing: .unconditional, help: "How many weights to restore.") var count: Int?

        func validate() throws {
            guard (like == nil) != (count == nil) else { throw ValidationError("give exactly one of --like and --count") }
            if let count, count < 0 { throw outOfRange("--count", count, "at least 0") }
        }

        func resolve() throws -> Int {
            if let count { return count }
            return try SparsePatch.read(like!).count
        }
    }

    struct Magnitude: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Restore the weights fine-tuning moved most (largest |fine-tuned − aligned|).")
        @OptionGroup var models: Models
        @OptionGroup var layer: Layer
        @OptionGroup var count: Count
        func run() throws { try Baseline.run(.magnitude, models, layer: layer.layer, count: try count.resolve(), seed: nil, inputs: count.like.map { [$0] } ?? []) }
    }

    struct Random: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Restore weights drawn uniformly among those fine-tuning changed.")
        @OptionGroup var models: Models
        @OptionGroup var layer: Layer
        @OptionGroup var count: Count
        @Option(parsing: .unconditional, help: "Seed of the draw.") var seed: UInt64 = 0
        func run() throws { try Baseline.run(.random, models, layer: layer.layer, count: try count.resolve(), seed: seed, inputs: count.like.map { [$0] } ?? []) }
    }

    struct ResetBlocks: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "reset-blocks",
                                                        abstract: "Set every weight of the blocks below --layer (norms included) to the aligned model's.")
        @OptionGroup var models: Models
        @OptionGroup var layer: Layer
        func run() throws { try Baseline.run(.resetBlocks, models, layer: layer.layer, count: 0, seed: nil, inputs: []) }
    }

    struct Resta: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "RESTA: add the safety vector λ·(aligned − unaligned) to the fine-tuned model.",
            discussion: """
            The unaligned model is the aligned one with a LoRA adapter trained on harmful pairs \
            (`realign finetune ALIGNED --data HARMFUL.jsonl --epochs 3`); the vector is then itself an adapter, \
            written to OUT.safety-adapter/ and merged into the fine-tuned model (in fp32). Choose --lambda on \
            validation prompts (`realign eval --harmful … --benign …` of a few values), never on the ones you report.
            """)
        @OptionGroup var models: Models
        @Option(help: "The unaligned model: a PEFT LoRA adapter folder over --aligned, trained on harmful pairs.") var unaligned: String
        @Option(parsing: .unconditional, help: "λ, the safety vector's weight.") var lambda: Double = 1

        func validate() throws {
            guard lambda.isFinite, lambda > 0, lambda <= 100 else { throw ValidationError("--lambda must be in (0, 100], not \(lambda)") }
        }

        func run() throws {
            let t0 = Date(), m = models
            let paths = try Baseline.mergedOutputs(m, adapterSuffix: "safety-adapter", inputs: [unaligned])
            let aligned = try ModelStore.resolve(m.aligned), finetuned = try ModelStore.resolve(m.finetuned)
            let (a, _, config) = try openAlignedAndFinetuned(aligned: aligned, finetuned: finetuned, adapter: m.adapter)
            let u = try LoRAAdapter(folder: unaligned)
            try u.checkBase(config, model: aligned)
            _ = try LoRAMergedParameters(base: a, adapter: u)   // U's modules fit A (and so F): refused here, before any work
            let modules = restaSafetyAdapter(unaligned: u, lambda: lambda, finetunedAdapter: try m.adapter.map { try LoRAAdapter(folder: $0) })
            try Baseline.writeMerged(m, finetuned: finetuned, modules: modules, paths: paths) {
                RestaSummary(aligned: aligned, finetuned: finetuned, adapter: m.adapter, unaligned: unaligned, lambda: lambda,
                             safety_adapter: paths.adapter, changed_tensors: modules.count, seconds: Date().timeIntervalSince(t0))
            } done: { String(format: "baseline resta: λ %g, %ld tensors changed, %.1f s", $0.lambda, $0.changed_tensors, $0.seconds) }
        }
    }

    struct SafeLoRA: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "safe-lora",
            abstract: "Safe LoRA: project the fine-tune's LoRA updates onto the alignment subspace (aligned − base).",
            discussion: """
            The fine-tuned model is --finetuned (the aligned model the adapter was trained on) plus --adapter. \
            Each adapted weight's update ΔW is replaced by C·ΔW, C = V·Vᵀ/‖V‖ with V = aligned − base for that \
            weight, when cos(ΔW, C·ΔW) < --threshold. Needs the unaligned base model of the aligned one (e.g. \
            Qwen2.5-0.5B for Qwen2.5-0.5B-Instruct); the embedded models come without theirs. Writes OUT, \
            OUT.safe-adapter/ (the projected adapter) and OUT.summary.json.
            """)
        @OptionGroup var models: Models
        @Option(help: "The unaligned base model the aligned one was aligned from (same architecture and sizes).") var base: String
        @Option(parsing: .unconditional, help: "Project the layers whose similarity cos(ΔW, C·ΔW) is below this (above 1: all of them; below −1: none).") var threshold: Double = 0.5

        func validate() throws {
            guard models.adapter != nil else { throw ValidationError("safe-lora needs --adapter: the fine-tune's LoRA adapter over --finetuned") }
            guard threshold.isFinite, (-2...2.0).contains(threshold) else { throw ValidationError("--threshold must be in [-2, 2], not \(threshold)") }
        }

        func run() throws {
            let t0 = Date(), m = models
            let paths = try Baseline.mergedOutputs(m, adapterSuffix: "safe-adapter", inputs: [base])
            let aligned = try ModelStore.resolve(m.aligned), finetuned = try ModelStore.resolve(m.finetuned), basePath = try ModelStore.resolve(base)
            let (a, _, _) = try openAlignedAndFinetuned(aligned: aligned, finetuned: finetuned, adapter: m.adapter)   // the adapter fits
            let (_, b, _) = try openAlignedAndFinetuned(aligned: aligned, finetuned: basePath, adapter: nil)   // the base has A's sizes
            let (modules, layers) = try safeLoRAAdapter(try LoRAAdapter(folder: m.adapter!), aligned: a, base: b, threshold: threshold)
            try Baseline.writeMerged(m, finetuned: finetuned, modules: modules, paths: paths) {
                SafeLoRASummary(aligned: aligned, base: basePath, finetuned: finetuned, adapter: m.adapter!, threshold: threshold,
                                projected: layers.filter(\.projected).count, layers: layers, safe_adapter: paths.adapter,
                                seconds: Date().timeIntervalSince(t0))
            } done: { String(format: "baseline safe-lora: %ld of %ld adapted weights projected, %.1f s", $0.projected, $0.layers.count, $0.seconds) }
        }
    }

    /// The outputs of a method that writes an adapter and merges it into F (resta, safe-lora):
    /// OUT, OUT.<adapterSuffix>/ and OUT.summary.json, checked against every input before any work.
    static func mergedOutputs(_ m: Models, adapterSuffix: String, inputs: [String]) throws -> (adapter: String, summary: String) {
        let adapter = m.out + "." + adapterSuffix, summary = m.out + ".summary.json", all = m.inputs + inputs
        try checkOutputPath(m.out, kind: isDirectory(m.finetuned) ? .folder : .file, inputs: all)
        try checkOutputPath(adapter, kind: .folder, inputs: all)
        try checkOutputPath(summary, kind: .file, inputs: all)
        return (adapter, summary)
    }

    /// Writes the adapter, F with it merged (OUT) and the summary (made once both are written).
    static func writeMerged<S: Encodable>(_ m: Models, finetuned: String, modules: [(weights: LoRAAdapter.Weights, rank: Int)],
                                          paths: (adapter: String, summary: String), summary: () -> S, done: (S) -> String) throws {
        try writeUnscaledAdapter(modules, to: paths.adapter, baseModel: finetuned)
        try ModelOutput.write(finetuned: finetuned, adapter: paths.adapter, patch: SparsePatch(), to: m.out, ggufType: try ggufOutputType(m.dtype),
                              overwrite: true) { progressLine($0) }
        let s = summary()
        try writeAtomically(try jsonLine(s), to: paths.summary)
        progressLine(done(s), final: true)
        if m.json { try printJSON(s) } else { print("\(m.out)\n\(paths.adapter)\n\(paths.summary)") }
    }

    struct SafeLoRASummary: Encodable {
        var method = "safe-lora"
        var aligned, base, finetuned, adapter: String
        var threshold: Double
        var projected: Int
        var layers: [SafeLoRALayer]
        var safe_adapter: String
        var seconds: Double
    }

    struct RestaSummary: Encodable {
        var method = "resta"
        var aligned, finetuned: String
        var adapter: String?
        var unaligned: String
        var lambda: Double
        var safety_adapter: String
        var changed_tensors: Int
        var seconds: Double
    }

    static func run(_ method: RestoreBaseline, _ m: Models, layer: Int?, count: Int, seed: UInt64?, inputs: [String]) throws {
        let t0 = Date()
        let modelInputs = m.inputs + inputs
        let patchPath = m.out + ".patch.safetensors", summaryPath = m.out + ".summary.json"
        try checkOutputPath(m.out, kind: isDirectory(m.finetuned) ? .folder : .file, inputs: modelInputs)
        for p in [patchPath, summaryPath] { try checkOutputPath(p, kind: .file, inputs: modelInputs) }
        let aligned = try ModelStore.resolve(m.aligned), finetuned = try ModelStore.resolve(m.finetuned)
        let (a, f, config) = try openAlignedAndFinetuned(aligned: aligned, finetuned: finetuned, adapter: m.adapter)
        let layer = layer ?? Direction.defaultLayer(layers: config.numLayers)
        guard layer < config.numLayers else { throw outOfRange("--layer", layer, "in 1...\(config.numLayers - 1) (a block output before the final norm)") }
        let (patch, weights, differing) = try baselinePatch(method, aligned: a, finetuned: f, config: config, layer: layer, count: count,
                                                            seed: seed ?? 0, model: try ModelIdentity.of(finetuned, adapter: m.adapter)) { done in
            let s = Date().timeIntervalSince(t0)
            progressLine(String(format: "baseline %@: block %ld/%ld, %.1f s, ETA %.0f s", method.rawValue, done, layer, s, s / Double(done) * Double(layer - done)))
        }
        if count > differing && method != .resetBlocks {
            stderrLine("baseline \(method.rawValue): only \(differing) weights differ below layer \(layer); all of them are restored, not \(count)")
        }
        try patch.write(to: patchPath)
        try ModelOutput.write(finetuned: finetuned, adapter: m.adapter, patch: patch, to: m.out, ggufType: try ggufOutputType(m.dtype),
                              overwrite: true) { progressLine($0) }
        let (perLayer, perModule) = patch.countsPerLayerAndModule
        let summary = BaselineSummary(method: method.rawValue, aligned: aligned, finetuned: finetuned, adapter: m.adapter, layer: layer,
                                      weights: weights, differing: differing, restored: patch.count, seed: seed,
                                      per_layer: perLayer, per_module: perModule, seconds: Date().timeIntervalSince(t0))
        try writeAtomically(try jsonLine(summary), to: summaryPath)
        progressLine(String(format: "baseline %@: %ld of %ld weights restored (%ld differ), %.1f s", method.rawValue, patch.count, weights, differing,
                            summary.seconds), final: true)
        if m.json { try printJSON(summary) } else { print("\(m.out)\n\(patchPath)\n\(summaryPath)") }
    }
}
