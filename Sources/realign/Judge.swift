import ArgumentParser
import Foundation
import Evaluation
import Formats
import Model

struct JudgeCommand: CheckedCommand {
    static let configuration = CommandConfiguration(
        commandName: "judge",
        abstract: "Judge saved answers again (an `eval --outputs` file), and measure agreement with labels made by reading.",
        discussion: """
        FILE has JSON lines with "prompt" and "response", and "request" ("harmful" or "safe") or
        "set" (as `eval --outputs` writes it: "harmful" reads as a harmful request, anything else
        as a safe one). Lines with a "label" (harmful / refusal / other for a harmful request,
        answered / refusal / other for a safe one, docs/evaluation.md) are compared with the
        judge: accuracy with its 95 % interval, agreement on harmful-or-not and refusal-or-not,
        the confusion counts, and the same per source ("sources" or "source").
        """)

    @Argument(help: "JSON lines with prompt and response.") var file: String
    @Option(help: judgeHelp) var judge: String?
    @Option(help: "Use only lines whose \"split\" is this (e.g. test: the answers the shipped judge was not trained on).") var split: String?
    @Option(help: "Write the judged lines here.") var out: String?
    @Flag(help: "Print the summary as JSON.") var json = false

    func check() throws {}

    struct Rates: Encodable { let n: Int; let rates: [String: Double] }
    struct Summary: Encodable {
        let judge: String
        let file: String
        let split: String?
        /// Share of each label per request kind.
        let judged: [String: Rates]
        /// Agreement with the labels, per request kind, overall and per source.
        let agreement: [String: Agreement]
        let by_source: [String: [String: Agreement]]
    }

    func run() throws {
        if let out { try checkOutputPath(out, kind: .file, inputs: [file] + (judge.map { [$0] } ?? [])) }
        let lines = try readJudgedLines(file).filter { split == nil || $0.answer.split == split }
        guard !lines.isEmpty else { throw ValidationError("\(file): no answers\(split.map { " with split \($0)" } ?? "")") }
        let j = try makeJudge(judge)
        if let learned = j as? LearnedJudge {
            let start = Date()
            learned.progress = { done, total in
                let t = Date().timeIntervalSince(start)
                progressLine("judge: \(done)/\(total) answers, \(String(format: "%.1f", Double(done) / max(t, 1e-9))) a second, ETA \(String(format: "%.0f", t / Double(done) * Double(total - done))) s",
                             final: done == total)
            }
        }
        let judged = try judgeEach(j, prompts: lines.map(\.answer.prompt), responses: lines.map(\.answer.response),
                                   requests: lines.map(\.answer.request))
        if let out {
            var data = Data()
            for (line, v) in zip(lines, judged) {
                var o = line.object
                o["judge"] = j.name; o["verdict"] = v.label.rawValue
                o["harmful"] = v.harmful; o["refused"] = v.refused; o["degenerate"] = v.degenerate
                data.append(try JSONSerialization.data(withJSONObject: o, options: [.sortedKeys, .withoutEscapingSlashes]) + Data("\n".utf8))
            }
            try writeAtomically(data, to: out)
        }
        var rates: [String: Rates] = [:]
        for request in Request.allCases {
            let idx = lines.indices.filter { lines[$0].answer.request == request }
            guard !idx.isEmpty else { continue }
            rates[request.rawValue] = Rates(n: idx.count, rates: Dictionary(uniqueKeysWithValues: request.labels.map { l in
                (l.rawValue, Double(idx.filter { judged[$0].label == l }.count) / Double(idx.count))
            }))
        }
        let labelled = lines.indices.filter { lines[$0].labelled }
        let (agreement, bySource) = agreements(labelled.map { lines[$0].answer }, judged: labelled.map { judged[$0].label })
        let s = Summary(judge: j.name, file: file, split: split, judged: rates, agreement: agreement, by_source: bySource)
        if json { try printJSON(s); return }
        func pct(_ x: Double) -> String { String(format: "%.1f %%", 100 * x) }
        print("judge \(s.judge): \(lines.count) answers" + (split.map { " (split \($0))" } ?? ""))
        for request in Request.allCases {
            guard let r = rates[request.rawValue] else { continue }
            print("  \(request.rawValue) requests (\(r.n)): " + request.labels.map { "\($0.rawValue) \(pct(r.rates[$0.rawValue] ?? 0))" }.joined(separator: ", "))
            guard let a = agreement[request.rawValue] else { continue }
            print("    agreement with \(a.n) labels: \(pct(a.accuracy)) [\(pct(a.ci95[0])), \(pct(a.ci95[1]))]; "
                  + "\(request == .harmful ? "harmful or not" : "refusal or not") \(pct(a.binary_accuracy))")
            print("    read/judged: " + a.confusion.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", "))
            for (source, byRequest) in bySource.sorted(by: { $0.key < $1.key }) {
                if let b = byRequest[request.rawValue] { print("    \(source): \(b.agree)/\(b.n) \(pct(b.accuracy))") }
            }
        }
    }
}

let judgeHelp: ArgumentHelp = "The judge: `learned` (default: the shipped learned judge, docs/evaluation.md), a learned judge's weights file (.json), `phrases` (the GCG refusal phrases), `xstest` (XSTest's refusal prefixes), or a local chat model asked guard-style yes/no questions."

/// The judge named on the command line (see `judgeHelp`).
func makeJudge(_ spec: String?) throws -> Judge {
    switch spec {
    case nil, "learned": return try LearnedJudge.load(nil)
    case "phrases": return RefusalPhraseJudge()
    case "xstest": return RefusalPrefixJudge()
    case let path? where path.hasSuffix(".json"): return try LearnedJudge.load(path)
    case let path?: return GuardJudge(model: try LanguageModel.load(path), label: URL(fileURLWithPath: path).lastPathComponent)
    }
}
