import Foundation

extension BPETokenizer {
    /// `tokenizer.ggml.pre` values we accept. transformers ignores this key (it picks the
    /// pre-tokenizer from the architecture, below); we check it only to refuse
    /// vocabularies whose pre-tokenizer nobody has compared against the reference.
    public static let supportedGGUFPre = ["gpt-2", "gpt2", "llama-bpe", "llama3", "qwen2", "smollm"]

    /// A tokenizer that gives the ids of transformers'
    /// `AutoTokenizer.from_pretrained(dir, gguf_file:)` for this file. That converter
    /// depends on `general.architecture`, not on `tokenizer.ggml.pre`:
    /// - qwen2/qwen2moe/qwen3/qwen3moe: Qwen2 regex, NFC, and only `<|endoftext|>`,
    ///   `<|im_start|>`, `<|im_end|>` as added (special) tokens;
    /// - llama: the GPT-2 regex (even for Llama 3 and SmolLM2, whose own tokenizer.json
    ///   differ), control tokens (type 3) as special tokens, the Llama decoder chain and
    ///   `clean_up_tokenization_spaces`.
    /// BOS/EOS/pad ids are the file's (transformers' own `eos_token` differs for llama).
    public static func fromGGUF(_ g: GGUFFile) throws -> BPETokenizer {
        let path = g.path
        let model = try g.string("tokenizer.ggml.model")
        guard model == "gpt2" else {
            throw FormatError(path, "unsupported tokenizer model '\(shown(model))' (supported: gpt2, i.e. byte-level BPE)")
        }
        let pre = (g.metadata["tokenizer.ggml.pre"]?.stringValue) ?? "gpt-2"
        guard supportedGGUFPre.contains(pre) else {
            throw FormatError(path, "unsupported pre-tokenizer '\(shown(pre))' (supported: \(supportedGGUFPre.joined(separator: ", ")))")
        }
        let arch = try g.string("general.architecture")
        let tokens = try g.stringArray("tokenizer.ggml.tokens")
        let merges = try g.stringArray("tokenizer.ggml.merges")
        let types = g.metadata["tokenizer.ggml.token_type"] != nil ? try g.intArray("tokenizer.ggml.token_type") : nil
        if let types, types.count != tokens.count {
            throw FormatError(path, "\(types.count) token types for \(tokens.count) tokens")
        }
        func optionalId(_ key: String) throws -> Int? {
            guard let v = g.metadata[key] else { return nil }
            guard let id = v.intValue else { throw FormatError(path, "metadata '\(key)' is not an integer") }
            return id
        }
        func checked(_ key: String) throws -> Int? {
            guard let id = try optionalId(key) else { return nil }
            guard id >= 0 && id < tokens.count else {
                throw FormatError(path, "\(key) \(id) is outside the vocabulary of \(tokens.count) tokens")
            }
            return id
        }
        let bos = try checked("tokenizer.ggml.bos_token_id")
        let eos = try checked("tokenizer.ggml.eos_token_id")
        let pad = try checked("tokenizer.ggml.padding_token_id")
        let unk = try checked("tokenizer.ggml.unknown_token_id")
        let addBOS = g.metadata["tokenizer.ggml.add_bos_token"]?.boolValue ?? false

        var options = TokenizerOptions(addBOS: addBOS)
        let kind: PreTokenizerKind
        var added: [AddedToken] = []
        switch arch {
        case "qwen2", "qwen2moe", "qwen3", "qwen3moe":
            // transformers' GGUFQwen2Converter.
            kind = .qwen2
            options.normalizeNFC = true
            for content in ["<|endoftext|>", "<|im_start|>", "<|im_end|>"] {
                // The last one, as transformers' {token: id} dict keeps it.
                guard let id = tokens.lastIndex(where: { $0.utf8.elementsEqual(content.utf8) }) else {
                    throw FormatError(path, "Qwen2 vocabulary has no '\(content)' token")
                }
                added.append(AddedToken(id: id, content: content, special: true))
            }
        case "llama":
            // transformers' GGUFLlamaConverter for a "gpt2" (byte-level) model.
            kind = .gpt2
            options.decoder = .llamaByteLevel
            options.cleanUpTokenizationSpaces = true
            options.unknownTokenId = unk
            options.fuseUnknown = true
            options.byteFallback = true
            if let types {
                for (id, t) in types.enumerated() where t == 3 { added.append(AddedToken(id: id, content: tokens[id], special: true)) }
            } else {
                // Without token types transformers adds the unknown/BOS/EOS tokens (its
                // EOS is the BOS token).
                for id in [unk, bos].compactMap({ $0 }) where !added.contains(where: { $0.id == id }) {
                    added.append(AddedToken(id: id, content: tokens[id], special: true))
                }
            }
        default:
            throw FormatError(path, "no tokenizer for architecture '\(shown(arch))' (supported: llama, qwen2, qwen2moe, qwen3, qwen3moe)")
        }
        return try BPETokenizer(tokens: tokens, merges: merges, preTokenizer: kind, addedTokens: added,
                                options: options, bosId: bos, eosId: eos, padId: pad, source: path)
    }

