import Foundation
import Model

/// One judged answer, as `realign eval --outputs` writes it.
public struct AnswerRecord: Encodable {
    public let prompt: String
    public let response: String
    /// "harmful", "benign" or "task".
    public let set: String
    /// The judge's label (harmful / refusal / other on the harmful set, answered / refusal /
    /// other on the benign and task sets), and the same as flags.
    public let label: AnswerLabel
    public let harmful: Bool
    public let refused: Bool
    public let degenerate: Bool
    /// The task metric's score of the answer (task set only).
    public let score: Double?

    public init(prompt: String, response: String, set: String, verdict: Verdict, score: Double? = nil) {
        self.prompt = prompt; self.response = response; self.set = set; self.label = verdict.label
        harmful = verdict.harmful; refused = verdict.refused; degenerate = verdict.degenerate; self.score = score
    }
}

/// Harmful rate, benign refusal rate and task score of one model, with the judge that
/// produced the first two.
public struct EvalReport {
    public let judge: String
    public let metric: TaskMetric?
    /// Share of harmful-set answers judged harmful (nil without harmful prompts).
    public let harmfulRate: Double?
    /// Share of harmful-set answers judged refusals, and judged neither harmful nor refusals.
    public let harmfulRefusalRate: Double?
    public let harmfulOtherRate: Double?
    /// Share of benign-set answers judged refusals, and judged neither answers nor refusals.
    public let benignRefusalRate: Double?
    public let benignOtherRate: Double?
    /// Share of harmful / benign answers that were degenerate (counted as not harmful, not refused).
    public let harmfulDegenerateRate: Double?
    public let benignDegenerateRate: Double?
    /// Mean task metric.
    public let taskScore: Double?
    public let records: [AnswerRecord]
    public let newTokens: Int
    public let seconds: Double
    /// Of `seconds`, the time the judge took.
    public let judgeSeconds: Double

    public func count(_ set: String) -> Int { records.lazy.filter { $0.set == set }.count }
}

/// One answer before judging: what `evaluate` generates and `eval --outputs` saves.
public struct Answer: Sendable {
    public var prompt: String
    public var response: String
    /// "harmful", "benign" or "task".
    public var set: String
    public var score: Double?
    public init(prompt: String, response: String, set: String, score: Double? = nil) {
        self.prompt = prompt; self.response = response; self.set = set; self.score = score
    }
}

/// Answers every prompt greedily (up to `maxNewTokens`, `batchSize` per batch), judges the
/// harmful and benign answers with `judge`, and scores the task answers with `metric`.
/// `progress` gets the set name and the set's progress.
public func evaluate(model: LanguageModel, harmful: [String], benign: [String], task: [TaskExample] = [],
                     metric: TaskMetric = .exact, judge: Judge, maxNewTokens: Int = 128, batchSize: Int = 64,
                     progress: ((String, AnswerProgress) -> Void)? = nil) throws -> EvalReport {
    let start = Date()
    var answers: [Answer] = []
    var tokens = 0
    for (set, prompts) in [("harmful", harmful), ("benign", benign)] where !prompts.isEmpty {
        var setTokens = 0
        let responses = try generateAnswers(model: model, prompts: prompts, maxNewTokens: maxNewTokens, batchSize: batchSize) {
            setTokens = $0.newTokens
            progress?(set, $0)
        }
        tokens += setTokens
        answers += zip(prompts, responses).map { Answer(prompt: $0, response: $1, set: set) }
    }
    if !task.isEmpty {
        var setTokens = 0
        let s = try taskScore(model: model, examples: task, metric: metric, maxNewTokens: maxNewTokens, batchSize: batchSize) {
            setTokens = $0.newTokens
            progress?("task", $0)
        }
        tokens += setTokens
        answers += task.indices.map { Answer(prompt: task[$0].prompt, response: s.responses[$0], set: "task", score: s.scores[$0]) }
    }
    return try judged(answers, judge: judge, metric: task.isEmpty ? nil : metric, newTokens: tokens, seconds: Date().timeIntervalSince(start))
}

/// Verdicts of answers to requests of both kinds: each kind judged in one call (a learned
/// judge batches them), the verdicts in the answers' order.
public func judgeEach(_ judge: Judge, prompts: [String], responses: [String], requests: [Request]) throws -> [Verdict] {
    var verdicts = [Verdict?](repeating: nil, count: prompts.count)
    for request in Request.allCases {
        let idx = requests.indices.filter { requests[$0] == request }
        guard !idx.isEmpty else { continue }
        let v = try judge.judge(prompts: idx.map { prompts[$0] }, responses: idx.map { responses[$0] }, request: request)
        for (i, x) in zip(idx, v) { verdicts[i] = x }
    }
    return verdicts.map { $0! }
}

/// The report of answers already made (e.g. saved by an earlier evaluation), judged by `judge`:
/// harmful-set answers as harmful requests, benign and task answers as safe ones.
public func judged(_ answers: [Answer], judge: Judge, metric: TaskMetric?, newTokens: Int, seconds: Double) throws -> EvalReport {
    let start = Date()
    func rate(_ xs: [Bool]) -> Double? { xs.isEmpty ? nil : Double(xs.filter { $0 }.count) / Double(xs.count) }
    let verdicts = try judgeEach(judge, prompts: answers.map(\.prompt), responses: answers.map(\.response),
                                 requests: answers.map { $0.set == "harmful" ? .harmful : .safe })
    let records = answers.indices.map { i in
        AnswerRecord(prompt: answers[i].prompt, response: answers[i].response, set: answers[i].set, verdict: verdicts[i], score: answers[i].score)
    }
    func of(_ set: String) -> [Verdict] { answers.indices.filter { answers[$0].set == set }.map { verdicts[$0] } }
    let h = of("harmful"), b = of("benign"), scores = answers.compactMap { $0.set == "task" ? $0.score : nil }
    return EvalReport(judge: judge.name, metric: metric,
                      harmfulRate: rate(h.map(\.harmful)), harmfulRefusalRate: rate(h.map(\.refused)), harmfulOtherRate: rate(h.map(\.other)),
                      benignRefusalRate: rate(b.map(\.refused)), benignOtherRate: rate(b.map(\.other)),
                      harmfulDegenerateRate: rate(h.map(\.degenerate)), benignDegenerateRate: rate(b.map(\.degenerate)),
                      taskScore: scores.isEmpty ? nil : scores.reduce(0, +) / Double(scores.count),
                      records: records, newTokens: newTokens, seconds: seconds + Date().timeIntervalSince(start),
                      judgeSeconds: Date().timeIntervalSince(start))
}
