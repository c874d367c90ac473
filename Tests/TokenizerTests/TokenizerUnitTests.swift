import Foundation
import Testing
import Tensor
@testable import Tokenizer
import TestSupport

/// Writes a GGUF v3 file with only metadata (no tensors).
func writeGGUF(_ kvs: [(String, GGUFValue)], to path: String) {
    var d = Data()
    func u32(_ v: UInt32) { withUnsafeBytes(of: v.littleEndian) { d.append(contentsOf: $0) } }
    func u64(_ v: UInt64) { withUnsafeBytes(of: v.littleEndian) { d.append(contentsOf: $0) } }
    func str(_ s: String) { u64(UInt64(s.utf8.count)); d.append(contentsOf: Array(s.utf8)) }
    func type(_ v: GGUFValue) -> UInt32 {
        switch v {
        case .uint: return 4
        case .int: return 5
        case .float: return 6
        case .bool: return 7
        case .string: return 8
        case .array: return 9
        }
    }
    func value(_ v: GGUFValue) {
        switch v {
        case .uint(let x): u32(UInt32(x))
        case .int(let x): u32(UInt32(bitPattern: Int32(x)))
        case .float(let x): u32(Float(x).bitPattern)
        case .bool(let b): d.append(b ? 1 : 0)
        case .string(let s): str(s)
        case .array(let items):
            u32(items.first.map(type) ?? 8)
            u64(UInt64(items.count))
            for i in items { value(i) }
        }
    }
    u32(0x4655_4747); u32(3); u64(0); u64(UInt64(kvs.count))
    for (k, v) in kvs { str(k); u32(type(v)); value(v) }
    _ = FileManager.default.createFile(atPath: path, contents: d)
}

/// A tiny byte-level vocabulary: the 256 byte tokens, a few merges, two control tokens.
enum Tiny {
    static let byteTokens = (0..<256).map { ByteLevel.token(forBytes: [UInt8($0)]) }
    static let extra = ["he", "ll", "llo", "hello", "Ġw", "aa", "<s>", "</s>"]
    static let tokens = byteTokens + extra
    static let merges = ["h e", "l l", "ll o", "he llo", "Ġ w", "a a"]
    static func id(_ t: String) -> Int { tokens.firstIndex(of: t)! }
    static let types = byteTokens.map { _ in 1 } + [1, 1, 1, 1, 1, 1, 3, 3]

    static func gguf(model: String = "gpt2", pre: String = "smollm", arch: String = "llama", in dir: String) -> String {
        let path = dir + "/tiny-\(model)-\(pre)-\(arch).gguf"
        writeGGUF([
            ("general.architecture", .string(arch)),
            ("tokenizer.ggml.model", .string(model)),
            ("tokenizer.ggml.pre", .string(pre)),
            ("tokenizer.ggml.tokens", .array(tokens.map { .string($0) })),
            ("tokenizer.ggml.merges", .array(merges.map { .string($0) })),
            ("tokenizer.ggml.token_type", .array(types.map { .int(Int64($0)) })),
            ("tokenizer.ggml.bos_token_id", .uint(UInt64(id("<s>")))),
            ("tokenizer.ggml.eos_token_id", .uint(UInt64(id("</s>")))),
            ("tokenizer.ggml.add_bos_token", .bool(true)),
        ], to: path)
        return path
    }
}

func temporaryDirectory() throws -> String {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("realign-tok-\(getpid())-\(UUID().uuidString)").path
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    return dir
}

@Suite struct TokenizerUnitTests {
    /// Ids checked by hand against transformers 4.57.6.
    @Test func knownIdsQwen() throws {
        let tok = try Fixtures.tokenizer("qwen")
        #expect(tok.encode("Hello world") == [9707, 1879])
        #expect(tok.encode("<|im_start|>user\nWhat is 2+2?<|im_end|>\n") == [151644, 872, 198, 3838, 374, 220, 17, 10, 17, 30, 151645, 198])
        #expect(tok.encode("x = 12345\n") == [87, 284, 220, 16, 17, 18, 19, 20, 198])
        #expect(tok.encode("I'LL DON'T") == [40, 6, 4086, 44273, 17323])
        // NFC: the decomposed form encodes like the composed one.
        #expect(tok.encode("caf\u{E9}") == [924, 58858])
        #expect(tok.encode("cafe\u{301}") == [924, 58858])
        #expect(tok.vocabSize == 151936)
        #expect(tok.bosId == 151643 && tok.eosId == 151645 && tok.padId == 151643)
        #expect(tok.id(forToken: "<|im_end|>") == 151645 && tok.id(forToken: "Ġworld") == 1879)
        #expect(tok.tokenText(1879) == "Ġworld" && tok.tokenText(-1) == nil && tok.tokenText(151936) == nil)
        #expect(tok.isSpecial(151644) && !tok.isSpecial(151659))   // <|fim_prefix|> is not an added token in the reference
    }

