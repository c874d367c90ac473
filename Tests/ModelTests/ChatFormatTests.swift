import Foundation
import Testing
@testable import Model
@testable import Tokenizer
import TestSupport

/// Where a model's text side meets its weights: the tokenizer's ids must fit the
/// model's vocabulary.
@Suite struct ChatFormatTests {
    /// A folder with SmolLM2's tokenizer files (49,152 ids) and nothing else.
    static func folder(_ tag: String) throws -> String {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("realign-chatformat-\(tag)-\(getpid())").path
        try? FileManager.default.removeItem(atPath: dir)
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let tok = fixturesDir().replacingOccurrences(of: "ModelTests", with: "TokenizerTests") + "/smollm2-digits"
        for f in ["tokenizer.json", "tokenizer_config.json"] { try FileManager.default.copyItem(atPath: tok + "/" + f, toPath: dir + "/" + f) }
        return dir
    }

    /// tokenizer.json ids are checked against the model's vocabulary (config.json's
    /// vocab_size) as the tokenizer is read.
    @Test func tokenizerIdsMustFitTheModel() throws {
        let dir = try Self.folder("vocab")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        do {
            _ = try ChatFormat(hfFolder: dir, vocabSize: 49000)
            Issue.record("a tokenizer with ids up to 49151 should not fit a model of 49000")
        } catch let e as FormatError {
            #expect(e.path == dir + "/tokenizer.json")
            #expect(e.problem.contains("beyond the model's vocabulary of 49000 tokens"), "\(e.problem)")
        }
        let tokenizer = try BPETokenizer(tokens: (0..<256).map { ByteLevel.token(forBytes: [UInt8($0)]) }, merges: [], preTokenizer: .gpt2)
        #expect(throws: FormatError("/models/m.gguf", "the tokenizer has ids up to 255, beyond the model's vocabulary of 200 tokens")) {
            _ = try ChatFormat(path: "/models/m.gguf", vocabSize: 200, tokenizer: tokenizer, templateSource: nil)
        }
    }
}
