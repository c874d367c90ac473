import Foundation
import Formats
import Tensor
import Tokenizer

/// Everything about a model's text side: tokenizer, chat template, end-of-turn tokens.
/// Loads in a fraction of a second (no weights), for `tokenize` and `template`.
public final class ChatFormat {
    public let path: String
    public let vocabSize: Int
    /// The model's context length (positions): the most tokens a prompt may have.
    public let contextLength: Int
    public let tokenizer: BPETokenizer
    public let template: ChatTemplate?
    /// Generation stops at any of these: the file's EOS plus the end-of-turn markers of
    /// the chat formats we know, when the vocabulary has them.
    public let stopTokens: Set<Int>

    static let endOfTurnMarkers = ["<|im_end|>", "<|eot_id|>", "<|end_of_text|>", "<end_of_turn>", "<|end|>", "<|eom_id|>"]

    /// `templatePath` is the file the template was read from (named in its errors; default `path`).
    public init(path: String, vocabSize: Int, contextLength: Int, tokenizer: BPETokenizer, templateSource: String?, templatePath: String? = nil,
                extraStops: [Int] = []) throws {
        self.path = path
        self.vocabSize = vocabSize
        self.contextLength = contextLength
        self.tokenizer = tokenizer
        // Every id the tokenizer can produce must have an embedding row.
        guard tokenizer.vocabSize <= vocabSize else {
            throw FormatError(path, "the tokenizer has ids up to \(tokenizer.vocabSize - 1), beyond the model's vocabulary of \(vocabSize) tokens")
        }
        template = try templateSource.map {
            try ChatTemplate(source: $0, bosToken: tokenizer.bosId.flatMap { tokenizer.tokenText($0) },
                             eosToken: tokenizer.eosId.flatMap { tokenizer.tokenText($0) }, path: templatePath ?? path)
        }
        var stops = Set(extraStops)
        if let e = tokenizer.eosId { stops.insert(e) }
        for m in ChatFormat.endOfTurnMarkers { if let id = tokenizer.id(forToken: m) { stops.insert(id) } }
        stopTokens = stops
    }

    /// From GGUF metadata (`tokenizer.ggml.*`, `tokenizer.chat_template`).
    public convenience init(gguf g: GGUFFile, vocabSize: Int, contextLength: Int) throws {
        try self.init(path: g.path, vocabSize: vocabSize, contextLength: contextLength, tokenizer: try BPETokenizer.fromGGUF(g),
                      templateSource: g.metadata["tokenizer.chat_template"]?.stringValue)
    }

    /// From an HF folder: `tokenizer.json`, the chat template of `tokenizer_config.json`
    /// (or `chat_template.jinja`), and the EOS ids of `generation_config.json`.
    public convenience init(hfFolder dir: String, vocabSize: Int, contextLength: Int) throws {
        let tokenizer = try BPETokenizer.fromTokenizerJSON(path: dir + "/tokenizer.json", vocabSize: vocabSize)
        var template: String? = nil
        var templatePath: String? = nil
        let configPath = dir + "/tokenizer_config.json"
        if FileManager.default.fileExists(atPath: configPath) {
            let cfg = try JSONValue.parseFile(configPath)
            switch cfg["chat_template"] {
            case .string(let t)?: template = t
            case .array(let list)?:   // [{"name": ..., "template": ...}]: the one named "default"
                template = list.first { $0["name"]?.string == "default" }?["template"]?.string
            default: break
            }
            if template != nil { templatePath = configPath }
        }
        let jinjaPath = dir + "/chat_template.jinja"
        if template == nil, FileManager.default.fileExists(atPath: jinjaPath) {
            // Sized before it is read: the limit applies to the file, not to what fits in memory.
            let file = try MappedFile(path: jinjaPath)
            try ChatTemplate.checkSourceSize(file.count, path: jinjaPath)
            guard let t = String(validating: UnsafeRawBufferPointer(start: file.base, count: file.count), as: UTF8.self) else {
                throw FormatError(jinjaPath, "not valid UTF-8")
            }
            template = t
            templatePath = jinjaPath
        }
        var stops: [Int] = []
        let genPath = dir + "/generation_config.json"
        if FileManager.default.fileExists(atPath: genPath) {
            let gen = try JSONValue.parseFile(genPath)
            switch gen["eos_token_id"] {
            case .int(let i)?: stops = [Int(i)]
            case .array(let a)?: stops = a.compactMap { $0.int }
            default: break
            }
        }
        try self.init(path: dir, vocabSize: vocabSize, contextLength: contextLength, tokenizer: tokenizer,
                      templateSource: template, templatePath: templatePath, extraStops: stops)
    }

    /// Loads MODEL's text side: a GGUF path, or an embedded model's short name.
    public static func load(_ spec: String, log: @escaping (String) -> Void = stderrLine) throws -> ChatFormat {
        let path = try ModelStore.resolve(spec, log: log)
        if isDirectory(path) {
            let c = try ModelConfig(hfConfigAt: path + "/config.json")
            return try ChatFormat(hfFolder: path, vocabSize: c.vocabSize, contextLength: c.maxPositions)
        }
        let g = try GGUFFile(path: path)
        let c = try g.modelConfig()
        return try ChatFormat(gguf: g, vocabSize: c.vocabSize, contextLength: c.maxPositions)
    }