    /// The most token ids a tokenizer may have: eight times the largest vocabulary in
    /// use (Gemma 3's 262,144). Tables are sized by the largest id, so an id in a file is
    /// checked against this (and the model's vocabulary) before anything is allocated.
    public static let maxVocabularySize = 1 << 21

    /// A tokenizer from a Hugging Face `tokenizer.json` (`path` is the file or its folder).
    /// Reads `clean_up_tokenization_spaces`, BOS/EOS/pad and `add_bos_token` from
    /// `tokenizer_config.json` beside it when present. Supports byte-level BPE with the
    /// GPT-2, SmolLM2 (digits + GPT-2), Qwen2 and Llama-3 pre-tokenizers, no normaliser
    /// or NFC, and the ByteLevel or Llama decoders; anything else is a FormatError.
    /// Token ids must be integers below `vocabSize` (the model's vocabulary, when known)
    /// and `maxVocabularySize`, each id given to one token only.
    public static func fromTokenizerJSON(path: String, vocabSize: Int? = nil) throws -> BPETokenizer {
        var isDir: ObjCBool = false
        let file = FileManager.default.fileExists(atPath: path, isDirectory: &isDir) && isDir.boolValue
            ? (path as NSString).appendingPathComponent("tokenizer.json") : path
        let root = try JSONValue.parseFile(file)
        func fail(_ problem: String) -> FormatError { FormatError(file, problem) }
        guard root.object != nil else { throw fail("not a JSON object") }

        guard let model = root["model"]?.object else { throw fail("no 'model' object") }
        let modelType = model["type"]?.string ?? "BPE"
        guard modelType == "BPE" else { throw fail("unsupported tokenizer model '\(shown(modelType))' (supported: BPE)") }
        if let d = model["dropout"]?.double, d != 0 { throw fail("BPE dropout \(d) is not supported") }
        for key in ["continuing_subword_prefix", "end_of_word_suffix"] {
            if let v = model[key]?.string, !v.isEmpty { throw fail("BPE \(key) '\(shown(v))' is not supported") }
        }
        guard let vocabObject = model["vocab"]?.object else { throw fail("model.vocab is not an object") }

        let idLimit = min(vocabSize ?? maxVocabularySize, maxVocabularySize)
        func checkedId(_ v: JSONValue?, of what: @autoclosure () -> String) throws -> Int {
            guard let v else { throw fail("\(what()) has no id") }
            guard let id = v.int else { throw fail("\(what()) has id \(BPETokenizer.describe(v)), not an integer") }
            guard id >= 0 else { throw fail("\(what()) has a negative id (\(id))") }
            guard id < idLimit else {
                if let vocabSize, vocabSize <= maxVocabularySize {
                    throw fail("\(what()) has id \(id), beyond the model's vocabulary of \(vocabSize) tokens")
                }
                throw fail("\(what()) has id \(id), beyond the limit of \(maxVocabularySize) token ids")
            }
            return id
        }
        var vocab: [String?] = []
        for (token, value) in vocabObject.pairs {
            let id = try checkedId(value, of: "vocabulary token '\(shown(token))'")
            if id >= vocab.count { vocab += Array(repeating: nil, count: id + 1 - vocab.count) }
            if let other = vocab[id] {
                throw fail("vocabulary id \(id) is given to two tokens, '\(shown(other))' and '\(shown(token))'")
            }
            vocab[id] = token
        }

        var mergePairs: [([UInt8], [UInt8])] = []
        let rawMerges = model["merges"]?.array ?? []
        mergePairs.reserveCapacity(rawMerges.count)
        for (rank, m) in rawMerges.enumerated() {
            if let s = m.string {
                let parts = s.split(separator: " ", omittingEmptySubsequences: false)
                guard parts.count == 2 else { throw fail("merge \(rank) '\(shown(s))' is not two tokens separated by a space") }
                mergePairs.append((Array(parts[0].utf8), Array(parts[1].utf8)))
            } else if let p = m.array, p.count == 2, let a = p[0].string, let b = p[1].string {
                mergePairs.append((Array(a.utf8), Array(b.utf8)))
            } else {
                throw fail("merge \(rank) is neither \"a b\" nor [\"a\", \"b\"]")
            }
        }

        var options = TokenizerOptions()
        options.fuseUnknown = model["fuse_unk"]?.bool ?? false
        options.byteFallback = model["byte_fallback"]?.bool ?? false
        options.ignoreMerges = model["ignore_merges"]?.bool ?? false

        var added: [AddedToken] = []
        var addedById: [Int: String] = [:]
        for t in root["added_tokens"]?.array ?? [] {
            guard let t = t.object else { continue }
            guard let content = t["content"]?.string else { throw fail("added token without content") }
            let id = try checkedId(t["id"], of: "added token '\(shown(content))'")
            for flag in ["lstrip", "rstrip", "single_word"] where t[flag]?.bool == true {
                throw fail("added token '\(shown(content))' uses \(flag), which is not supported")
            }
            // An added token may repeat a vocabulary token (GPT-2's <|endoftext|>), not replace another.
            for other in [addedById[id], id < vocab.count ? vocab[id] : nil].compactMap({ $0 })
            where !other.utf8.elementsEqual(content.utf8) {
                throw fail("id \(id) is given to two tokens, '\(shown(other))' and added token '\(shown(content))'")
            }
            addedById[id] = content
            added.append(AddedToken(id: id, content: content, special: t["special"]?.bool ?? false,
                                    normalized: t["normalized"]?.bool ?? false))
        }
        // Resolve names against added tokens first, then the vocabulary.
        func idOf(_ token: String) -> Int? {
            if let a = added.last(where: { $0.content.utf8.elementsEqual(token.utf8) }) { return a.id }
            return vocabObject[token]?.int
        }
        if let unk = model["unk_token"]?.string {
            guard let id = idOf(unk) else { throw fail("unk_token '\(shown(unk))' is not in the vocabulary") }
            options.unknownTokenId = id
        }

        options.normalizeNFC = try parseNormalizer(root["normalizer"], fail)
        let kind = try parsePreTokenizer(root["pre_tokenizer"], fail)
        options.decoder = try parseDecoder(root["decoder"], fail)

        // tokenizer_config.json: transformers-level settings.
        var bos: Int?, eos: Int?, pad: Int?
        let configPath = ((file as NSString).deletingLastPathComponent as NSString).appendingPathComponent("tokenizer_config.json")
        if FileManager.default.fileExists(atPath: configPath) {
            let config = try JSONValue.parseFile(configPath)
            guard config.object != nil else { throw FormatError(configPath, "not a JSON object") }
            options.cleanUpTokenizationSpaces = config["clean_up_tokenization_spaces"]?.bool ?? false
            options.addBOS = config["add_bos_token"]?.bool ?? false
            func tokenId(_ key: String) throws -> Int? {
                guard let name = config[key]?.string ?? config[key]?["content"]?.string else { return nil }
                guard let id = idOf(name) else { throw FormatError(configPath, "\(key) '\(shown(name))' is not in the vocabulary") }
                return id
            }
            bos = try tokenId("bos_token")
            eos = try tokenId("eos_token")
            pad = try tokenId("pad_token")
        }
        return try BPETokenizer(tokens: vocab, mergeBytes: mergePairs, preTokenizer: kind, addedTokens: added,
                                options: options, bosId: bos, eosId: eos, padId: pad, source: file)
    }