    @Test func knownIdsSmol() throws {
        let tok = try Fixtures.tokenizer("smol")
        #expect(tok.encode("Hello world") == [19556, 905])
        #expect(tok.encode("<|im_start|>user\nWhat is 2+2?<|im_end|>\n") == [1, 4093, 198, 1780, 314, 216, 34, 27, 34, 47, 2, 198])
        #expect(tok.encode("I'LL DON'T") == [57, 23, 16421, 422, 2154, 23, 68])
        // No normaliser: the decomposed form stays decomposed.
        #expect(tok.encode("caf\u{E9}") == [83, 1939, 2756])
        #expect(tok.encode("cafe\u{301}") == [83, 9980, 151, 219])
        #expect(tok.vocabSize == 49152)
        #expect(tok.bosId == 1 && tok.eosId == 2 && tok.padId == 2)
        #expect(tok.decode([19556, 905, 30]) == "Hello world.")
        #expect(tok.decode([19556, 2, 905], skipSpecial: true) == "Hello world")
        // clean_up_tokenization_spaces, as transformers decodes for this model.
        #expect(tok.decode(tok.encode("a . b , c")) == "a. b, c")
    }

    @Test func mergesByRankThenLeftmost() throws {
        let tok = try BPETokenizer(tokens: Tiny.tokens, merges: Tiny.merges, tokenTypes: Tiny.types, preTokenizer: .gpt2)
        #expect(tok.encode("hello world") == [Tiny.id("hello"), Tiny.id("Ġw"), Tiny.id("o"), Tiny.id("r"), Tiny.id("l"), Tiny.id("d")])
        #expect(tok.encode("aaa") == [Tiny.id("aa"), Tiny.id("a")])
        #expect(tok.encode("aaaa") == [Tiny.id("aa"), Tiny.id("aa")])
        #expect(tok.encode("<s>hello</s>") == [Tiny.id("<s>"), Tiny.id("hello"), Tiny.id("</s>")])
        #expect(tok.encode("") == [])
        #expect(tok.decode(tok.encode("hello world")) == "hello world")
        #expect(tok.isSpecial(Tiny.id("<s>")))
    }

