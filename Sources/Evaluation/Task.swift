import Foundation
import Formats
import Model

/// One task example: a user prompt and the reference answer.
public struct TaskExample: Equatable, Sendable {
    public var prompt: String
    public var response: String
    public init(prompt: String, response: String) { self.prompt = prompt; self.response = response }

    /// JSON lines with string fields "prompt" and "response" (other fields ignored, blank
    /// lines skipped). Errors name the file and the line.
    public static func readJSONL(_ path: String) throws -> [TaskExample] {
        try readJSONLWithLines(path).map(\.example)
    }

    /// `readJSONL` with each example's 1-based line number.
    public static func readJSONLWithLines(_ path: String) throws -> [(line: Int, example: TaskExample)] {
        try readJSONLines(path).map { (line, obj) in
            guard let p = obj["prompt"] as? String else { throw FormatError(path, "line \(line): no string \"prompt\"") }
            guard let r = obj["response"] as? String else { throw FormatError(path, "line \(line): no string \"response\"") }
            return (line, TaskExample(prompt: p, response: r))
        }
    }
}

/// The objects of a JSON-lines file with their 1-based line numbers. Blank lines are skipped;
/// a line that is not a JSON object, or a file with no lines, is an error naming the file.
public func readJSONLines(_ path: String) throws -> [(line: Int, object: [String: Any])] {
    let text = try MappedFile.text(path, maxBytes: FileLimits.dataBytes)
    var out: [(Int, [String: Any])] = []
    for (n, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
        let l = raw.trimmingCharacters(in: .whitespacesAndNewlines)
        if l.isEmpty { continue }
        guard let obj = (try? JSONSerialization.jsonObject(with: Data(l.utf8))) as? [String: Any] else {
            throw FormatError(path, "line \(n + 1): not a JSON object")
        }
        out.append((n + 1, obj))
    }
    guard !out.isEmpty else { throw FormatError(path, "no JSON lines") }
    return out
}

/// Prompts from a JSON-lines file (field "prompt").
public func readPromptsJSONL(_ path: String) throws -> [String] {
    try readJSONLines(path).map { (line, obj) in
        guard let p = obj["prompt"] as? String else { throw FormatError(path, "line \(line): no string \"prompt\"") }
        return p
    }
}

/// Progress of a batched answer run: prompts finished so far, new tokens, elapsed time.
public struct AnswerProgress {
    public let done: Int
    public let total: Int
    public let newTokens: Int
    public let seconds: Double
}

/// Greedy answers (the paper's §6.1 setting) to each prompt, rendered as one user message
/// with the model's chat template (its default system prompt), `batchSize` prompts per
/// batch with a KV cache. The stop token is left out of the text.
public func generateAnswers(model: LanguageModel, prompts: [String], maxNewTokens: Int, batchSize: Int = 64,
                            progress: ((AnswerProgress) -> Void)? = nil) throws -> [String] {
    precondition(batchSize > 0 && maxNewTokens > 0)
    var answers: [String] = []
    answers.reserveCapacity(prompts.count)
    let start = Date()
    var tokens = 0
    for b in stride(from: 0, to: prompts.count, by: batchSize) {
        let batch = Array(prompts[b..<min(b + batchSize, prompts.count)])
        let ids = try batch.map { try model.chat.promptIds($0) }
        let base = tokens
        let news = try model.decoder.generate(prompts: ids, maxNewTokens: maxNewTokens, stopTokens: model.chat.stopTokens) { p in
            progress?(AnswerProgress(done: answers.count, total: prompts.count, newTokens: base + p.newTokens,
                                     seconds: Date().timeIntervalSince(start)))
        }
        for n in news { answers.append(model.chat.text(ofNew: n)); tokens += n.count }
        progress?(AnswerProgress(done: answers.count, total: prompts.count, newTokens: tokens, seconds: Date().timeIntervalSince(start)))
    }
    return answers
}

/// A task score: the mean of the per-example scores, and the answers scored.
public struct TaskScore {
    public let metric: TaskMetric
    public let mean: Double
    public let scores: [Double]
    public let responses: [String]
}

/// Answers each example's prompt greedily and scores the answer against its reference.
public func taskScore(model: LanguageModel, examples: [TaskExample], metric: TaskMetric, maxNewTokens: Int = 128,
                      batchSize: Int = 64, progress: ((AnswerProgress) -> Void)? = nil) throws -> TaskScore {
    let responses = try generateAnswers(model: model, prompts: examples.map(\.prompt), maxNewTokens: maxNewTokens,
                                        batchSize: batchSize, progress: progress)
    let scores = zip(responses, examples).map { metric.score(prediction: $0, reference: $1.response) }
    return TaskScore(metric: metric, mean: scores.isEmpty ? 0 : scores.reduce(0, +) / Double(scores.count),
                     scores: scores, responses: responses)
}