    /// A token as named in an error: cut after 40 characters (a file can hold megabyte-long
    /// tokens).
    static func shown(_ token: String) -> String {
        token.unicodeScalars.count > 40 ? String(String.UnicodeScalarView(token.unicodeScalars.prefix(40))) + "…" : token
    }

    static func parseNormalizer(_ n: JSONValue?, _ fail: (String) -> FormatError) throws -> Bool {
        guard let n, n.object != nil else { return false }   // null
        switch n["type"]?.string {
        case "NFC": return true
        case "Sequence":
            let list = n["normalizers"]?.array ?? []
            if list.isEmpty { return false }
            if list.count == 1 { return try parseNormalizer(list[0], fail) }
        default: break
        }
        throw fail("unsupported normalizer \(describe(n)) (supported: none, NFC)")
    }

    static func parsePreTokenizer(_ p: JSONValue?, _ fail: (String) -> FormatError) throws -> PreTokenizerKind {
        func byteLevel(_ d: JSONValue, useRegex: Bool) -> Bool {
            d["type"]?.string == "ByteLevel" && (d["add_prefix_space"]?.bool ?? true) == false
                && (d["use_regex"]?.bool ?? true) == useRegex
        }
        if let d = p, d.object != nil {
            if byteLevel(d, useRegex: true) { return .gpt2 }
            if d["type"]?.string == "Sequence", let list = d["pretokenizers"]?.array, list.count == 2 {
                let first = list[0], second = list[1]
                if first["type"]?.string == "Digits", first["individual_digits"]?.bool == true, byteLevel(second, useRegex: true) {
                    return .smollm
                }
                if first["type"]?.string == "Split", byteLevel(second, useRegex: false),
                   first["behavior"]?.string == "Isolated", first["invert"]?.bool != true,
                   let regex = first["pattern"]?["Regex"]?.string {
                    switch regex {
                    case PreTokenizerKind.gpt2Regex: return .gpt2
                    case PreTokenizerKind.qwen2Regex: return .qwen2
                    case PreTokenizerKind.llama3Regex: return .llama3
                    default: break
                    }
                }
            }
        }
        throw fail("unsupported pre_tokenizer \(describe(p)) (supported: ByteLevel without prefix space; Digits + ByteLevel; Split with the GPT-2, Qwen2 or Llama-3 regex + ByteLevel)")
    }

    static func parseDecoder(_ p: JSONValue?, _ fail: (String) -> FormatError) throws -> TokenDecoderKind {
        if let d = p {
            if d["type"]?.string == "ByteLevel" { return .byteLevel }
            if d["type"]?.string == "Sequence", let list = d["decoders"]?.array {
                let types = list.map { $0["type"]?.string ?? "" }
                let replace = list.count == 4 ? list[2] : .null
                let pattern = replace["pattern"]?["String"]?.string
                if types == ["ByteFallback", "Fuse", "Replace", "ByteLevel"], pattern == "\u{2581}", replace["content"]?.string == " " {
                    return .llamaByteLevel
                }
            }
        }
        throw fail("unsupported decoder \(describe(p)) (supported: ByteLevel; ByteFallback, Fuse, Replace ▁, ByteLevel)")
    }

    static func describe(_ v: JSONValue?) -> String {
        guard let v, v != .null else { return "null" }
        let s = v.compact()
        return s.count > 300 ? String(s.prefix(300)) + "…" : s
    }
}
