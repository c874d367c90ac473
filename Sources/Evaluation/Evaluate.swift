import Foundation
import Model

/// One judged answer, as `realign eval --outputs` writes it.
public struct AnswerRecord: Encodable {
    public let prompt: String
    public let response: String
    /// "harmful", "benign" or "task".
    public let set: String
    /// The judge's verdict that the answer is harmful. For the refusal-phrase judge this means
    /// "answered (no refusal phrase, not degenerate)", meaningful on the harmful set only.
    public let harmful: Bool
    public let refused: Bool
    public let degenerate: Bool
    /// The task metric's score of the answer (task set only).
    public let score: Double?
}

/// Harmful rate, benign refusal rate and task score of one model, with the judge that
/// produced the first two.
public struct EvalReport {
    public let judge: String
    public let metric: TaskMetric?
    /// Share of harmful-set answers judged harmful (nil without harmful prompts).
    public let harmfulRate: Double?
    /// Share of benign-set answers judged refusals.
    public let benignRefusalRate: Double?
    /// Share of harmful / benign answers that were degenerate (counted as not harmful, not refused).
    public let harmfulDegenerateRate: Double?
    public let benignDegenerateRate: Double?
    /// Mean task metric.
    public let taskScore: Double?
    public let records: [AnswerRecord]
    public let newTokens: Int
    public let seconds: Double

    public func count(_ set: String) -> Int { records.lazy.filter { $0.set == set }.count }
}

/// Answers every prompt greedily (up to `maxNewTokens`, `batchSize` per batch), judges the
/// harmful and benign answers with `judge`, and scores the task answers with `metric`.
/// `progress` gets the set name and the set's progress.
public func evaluate(model: LanguageModel, harmful: [String], benign: [String], task: [TaskExample] = [],
                     metric: TaskMetric = .exact, judge: Judge, maxNewTokens: Int = 128, batchSize: Int = 64,
                     progress: ((String, AnswerProgress) -> Void)? = nil) throws -> EvalReport {
    let start = Date()
    var records: [AnswerRecord] = []
    var tokens = 0
    func rate(_ xs: [Bool]) -> Double? { xs.isEmpty ? nil : Double(xs.filter { $0 }.count) / Double(xs.count) }

    var rates: [String: (harmful: Double?, refused: Double?, degenerate: Double?)] = [:]
    for (set, prompts) in [("harmful", harmful), ("benign", benign)] where !prompts.isEmpty {
        var setTokens = 0
        let answers = try generateAnswers(model: model, prompts: prompts, maxNewTokens: maxNewTokens, batchSize: batchSize) {
            setTokens = $0.newTokens
            progress?(set, $0)
        }
        tokens += setTokens
        let verdicts = try judge.judge(prompts: prompts, responses: answers)
        for i in prompts.indices {
            records.append(AnswerRecord(prompt: prompts[i], response: answers[i], set: set, harmful: verdicts[i].harmful,
                                        refused: verdicts[i].refused, degenerate: verdicts[i].degenerate, score: nil))
        }
        rates[set] = (rate(verdicts.map(\.harmful)), rate(verdicts.map(\.refused)), rate(verdicts.map(\.degenerate)))
    }
    var taskMean: Double? = nil
    if !task.isEmpty {
        var setTokens = 0
        let s = try taskScore(model: model, examples: task, metric: metric, maxNewTokens: maxNewTokens, batchSize: batchSize) {
            setTokens = $0.newTokens
            progress?("task", $0)
        }
        tokens += setTokens
        let verdicts = try judge.judge(prompts: task.map(\.prompt), responses: s.responses)
        for i in task.indices {
            records.append(AnswerRecord(prompt: task[i].prompt, response: s.responses[i], set: "task", harmful: verdicts[i].harmful,
                                        refused: verdicts[i].refused, degenerate: verdicts[i].degenerate, score: s.scores[i]))
        }
        taskMean = s.mean
    }
    return EvalReport(judge: judge.name, metric: task.isEmpty ? nil : metric,
                      harmfulRate: rates["harmful"]?.harmful, benignRefusalRate: rates["benign"]?.refused,
                      harmfulDegenerateRate: rates["harmful"]?.degenerate, benignDegenerateRate: rates["benign"]?.degenerate,
                      taskScore: taskMean, records: records, newTokens: tokens, seconds: Date().timeIntervalSince(start))
}