    @Test func fromGGUFReadsIdsAndFlags() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let tok = try BPETokenizer.fromGGUF(GGUFFile(path: Tiny.gguf(in: dir)))
        #expect(tok.bosId == Tiny.id("<s>") && tok.eosId == Tiny.id("</s>") && tok.padId == nil)
        #expect(tok.options.addBOS)
        #expect(tok.preTokenizer == .gpt2)   // transformers uses GPT-2's regex for every llama-architecture file
        #expect(tok.encode("<s>hello") == [Tiny.id("<s>"), Tiny.id("hello")])
    }

    @Test func refusesUnsupportedGGUFTokenizers() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        for (model, pre, arch, words) in [("llama", "default", "llama", ["'llama'", "gpt2"]),
                                          ("gpt2", "deepseek-coder", "llama", ["'deepseek-coder'", "qwen2", "smollm"]),
                                          ("gpt2", "gpt-2", "gpt2", ["'gpt2'", "architecture"])] {
            let path = Tiny.gguf(model: model, pre: pre, arch: arch, in: dir)
            let g = try GGUFFile(path: path)
            do {
                _ = try BPETokenizer.fromGGUF(g)
                Issue.record("\(model)/\(pre)/\(arch) should be refused")
            } catch let e as FormatError {
                #expect(e.path == path)
                for w in words { #expect(e.problem.contains(w), "\(e.problem) should mention \(w)") }
            }
        }
    }

    @Test func refusesBadInit() {
        #expect(throws: FormatError.self) { try BPETokenizer(tokens: Tiny.tokens, merges: ["h"], tokenTypes: nil, preTokenizer: .gpt2) }
        #expect(throws: FormatError.self) { try BPETokenizer(tokens: Tiny.tokens, merges: ["x q"], tokenTypes: nil, preTokenizer: .gpt2) }
        #expect(throws: FormatError.self) { try BPETokenizer(tokens: Tiny.tokens, merges: [], tokenTypes: [1], preTokenizer: .gpt2) }
        #expect(throws: FormatError.self) { try BPETokenizer(tokens: Tiny.tokens, merges: [], preTokenizer: .gpt2, eosId: 10_000) }
    }

    @Test func refusesUnsupportedTokenizerJSON() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let vocab = Dictionary(uniqueKeysWithValues: Tiny.tokens.enumerated().map { ($1, $0) })
        let byteLevel: [String: Any] = ["type": "ByteLevel", "add_prefix_space": false, "use_regex": true]
        func write(_ name: String, model: [String: Any], pre: Any = ["type": "ByteLevel", "add_prefix_space": false, "use_regex": true],
                   added: [[String: Any]] = []) throws -> String {
            let root: [String: Any] = ["model": model, "pre_tokenizer": pre, "decoder": byteLevel, "normalizer": NSNull(), "added_tokens": added]
            let path = dir + "/\(name).json"
            _ = FileManager.default.createFile(atPath: path, contents: try JSONSerialization.data(withJSONObject: root))
            return path
        }
        let good: [String: Any] = ["type": "BPE", "vocab": vocab, "merges": Tiny.merges]
        let ok = try BPETokenizer.fromTokenizerJSON(path: write("ok", model: good))
        #expect(ok.encode("hello world") == [Tiny.id("hello"), Tiny.id("Ġw"), Tiny.id("o"), Tiny.id("r"), Tiny.id("l"), Tiny.id("d")])

        let cases: [(String, String)] = [
            (try write("wordpiece", model: ["type": "WordPiece", "vocab": vocab]), "WordPiece"),
            (try write("metaspace", model: good, pre: ["type": "Metaspace", "replacement": "▁"]), "Metaspace"),
            (try write("badmerge", model: ["type": "BPE", "vocab": vocab, "merges": ["x q"]]), "not in the vocabulary"),
            (try write("lstrip", model: good, added: [["id": 1, "content": "<x>", "lstrip": true]]), "lstrip"),
        ]
        for (path, word) in cases {
            do {
                _ = try BPETokenizer.fromTokenizerJSON(path: path)
                Issue.record("\(path) should be refused")
            } catch let e as FormatError {
                #expect(e.problem.contains(word), "\(e.problem) should mention \(word)")
            }
        }
        #expect(throws: FormatError.self) { try BPETokenizer.fromTokenizerJSON(path: dir + "/missing.json") }
    }

    /// The tokenizer's tables are sized by the largest id, so every id in tokenizer.json
    /// is checked first: an id near 2^31 (vocabulary or added token), one beyond the
    /// model's vocabulary, a negative or non-integer id, or one id for two tokens is a
    /// FormatError naming the file (an id near 2^31 aborted, 1.5 was read as 1, and a
    /// duplicate silently dropped a token).
    @Test func refusesBadTokenizerJSONIds() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        func quoted(_ s: String) -> String {
            String(decoding: try! JSONSerialization.data(withJSONObject: s, options: .fragmentsAllowed), as: UTF8.self)
        }
        // Written as text: JSONSerialization would not keep 1.5 apart from a token id's type.
        func write(_ name: String, aa: String = "\(Tiny.id("aa"))", added: String = "[]") -> String {
            let vocab = Tiny.tokens.enumerated().map { "\(quoted($1)): \($1 == "aa" ? aa : String($0))" }.joined(separator: ", ")
            let merges = Tiny.merges.map(quoted).joined(separator: ", ")
            let text = """
            {"model": {"type": "BPE", "vocab": {\(vocab)}, "merges": [\(merges)]}, "normalizer": null,
             "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "use_regex": true},
             "decoder": {"type": "ByteLevel"}, "added_tokens": \(added)}
            """
            let path = dir + "/\(name).json"
            #expect(FileManager.default.createFile(atPath: path, contents: Data(text.utf8)))
            return path
        }
        let n = Tiny.tokens.count
        // An added token repeating a vocabulary token is fine, within the model's vocabulary.
        let ok = try BPETokenizer.fromTokenizerJSON(path: write("ok", added: #"[{"id": \#(Tiny.id("<s>")), "content": "<s>", "special": true}]"#),
                                                    vocabSize: n)
        #expect(ok.encode("hello<s>") == [Tiny.id("hello"), Tiny.id("<s>")])

        let cases: [(path: String, vocabSize: Int?, words: [String])] = [
            (write("huge", aa: "2147483647"), nil, ["'aa'", "2147483647", "limit of 2097152"]),
            (write("hugeAdded", added: #"[{"id": 2147483646, "content": "<x>"}]"#), nil, ["'<x>'", "2147483646"]),
            (write("beyondModel", added: #"[{"id": \#(n), "content": "<x>"}]"#), n, ["'<x>'", "id \(n)", "model's vocabulary of \(n) tokens"]),
            (write("beyondModelVocab", aa: "\(n + 5)"), n, ["'aa'", "model's vocabulary"]),
            (write("fraction", aa: "1.5"), nil, ["'aa'", "1.5", "not an integer"]),
            (write("bool", aa: "true"), nil, ["'aa'", "not an integer"]),
            (write("negative", aa: "-1"), nil, ["'aa'", "negative"]),
            (write("duplicate", aa: "\(Tiny.id("he"))"), nil, ["id \(Tiny.id("he"))", "two tokens", "'he'", "'aa'"]),
            (write("addedClash", added: #"[{"id": \#(Tiny.id("he")), "content": "<x>"}]"#), nil, ["two tokens", "'he'", "'<x>'"]),
            (write("addedTwice", added: #"[{"id": 300, "content": "<x>"}, {"id": 300, "content": "<y>"}]"#), nil, ["two tokens", "'<x>'", "'<y>'"]),
            (write("addedNoId", added: #"[{"content": "<x>"}]"#), nil, ["'<x>'", "no id"]),
        ]
        for c in cases {
            do {
                _ = try BPETokenizer.fromTokenizerJSON(path: c.path, vocabSize: c.vocabSize)
                Issue.record("\(c.path) should be refused")
            } catch let e as FormatError {
                #expect(e.path == c.path)
                for w in c.words { #expect(e.problem.contains(w), "\(e.problem) should mention \(w)") }
            }
        }
    }

    /// Ids outside the vocabulary are skipped, as `tokenizers` does; never a crash.
    @Test func oddIdsAndText() throws {
        let tok = try Fixtures.tokenizer("qwen")
        #expect(tok.decode([-5, 9707, 151936, 1 << 40, 1879]) == "Hello world")
        #expect(tok.decode([]) == "")
        // A lone lead byte and a lone continuation byte each become U+FFFD.
        let lead = try #require(tok.id(forToken: "Ã")), cont = try #require(tok.id(forToken: "©"))
        #expect(tok.decode([lead]) == "\u{FFFD}" && tok.decode([cont, cont]) == "\u{FFFD}\u{FFFD}" && tok.decode([lead, cont]) == "é")
        #expect(tok.bytes([lead, cont]) == [0xC3, 0xA9])
    }

    /// Random scalars of every kind: byte-level BPE is lossless (modulo Qwen2's NFC) when
    /// every byte has a token. SmolLM2 lacks a few (0x04, 0x06, 0x13, 0x14, 0x16, 0x1D,
    /// 0xF1, 0xF2...): those become its unknown token, as in the reference.
    @Test func randomScalarsRoundTrip() throws {
        let qwen = try Fixtures.tokenizer("qwen"), smol = try Fixtures.tokenizer("smol")
        var rng = SplitMix64(seed: 42)
        for _ in 0..<300 {
            var view = String.UnicodeScalarView()
            for _ in 0..<Int(rng.next() % 40) {
                let r = rng.next()
                let limit: UInt64 = [0x80, 0x800, 0x10000, 0x110000][Int(r % 4)]
                if let u = Unicode.Scalar(UInt32((r >> 8) % limit)) { view.append(u) }
            }
            let s = String(view)
            if s.utf8.allSatisfy({ smol.id(forToken: ByteLevel.token(forBytes: [$0])) != nil }) {
                #expect(smol.bytes(smol.encode(s)) == Array(s.utf8))
            } else {
                #expect(smol.encode(s).contains(0))
            }
            let nfc = String(decoding: s._nfcCodeUnits, as: UTF8.self)
            #expect(sameScalars(qwen.decode(qwen.encode(s)), nfc), "\(escaped(s))")
        }
    }

    @Test func streamingDecodeNeverSplitsCharacters() throws {
        let tok = try Fixtures.tokenizer("qwen")
        for s in Fixtures.strings {
            let ids = tok.encode(s)
            var stream = StreamingDecoder(tok)
            var out = ""
            for id in ids {
                let piece = stream.append(id)
                #expect(!piece.unicodeScalars.contains("\u{FFFD}") || s.unicodeScalars.contains("\u{FFFD}"))
                out += piece
            }
            out += stream.finish()
            #expect(sameScalars(out, tok.decode(ids)))
        }
        var stream = StreamingDecoder(tok, skipSpecial: true)
        #expect(stream.append(151644) == "")
        let lead = try #require(tok.id(forToken: "Ã"))
        #expect(stream.append(lead) == "")
        #expect(stream.finish() == "\u{FFFD}")
    }

    /// The regex classes \p{L}, \p{N}, \s for every scalar, against the reference engine.
    @Test func scalarClassesMatchReference() throws {
        let data = try #require(FileManager.default.contents(atPath: fixturesDir() + "/scalar_classes.json"))
        let ranges = try #require(try JSONSerialization.jsonObject(with: data) as? [String: [[Int]]])
        var expected = [UInt8](repeating: ScalarClass.other, count: 0x110000)
        for (name, cls) in [("letter", ScalarClass.letter), ("number", ScalarClass.number), ("space", ScalarClass.space)] {
            for r in try #require(ranges[name]) { for v in r[0]...r[1] { expected[v] = cls } }
        }
        var wrong: [String] = []
        for v in 0..<0x110000 where !(0xD800..<0xE000).contains(v) {
            if ScalarClass.of(UInt32(v)) != expected[v] { wrong.append(String(v, radix: 16)) }
        }
        #expect(wrong.isEmpty, "\(wrong.count) scalars differ: \(wrong.prefix(20))")
    }

    /// NFC against the reference normaliser. The standard library is on Unicode 17, the
    /// reference on 16; these inputs normalise differently because of that.
    static let knownNFCDrift: Set<[UInt32]> = [[0x11935, 0x11930]]

    @Test func nfcMatchesReference() throws {
        let data = try #require(FileManager.default.contents(atPath: fixturesDir() + "/nfc_cases.json"))
        let cases = try #require(try JSONSerialization.jsonObject(with: data) as? [[String]])
        var wrong = 0
        for c in cases {
            let input = c[0].unicodeScalars.map(\.value)
            let got = BPETokenizer.nfc(input)
            if got == c[1].unicodeScalars.map(\.value) || Self.knownNFCDrift.contains(input) { continue }
            wrong += 1
            if wrong < 20 { Issue.record("NFC of \(input.map { String($0, radix: 16) }) gave \(got.map { String($0, radix: 16) })") }
        }
        #expect(cases.count > 5000)
        #expect(wrong == 0)
    }

    /// 100 KB twice: the corpus repeated (realistic repetition), and words that never
    /// repeat (every word goes through BPE).
    @Test func encodes100KBQuickly() throws {
        var repeated = ""
        while repeated.utf8.count < 100_000 { for s in Fixtures.strings { repeated += s + "\n" } }
        var rng = SplitMix64(seed: 7)
        var unique = ""
        let alphabet = Array("abcdefghijklmnopqrstuvwxyzéüßжщ中文")
        while unique.utf8.count < 100_000 {
            for _ in 0..<(3 + Int(rng.next() % 8)) { unique.append(alphabet[Int(rng.next() % UInt64(alphabet.count))]) }
            unique += rng.next() % 10 == 0 ? ".\n" : " "
        }
        for (name, tok) in [("qwen", try Fixtures.tokenizer("qwen")), ("smol", try Fixtures.tokenizer("smol"))] {
            for (kind, text) in [("repeated", repeated), ("unique", unique)] {
                let start = Date()
                let ids = tok.encode(text)
                let seconds = Date().timeIntervalSince(start)
                #expect(ids.count > 20_000)
                // The invented words are NFC with no space before punctuation, so they come back
                // unchanged (some corpus strings do not, as in the reference).
                if kind == "unique" { #expect(sameScalars(tok.decode(ids), text), "\(name) decode(encode(text)) differs") }
                #if DEBUG
                #expect(seconds < 20)
                #else
                #expect(seconds < 1)
                #endif
            }
        }
    }
}

