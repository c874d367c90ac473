import Foundation
import Testing
@testable import Formats
import TestSupport

// PEFT's module matching, against what Python 3.12's `re` answers (the expected values
// below were printed by `re.fullmatch` and by peft's `get_pattern_key`).

private let modules = ["model.layers.0.self_attn.q_proj", "model.layers.11.self_attn.v_proj", "model.layers.1.mlp.down_proj",
                       "model.layers.3.self_attn.k_proj", "lm_head", "a.q_proj\n", "модель.слой_1", "x.٣.y"]

@Suite struct PythonRegexTests {
    /// `re.fullmatch(pattern, module)` for each module above ("1": a match).
    static let fullMatches: [(String, String)] = [
        (".*\\.(q_proj|v_proj)", "11000000"),
        ("model\\.layers\\.\\d+\\.self_attn\\.(q|k|v)_proj", "11010000"),
        (".*(q|v)_proj$", "11000000"),
        ("^model.*proj$", "11110000"),
        ("model\\.layers\\.[0-2]\\.mlp\\..*", "00100000"),
        ("model\\.layers\\.(?:1|3)\\.self_attn\\.[qk]_proj", "00010000"),
        (".*layers\\.1\\d*\\..*", "01100000"),
        ("(a|aa)+", "00000000"),
        ("[^.]+\\.[^.]+", "00000110"),
        ("\\w+\\.\\w+", "00000010"),
        (".*\\bq_proj", "10000000"),
        (".*\\Bproj", "11110000"),
        ("[\\w.]+", "11111011"),
        ("[a\\-z.]+", "00000000"),
        (".*\\x71_proj", "10000000"),
        (".*q_proj$", "10000000"),
        ("model\\.layers\\.\\d{1,2}\\..*", "11110000"),
        ("model\\.layers\\.\\d{2,}\\..*", "01000000"),
        ("lm_hea{1}d", "00001000"),
        ("lm_he{0,}ad", "00001000"),
        ("lm_h{,1}ead", "00001000"),
        ("lm_head|x", "00001000"),
        ("(?P<n>lm)_head", "00001000"),
        (".*?proj", "11110000"),
        ("\\w+\\.\\w+_\\d", "00000010"),
        ("x\\.\\d\\.y", "00000001"),
        ("[^\\d]*", "00001100"),
        ("[\\D]*", "00001100"),
        ("\\S+\\s?", "11111111"),
        ("model.layers.0.self_attn.q_proj", "10000000"),
        ("(model|lm)[._](layers|head).*", "11111000"),
        ("model\\.layers\\.0\\.self_attn\\.q_proj{}", "00000000"),
        ("lm_head{}", "00000000"),
        ("\\Alm_head\\Z", "00001000"),
    ]

    /// The key `get_pattern_key(keys, module)` picks for each module above (its index; "-": none).
    static let patternKeys: [([String], String)] = [
        (["q_proj"], "0----0--"),
        (["layers.1.self_attn.q_proj"], "--------"),
        (["1.self_attn.v_proj"], "--------"),
        (["layers.1.*"], "-00-----"),
        (["mlp\\..*_proj", "down_proj"], "--0-----"),
        (["down_proj", "mlp\\..*_proj"], "--0-----"),
        (["model.layers.0.self_attn.q_proj"], "0-------"),
        (["model"], "--------"),
        (["proj"], "--------"),
        (["q_proj$"], "0----0--"),
        (["(q|v)_proj"], "00---0--"),
        (["layers\\.\\d+\\.self_attn\\.v_proj"], "-0------"),
        (["a.q_proj"], "-----0--"),
        (["q.proj"], "0----0--"),
        (["слой_1"], "------0-"),
        (["lm_head", "q_proj"], "1---01--"),
        ([".*"], "00000000"),
    ]

    @Test func fullMatchAgreesWithPython() throws {
        for (pattern, want) in Self.fullMatches {
            let r = try PythonRegex(pattern)
            var budget = PythonRegex.maxMatchSteps
            let got = String(modules.map { r.matches($0, whole: true, budget: &budget)! ? "1" : "0" })
            #expect(got == want, "\(pattern)")
        }
    }

