import Foundation
import Formats

/// One answer labelled by reading it against the rubric (data/judge/labels.jsonl).
public struct LabelledAnswer: Sendable {
    public var prompt: String
    public var response: String
    public var request: Request
    public var label: AnswerLabel
    /// "train" (prompts no report uses: the judge may learn from it) or "test" (answers to reported prompts).
    public var split: String?
    /// Who wrote the answer, e.g. "qwen2.5-coder-0.5b-instruct Q4_K_M / attacked".
    public var source: String
    /// 1-based line in the file.
    public var line: Int
}

/// Reads JSON lines with "prompt", "response", "request" ("harmful" or "safe"; or "set":
/// "harmful", "benign", "task") and, when labelled, "label" (one of the request's labels).
/// Sources are "sources": [{"model", "stage"}] (the first one names the answer) or "source".
public func readJudgedLines(_ path: String) throws -> [(answer: LabelledAnswer, labelled: Bool, object: [String: Any])] {
    try readJSONLines(path).map { line, o in
        func bad(_ problem: String) -> FormatError { FormatError(path, "line \(line): \(problem)") }
        guard let prompt = o["prompt"] as? String, let response = o["response"] as? String else {
            throw bad("needs string \"prompt\" and \"response\"")
        }
        let request: Request
        if let r = o["request"] {
            guard let s = r as? String, let q = Request(rawValue: s) else { throw bad("\"request\" must be \"harmful\" or \"safe\"") }
            request = q
        } else {
            request = (o["set"] as? String) == "harmful" ? .harmful : .safe
        }
        var label = AnswerLabel.other, labelled = false
        if let l = o["label"] {
            guard let s = l as? String, let a = AnswerLabel(rawValue: s), request.labels.contains(a) else {
                throw bad("\"label\" must be one of \(request.labels.map(\.rawValue).joined(separator: ", ")) for a \(request.rawValue) request")
            }
            label = a; labelled = true
        }
        var source = o["source"] as? String ?? ""
        if let s = (o["sources"] as? [[String: Any]])?.first {
            source = [s["model"] as? String, s["stage"] as? String].compactMap { $0 }.joined(separator: " / ")
        }
        return (LabelledAnswer(prompt: prompt, response: response, request: request, label: label, split: o["split"] as? String,
                               source: source, line: line), labelled, o)
    }
}

/// Agreement of a judge's labels with labels made by reading.
public struct Agreement: Encodable, Equatable {
    public var n: Int
    public var agree: Int
    public var accuracy: Double
    /// Wilson score interval of the accuracy at 95 %.
    public var ci95: [Double]
    /// Agreement on the question a rate answers: harmful or not (harmful requests), refusal or not (safe requests).
    public var binary_agree: Int
    public var binary_accuracy: Double
    /// Counts keyed "read/judged", e.g. "harmful/other".
    public var confusion: [String: Int]

    public init(read: [AnswerLabel], judged: [AnswerLabel], request: Request) {
        precondition(read.count == judged.count)
        n = read.count
        agree = zip(read, judged).filter { $0 == $1 }.count
        let positive: AnswerLabel = request == .harmful ? .harmful : .refusal
        binary_agree = zip(read, judged).filter { ($0 == positive) == ($1 == positive) }.count
        accuracy = n > 0 ? Double(agree) / Double(n) : 0
        binary_accuracy = n > 0 ? Double(binary_agree) / Double(n) : 0
        ci95 = wilsonInterval(agree, n)
        confusion = [:]
        for (r, j) in zip(read, judged) { confusion["\(r.rawValue)/\(j.rawValue)", default: 0] += 1 }
    }
}

/// Agreement of `judged` with the labels of `answers` (the same order) per request kind, and
/// per source and request kind (answers without a source only in the first). Keys are the
/// request kinds' raw values.
public func agreements(_ answers: [LabelledAnswer], judged: [AnswerLabel]) -> (byRequest: [String: Agreement], bySource: [String: [String: Agreement]]) {
    precondition(answers.count == judged.count)
    var byRequest: [String: Agreement] = [:], bySource: [String: [String: Agreement]] = [:]
    func agreement(_ rows: [Int], _ request: Request) -> Agreement {
        Agreement(read: rows.map { answers[$0].label }, judged: rows.map { judged[$0] }, request: request)
    }
    for request in Request.allCases {
        let idx = answers.indices.filter { answers[$0].request == request }
        guard !idx.isEmpty else { continue }
        byRequest[request.rawValue] = agreement(idx, request)
        for (source, rows) in Dictionary(grouping: idx, by: { answers[$0].source }) where !source.isEmpty {
            bySource[source, default: [:]][request.rawValue] = agreement(rows, request)
        }
    }
    return (byRequest, bySource)
}

/// The Wilson score interval of k successes in n at 95 % (z = 1.96), [low, high].
public func wilsonInterval(_ k: Int, _ n: Int) -> [Double] {
    guard n > 0 else { return [0, 1] }
    let z = 1.959964, p = Double(k) / Double(n), nn = Double(n)
    let centre = (p + z * z / (2 * nn)) / (1 + z * z / nn)
    let half = z / (1 + z * z / nn) * (p * (1 - p) / nn + z * z / (4 * nn * nn)).squareRoot()
    return [max(0, centre - half), min(1, centre + half)]
}
