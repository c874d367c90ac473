import ArgumentParser
import Foundation
import Formats
import Model
import Recovery

struct DirectionCommand: CheckedCommand {
    static let configuration = CommandConfiguration(
        commandName: "direction",
        abstract: "Save a model's harmful direction: the mean last-prompt-token hidden state at one layer.",
        discussion: """
        Prompts are rendered with the chat template (generation prompt added, the template's default
        system prompt). The layer is a hidden-state index as in transformers' output_hidden_states:
        L means the output of block L (1-based), i.e. blocks 0..L-1 run; the default is ⌊2/3 · layers⌋
        (16 for Qwen2.5-0.5B's 24 layers). The output is a safetensors file with one tensor "direction".
        """)

    @Argument(help: "GGUF file, HF folder or embedded model name.") var model: String
    @Option(help: "A PEFT LoRA adapter folder to merge into MODEL (fp32).") var adapter: String?
    @Option(help: "Prompt file (one per line or JSON lines with \"prompt\"); default: the built-in 256 Do-Not-Answer prompts.") var prompts: String?
    @Option(help: "Benign prompts, same format: the direction is then the difference of the two means (harmful − benign, a refusal direction as in Arditi et al. 2024, for eval --steer).") var subtract: String?
    @Option(parsing: .unconditional, help: "Hidden-state index (default ⌊2/3 · layers⌋).") var layer: Int?
    @Option(parsing: .unconditional, help: "Prompts per batch.") var batchSize = 16
    @Option(help: "Where to write the direction (.safetensors).") var out: String
    @Flag(help: "Print a JSON summary.") var json = false

    func check() throws {
        guard batchSize >= 1 else { throw outOfRange("--batch-size", batchSize, "at least 1") }
        if let layer, layer < 0 { throw outOfRange("--layer", layer, "a hidden-state index ≥ 0") }
    }

    func run() throws {
        try checkOutputPath(out, kind: .file, inputs: [model] + [adapter, prompts, subtract].compactMap { $0 })
        let m = try LanguageModel.load(model, adapter: adapter)
        let l = layer ?? Recovery.Direction.defaultLayer(layers: m.config.numLayers)
        guard l >= 0, l <= m.config.numLayers else { throw ValidationError("--layer must be in 0...\(m.config.numLayers)") }
        let ids = try prompts.map { try promptIds(try readPromptLines($0), of: $0, chat: m.chat) }
            ?? RecoverySet.doNotAnswer256.map { try m.chat.promptIds($0) }
        // The benign prompts of --subtract fit the context too, before any work.
        let benign = try subtract.map { try promptIds(try readPromptLines($0), of: $0, chat: m.chat) }
        let start = Date()
        let mean = m.decoder.meanLastTokenState(ids, layer: l, batchSize: batchSize) { done in
            progressLine("direction: \(done)/\(ids.count) prompts, \(String(format: "%.1f", Date().timeIntervalSince(start))) s", final: done == ids.count)
        }
        guard allFinite(mean) else { throw m.decoder.nonFiniteError("hidden states", sequences: ids, blocks: l) }
        var values = mean
        if let benign {
            let other = m.decoder.meanLastTokenState(benign, layer: l, batchSize: batchSize)
            guard allFinite(other) else { throw m.decoder.nonFiniteError("hidden states", sequences: benign, blocks: l) }
            values = zip(mean, other).map { $0 - $1 }
        }
        let d = Recovery.Direction(values: values, layer: l, prompts: ids.count, model: m.path)
        try d.write(to: out)
        let norm = values.reduce(0) { $0 + Double($1) * Double($1) }.squareRoot()
        if json {
            try printJSON(["out": out, "layer": String(l), "prompts": String(ids.count), "norm": String(norm)])
        } else {
            print("\(out): layer \(l), \(ids.count) prompts, norm \(String(format: "%.4f", norm))")
        }
    }
}
