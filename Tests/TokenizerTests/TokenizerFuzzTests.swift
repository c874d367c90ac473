import Foundation
import Testing
import Tensor
@testable import Tokenizer
import TestSupport

// Seeded mutation fuzzing of what a model's text side reads from strangers: tokenizer.json
// (with its tokenizer_config.json), the tokenizer metadata of a GGUF, and chat templates
// (the real ones under Fixtures/templates). Every case must end in a value or in the
// loader's own error (FormatError naming the file, TemplateError) within a time bound:
// a trap ends the whole run, which is the failure this looks for.

/// Cases per target: REALIGN_FUZZ_CASES when set (a longer run), else a count that keeps
/// this file within about half a minute.
private func cases(_ defaultCount: Int) -> Int {
    if let n = ProcessInfo.processInfo.environment["REALIGN_FUZZ_CASES"].flatMap(Int.init), n > 0 { return n }
    #if DEBUG
    return defaultCount / 10
    #else
    return defaultCount
    #endif
}

/// Seconds any one case may take (a generous bound on a busy machine).
private let caseSeconds = 3.0

private func elapsed(since t0: UInt64) -> Double { Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9 }

/// One loader case: `load` returns (true) or throws a short FormatError naming one of
/// `paths`, nothing else, within `caseSeconds`.
private func loadsOrRefuses(_ i: Int, paths: [String], _ load: () throws -> Void) -> Bool {
    let t0 = DispatchTime.now().uptimeNanoseconds
    defer { if elapsed(since: t0) > caseSeconds { Issue.record("case \(i): took \(elapsed(since: t0)) s") } }
    do {
        try load()
        return true
    } catch let e as FormatError {
        #expect(paths.contains(e.path), "case \(i): the error names \(e.path)")
        #expect(!e.problem.isEmpty && e.problem.utf8.count < 2000, "case \(i): \(e.problem.prefix(100))…\(e.problem.suffix(100))")
    } catch {
        Issue.record("case \(i): threw \(type(of: error)) \(error), not FormatError")
    }
    return false
}

private func pick<T>(_ items: [T], _ rng: inout SplitMix64) -> T { items[Int(rng.next() % UInt64(items.count))] }
private func below(_ n: Int, _ rng: inout SplitMix64) -> Int { n <= 0 ? 0 : Int(rng.next() % UInt64(n)) }

/// Numbers that break naive readers: past 32 and 64 bits, negative, fractional, exponents.
private let absurdNumbers = ["2147483647", "2147483648", "4294967295", "9223372036854775807", "9223372036854775808",
                             "-9223372036854775808", "99999999999999999999999", "-1", "1.5", "1e308", "1e400", "-0",
                             "0", "2097152", "264", "263", "true", "null", "\"7\"", "[]", "{}"]

/// Offsets of number literals in JSON or template text (runs of digits).
private func numberRanges(_ b: [UInt8]) -> [Range<Int>] {
    var out: [Range<Int>] = []
    var i = 0
    while i < b.count {
        if b[i] >= 0x30 && b[i] <= 0x39 {
            let start = i
            while i < b.count, (b[i] >= 0x30 && b[i] <= 0x39) || b[i] == UInt8(ascii: ".") { i += 1 }
            out.append(start..<i)
        } else {
            i += 1
        }
    }
    return out
}

/// Writes `bytes` to `path` without syncing (as the format fuzzer does).
private func put(_ bytes: [UInt8], _ path: String) {
    guard let fp = fopen(path, "wb") else { Issue.record("cannot write \(path)"); return }
    if !bytes.isEmpty { _ = bytes.withUnsafeBytes { fwrite($0.baseAddress!, 1, $0.count, fp) } }
    fclose(fp)
}

// MARK: - tokenizer.json

/// The tiny tokenizer of the unit tests as tokenizer.json text, with added tokens (one
/// beyond the vocabulary, one repeating it) and an unknown token.
private func tokenizerJSONSeed() -> [UInt8] {
    func quoted(_ s: String) -> String {
        String(decoding: try! JSONSerialization.data(withJSONObject: s, options: .fragmentsAllowed), as: UTF8.self)
    }
    let vocab = Tiny.tokens.enumerated().map { "\(quoted($1)): \($0)" }.joined(separator: ", ")
    let merges = Tiny.merges.map(quoted).joined(separator: ", ")
    let n = Tiny.tokens.count
    return Array("""
    {"version": "1.0", "truncation": null, "padding": null,
     "added_tokens": [{"id": \(n), "content": "<|im_start|>", "special": true, "normalized": false},
                      {"id": \(Tiny.id("<s>")), "content": "<s>", "special": true}],
     "normalizer": {"type": "Sequence", "normalizers": [{"type": "NFC"}]},
     "pre_tokenizer": {"type": "Sequence", "pretokenizers": [{"type": "Digits", "individual_digits": true},
                       {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true}]},
     "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
     "model": {"type": "BPE", "dropout": null, "unk_token": "<s>", "fuse_unk": false, "byte_fallback": false,
               "vocab": {\(vocab)}, "merges": [\(merges)]}}
    """.utf8)
}

