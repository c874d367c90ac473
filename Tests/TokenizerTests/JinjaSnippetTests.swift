import Foundation
import Testing
@testable import Tokenizer
import TestSupport

/// A small template rendered by jinja2 in transformers' environment
/// (scripts/make_template_fixtures.py), with its output or its error.
struct SnippetCase: Sendable, CustomTestStringConvertible {
    let template: String
    let expected: String?
    let errorType: String?
    let errorMessage: String?
    var testDescription: String { template.count > 60 ? String(template.prefix(60)) + "…" : template }
}

enum SnippetFixtures {
    static let loaded: (messages: [JinjaValue], context: [String: JinjaValue], cases: [SnippetCase]) = {
        let path = fixturesDir() + "/jinja_snippet_cases.json"
        guard case .dict(let root)? = try? JinjaValue(json: String(decoding: fixtureBytes(path), as: UTF8.self)),
              case .list(let messages)? = root["messages"], case .dict(let ctx)? = root["context"],
              case .list(let cases)? = root["cases"] else { badFixture(path, "no messages, context and cases") }
        var context: [String: JinjaValue] = [:]
        for (k, v) in ctx.pairs { if case .string(let key) = k { context[key] = v } }
        let parsed = cases.enumerated().map { i, c -> SnippetCase in
            guard case .dict(let d) = c, case .string(let template)? = d["template"] else { badFixture(path, "case \(i) has no template") }
            var expected: String? = nil, type: String? = nil, message: String? = nil
            if case .string(let s)? = d["expected"] { expected = s }
            if case .dict(let e)? = d["error"] {
                if case .string(let t)? = e["type"] { type = t }
                if case .string(let m)? = e["message"] { message = m }
            }
            return SnippetCase(template: template, expected: expected, errorType: type, errorMessage: message)
        }
        return (messages, context, parsed)
    }()
}

@Suite struct JinjaSnippetTests {
    @Test func snippetFixturesLoad() {
        #expect(SnippetFixtures.loaded.cases.count >= 150)
    }

    @Test(arguments: SnippetFixtures.loaded.cases)
    func snippetMatchesJinja2(_ c: SnippetCase) throws {
        let render = { () throws -> String in
            var t = try ChatTemplate(source: c.template, bosToken: nil, eosToken: nil)
            t.now = { TemplateFixtures.pinnedNow }
            t.timeZone = TimeZone(identifier: "UTC") ?? .current
            return try t.render(conversation: SnippetFixtures.loaded.messages, addGenerationPrompt: true,
                                extra: SnippetFixtures.loaded.context)
        }
        if let expected = c.expected {
            let got = try render()
            let identical = got.utf8.elementsEqual(expected.utf8)
            #expect(identical, "got \(pyRepr(got)), expected \(pyRepr(expected))")
            return
        }
        do {
            let got = try render()
            Issue.record("expected \(c.errorType ?? "an error") (\(c.errorMessage ?? "")), rendered \(pyRepr(got))")
        } catch let e as TemplateError {
            switch c.errorType {
            case "TemplateSyntaxError", "SyntaxError": #expect(e.kind == .syntax, "\(e)")
            case "TemplateError": #expect(e.kind == .raised && e.message == c.errorMessage, "\(e)")
            case "OverflowError": #expect(e.kind == .limit, "\(e)")
            case "TypeError" where c.errorMessage?.contains("no loader") == true:
                #expect(e.kind == .syntax, "\(e)")  // include/import are refused when parsing
            default: #expect(e.kind == .runtime, "\(e) (jinja2: \(c.errorType ?? "") \(c.errorMessage ?? ""))")
            }
        }
    }
}
