import ArgumentParser
import Foundation
import Model

struct Probe: CheckedCommand {
    static let configuration = CommandConfiguration(
        abstract: "Hidden states and top logits of the last prompt token.",
        discussion: """
        Layer indices follow transformers' output_hidden_states: 0 is the embedding output,
        i (1 ≤ i < L) the output of block i, and L (the layer count) the state after the final norm.
        """)

    @Argument(help: "GGUF file, HF folder or embedded model name.") var model: String
    @Option(help: "A PEFT LoRA adapter folder to merge into MODEL (fp32).") var adapter: String?
    @Option(help: "The user message.") var prompt: String
    @Option(parsing: .unconditional, help: "Comma-separated hidden-state indices.") var layers: String = ""
    @Option(help: "System message (default: the template's own default).") var system: String?
    @Option(parsing: .unconditional, help: "How many top logits.") var top = 10
    @Flag(help: "Use the prompt text as is, without the chat template.") var raw = false
    @Flag(help: "Print JSON.") var json = false

    struct Output: Encodable {
        let prompt_ids: [Int]
        let hidden: [String: [Float]]
        let top_logits: [[Double]]
    }

    func check() throws {
        guard top >= 0 else { throw outOfRange("--top", top, "≥ 0") }
        for s in layers.split(separator: ",") where Int(s.trimmingCharacters(in: .whitespaces)).map({ $0 < 0 }) ?? true {
            throw ValidationError("--layers: '\(s)' is not a hidden-state index (0, 1, …)")
        }
    }

    func run() throws {
        let m = try LanguageModel.load(model, adapter: adapter)
        let L = m.config.numLayers
        let wanted = try layers.split(separator: ",").map { s -> Int in
            guard let i = Int(s.trimmingCharacters(in: .whitespaces)), i >= 0, i <= L else {
                throw ValidationError("--layers: '\(s)' is not an index in 0...\(L)")
            }
            return i
        }
        let ids = try m.chat.promptIds(prompt, system: system, raw: raw)
        let H = m.config.hiddenSize
        var hidden: [String: [Float]] = [:]
        let cache = KVCache(config: m.config, capacities: [ids.count])
        let logits = m.decoder.forward(tokens: [ids], sequences: [0], cache: cache) { index, states in
            if wanted.contains(index) { hidden[String(index)] = Array(UnsafeBufferPointer(start: states + (ids.count - 1) * H, count: H)) }
        }
        // The logits depend on every hidden state printed: finite logits, finite states.
        guard allFinite(logits) else { throw m.decoder.nonFiniteError("logits", sequences: [ids]) }
        let order = logits.indices.sorted { logits[$0] > logits[$1] || (logits[$0] == logits[$1] && $0 < $1) }.prefix(top)
        let topLogits = order.map { [Double($0), Double(logits[$0])] }
        if json { try printJSON(Output(prompt_ids: ids, hidden: hidden, top_logits: topLogits)); return }
        for (k, v) in hidden.sorted(by: { Int($0.key)! < Int($1.key)! }) {
            let norm = v.reduce(0) { $0 + $1 * $1 }.squareRoot()
            print("hidden[\(k)]: norm \(norm), first \(v.prefix(4))")
        }
        for t in order { print(t, String(reflecting: m.chat.tokenizer.decode([t])), logits[t]) }
    }
}
