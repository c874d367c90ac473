import Foundation
import Testing
@testable import Model
@testable import Tokenizer
import TestSupport

/// Where a model's text side meets its weights: the chat template's errors name the
/// file it came from, a template file is sized before it is read, and the tokenizer's
/// ids must fit the model's vocabulary.
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

    static func templateError(_ body: () throws -> Void) -> TemplateError? {
        do {
            try body()
            Issue.record("no error")
        } catch let e as TemplateError {
            return e
        } catch {
            Issue.record("threw \(type(of: error)): \(error)")
        }
        return nil
    }

    @Test func templateErrorsNameTheFileLineAndColumn() throws {
        let dir = try Self.folder("errors")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        // chat_template.jinja: a syntax error when loading.
        let jinja = dir + "/chat_template.jinja"
        try Data("hello\n{% for m in messages %}\n  {{ m.content + }}\n{% endfor %}".utf8).write(to: URL(fileURLWithPath: jinja))
        let e = Self.templateError { _ = try ChatFormat(hfFolder: dir, vocabSize: 49152, contextLength: 8192) }
        #expect(e?.path == jinja)
        #expect(e?.description.hasPrefix("\(jinja): chat template syntax error at line 3, column 18: ") == true, "\(e.map { "\($0)" } ?? "")")

        // tokenizer_config.json's template wins over the .jinja file; an error while rendering.
        let config = dir + "/tokenizer_config.json"
        try Data(#"{"chat_template": "{% for m in messages %}\n{{ raise_exception('no system role\nallowed') }}{% endfor %}"}"#.utf8)
            .write(to: URL(fileURLWithPath: config))
        let chat = try ChatFormat(hfFolder: dir, vocabSize: 49152, contextLength: 8192)
        let r = Self.templateError { _ = try chat.chatPrompt("hi") }
        #expect(r?.kind == .raised)
        #expect(r?.description == "\(config): chat template raised an exception at line 2: no system role\\nallowed")

        // From a GGUF file (or any other source), the model's path is named.
        let tokenizer = try BPETokenizer(tokens: (0..<256).map { ByteLevel.token(forBytes: [UInt8($0)]) }, merges: [], preTokenizer: .gpt2)
        let g = Self.templateError {
            _ = try ChatFormat(path: "/models/m.gguf", vocabSize: 256, contextLength: 8192, tokenizer: tokenizer, templateSource: "{{ x ]] }}")
        }
        #expect(g?.description.hasPrefix("/models/m.gguf: chat template syntax error at line 1, column ") == true)
    }

    /// A template longer than the limit is refused (a .jinja file before it is read).
    @Test func oversizedTemplateIsRefused() throws {
        let dir = try Self.folder("big")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let limit = JinjaLimits().maxSourceBytes
        let jinja = dir + "/chat_template.jinja"
        try Data(repeating: UInt8(ascii: "x"), count: limit + 1).write(to: URL(fileURLWithPath: jinja))
        let e = Self.templateError { _ = try ChatFormat(hfFolder: dir, vocabSize: 49152, contextLength: 8192) }
        #expect(e?.kind == .limit)
        #expect(e?.path == jinja)
        #expect(e?.message == "the template is \(limit + 1) bytes, more than the limit of \(limit)")

        let config = dir + "/tokenizer_config.json"
        try Data(#"{"chat_template": "\#(String(repeating: "y", count: limit + 1))"}"#.utf8).write(to: URL(fileURLWithPath: config))
        let c = Self.templateError { _ = try ChatFormat(hfFolder: dir, vocabSize: 49152, contextLength: 8192) }
        #expect(c?.kind == .limit)
        #expect(c?.path == config)
        // Exactly at the limit is fine.
        try Data(repeating: UInt8(ascii: "x"), count: limit).write(to: URL(fileURLWithPath: jinja))
        try Data("{}".utf8).write(to: URL(fileURLWithPath: config))
        #expect(try ChatFormat(hfFolder: dir, vocabSize: 49152, contextLength: 8192).chatPrompt("hi").utf8.count == limit)
    }

    /// tokenizer.json ids are checked against the model's vocabulary (config.json's
    /// vocab_size) as the tokenizer is read.
    @Test func tokenizerIdsMustFitTheModel() throws {
        let dir = try Self.folder("vocab")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        do {
            _ = try ChatFormat(hfFolder: dir, vocabSize: 49000, contextLength: 8192)
            Issue.record("a tokenizer with ids up to 49151 should not fit a model of 49000")
        } catch let e as FormatError {
            #expect(e.path == dir + "/tokenizer.json")
            #expect(e.problem.contains("beyond the model's vocabulary of 49000 tokens"), "\(e.problem)")
        }
        let tokenizer = try BPETokenizer(tokens: (0..<256).map { ByteLevel.token(forBytes: [UInt8($0)]) }, merges: [], preTokenizer: .gpt2)
        #expect(throws: FormatError("/models/m.gguf", "the tokenizer has ids up to 255, beyond the model's vocabulary of 200 tokens")) {
            _ = try ChatFormat(path: "/models/m.gguf", vocabSize: 200, contextLength: 8192, tokenizer: tokenizer, templateSource: nil)
        }
    }
}
