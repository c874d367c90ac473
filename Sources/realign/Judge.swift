import ArgumentParser
import Foundation
import Evaluation
import Formats
import Model

struct JudgeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "judge",
        abstract: "Judge saved answers again (an `eval --outputs` file), and measure agreement with manual labels.",
        discussion: """
        FILE has JSON lines with "prompt" and "response" (and optionally "set"). Lines with a
        "manual" field are compared with the judge: "harmful" or "harmless" with its harm
        verdict, "refused" or "answered" (e.g. answers to benign prompts) with its refusal
        verdict; it prints the accuracy and the confusion counts.
        """)

    @Argument(help: "JSON lines with prompt and response.") var file: String
    @Option(help: judgeHelp) var judge: String?
    @Option(help: "Write the judged lines here.") var out: String?
    @Flag(help: "Print the summary as JSON.") var json = false

    struct Summary: Encodable {
        let judge: String
        let n: Int
        let harmful_rate: Double
        let refusal_rate: Double
        let degenerate_rate: Double
        let n_labelled: Int
        let accuracy: Double?
        /// Counts keyed "manual/judge": harmful/harmful, harmful/harmless, harmless/harmful, harmless/harmless,
        /// and refused/refused, refused/answered, answered/refused, answered/answered.
        let confusion: [String: Int]
    }

    /// Each manual label, and the judge's label of the same kind for a verdict: harm for
    /// "harmful"/"harmless", refusal for "refused"/"answered".
    static let judged: [String: @Sendable (Verdict) -> String] = {
        let harm: @Sendable (Verdict) -> String = { $0.harmful ? "harmful" : "harmless" }
        let refusal: @Sendable (Verdict) -> String = { $0.refused ? "refused" : "answered" }
        return ["harmful": harm, "harmless": harm, "refused": refusal, "answered": refusal]
    }()

    func run() throws {
        if let out { try checkOutputPath(out, kind: .file, inputs: [file] + (judge.map { [$0] } ?? [])) }
        let rows = try readJSONLines(file)
        var prompts: [String] = [], responses: [String] = [], manual: [String?] = []
        for (line, obj) in rows {
            guard let p = obj["prompt"] as? String, let r = obj["response"] as? String else {
                throw FormatError(file, "line \(line): needs string \"prompt\" and \"response\"")
            }
            let m = obj["manual"] as? String
            if let m, JudgeCommand.judged[m] == nil {
                throw FormatError(file, "line \(line): \"manual\" must be \"harmful\" or \"harmless\" (harm), or \"refused\" or \"answered\" (refusal)")
            }
            prompts.append(p); responses.append(r); manual.append(m)
        }
        let j = try makeJudge(judge)
        let verdicts = try j.judge(prompts: prompts, responses: responses)
        var confusion: [String: Int] = [:]
        for (m, v) in zip(manual, verdicts) {
            if let m { confusion["\(m)/\(JudgeCommand.judged[m]!(v))", default: 0] += 1 }
        }
        let labelled = manual.compactMap { $0 }.count
        let agree = JudgeCommand.judged.keys.reduce(0) { $0 + (confusion["\($1)/\($1)"] ?? 0) }
        if let out {
            var lines = Data()
            for (i, (line, obj)) in rows.enumerated() {
                _ = line
                var o = obj
                o["judge"] = j.name
                o["harmful"] = verdicts[i].harmful; o["refused"] = verdicts[i].refused; o["degenerate"] = verdicts[i].degenerate
                lines.append(try JSONSerialization.data(withJSONObject: o, options: [.sortedKeys, .withoutEscapingSlashes]) + Data("\n".utf8))
            }
            try writeAtomically(lines, to: out)
        }
        let n = Double(verdicts.count)
        let s = Summary(judge: j.name, n: verdicts.count, harmful_rate: Double(verdicts.filter(\.harmful).count) / n,
                        refusal_rate: Double(verdicts.filter(\.refused).count) / n, degenerate_rate: Double(verdicts.filter(\.degenerate).count) / n,
                        n_labelled: labelled, accuracy: labelled > 0 ? Double(agree) / Double(labelled) : nil, confusion: confusion)
        if json { try printJSON(s); return }
        print("judge \(s.judge): \(s.n) answers, harmful \(String(format: "%.1f %%", 100 * s.harmful_rate)), refused \(String(format: "%.1f %%", 100 * s.refusal_rate))")
        if let a = s.accuracy { print("agreement with \(labelled) manual labels: \(String(format: "%.1f %%", 100 * a)); manual/judge counts \(confusion.sorted { $0.key < $1.key })") }
    }
}

let judgeHelp: ArgumentHelp = "Judge with `xstest` (XSTest's refusal prefixes, for over-refusal of benign prompts) or with this local chat model (guard-style yes/no logits) instead of the GCG refusal phrases."

/// The judge named on the command line: nil → the GCG refusal phrases (the default),
/// "xstest" → XSTest's refusal prefixes, anything else → a local chat model as guard.
func makeJudge(_ spec: String?) throws -> Judge {
    switch spec {
    case nil: return RefusalPhraseJudge()
    case "xstest": return RefusalPrefixJudge()
    case let path?: return GuardJudge(model: try LanguageModel.load(path), label: URL(fileURLWithPath: path).lastPathComponent)
    }
}
