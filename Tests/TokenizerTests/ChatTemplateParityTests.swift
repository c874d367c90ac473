import Foundation
import Testing
@testable import Tokenizer
import TestSupport

/// One rendering recorded from transformers by scripts/make_template_fixtures.py.
struct TemplateCase: Sendable, CustomTestStringConvertible {
    let template: String
    let name: String
    let messages: [JinjaValue]
    let addGenerationPrompt: Bool
    let extra: [String: JinjaValue]
    let expected: String?
    let errorType: String?
    let errorMessage: String?

    var testDescription: String { "\(template) / \(name)" }
}

struct TemplateInfo: Sendable {
    let file: String
    let bosToken: String?
    let eosToken: String?
}

enum TemplateFixtures {
    static let templatesDir = fixturesDir() + "/templates"

    /// The pinned clock of the fixtures: 2025-03-09 14:05:06 (naive local time in
    /// Python, the same wall time in UTC here).
    static let pinnedNow = Date(timeIntervalSince1970: 1_741_529_106)

    static let loaded: (templates: [String: TemplateInfo], cases: [TemplateCase]) = {
        let path = fixturesDir() + "/chat_template_cases.json"
        do {
            guard case .dict(let root) = try JinjaValue(json: String(decoding: fixtureBytes(path), as: UTF8.self)),
                  case .dict(let templates)? = root["templates"], case .list(let cases)? = root["cases"] else {
                badFixture(path, "no templates and cases")
            }
            var infos: [String: TemplateInfo] = [:]
            for (k, v) in templates.pairs {
                guard case .string(let name) = k, case .dict(let d) = v, case .string(let file)? = d["file"] else {
                    badFixture(path, "a template without a name or file")
                }
                func token(_ key: String) -> String? { if case .string(let s)? = d[key] { return s }; return nil }
                infos[name] = TemplateInfo(file: file, bosToken: token("bos_token"), eosToken: token("eos_token"))
            }
            let parsed = cases.enumerated().map { i, c -> TemplateCase in
                guard case .dict(let d) = c, case .string(let template)? = d["template"], case .string(let name)? = d["name"],
                      case .list(let messages)? = d["messages"], case .bool(let agp)? = d["add_generation_prompt"],
                      case .dict(let extraDict)? = d["extra"] else { badFixture(path, "case \(i) lacks a field") }
                var extra: [String: JinjaValue] = [:]
                for (k, v) in extraDict.pairs { if case .string(let key) = k { extra[key] = v } }
                var expected: String? = nil, errorType: String? = nil, errorMessage: String? = nil
                if case .string(let s)? = d["expected"] { expected = s }
                if case .dict(let e)? = d["error"] {
                    if case .string(let t)? = e["type"] { errorType = t }
                    if case .string(let m)? = e["message"] { errorMessage = m }
                }
                return TemplateCase(template: template, name: name, messages: messages, addGenerationPrompt: agp,
                                    extra: extra, expected: expected, errorType: errorType, errorMessage: errorMessage)
            }
            return (infos, parsed)
        } catch {
            badFixture(path, "\(error)")
        }
    }()

    static func chatTemplate(_ name: String) throws -> ChatTemplate {
        guard let info = loaded.templates[name] else { throw TemplateError(.runtime, "no template \(name)") }
        let source = try String(contentsOfFile: templatesDir + "/" + info.file, encoding: .utf8)
        var t = try ChatTemplate(source: source, bosToken: info.bosToken, eosToken: info.eosToken)
        t.now = { pinnedNow }
        t.timeZone = TimeZone(identifier: "UTC") ?? .current
        return t
    }
}

@Suite struct ChatTemplateParityTests {
    @Test func parityFixturesLoad() {
        #expect(TemplateFixtures.loaded.cases.count >= 150)
        #expect(TemplateFixtures.loaded.templates.count >= 8)
    }

    @Test(arguments: TemplateFixtures.loaded.cases)
    func chatTemplateMatchesTransformers(_ c: TemplateCase) throws {
        let template = try TemplateFixtures.chatTemplate(c.template)
        if let expected = c.expected {
            let got = try template.render(conversation: c.messages, addGenerationPrompt: c.addGenerationPrompt, extra: c.extra)
            let identical = got.utf8.elementsEqual(expected.utf8)  // bytes, not Swift's canonical-equivalence ==
            #expect(identical, "\(c.template)/\(c.name):\n--- got ---\n\(got)\n--- expected ---\n\(expected)")
            // Plain role/content conversations must render the same through the ChatMessage API.
            let plain = c.messages.compactMap { m -> ChatMessage? in
                guard case .dict(let d) = m, d.count == 2, case .string(let role)? = d["role"],
                      case .string(let content)? = d["content"] else { return nil }
                return ChatMessage(role: role, content: content)
            }
            if plain.count == c.messages.count {
                let viaMessages = try template.render(messages: plain, addGenerationPrompt: c.addGenerationPrompt, extra: c.extra)
                #expect(viaMessages == got)
            }
        } else {
            do {
                let got = try template.render(conversation: c.messages, addGenerationPrompt: c.addGenerationPrompt, extra: c.extra)
                Issue.record("\(c.template)/\(c.name): expected \(c.errorType ?? "an error"), rendered:\n\(got)")
            } catch let e as TemplateError {
                if c.errorType == "TemplateError" {
                    // raise_exception(message) in the template.
                    #expect(e.kind == .raised)
                    #expect(e.message == c.errorMessage)
                }
            }
        }
    }
}
