import ArgumentParser
import Foundation
import Model
import Recovery

struct Compare: CheckedCommand {
    static let configuration = CommandConfiguration(
        abstract: "Cosine similarities between directions (files from `realign direction`, or models: their direction is computed).")

    @Argument(help: "Direction files or models (GGUF, HF folder, embedded name).") var items: [String]
    @Option(help: "Prompts for models given instead of direction files (default: the built-in recovery set).") var prompts: String?
    @Option(parsing: .unconditional, help: "Hidden-state index for models (default: that of the first direction file, else ⌊2/3 · layers⌋).") var layer: Int?
    @Flag(help: "Print JSON: {\"names\": [...], \"cosine\": [[...]]}.") var json = false

    func check() throws {
        if items.count < 2 { throw ValidationError("give at least two directions or models") }
        if let layer, layer < 0 { throw outOfRange("--layer", layer, "a hidden-state index ≥ 0") }
    }

    func run() throws {
        var dirs: [Recovery.Direction?] = items.map { try? Recovery.Direction.read($0) }
        let fixedLayer = layer ?? dirs.compactMap { $0?.layer }.first
        let texts = try prompts.map(readPrompts) ?? RecoverySet.doNotAnswer256
        for (i, item) in items.enumerated() where dirs[i] == nil {
            let m = try LanguageModel.load(item)
            let l = fixedLayer ?? Recovery.Direction.defaultLayer(layers: m.config.numLayers)
            guard (0...m.config.numLayers).contains(l) else { throw ValidationError("--layer must be in 0...\(m.config.numLayers) for \(m.path), not \(l)") }
            let ids = try texts.map { try m.chat.promptIds($0) }
            let mean = m.decoder.meanLastTokenState(ids, layer: l)
            guard allFinite(mean) else { throw m.decoder.nonFiniteError("hidden states", sequences: ids, blocks: l) }
            dirs[i] = Recovery.Direction(values: mean, layer: l, prompts: ids.count, model: m.path)
        }
        let ds = dirs.map { $0! }
        for d in ds where d.values.count != ds[0].values.count {
            throw ValidationError("\(d.model): hidden size \(d.values.count) differs from \(ds[0].values.count)")
        }
        let cos = ds.map { a in ds.map { a.cosine($0) } }
        if json {
            struct Out: Encodable { let names: [String]; let layers: [Int]; let cosine: [[Double]] }
            try printJSON(Out(names: items, layers: ds.map(\.layer), cosine: cos))
            return
        }
        for (i, a) in items.enumerated() {
            for j in (i + 1)..<items.count { print(String(format: "%.6f", cos[i][j]), a, items[j]) }
        }
    }
}
