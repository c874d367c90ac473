import Foundation
import Testing
@testable import Tokenizer
import TestSupport

/// The fixtures written by scripts/make_tokenizer_fixtures.py from transformers 4.57.6.
enum Fixtures {
    struct DecodeCase { let ids: [Int]; let text: String; let textSkipSpecial: String }
    struct ModelReference { let file: String; let ids: [[Int]]; let decoded: [String]; let decodeCases: [DecodeCase] }

    static let corpus: [String: Any] = {
        let path = fixturesDir() + "/tokenizer_corpus.json"
        guard let object = try? JSONSerialization.jsonObject(with: fixtureBytes(path)) as? [String: Any] else {
            badFixture(path, "not a JSON object")
        }
        return object
    }()

    static var strings: [String] { corpus["strings"] as? [String] ?? [] }

    static func reference(_ model: String) -> ModelReference? {
        guard let models = corpus["models"] as? [String: Any], let m = models[model] as? [String: Any],
              let file = m["file"] as? String, let ids = m["ids"] as? [[Int]], let decoded = m["decoded"] as? [String],
              let cases = m["decodeCases"] as? [[String: Any]] else { return nil }
        let decodeCases = cases.compactMap { c -> DecodeCase? in
            guard let ids = c["ids"] as? [Int], let t = c["text"] as? String, let s = c["textSkipSpecial"] as? String else { return nil }
            return DecodeCase(ids: ids, text: t, textSkipSpecial: s)
        }
        return ModelReference(file: file, ids: ids, decoded: decoded, decodeCases: decodeCases)
    }

    static func jsonReference(_ name: String) -> [[Int]]? {
        (corpus["tokenizerJSON"] as? [String: Any])?[name] as? [[Int]]
    }

    /// Tokenizers are expensive to build; build each once.
    static let qwen = Result { try BPETokenizer.fromGGUF(GGUFFile(path: RealModels.qwen)) }
    static let smol = Result { try BPETokenizer.fromGGUF(GGUFFile(path: RealModels.smol)) }
    static func tokenizer(_ model: String) throws -> BPETokenizer { try (model == "qwen" ? qwen : smol).get() }
}

/// Exact comparison: Swift's `==` on strings is canonical equivalence, too lenient here.
func sameScalars(_ a: String, _ b: String) -> Bool { a.unicodeScalars.elementsEqual(b.unicodeScalars) }

func escaped(_ s: String) -> String {
    s.unicodeScalars.map { $0.isASCII && $0.value >= 0x20 ? String($0) : String(format: "\\u{%X}", $0.value) }.joined()
}

@Suite struct TokenizerParityTests {
    @Test func corpusIsLargeAndVaried() {
        #expect(Fixtures.strings.count >= 300)
        #expect(Fixtures.strings.contains(""))
    }

    @Test(arguments: ["qwen", "smol"])
    func encodeMatchesTransformers(model: String) throws {
        let tok = try Fixtures.tokenizer(model)
        let ref = try #require(Fixtures.reference(model))
        let strings = Fixtures.strings
        try #require(ref.ids.count == strings.count)
        var matched = 0
        for (i, s) in strings.enumerated() {
            let ids = tok.encode(s)
            if ids == ref.ids[i] { matched += 1; continue }
            Issue.record("\(model) #\(i) \"\(escaped(String(s.prefix(80))))\": got \(ids.prefix(40)) want \(ref.ids[i].prefix(40))")
        }
        print("[parity] \(model): \(matched)/\(strings.count) strings encode to the reference ids")
        #expect(matched == strings.count)
    }

    @Test(arguments: ["qwen", "smol"])
    func decodeMatchesTransformers(model: String) throws {
        let tok = try Fixtures.tokenizer(model)
        let ref = try #require(Fixtures.reference(model))
        var matched = 0
        for (i, ids) in ref.ids.enumerated() {
            let text = tok.decode(ids)
            if sameScalars(text, ref.decoded[i]) { matched += 1; continue }
            Issue.record("\(model) decode #\(i): got \"\(escaped(text))\" want \"\(escaped(ref.decoded[i]))\"")
        }
        var casesMatched = 0
        for c in ref.decodeCases {
            let text = tok.decode(c.ids), skipped = tok.decode(c.ids, skipSpecial: true)
            if sameScalars(text, c.text) && sameScalars(skipped, c.textSkipSpecial) { casesMatched += 1; continue }
            Issue.record("\(model) decode \(c.ids): got \"\(escaped(text))\" / \"\(escaped(skipped))\" want \"\(escaped(c.text))\" / \"\(escaped(c.textSkipSpecial))\"")
        }
        print("[parity] \(model): \(matched)/\(ref.ids.count) corpus decodes and \(casesMatched)/\(ref.decodeCases.count) odd id sequences match")
        #expect(matched == ref.ids.count)
        #expect(casesMatched == ref.decodeCases.count)
    }

    /// decode(encode(s)) == s wherever the reference round-trips too.
    @Test(arguments: ["qwen", "smol"])
    func roundTrip(model: String) throws {
        let tok = try Fixtures.tokenizer(model)
        let ref = try #require(Fixtures.reference(model))
        var checked = 0
        for (i, s) in Fixtures.strings.enumerated() where sameScalars(ref.decoded[i], s) {
            let back = tok.decode(tok.encode(s))
            #expect(sameScalars(back, s), "\(model) #\(i) \"\(escaped(s))\" came back as \"\(escaped(back))\"")
            checked += 1
        }
        #expect(checked > 600)
    }

    /// Each scanner cuts every corpus string exactly where the reference regex does.
    @Test(arguments: PreTokenizerKind.allCases)
    func preTokenizerMatchesRegex(kind: PreTokenizerKind) throws {
        let all = try #require(Fixtures.corpus["preTokenizerPieces"] as? [String: [[Int]]])
        let ref = try #require(all[kind.rawValue])
        let strings = Fixtures.strings
        try #require(ref.count == strings.count)
        var matched = 0
        for (i, s) in strings.enumerated() {
            let scalars = s.unicodeScalars.map(\.value)
            let classes = scalars.map { ScalarClass.of($0) }
            var lengths: [Int] = []
            scalars.withUnsafeBufferPointer { sp in
                classes.withUnsafeBufferPointer { cp in
                    kind.split(sp, cp, 0..<scalars.count) { lengths.append($1 - $0) }
                }
            }
            if lengths == ref[i] { matched += 1; continue }
            Issue.record("\(kind) #\(i) \"\(escaped(String(s.prefix(80))))\": got \(lengths.prefix(30)) want \(ref[i].prefix(30))")
        }
        print("[parity] \(kind) pre-tokenizer: \(matched)/\(strings.count)")
        #expect(matched == strings.count)
    }

    @Test(arguments: ["smollm2-digits", "qwen2-mini", "llama3-mini"])
    func tokenizerJSONMatchesReference(name: String) throws {
        let tok = try BPETokenizer.fromTokenizerJSON(path: fixturesDir() + "/" + name)
        let ref = try #require(Fixtures.jsonReference(name))
        let strings = Fixtures.strings
        try #require(ref.count == strings.count)
        var matched = 0
        for (i, s) in strings.enumerated() {
            let ids = tok.encode(s)
            if ids == ref[i] { matched += 1; continue }
            Issue.record("\(name) #\(i) \"\(escaped(String(s.prefix(80))))\": got \(ids.prefix(40)) want \(ref[i].prefix(40))")
        }
        print("[parity] \(name) tokenizer.json: \(matched)/\(strings.count)")
        #expect(matched == strings.count)
    }
}