    @Test func patternKeysAgreeWithPEFT() throws {
        for (keys, want) in Self.patternKeys {
            let table = try PatternTable(keys.enumerated().map { ($1, Double($0)) }, field: "rank_pattern", source: "cfg")
            var budget = PythonRegex.maxMatchSteps
            let got = String(try modules.map { m in try table.value(for: m, budget: &budget).map { Character(String(Int($0))) } ?? "-" })
            #expect(got == want, "\(keys)")
            // Plain names take a shortcut; it must agree with the regex it stands for.
            for k in keys {
                let r = try PythonRegex("(.*\\.)?(" + k + ")$")
                for m in modules where !k.contains(where: { "()|\\$*+?[]{}^".contains($0) }) {
                    #expect(PatternTable.plainMatch(k, m) == r.matches(m, whole: false, budget: &budget), "\(k) vs \(m)")
                }
            }
        }
    }

    /// Patterns that take exponential time in a backtracking matcher (Python's, Swift's
    /// Regex) finish at once, with Python's answer.
    @Test func catastrophicPatternsAreLinear() throws {
        let long = String(repeating: "a", count: 5000) + "!"
        let cases: [(String, String, Bool)] = [
            ("(a+)+$", long, false), ("(a|a)*b", long, false), ("(a*)*$", long, false), ("((a+)+)+b", long, false),
            ("(.*a){20}", long, false), ("(x+x+)+y", String(repeating: "x", count: 3000), false),
            ("([a-z_.0-9]+)+!", "model.layers.0.self_attn.q_proj", false), ("(a+)+!", long, true),
            ("(?:(?:)*){1000000000}a*!", long, true),
        ]
        for (pattern, subject, want) in cases {
            let got = within(seconds: 10) { () -> Bool? in
                var budget = PythonRegex.maxMatchSteps
                return try PythonRegex(pattern).matches(subject, whole: true, budget: &budget)
            }
            guard let got else { Issue.record("\(pattern): still matching after 10 s"); continue }
            #expect(try got.get() == want, "\(pattern)")
        }
        // The work is bounded: past the budget the answer is nil, not a long wait.
        var budget = 1000
        #expect(try PythonRegex("(a|b|ab)*c").matches(long, whole: true, budget: &budget) == nil)
        let table = try PatternTable([("(a|b|ab)*c", 2)], field: "rank_pattern", source: "x/adapter_config.json")
        budget = 1000
        #expect(throws: FormatError("x/adapter_config.json", "rank_pattern key \"(a|b|ab)*c\": matching the patterns against the adapter's modules (here \(long)) takes more than \(PythonRegex.maxMatchSteps) steps")) {
            _ = try table.value(for: long, budget: &budget)
        }
    }

    /// Python's syntax errors, and the constructs only a backtracking matcher can run, are
    /// refused with what is wrong.
    @Test func refusedPatterns() {
        let cases: [(String, String)] = [
            ("(", "missing ), unterminated subpattern"),
            ("a)", "unbalanced parenthesis at position 1"),
            ("*a", "nothing to repeat at position 0"),
            ("a**", "multiple repeat at position 2"),
            ("a{3,2}", "min repeat greater than max repeat at position 1"),
            ("[a-", "unterminated character set at position 0"),
            ("[z-a]", "bad character range z-a at position 0"),
            ("\\q", "bad escape \\q at position 0"),
            ("(a)\\1", "backreference \\1 at position 3 is not supported"),
            ("(?=a)", "lookaround at position 0 is not supported"),
            ("(?<!a)b", "lookaround at position 0 is not supported"),
            ("(?i)a", "the group extension (?i at position 0 is not supported"),
            ("a*+", "possessive repeat at position 2 is not supported"),
            ("^*", "nothing to repeat at position 1"),
            (String(repeating: "(", count: 60) + String(repeating: ")", count: 60), "groups nested deeper than 50"),
            ("(abcdefghij){3000}", "too large once its repeats are expanded (more than 20000 steps)"),
            (String(repeating: "a", count: 2001), "longer than 2000 characters"),
        ]
        for (pattern, message) in cases {
            do {
                _ = try PythonRegex(pattern)
                Issue.record("\(pattern): accepted")
            } catch {
                #expect("\(error)" == message, "\(pattern)")
            }
        }
    }
}
