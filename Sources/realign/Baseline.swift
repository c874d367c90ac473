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
        Each writes OUT (in the fine-tuned model's format), OUT.patch.safetensors and OUT.summary.json; \
        `realign eval` measures the result.
        """,
        subcommands: [Magnitude.self, Random.self, ResetBlocks.self])

    /// The models and the output, as `recover` takes them.
    struct Models: ParsableArguments {
        @Option(help: "The aligned model (GGUF, HF folder, or embedded name).") var aligned: String
        @Option(help: "The fine-tuned model (same architecture and sizes); with --adapter, the base the adapter was trained on.") var finetuned: String
        @Option(help: "A PEFT LoRA adapter folder: the fine-tuned model is --finetuned with it merged (fp32).") var adapter: String?
        @Option(help: "Where to write the model (a .gguf file, or a folder for an HF model).") var out: String
        @Option(parsing: .unconditional, help: "Restore only in the blocks below this hidden-state index, as recover (default ⌊2/3 · layers⌋).") var layer: Int?
        @Option(help: ggufOutputTypeHelp) var dtype: String = "f32"
        @Flag(help: "Print the summary as JSON.") var json = false

        func validate() throws {
            if let layer, layer < 1 { throw outOfRange("--layer", layer, "at least 1 (a block's output)") }
            _ = try ggufOutputType(dtype)
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
        @OptionGroup var count: Count
        func run() throws { try Baseline.run(.magnitude, models, count: try count.resolve(), seed: nil, inputs: count.like.map { [$0] } ?? []) }
    }

    struct Random: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Restore weights drawn uniformly among those fine-tuning changed.")
        @OptionGroup var models: Models
        @OptionGroup var count: Count
        @Option(parsing: .unconditional, help: "Seed of the draw.") var seed: UInt64 = 0
        func run() throws { try Baseline.run(.random, models, count: try count.resolve(), seed: seed, inputs: count.like.map { [$0] } ?? []) }
    }

    struct ResetBlocks: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "reset-blocks",
                                                        abstract: "Set every weight of the blocks below --layer (norms included) to the aligned model's.")
        @OptionGroup var models: Models
        func run() throws { try Baseline.run(.resetBlocks, models, count: 0, seed: nil, inputs: []) }
    }

    static func run(_ method: RestoreBaseline, _ m: Models, count: Int, seed: UInt64?, inputs: [String]) throws {
        let t0 = Date()
        let modelInputs = [m.aligned, m.finetuned] + (m.adapter.map { [$0] } ?? []) + inputs
        let patchPath = m.out + ".patch.safetensors", summaryPath = m.out + ".summary.json"
        try checkOutputPath(m.out, kind: isDirectory(m.finetuned) ? .folder : .file, inputs: modelInputs)
        for p in [patchPath, summaryPath] { try checkOutputPath(p, kind: .file, inputs: modelInputs) }
        let aligned = try ModelStore.resolve(m.aligned), finetuned = try ModelStore.resolve(m.finetuned)
        let (a, f, config) = try openAlignedAndFinetuned(aligned: aligned, finetuned: finetuned, adapter: m.adapter)
        let layer = m.layer ?? Direction.defaultLayer(layers: config.numLayers)
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
