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
            throw FormatError(path, "unsupported tokenizer model '\(model)' (supported: gpt2, i.e. byte-level BPE)")
        }
        let pre = (g.metadata["tokenizer.ggml.pre"]?.stringValue) ?? "gpt-2"
        guard supportedGGUFPre.contains(pre) else {
            throw FormatError(path, "unsupported pre-tokenizer '\(pre)' (supported: \(supportedGGUFPre.joined(separator: ", ")))")
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
            throw FormatError(path, "no tokenizer for architecture '\(arch)' (supported: llama, qwen2, qwen2moe, qwen3, qwen3moe)")
        }
        return try BPETokenizer(tokens: tokens, merges: merges, preTokenizer: kind, addedTokens: added,
                                options: options, bosId: bos, eosId: eos, padId: pad, source: path)
    }

    /// A tokenizer from a Hugging Face `tokenizer.json` (`path` is the file or its folder).
    /// Reads `clean_up_tokenization_spaces`, BOS/EOS/pad and `add_bos_token` from
    /// `tokenizer_config.json` beside it when present. Supports byte-level BPE with the
    /// GPT-2, SmolLM2 (digits + GPT-2), Qwen2 and Llama-3 pre-tokenizers, no normaliser
    /// or NFC, and the ByteLevel or Llama decoders; anything else is a FormatError.
    public static func fromTokenizerJSON(path: String) throws -> BPETokenizer {
        var isDir: ObjCBool = false
        let file = FileManager.default.fileExists(atPath: path, isDirectory: &isDir) && isDir.boolValue
            ? (path as NSString).appendingPathComponent("tokenizer.json") : path
        let data = try MappedFile.contents(file, maxBytes: FileLimits.jsonBytes)
        let root: [String: Any]
        do {
            guard let r = try JSONSerialization.jsonObject(with: data) as? [String: Any] else {
                throw FormatError(file, "not a JSON object")
            }
            root = r
        } catch let e as FormatError {
            throw e
        } catch {
            throw FormatError(file, "invalid JSON: \(error.localizedDescription)")
        }
        func fail(_ problem: String) -> FormatError { FormatError(file, problem) }

        guard let model = root["model"] as? [String: Any] else { throw fail("no 'model' object") }
        let modelType = model["type"] as? String ?? "BPE"
        guard modelType == "BPE" else { throw fail("unsupported tokenizer model '\(modelType)' (supported: BPE)") }
        if let d = model["dropout"] as? Double, d != 0 { throw fail("BPE dropout \(d) is not supported") }
        for key in ["continuing_subword_prefix", "end_of_word_suffix"] {
            if let v = model[key] as? String, !v.isEmpty { throw fail("BPE \(key) '\(v)' is not supported") }
        }
        guard let vocabObject = model["vocab"] as? [String: Any] else { throw fail("model.vocab is not an object") }
        var maxId = -1
        var byId: [Int: String] = [:]
        for (token, value) in vocabObject {
            guard let id = (value as? NSNumber)?.intValue, id >= 0, id < 1 << 31 else {
                throw fail("vocabulary id of '\(token)' is not a valid integer")
            }
            byId[id] = token   // several tokens with one id: the last one read wins (as a hash map)
            maxId = max(maxId, id)
        }
        var vocab = [String?](repeating: nil, count: maxId + 1)
        for (id, token) in byId { vocab[id] = token }

        var mergePairs: [([UInt8], [UInt8])] = []
        let rawMerges = model["merges"] as? [Any] ?? []
        mergePairs.reserveCapacity(rawMerges.count)
        for (rank, m) in rawMerges.enumerated() {
            if let s = m as? String {
                let parts = s.split(separator: " ", omittingEmptySubsequences: false)
                guard parts.count == 2 else { throw fail("merge \(rank) '\(s)' is not two tokens separated by a space") }
                mergePairs.append((Array(parts[0].utf8), Array(parts[1].utf8)))
            } else if let p = m as? [String], p.count == 2 {
                mergePairs.append((Array(p[0].utf8), Array(p[1].utf8)))
            } else {
                throw fail("merge \(rank) is neither \"a b\" nor [\"a\", \"b\"]")
            }
        }

        var options = TokenizerOptions()
        options.fuseUnknown = model["fuse_unk"] as? Bool ?? false
        options.byteFallback = model["byte_fallback"] as? Bool ?? false
        options.ignoreMerges = model["ignore_merges"] as? Bool ?? false

        var added: [AddedToken] = []
        for case let t as [String: Any] in root["added_tokens"] as? [Any] ?? [] {
            guard let id = (t["id"] as? NSNumber)?.intValue, let content = t["content"] as? String else {
                throw fail("added token without id or content")
            }
            for flag in ["lstrip", "rstrip", "single_word"] where t[flag] as? Bool == true {
                throw fail("added token '\(content)' uses \(flag), which is not supported")
            }
            added.append(AddedToken(id: id, content: content, special: t["special"] as? Bool ?? false,
                                    normalized: t["normalized"] as? Bool ?? false))
        }
        // Resolve names against added tokens first, then the vocabulary.
        func idOf(_ token: String) -> Int? {
            if let a = added.last(where: { $0.content == token }) { return a.id }
            return vocabObject[token].flatMap { ($0 as? NSNumber)?.intValue }
        }
        if let unk = model["unk_token"] as? String {
            guard let id = idOf(unk) else { throw fail("unk_token '\(unk)' is not in the vocabulary") }
            options.unknownTokenId = id
        }

        options.normalizeNFC = try parseNormalizer(root["normalizer"], fail)
        let kind = try parsePreTokenizer(root["pre_tokenizer"], fail)
        options.decoder = try parseDecoder(root["decoder"], fail)

        // tokenizer_config.json: transformers-level settings.
        var bos: Int?, eos: Int?, pad: Int?
        let configPath = ((file as NSString).deletingLastPathComponent as NSString).appendingPathComponent("tokenizer_config.json")
        if FileManager.default.fileExists(atPath: configPath) {
            let configData = try MappedFile.contents(configPath, maxBytes: FileLimits.jsonBytes)
            guard let config = (try? JSONSerialization.jsonObject(with: configData)) as? [String: Any] else {
                throw FormatError(configPath, "not a JSON object")
            }
            options.cleanUpTokenizationSpaces = config["clean_up_tokenization_spaces"] as? Bool ?? false
            options.addBOS = config["add_bos_token"] as? Bool ?? false
            func tokenId(_ key: String) throws -> Int? {
                let name = (config[key] as? String) ?? ((config[key] as? [String: Any])?["content"] as? String)
                guard let name else { return nil }
                guard let id = idOf(name) else { throw FormatError(configPath, "\(key) '\(name)' is not in the vocabulary") }
                return id
            }
            bos = try tokenId("bos_token")
            eos = try tokenId("eos_token")
            pad = try tokenId("pad_token")
        }
        return try BPETokenizer(tokens: vocab, mergeBytes: mergePairs, preTokenizer: kind, addedTokens: added,
                                options: options, bosId: bos, eosId: eos, padId: pad, source: file)
    }

    static func parseNormalizer(_ n: Any?, _ fail: (String) -> FormatError) throws -> Bool {
        guard let n = n as? [String: Any] else { return false }   // null
        switch n["type"] as? String {
        case "NFC": return true
        case "Sequence":
            let list = n["normalizers"] as? [Any] ?? []
            if list.isEmpty { return false }
            if list.count == 1 { return try parseNormalizer(list[0], fail) }
        default: break
        }
        throw fail("unsupported normalizer \(describe(n)) (supported: none, NFC)")
    }

    static func parsePreTokenizer(_ p: Any?, _ fail: (String) -> FormatError) throws -> PreTokenizerKind {
        func byteLevel(_ d: [String: Any], useRegex: Bool) -> Bool {
            d["type"] as? String == "ByteLevel" && (d["add_prefix_space"] as? Bool ?? true) == false
                && (d["use_regex"] as? Bool ?? true) == useRegex
        }
        if let d = p as? [String: Any] {
            if byteLevel(d, useRegex: true) { return .gpt2 }
            if d["type"] as? String == "Sequence", let list = d["pretokenizers"] as? [[String: Any]], list.count == 2 {
                let first = list[0], second = list[1]
                if first["type"] as? String == "Digits", first["individual_digits"] as? Bool == true,
                   byteLevel(second, useRegex: true) {
                    return .smollm
                }
                if first["type"] as? String == "Split", byteLevel(second, useRegex: false),
                   first["behavior"] as? String == "Isolated", first["invert"] as? Bool != true,
                   let regex = (first["pattern"] as? [String: Any])?["Regex"] as? String {
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

    static func parseDecoder(_ p: Any?, _ fail: (String) -> FormatError) throws -> TokenDecoderKind {
        if let d = p as? [String: Any] {
            if d["type"] as? String == "ByteLevel" { return .byteLevel }
            if d["type"] as? String == "Sequence", let list = d["decoders"] as? [[String: Any]] {
                let types = list.map { $0["type"] as? String ?? "" }
                let replace = list.count == 4 ? list[2] : [:]
                let pattern = (replace["pattern"] as? [String: Any])?["String"] as? String
                if types == ["ByteFallback", "Fuse", "Replace", "ByteLevel"], pattern == "\u{2581}", replace["content"] as? String == " " {
                    return .llamaByteLevel
                }
            }
        }
        throw fail("unsupported decoder \(describe(p)) (supported: ByteLevel; ByteFallback, Fuse, Replace ▁, ByteLevel)")
    }

    static func describe(_ v: Any?) -> String {
        guard let v, !(v is NSNull),
              let data = try? JSONSerialization.data(withJSONObject: v, options: [.sortedKeys]) else { return "null" }
        let s = String(decoding: data, as: UTF8.self)
        return s.count > 300 ? String(s.prefix(300)) + "…" : s
    }
}
