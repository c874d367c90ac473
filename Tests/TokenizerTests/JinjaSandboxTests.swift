import Foundation
import Testing
import Tensor
@testable import Tokenizer

/// Renders `source` and returns the error it must throw, failing the test if it renders
/// or takes longer than `seconds` (a generous bound: debug builds on a busy machine).
private func sandboxError(_ source: String, limits: JinjaLimits = JinjaLimits(), seconds: Double = 60) -> TemplateError? {
    let start = Date()
    defer { #expect(Date().timeIntervalSince(start) < seconds, "took \(Date().timeIntervalSince(start)) s") }
    do {
        let t = try ChatTemplate(source: source, bosToken: nil, eosToken: nil, limits: limits)
        let out = try t.render(messages: [ChatMessage(role: "user", content: "hi")])
        Issue.record("rendered \(out.utf8.count) bytes instead of failing")
        return nil
    } catch let e as TemplateError {
        return e
    } catch {
        Issue.record("threw a non-TemplateError: \(error)")
        return nil
    }
}


private let fuzzFragments: [[UInt8]] = ["{{", "}}", "{%", "%}", "{#", "#}", "-", "(", ")", "[", "]", "'", "\"", "|",
                                        " if ", " for ", "endif", "endfor", "\n", "\\", "loop.", "*", "**", "~", ".",
                                        "range(99999)", "namespace(", "macro", "caller()", "{% set x = [x] %}"].map { Array($0.utf8) }

/// Random byte deletions, insertions and duplications of `bytes`.
private func mutate(_ bytes: [UInt8], _ rng: inout SplitMix64) -> [UInt8] {
    var b = bytes
    for _ in 0..<Int.random(in: 1...6, using: &rng) {
        guard !b.isEmpty else { break }
        let i = Int.random(in: 0..<b.count, using: &rng)
        switch Int.random(in: 0..<5, using: &rng) {
        case 0: b.removeSubrange(i..<min(b.count, i + Int.random(in: 1...8, using: &rng)))
        case 1: b.insert(UInt8.random(in: 0...255, using: &rng), at: i)
        case 2: b.insert(contentsOf: fuzzFragments[Int.random(in: 0..<fuzzFragments.count, using: &rng)], at: i)
        case 3:
            let j = min(b.count, i + Int.random(in: 1...40, using: &rng))
            b.insert(contentsOf: b[i..<j], at: Int.random(in: 0...b.count, using: &rng))
        default: b[i] = UInt8.random(in: 0...255, using: &rng)
        }
    }
    return b
}

@Suite struct JinjaSandboxTests {
    @Test func hugeRangeIsRefused() {
        let e = sandboxError("{% for i in range(10**9) %}x{% endfor %}")
        #expect(e?.kind == .limit)
        #expect(e?.message.contains("MAX_RANGE (100000)") == true)
    }

    @Test func runawayMacroRecursionHitsTheDepthLimit() {
        let e = sandboxError("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}")
        #expect(e?.kind == .limit)
        #expect(e?.message.contains("depth limit") == true)
    }

    @Test func mutualRecursionThroughCallerHitsTheDepthLimit() {
        let e = sandboxError("{% macro f() %}{% call f() %}x{% endcall %}{% endmacro %}{{ f() }}")
        #expect(e?.kind == .limit)
    }

    @Test func outputLargerThanTheLimitIsRefused() {
        let e = sandboxError("{% for i in range(100000) %}{{ 'x' * 100 }}{% endfor %}")
        #expect(e?.kind == .limit)
        #expect(e?.message.contains("output size limit") == true)
    }

    @Test func stringDoublingIsRefused() {
        let e = sandboxError("{% set ns = namespace(s='ab') %}{% for i in range(64) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}")
        #expect(e?.kind == .limit)
        let e2 = sandboxError("{{ 'x' * 10**12 }}")
        #expect(e2?.kind == .limit)
        let e3 = sandboxError("{% set ns = namespace(l=[1]) %}{% for i in range(64) %}{% set ns.l = ns.l + ns.l %}{% endfor %}")
        #expect(e3?.kind == .limit)
    }

    @Test func nestedLoopsHitTheStepLimit() {
        let e = sandboxError("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}")
        #expect(e?.kind == .limit)
        #expect(e?.message.contains("step limit") == true)
    }

    @Test func smallerLimitsAreHonoured() {
        var limits = JinjaLimits()
        limits.maxSteps = 1000
        #expect(sandboxError("{% for i in range(2000) %}{% endfor %}", limits: limits)?.kind == .limit)
        limits = JinjaLimits()
        limits.maxOutputBytes = 10
        #expect(sandboxError("{{ 'abcdefghijk' }}", limits: limits)?.kind == .limit)
        limits = JinjaLimits()
        limits.maxRange = 10
        #expect(sandboxError("{{ range(11)|list }}", limits: limits)?.kind == .limit)
    }

    @Test(arguments: [
        "{{ " + String(repeating: "(", count: 100_000) + "1" + String(repeating: ")", count: 100_000) + " }}",
        "{{ " + String(repeating: "[", count: 100_000) + String(repeating: "]", count: 100_000) + " }}",
        "{{ " + String(repeating: "{'a': ", count: 50_000) + "1" + String(repeating: "}", count: 50_000) + " }}",
        "{{ " + String(repeating: "not ", count: 100_000) + "x }}",
        "{{ " + String(repeating: "- ", count: 100_000) + "1 }}",
        "{{ " + Array(repeating: "1", count: 100_000).joined(separator: " + ") + " }}",
        "{{ x" + String(repeating: ".a", count: 100_000) + " }}",
        "{{ x" + String(repeating: "|trim", count: 100_000) + " }}",
        "{{ x" + String(repeating: "[0]", count: 100_000) + " }}",
        "{{ f" + String(repeating: "()", count: 100_000) + " }}",
        "{{ 1" + String(repeating: " if 1", count: 100_000) + " }}",
        String(repeating: "{% if true %}", count: 20_000) + String(repeating: "{% endif %}", count: 20_000),
        String(repeating: "{% for x in y %}", count: 20_000) + String(repeating: "{% endfor %}", count: 20_000),
    ])
    func deeplyNestedSourceIsRefused(_ source: String) {
        var limits = JinjaLimits()
        limits.maxSourceBytes = 4 << 20   // these sources are longer than the default allows
        let e = sandboxError(source, limits: limits)
        #expect(e?.kind == .limit)
        #expect(e?.message.contains("parse depth limit") == true)
    }

    /// Builtins whose result can be far larger than their inputs size it before building
    /// it, and the work of builtins counts as steps: each of these ends within seconds
    /// with a limit error (before, several built gigabytes or ran for minutes).
    @Test(arguments: [
        "{{ 'x'.join(['y' * 1000000] * 1000000) }}",
        "{{ ('x' * 1000000).replace('x', 'y' * 1000000) }}",
        "{{ ('x' * 1000000)|replace('x', 'y' * 1000000) }}",
        "{{ ('' * 1)|replace('', 'y' * 1000000) ~ ('x' * 1000)|replace('', 'y' * 1000000) }}",
        "{{ ('%1048576s' * 1000) % ((1,) * 1000) }}",
        "{{ '%1048577s' % 'x' }}",
        "{{ '%.1000000000f' % 1 }}",
        "{{ ('{0}' * 300000).format('y' * 1000000) }}",
        "{{ ['y' * 1000000] * 1000000 }}",
        "{{ (['y' * 1000000] * 1000000)|string }}",
        "{{ (['y' * 1000000] * 1000000)|join }}",
        "{{ (['y' * 1000000] * 1000000)|tojson }}",
        "{{ ('\"' * 1000000)|tojson }}",
        "{{ [[[[[[[[1]]]]]]]]|tojson(indent='y' * 1000000) }}",
        "{{ {'a': 1, 'b': 2, 'c': 3}|tojson(separators=('y' * 1000000, ': ')) }}",
        "{{ ('\n' * 1000000)|indent(1000) }}",
        "{{ ('\n' * 1000000)|indent('y' * 1000000) }}",
        "{{ 'y'|center(1000000000) }}",
        "{{ 'y'|center(9223372036854775807) }}",
        "{{ '%9223372036854775807s' % 'x' }}",
        "{{ '%99999999999999999999999d' % 1 }}",
        "{{ '%.9223372036854775807f' % 1 }}",
        "{{ ('ŉ' * 500000).upper() }}",
        "{{ ('&' * 1000000)|escape }}",
        "{{ strftime_now('%A' * 200000) }}",
        "{{ ('x' * 1000000)|list|string }}",
        "{{ range(100000)|unique|list|length }}",
        "{{ (['y' * 1000000] * 100000)|unique|list|length }}",
        "{{ (['y' * 1000000] * 100000)|sort|length }}",
        "{{ (['y' * 1000000] * 1000000) == (['y' * 1000000] * 1000000) }}",
        "{% set big = range(100000)|list %}{% for i in range(100000) %}{% if i in big %}{% endif %}{% endfor %}",
        "{% set s = 'y' * 1000000 %}{% for i in range(100000) %}{% if s[i] %}{% endif %}{% endfor %}",
        "{% set s = 'y' * 1000000 %}{% for i in range(100000) %}{% if s|length %}{% endif %}{% endfor %}",
        "{% set s = 'ab' * 500000 %}{% for i in range(100000) %}{% if s.rsplit('a', 1000000) %}{% endif %}{% endfor %}",
        "{% set a = 'a' * 1000000 %}{% set b = 'a' * 500000 ~ 'b' %}{% for i in range(100000) %}{% if a.find(b) %}{% endif %}{% endfor %}",
        "{% set ns = namespace(l=[]) %}{% for i in range(100000) %}{% set ns.l = ns.l + ['y' * 1000000] %}{% endfor %}",
    ])
    func hostileBuiltinsHitALimit(_ source: String) {
        let e = sandboxError(source, seconds: 10)
        #expect(e?.kind == .limit, "\(e.map { "\($0)" } ?? "no error")")
    }

    /// Inputs that used to loop or build without end, with their (small) results.
    @Test func degenerateRepetitionAndFormatsRenderQuickly() throws {
        let start = Date()
        for (source, expected) in [("{{ [] * 10**18 }}|{{ '' * 10**18 }}|{{ (() * 10**18)|length }}", "[]||0"),
                                   ("{{ '%.40f' % 0.1 }}", "0.1000000000000000055511151231257827021182"),
                                   ("{{ ('%.1000f' % 1)|length }}|{{ '%+05d|%-4x|%.3s|% d' % (-3, 255, 'abcdef', 7) }}", "1002|-0003|ff  |abc| 7")] {
            let t = try ChatTemplate(source: source, bosToken: nil, eosToken: nil)
            #expect(try t.render(messages: []) == expected)
        }
        #expect(Date().timeIntervalSince(start) < 10)
    }

    /// Charging builtin work leaves real conversations far inside the limits: 40 turns
    /// of 16 KB (640 KB, most of the output limit) render with every real template in a
    /// fifth of the default steps.
    @Test func longConversationsRenderWellWithinTheLimits() throws {
        let dir = TemplateFixtures.templatesDir
        let files = try FileManager.default.contentsOfDirectory(atPath: dir).filter { $0.hasSuffix(".jinja") }.sorted()
        #expect(files.count >= 8)
        let line = "Lorem ipsum dolor sit amet, consectetur adipiscing elit; ünïcödé 😀 text\n"
        let content = String(repeating: line, count: 16_000 / line.utf8.count)
        let messages = (0..<40).map { ChatMessage(role: $0 % 2 == 0 ? "user" : "assistant", content: content) }
        var limits = JinjaLimits()
        limits.maxSteps /= 5
        for f in files {
            var t = try ChatTemplate(source: try String(contentsOfFile: dir + "/" + f, encoding: .utf8), bosToken: "<s>", eosToken: "</s>",
                                     limits: limits)
            t.now = { TemplateFixtures.pinnedNow }
            #expect(try t.render(messages: messages).utf8.count > 40 * content.utf8.count, "\(f)")
        }
    }

    @Test func deeplyNestedValuesAreRefused() {
        let e = sandboxError("{% set ns = namespace(x=1) %}{% for i in range(100000) %}{% set ns.x = [ns.x] %}{% endfor %}{{ ns.x }}")
        #expect(e?.kind == .limit)
        let e2 = sandboxError("{% set ns = namespace(x=1) %}{% for i in range(100000) %}{% set ns.x = {'k': ns.x} %}{% endfor %}")
        #expect(e2?.kind == .limit)
    }

    @Test func namespaceChainsAndCyclesAreSafe() throws {
        // A 50,000-long chain of namespaces and a namespace holding itself: printing stops
        // at a fixed depth, and freeing them after the render must not recurse.
        let chain = """
        {%- set ns = namespace(head=none) -%}
        {%- for i in range(50000) %}{% set ns.head = namespace(next=ns.head) %}{% endfor -%}
        {%- set ns.self = ns -%}
        {{ (ns.head|string)[:30] }}|{{ (ns|string)|length > 0 }}
        """
        let t = try ChatTemplate(source: chain, bosToken: nil, eosToken: nil)
        let out = try t.render(messages: [])
        #expect(out.hasPrefix("<Namespace {'next': <Namespace"))
    }

    @Test func templateErrorsNameLineAndColumn() {
        do {
            _ = try ChatTemplate(source: "line one\n{% if x %}\n  {{ 1 + }}\n{% endif %}", bosToken: nil, eosToken: nil)
            Issue.record("parsed")
        } catch let e as TemplateError {
            #expect(e.kind == .syntax)
            #expect(e.line == 3)
            #expect(e.column == 10)
            #expect(e.description.contains("line 3, column 10"))
        } catch {
            Issue.record("\(error)")
        }
        do {
            let t = try ChatTemplate(source: "a\nb\n{{ raise_exception('Roles must alternate') }}", bosToken: nil, eosToken: nil)
            _ = try t.render(messages: [])
            Issue.record("rendered")
        } catch let e as TemplateError {
            #expect(e.kind == .raised)
            #expect(e.message == "Roles must alternate")
            #expect(e.line == 3)
            #expect(e.description.contains("Roles must alternate"))
        } catch {
            Issue.record("\(error)")
        }
    }

    @Test func mutatedRealTemplatesRenderOrThrow() throws {
        let dir = TemplateFixtures.templatesDir
        let files = try FileManager.default.contentsOfDirectory(atPath: dir).filter { $0.hasSuffix(".jinja") }.sorted()
        #expect(files.count >= 8)
        let sources = try files.map { Array(try String(contentsOfFile: dir + "/" + $0, encoding: .utf8).utf8) }
        let conversation: [JinjaValue] = TemplateFixtures.loaded.cases.first { $0.name == "tool_calls" }?.messages
            ?? [ChatMessage(role: "user", content: "hi").jinjaValue]
        var limits = JinjaLimits()
        limits.maxSteps = 100_000
        var rng = SplitMix64(seed: 0x5EED_CAFE)
        var rendered = 0, failed = 0
        let start = Date()
        for n in 0..<3000 {
            let source = String(decoding: mutate(sources[n % sources.count], &rng), as: UTF8.self)
            do {
                var t = try ChatTemplate(source: source, bosToken: "<s>", eosToken: "</s>", limits: limits)
                t.now = { TemplateFixtures.pinnedNow }
                _ = try t.render(conversation: conversation, extra: ["tools": [["type": "function", "function": ["name": "f"]]]])
                rendered += 1
            } catch is TemplateError {
                failed += 1
            }
        }
        #expect(rendered > 100)
        #expect(failed > 100)
        #expect(Date().timeIntervalSince(start) < 300)
    }
}
