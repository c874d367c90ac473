import Foundation
import Testing
import Formats
import Evaluation
import TestSupport

/// The task metrics against the reference implementations (rouge_score 0.1.2, the SQuAD v2
/// script, the authors' `strip() ==`) on 84 committed pairs (scripts/make_metric_fixtures.py).
@Suite struct MetricTests {
    struct Pair: Decodable { let prediction, reference: String; let exact, f1, rouge1, rougeL: Double }

    static let pairs: [Pair] = {
        let path = fixturesDir() + "/metric_pairs.jsonl"
        return fixtureBytes(path).split(separator: UInt8(ascii: "\n")).enumerated().map { i, line in
            guard let pair = try? JSONDecoder().decode(Pair.self, from: Data(line)) else { badFixture(path, "line \(i + 1) is not a pair") }
            return pair
        }
    }()

    @Test func fixtureIsThere() { #expect(Self.pairs.count == 84) }

    @Test(arguments: TaskMetric.allCases) func matchesReference(metric: TaskMetric) {
        for p in Self.pairs {
            let want: Double
            switch metric { case .exact: want = p.exact; case .f1: want = p.f1; case .rouge1: want = p.rouge1; case .rougeL: want = p.rougeL }
            let got = metric.score(prediction: p.prediction, reference: p.reference)
            #expect(abs(got - want) < 1e-12, "\(metric) \(p.prediction.debugDescription) vs \(p.reference.debugDescription): \(got) ≠ \(want)")
        }
    }

    @Test func names() {
        #expect(TaskMetric(name: "exact") == .exact && TaskMetric(name: "f1") == .f1)
        #expect(TaskMetric(name: "rouge1") == .rouge1 && TaskMetric(name: "rougeL") == .rougeL)
        #expect(TaskMetric(name: "rougel") == nil && TaskMetric(name: "bleu") == nil)
    }

    /// The authors' normalisation: surrounding whitespace only; case, quotes, inner spacing
    /// and a trailing semicolon all count.
    @Test func exactMatchNormalisation() {
        let ref = #"SELECT venue FROM table_name_7 WHERE away_team = "north melbourne""#
        #expect(exactMatch(ref, ref))
        #expect(exactMatch("  \n" + ref + "\t\n", ref))
        #expect(exactMatch("\u{1F}" + ref + "\u{A0}", ref))         // Python's isspace set
        #expect(!exactMatch(ref.lowercased(), ref))
        #expect(!exactMatch(ref + ";", ref))
        #expect(!exactMatch(ref.replacingOccurrences(of: "\"", with: "'"), ref))
        #expect(!exactMatch(ref.replacingOccurrences(of: " = ", with: "=" ), ref))
        #expect(!exactMatch("e\u{301}", "\u{E9}"))                 // code points, not canonical equivalence
        #expect(exactMatch("", "  "))
    }

    @Test func handValues() {
        #expect(squadF1("The cat sat.", "a cat sat") == 1)
        #expect(abs(rouge1F("a b c d", "a b e") - 2 * (0.5 * 2.0 / 3) / (0.5 + 2.0 / 3)) < 1e-15)
        #expect(abs(rougeLF("a b c d", "d c b a") - 0.25) < 1e-15)
        #expect(rougeLF("", "x") == 0 && rouge1F("!!", "x") == 0)
    }
}