    /// Renders one user message (and an optional system message) with the chat template,
    /// generation prompt added; the template's default system prompt applies when none is given.
    public func chatPrompt(_ user: String, system: String? = nil) throws -> String {
        guard let t = template else { throw FormatError(path, "the model has no chat template (use --raw)") }
        var messages: [ChatMessage] = []
        if let s = system { messages.append(ChatMessage(role: "system", content: s)) }
        messages.append(ChatMessage(role: "user", content: user))
        return try t.render(messages: messages, addGenerationPrompt: true)
    }

    /// Token ids of a prompt: chat-rendered unless `raw`. Every prompt the model runs comes
    /// through here: one longer than the context is refused.
    public func promptIds(_ text: String, system: String? = nil, raw: Bool = false) throws -> [Int] {
        let ids = tokenizer.encode(raw ? text : try chatPrompt(text, system: system))
        guard !ids.isEmpty else { throw FormatError(path, "the prompt is empty after tokenisation") }
        guard ids.count <= contextLength else { throw PromptTooLongError(model: path, tokens: ids.count, limit: contextLength) }
        guard ids.allSatisfy({ $0 >= 0 && $0 < vocabSize }) else {
            throw FormatError(path, "the tokenizer produced ids outside the model's vocabulary (\(vocabSize))")
        }
        return ids
    }

    /// Text of generated ids without a trailing stop token.
    public func text(ofNew ids: [Int]) -> String {
        var ids = ids
        if let l = ids.last, stopTokens.contains(l) { ids.removeLast() }
        return tokenizer.decode(ids)
    }
}

/// A prompt with more tokens than the model's context: positions past it were never trained,
/// and attention memory grows with the square of the length.
public struct PromptTooLongError: Error, CustomStringConvertible, Equatable {
    public let model: String
    public let tokens: Int
    public let limit: Int
    /// "FILE:LINE" of the prompt, when it came from a file.
    public var location: String?
    public init(model: String, tokens: Int, limit: Int, location: String? = nil) {
        self.model = model; self.tokens = tokens; self.limit = limit; self.location = location
    }
    public var description: String {
        (location.map { $0 + ": " } ?? "") + "the prompt has \(tokens) tokens, more than the context length of \(model) (\(limit) tokens)"
    }
}

/// A model ready to run: decoder weights plus its chat format.
public final class LanguageModel {
    public let path: String
    public let config: ModelConfig
    public let decoder: Transformer
    public let chat: ChatFormat

    public init(path: String, decoder: Transformer, chat: ChatFormat) {
        self.path = path; self.config = decoder.config; self.decoder = decoder; self.chat = chat
    }

    /// Loads MODEL: a GGUF path, an HF folder, or the short name of an embedded model
    /// (fetched on first use); with `adapter`, a PEFT LoRA adapter folder merged into the
    /// weights in fp32 (checked against the base before anything is loaded). With `blocks`,
    /// only the embedding and the first `blocks` blocks, in fp32 (hidden states only).
    public static func load(_ spec: String, adapter: String? = nil, blocks: Int? = nil,
                            log: @escaping (String) -> Void = stderrLine) throws -> LanguageModel {
        let path = try ModelStore.resolve(spec, log: log)
        let lora = try adapter.map { try LoRAAdapter(folder: $0) }
        func note(_ c: ModelConfig) {
            if let limit = c.ropeScaling?.lengthLimit { log("\(path): longrope RoPE with the short factors: sequences up to \(limit) tokens run as in transformers (longer ones would switch to the long factors)") }
        }
        func parameters(_ base: ParameterSource, _ config: ModelConfig) throws -> ParameterSource {
            guard let lora else { return base }
            try lora.checkBase(config, model: path)
            return try LoRAMergedParameters(base: base, adapter: lora)
        }
        if isDirectory(path) {
            let config = try ModelConfig(hfConfigAt: path + "/config.json")
            note(config)
            let chat = try ChatFormat(hfFolder: path, vocabSize: config.vocabSize, contextLength: config.maxPositions)
            let weights = try ModelWeights.load(config: config, from: try parameters(try SafetensorsModel(folder: path), config), blocks: blocks)
            return LanguageModel(path: path, decoder: Transformer(weights: weights, source: path), chat: chat)
        }
        let g = try GGUFFile(path: path)
        let config = try g.modelConfig()
        note(config)
        let chat = try ChatFormat(gguf: g, vocabSize: config.vocabSize, contextLength: config.maxPositions)
        let weights = try ModelWeights.load(config: config, from: try parameters(g, config), blocks: blocks)
        // The quantised blocks are the base's: with an adapter, decoding runs on the merged fp32 weights.
        let quantized = lora == nil && weights.isComplete ? try QuantizedWeights.from(g, config: config) : nil
        return LanguageModel(path: path, decoder: Transformer(weights: weights, quantized: quantized, source: path), chat: chat)
    }
}

public func isDirectory(_ path: String) -> Bool {
    var d: ObjCBool = false
    return FileManager.default.fileExists(atPath: path, isDirectory: &d) && d.boolValue
}

public func stderrLine(_ s: String) { FileHandle.standardError.write(Data((s + "\n").utf8)) }
