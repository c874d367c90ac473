import ArgumentParser
import Foundation
import Model
import Formats

struct Generate: CheckedCommand {
    static let configuration = CommandConfiguration(
        abstract: "Generate an answer to a prompt (one user message in the model's chat template), or to many prompts in batches.")

    @Argument(help: "GGUF file, HF folder or embedded model name.") var model: String
    @Option(help: "A PEFT LoRA adapter folder to merge into MODEL (fp32).") var adapter: String?
    @Option(help: "The user message.") var prompt: String?
    @Option(help: "A file of prompts: one per line, or JSON lines with a \"prompt\" field. Writes JSON lines.") var prompts: String?
    @Option(help: "Where --prompts writes its JSON lines (default: stdout).") var out: String?
    @Option(help: "System message (default: the template's own default).") var system: String?
    @Option(parsing: .unconditional, help: "Most new tokens per prompt; generation also stops when prompt and answer fill the model's context (as llama.cpp does).") var maxTokens = 256
    @Option(parsing: .unconditional, help: "Sampling temperature; 0 is greedy.") var temperature: Float = 0
    @Option(parsing: .unconditional, help: "Sample among the k most likely tokens (0: all).") var topK = 0
    @Option(parsing: .unconditional, help: "Nucleus sampling mass (1: off).") var topP: Float = 1
    @Option(parsing: .unconditional, help: "Random seed (prompt i uses seed + i).") var seed: UInt64 = 0
    @Option(parsing: .unconditional, help: "Prompts per batch with --prompts.") var batchSize = 16
    @Flag(help: "Use the prompt text as is, without the chat template.") var raw = false
    @Flag(help: "Print JSON: {\"prompt_ids\", \"new_ids\", \"text\"}.") var json = false

    func check() throws {
        guard (prompt == nil) != (prompts == nil) else { throw ValidationError("give exactly one of --prompt and --prompts") }
        guard maxTokens >= 1 else { throw outOfRange("--max-tokens", maxTokens, "at least 1") }
        guard temperature.isFinite, temperature >= 0 else { throw outOfRange("--temperature", temperature, "a finite number ≥ 0 (0: greedy)") }
        guard topK >= 0 else { throw outOfRange("--top-k", topK, "≥ 0 (0: all tokens)") }
        guard topP > 0, topP <= 1 else { throw outOfRange("--top-p", topP, "in (0, 1]") }
        guard batchSize >= 1 else { throw outOfRange("--batch-size", batchSize, "at least 1") }
    }

    struct Answer: Encodable {
        var prompt: String? = nil
        let prompt_ids: [Int]
        let new_ids: [Int]
        let text: String
    }

    func run() throws {
        if let out { try checkOutputPath(out, kind: .file, inputs: [model] + [adapter, prompts].compactMap { $0 }) }
        let m = try LanguageModel.load(model, adapter: adapter)
        let options = SamplingOptions(temperature: temperature, topK: topK, topP: topP, seed: seed)
        if let p = prompt {
            let ids = try m.chat.promptIds(p, system: system, raw: raw)
            let new = try m.decoder.generate(prompts: [ids], maxNewTokens: maxTokens, stopTokens: m.chat.stopTokens, options: options) {
                progressLine("generating: \($0.newTokens) tokens, \(String(format: "%.1f", Double($0.newTokens) / max($0.seconds, 1e-9))) tokens/s", final: $0.active == 0)
            }[0]
            let text = m.chat.text(ofNew: new)
            if json { try printJSON(Answer(prompt_ids: ids, new_ids: new, text: text)) } else { print(text) }
            return
        }
        let list = try readPromptLines(prompts!)
        let allIds = try promptIds(list, of: prompts!, chat: m.chat, system: system, raw: raw)   // every prompt checked before any work
        var lines = Data()
        let start = Date()
        var done = 0
        for b in stride(from: 0, to: list.count, by: batchSize) {
            let batch = list[b..<min(b + batchSize, list.count)].map(\.text)
            let ids = Array(allIds[b..<min(b + batchSize, list.count)])
            var o = options
            o.seed = seed &+ UInt64(b)
            let news = try m.decoder.generate(prompts: ids, maxNewTokens: maxTokens, stopTokens: m.chat.stopTokens, options: o)
            for i in batch.indices {
                let a = Answer(prompt: batch[i], prompt_ids: ids[i], new_ids: news[i], text: m.chat.text(ofNew: news[i]))
                lines.append(try jsonLine(a))
            }
            done += batch.count
            let secs = Date().timeIntervalSince(start)
            progressLine("prompts \(done)/\(list.count), \(String(format: "%.0f", secs)) s, ETA \(String(format: "%.0f", secs / Double(done) * Double(list.count - done))) s",
                         final: done == list.count)
        }
        if let out { try writeAtomically(lines, to: out) } else { FileHandle.standardOutput.write(lines) }
    }
}

/// Prompts from a file: JSON lines with "prompt", or plain lines. Blank lines are skipped.
func readPrompts(_ path: String) throws -> [String] { try readPromptLines(path).map(\.text) }

/// `readPrompts` with each prompt's 1-based line number.
func readPromptLines(_ path: String) throws -> [(line: Int, text: String)] {
    let text = try MappedFile.text(path, maxBytes: FileLimits.dataBytes)
    var out: [(line: Int, text: String)] = []
    for (n, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
        let l = line.trimmingCharacters(in: .whitespacesAndNewlines)
        if l.isEmpty { continue }
        if l.hasPrefix("{") {
            guard let obj = try? JSONSerialization.jsonObject(with: Data(l.utf8)) as? [String: Any], let p = obj["prompt"] as? String else {
                throw ValidationError("\(path):\(n + 1): a JSON line without a string \"prompt\"")
            }
            out.append((n + 1, p))
        } else {
            out.append((n + 1, String(line)))
        }
    }
    guard !out.isEmpty else { throw ValidationError("\(path): no prompts") }
    return out
}

/// Token ids of the prompts of file `path` (chat-rendered unless `raw`); a prompt longer than
/// the model's context is refused with its file and line.
func promptIds(_ prompts: [(line: Int, text: String)], of path: String, chat: ChatFormat, system: String? = nil, raw: Bool = false) throws -> [[Int]] {
    try prompts.map { p in
        do { return try chat.promptIds(p.text, system: system, raw: raw) } catch var e as PromptTooLongError {
            e.location = "\(path):\(p.line)"
            throw e
        }
    }
}

/// The error for an option's value outside its range: "--NAME must be RULE, not VALUE".
func outOfRange(_ option: String, _ value: Any, _ rule: String) -> ValidationError {
    ValidationError("\(option) must be \(rule), not \(value)")
}

/// A progress line on stderr, rewritten in place on a terminal.
func progressLine(_ s: String, final: Bool = false) {
    let tty = isatty(2) != 0
    if tty { FileHandle.standardError.write(Data(("\r\u{1b}[K" + s + (final ? "\n" : "")).utf8)) }
    else if final { FileHandle.standardError.write(Data((s + "\n").utf8)) }
}