private let tokenizerConfigSeed = Array(#"{"add_bos_token": false, "bos_token": "<s>", "eos_token": {"content": "</s>"}, "pad_token": "<|im_start|>", "clean_up_tokenization_spaces": true}"#.utf8)

/// One mutation of JSON text: truncation, byte flips, an absurd number, a duplicated
/// key or entry, an id given to another token, deep nesting, or a huge string.
private func mutateJSON(_ seed: [UInt8], _ rng: inout SplitMix64) -> [UInt8] {
    var b = seed
    switch below(8, &rng) {
    case 0:
        b.removeSubrange(below(b.count, &rng)...)
    case 1:
        for _ in 0...below(4, &rng) where !b.isEmpty { b[below(b.count, &rng)] = UInt8(truncatingIfNeeded: rng.next()) }
    case 2, 3:
        let numbers = numberRanges(b)
        for _ in 0...below(3, &rng) where !numbers.isEmpty {
            let r = pick(numbers, &rng)
            guard r.upperBound <= b.count else { continue }
            b.replaceSubrange(r, with: Array(pick(absurdNumbers, &rng).utf8))
        }
    case 4:
        // A copy of a `"key": value` pair (or list entry) right after itself: duplicate
        // keys, duplicate added tokens, two tokens for one id.
        let quotes = b.indices.filter { b[$0] == UInt8(ascii: "\"") }
        guard quotes.count > 2 else { break }
        let start = pick(quotes, &rng)
        guard let comma = b[start...].firstIndex(where: { $0 == UInt8(ascii: ",") || $0 == UInt8(ascii: "}") }) else { break }
        let piece = Array(b[start..<comma])
        b.insert(contentsOf: Array(", ".utf8) + piece, at: comma)
    case 5:
        // Give a vocabulary token the id of another.
        let numbers = numberRanges(b)
        guard numbers.count > 1 else { break }
        let from = pick(numbers, &rng), to = pick(numbers, &rng)
        b.replaceSubrange(to, with: Array(b[from]))
    case 6:
        let depth = pick([100, 300, 600, 5000], &rng)
        let at = below(b.count, &rng)
        b.insert(contentsOf: Array(repeating: UInt8(ascii: "["), count: depth) + Array(repeating: UInt8(ascii: "]"), count: depth), at: at)
    default:
        // A megabyte-long string where a string starts.
        let quotes = b.indices.filter { b[$0] == UInt8(ascii: "\"") }
        guard let q = quotes.isEmpty ? nil : pick(quotes, &rng) else { break }
        b.insert(contentsOf: Array(repeating: UInt8(ascii: "a"), count: 1 << 20), at: q + 1)
    }
    return b
}

/// Uses a tokenizer the way Realign does: encode, decode, stream.
private func exercise(_ tok: BPETokenizer) {
    for text in ["hello world", "<|im_start|>hi 12345<s>", "héllo\u{0}\u{FFFD}😀", ""] {
        let ids = tok.encode(text)
        _ = tok.decode(ids + [-1, 1 << 40, tok.vocabSize], skipSpecial: true)
        var stream = StreamingDecoder(tok)
        for id in ids { _ = stream.append(id) }
        _ = stream.finish()
    }
}

@Suite struct TokenizerFuzzTests {
    @Test func fuzzTokenizerJSON() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/tokenizer.json", configPath = dir + "/tokenizer_config.json"
        let seed = tokenizerJSONSeed()
        put(seed, path)
        put(tokenizerConfigSeed, configPath)
        let n = Tiny.tokens.count
        exercise(try BPETokenizer.fromTokenizerJSON(path: path, vocabSize: n + 1))

        var rng = SplitMix64(seed: 16)
        var loaded = 0
        let count = cases(2000)
        for i in 0..<count {
            let mutatesConfig = i % 5 == 4
            put(mutateJSON(mutatesConfig ? tokenizerConfigSeed : seed, &rng), mutatesConfig ? configPath : path)
            defer { put(seed, path); put(tokenizerConfigSeed, configPath) }
            let vocabSize = pick([nil, n + 1, n, 1 << 31], &rng)
            if loadsOrRefuses(i, paths: [path, configPath], { exercise(try BPETokenizer.fromTokenizerJSON(path: dir, vocabSize: vocabSize)) }) {
                loaded += 1
            }
        }
        print("fuzz tokenizer.json: \(count) cases, \(loaded) loaded, \(count - loaded) refused")
        #expect(loaded > 0 && loaded < count)
    }

    /// Tokenizer metadata of a GGUF, mutated as values: token lists with duplicates,
    /// empty or huge tokens, token types and special-token ids out of range.
    @Test func fuzzGGUFTokenizer() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/tiny.gguf"
        var rng = SplitMix64(seed: 17)
        var loaded = 0
        let count = cases(1000)
        let absurdIds: [Int64] = [-1, Int64(Int32.min), Int64(Int32.max), Int64(Tiny.tokens.count), 0, 1, 263, 100_000]
        for i in 0..<count {
            // The unit tests' tiny vocabulary plus Qwen2's special tokens (as control tokens).
            let special = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
            var tokens = Tiny.tokens + special, merges = Tiny.merges, types = Tiny.types + [3, 3, 3]
            var kvs: [(String, GGUFValue)] = [("general.architecture", .string(pick(["llama", "llama", "qwen2", "qwen3", "gpt2"], &rng))),
                                              ("tokenizer.ggml.model", .string(below(10, &rng) == 0 ? "llama" : "gpt2")),
                                              ("tokenizer.ggml.pre", .string(below(10, &rng) == 0 ? "?" : pick(["smollm", "qwen2", "llama-bpe", "gpt2"], &rng)))]
            for _ in 0..<below(4, &rng) {
                switch below(7, &rng) {
                case 0: tokens[below(tokens.count, &rng)] = tokens[below(tokens.count, &rng)]
                case 1: tokens[below(tokens.count, &rng)] = pick(["", "<|im_start|>", "<|endoftext|>", "<|im_end|>", String(repeating: "é", count: 100_000)], &rng)
                case 2:
                    let k = below(tokens.count, &rng)
                    tokens.removeLast(k)
                    if below(4, &rng) > 0 { types.removeLast(min(k, types.count)) }
                case 3: merges.append(pick(["", " ", "a", "h e ", "Ġ w", "\u{0} \u{0}", "he llo"], &rng))
                case 4: types = types.map { _ in pick([1, 3, 3, -1, 1 << 30], &rng) }
                case 5: if below(4, &rng) == 0 { types.removeLast(below(types.count, &rng)) }
                default:
                    let k = below(1000, &rng)
                    tokens += Array(repeating: "Ġw", count: k)
                    types += Array(repeating: 1, count: k)
                }
            }
            kvs += [("tokenizer.ggml.tokens", .array(tokens.map { .string($0) })),
                    ("tokenizer.ggml.merges", .array(merges.map { .string($0) })),
                    ("tokenizer.ggml.token_type", .array(types.map { .int(Int64($0)) }))]
            for key in ["bos_token_id", "eos_token_id", "padding_token_id", "unknown_token_id"] where below(3, &rng) == 0 {
                kvs.append(("tokenizer.ggml." + key, .int(pick(absurdIds, &rng))))
            }
            writeGGUF(kvs, to: path)
            if loadsOrRefuses(i, paths: [path], { exercise(try BPETokenizer.fromGGUF(try GGUFFile(path: path))) }) { loaded += 1 }
        }
        print("fuzz GGUF tokenizer: \(count) cases, \(loaded) loaded, \(count - loaded) refused")
        #expect(loaded > 0 && loaded < count)
    }

    /// The real chat templates, truncated at many offsets, with flipped bytes, absurd
    /// numbers, hostile snippets, deep nesting and duplicated pieces; each is parsed and
    /// rendered with tool calls and, sometimes, a long message.
    @Test func fuzzChatTemplates() throws {
        let dir = TemplateFixtures.templatesDir
        let files = try FileManager.default.contentsOfDirectory(atPath: dir).filter { $0.hasSuffix(".jinja") }.sorted()
        #expect(files.count >= 8)
        let sources = try files.map { Array(try String(contentsOfFile: dir + "/" + $0, encoding: .utf8).utf8) }
        let toolCalls = TemplateFixtures.loaded.cases.first { $0.name == "tool_calls" }?.messages
            ?? [ChatMessage(role: "user", content: "hi").jinjaValue]
        let long = [ChatMessage(role: "system", content: String(repeating: "ab\n", count: 50_000)).jinjaValue,
                    ChatMessage(role: "user", content: "hi").jinjaValue]
        let snippets = ["{{ 'x' * 1048576 }}", "{{ range(100000)|join(',') }}", "{{ messages * 1000000 }}",
                        "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
                        "{{ (messages|tojson) * 1000 }}", "{{ ('{0}' * 100000).format(messages) }}",
                        "{{ messages|string|replace('', messages|string) }}", "{{ '%1048576s' % messages }}",
                        "{{ (messages * 100000)|unique|list }}", "{{ (messages * 100000)|sort(attribute='content') }}",
                        "{% macro f(n) %}{{ f(n) ~ f(n) }}{% endmacro %}{{ f(1) }}", "{{ x.y.z[0]['a'](1, b=2)|e }}",
                        "{% set ns = namespace(s='ab') %}{% for i in range(64) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}",
                        "{{ message['content'].split('\\n')|map('upper')|join('\\n' * 1000) }}", "{%- raw %}{{{% endraw -%}"]
        func mutate(_ seed: [UInt8], _ rng: inout SplitMix64) -> [UInt8] {
            var b = seed
            switch below(7, &rng) {
            case 0: b.removeSubrange(below(b.count, &rng)...)
            case 1: for _ in 0...below(6, &rng) where !b.isEmpty { b[below(b.count, &rng)] = UInt8(truncatingIfNeeded: rng.next()) }
            case 2:
                let numbers = numberRanges(b)
                for _ in 0...below(3, &rng) where !numbers.isEmpty {
                    let r = pick(numbers, &rng)
                    if r.upperBound <= b.count { b.replaceSubrange(r, with: Array(pick(absurdNumbers, &rng).utf8)) }
                }
            case 3:
                // Between tags, where a snippet parses.
                let ends = b.indices.filter { $0 > 0 && b[$0] == UInt8(ascii: "}") && (b[$0 - 1] == UInt8(ascii: "}") || b[$0 - 1] == UInt8(ascii: "%")) }
                let at = ends.isEmpty ? 0 : pick(ends, &rng) + 1
                b.insert(contentsOf: Array(pick(snippets, &rng).utf8), at: at)
            case 4:
                let (open, close) = pick([("(", ")"), ("[", "]"), ("{% if true %}", "{% endif %}"), ("{{ ", " }}"), ("-", "")], &rng)
                let depth = pick([50, 99, 101, 1000, 20_000], &rng)
                let at = below(b.count + 1, &rng)
                b.insert(contentsOf: Array(String(repeating: open, count: depth).utf8) + Array(String(repeating: close, count: depth).utf8), at: at)
            case 5:
                let i = below(b.count, &rng), j = min(b.count, i + below(200, &rng))
                b.insert(contentsOf: b[i..<j], at: below(b.count + 1, &rng))
            default:
                // Swap a piece of another template in.
                let other = pick(sources, &rng)
                let i = below(other.count, &rng), j = min(other.count, i + below(400, &rng))
                b.replaceSubrange(below(b.count, &rng)..<b.count, with: other[i..<j])
            }
            return b
        }
        let tools: JinjaValue = [["type": "function",
                                  "function": ["name": "f", "description": "d",
                                               "parameters": ["type": "object", "properties": ["x": ["type": "integer", "description": "x"]],
                                                              "required": ["x"]]]]]
        var rng = SplitMix64(seed: 18)
        var rendered = 0, failed = 0
        let count = cases(4000)
        for i in 0..<count {
            let source = String(decoding: mutate(sources[i % sources.count], &rng), as: UTF8.self)
            // Most cases with a tenth of the steps (to stay quick); every eighth with the defaults.
            var limits = JinjaLimits()
            if i % 8 != 0 { limits.maxSteps = 100_000 }
            let t0 = DispatchTime.now().uptimeNanoseconds
            do {
                var t = try ChatTemplate(source: source, bosToken: "<s>", eosToken: "</s>", limits: limits, path: "fuzz.jinja")
                t.now = { TemplateFixtures.pinnedNow }
                let conversation = i % 16 == 5 ? long : toolCalls
                _ = try t.render(conversation: conversation, addGenerationPrompt: i % 2 == 0,
                                 extra: ["tools": tools])
                rendered += 1
            } catch let e as TemplateError {
                #expect(e.path == "fuzz.jinja")
                failed += 1
            } catch {
                Issue.record("case \(i): threw \(type(of: error)) \(error), not TemplateError")
            }
            if elapsed(since: t0) > caseSeconds { Issue.record("case \(i): took \(elapsed(since: t0)) s: \(source.prefix(300))") }
        }
        print("fuzz chat templates: \(count) cases, \(rendered) rendered, \(failed) refused")
        #expect(rendered > 100 && failed > 100)
    }
}
