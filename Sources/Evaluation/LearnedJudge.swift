import Foundation
import Formats
import Model
import Tensor
import Tokenizer

/// How an answer's hidden states become one feature row.
public enum Pooling: String, Codable, Sendable, CaseIterable {
    /// The mean of the states at the response's tokens (its end-of-turn token included).
    case mean = "response-mean"
    /// That mean, then the state at the sequence's last token (the question's, with a question).
    case meanAndLast = "response-mean+last"
    /// The state at the sequence's last token alone.
    case last = "last"

    public func width(hidden: Int) -> Int { self == .meanAndLast ? 2 * hidden : hidden }
    /// Where its features start in a row of `meanAndLast` features.
    public func offset(hidden: Int) -> Int { self == .last ? hidden : 0 }
}

/// A learned judge's file: the encoder whose hidden states it reads, where and how it reads
/// them, one classifier per kind of request, and how it was trained.
public struct LearnedJudgeWeights: Codable, Sendable {
    public static let formatName = "realign-learned-judge-1"
    public var format: String
    /// A model spec `LanguageModel.load` resolves (an embedded name for the shipped judge).
    public var encoder: String
    /// Hidden-state index (0 is the embedding output): only blocks below it run.
    public var layer: Int
    public var pooling: Pooling
    /// A question asked after the answer, as a next user turn (the last token's state then
    /// carries the encoder's reading of the answer); nil: none.
    public var question: String?
    /// The prompt is cut to this many characters and the response to this many tokens before
    /// rendering, so one answer's cost is bounded whatever its length.
    public var max_prompt_characters: Int
    public var max_response_tokens: Int
    public var heads: [Head]
    /// Where the weights came from: labelled set and its digest, rows, folds, settings, cross-validated accuracy.
    public var training: [String: String]

    public struct Head: Codable, Sendable {
        public var request: Request
        /// The label of each class, in the classifier's order.
        public var labels: [AnswerLabel]
        public var classifier: SoftmaxRegression
        public init(request: Request, labels: [AnswerLabel], classifier: SoftmaxRegression) {
            self.request = request; self.labels = labels; self.classifier = classifier
        }
    }

    public init(encoder: String, layer: Int, pooling: Pooling, question: String?, maxPromptCharacters: Int = 2000, maxResponseTokens: Int = 128,
                heads: [Head], training: [String: String]) {
        format = Self.formatName; self.encoder = encoder; self.layer = layer; self.pooling = pooling; self.question = question
        max_prompt_characters = maxPromptCharacters; max_response_tokens = maxResponseTokens; self.heads = heads; self.training = training
    }

    public func head(_ request: Request) -> Head? { heads.first { $0.request == request } }


    /// The shipped judge: data/judge/judge.json, compiled in (`ShippedJudge.swift`, written by
    /// `realign train-judge --swift`) so the default works from any directory.
    public static var shipped: LearnedJudgeWeights {
        get throws { try decode(Data(shippedJudgeJSON.utf8), path: "data/judge/judge.json (compiled in)") }
    }

    /// The Swift source that compiles a weights file in.
    public static func swiftSource(json: String) -> String {
        "// Written by `realign train-judge --swift` from data/judge/judge.json; do not edit.\n"
            + "let shippedJudgeJSON = #\"\"\"\n" + json + "\n\"\"\"#\n"
    }

    /// Reads and checks a weights file: every count and size agrees, every number is finite.
    public static func read(_ path: String) throws -> LearnedJudgeWeights {
        try decode(try MappedFile.contents(path, maxBytes: FileLimits.jsonBytes), path: path)
    }

    /// Decodes and checks the bytes of a weights file; `path` names them in errors.
    public static func decode(_ data: Data, path: String) throws -> LearnedJudgeWeights {
        let w: LearnedJudgeWeights
        do { w = try JSONDecoder().decode(LearnedJudgeWeights.self, from: data) } catch {
            throw FormatError(path, "not a valid learned judge weights file: \(decodingProblem(error))")
        }
        try w.check(path)
        return w
    }

    public func check(_ path: String) throws {
        func bad(_ problem: String) -> FormatError { FormatError(path, problem) }
        guard format == Self.formatName else { throw bad("format is \(format.debugDescription), expected \(Self.formatName)") }
        guard (0...4096).contains(layer) else { throw bad("layer \(layer) is out of range 0…4096") }
        guard (1...100_000).contains(max_prompt_characters), (1...4096).contains(max_response_tokens) else {
            throw bad("max_prompt_characters must be 1…100000 and max_response_tokens 1…4096")
        }
        guard (question?.count ?? 0) <= 10_000 else { throw bad("the question is longer than 10000 characters") }
        guard Set(heads.map(\.request)) == Set(Request.allCases), heads.count == Request.allCases.count else {
            throw bad("needs exactly one head for each request kind (harmful, safe)")
        }
        for h in heads {
            let c = h.classifier
            guard Set(h.labels) == Set(h.request.labels), h.labels.count == c.classes else {
                throw bad("the \(h.request.rawValue) head's labels must be \(h.request.labels.map(\.rawValue))")
            }
            guard (1...65536).contains(c.features), c.mean.count == c.features, c.scale.count == c.features,
                  c.weights.count == c.classes * c.features, c.bias.count == c.classes else {
                throw bad("the \(h.request.rawValue) head's arrays do not match its \(c.classes) classes × \(c.features) features")
            }
            guard (c.mean + c.scale + c.weights + c.bias).allSatisfy(\.isFinite) else {
                throw bad("the \(h.request.rawValue) head has a number that is not finite")
            }
        }
    }
}

extension LanguageModel {
    /// The sequences a judge reads: each (prompt, response) rendered with the chat template as
    /// a user turn and an assistant turn (the prompt cut to `maxPromptCharacters`, the response
    /// to `maxResponseTokens` tokens), then `question` as a next user turn with the generation
    /// prompt; and where the response starts.
    public func judgedSequences(prompts: [String], responses: [String], question: String?, maxPromptCharacters: Int,
                                maxResponseTokens: Int) throws -> [TrainingExample] {
        precondition(prompts.count == responses.count)
        guard let template = chat.template else { throw FormatError(path, "the judge's encoder has no chat template") }
        return try zip(prompts, responses).map { p, r in
            let prompt = String(p.prefix(maxPromptCharacters))
            // A token is at most a few dozen bytes: cutting the text first bounds the tokeniser's work.
            var ids = chat.tokenizer.encode(String(r.prefix(maxResponseTokens * 32)))
            if ids.count > maxResponseTokens { ids.removeSubrange(maxResponseTokens...) }
            let response = chat.tokenizer.decode(ids)
            guard var e = try chat.trainingExample(prompt: prompt, response: response, maxLength: chat.contextLength) else {
                throw FormatError(path, "a prompt of \(p.count) characters leaves no room for its answer in the judge's context")
            }
            if let question {
                let messages = [ChatMessage(role: "user", content: prompt), ChatMessage(role: "assistant", content: response),
                                ChatMessage(role: "user", content: question)]
                let all = chat.tokenizer.encode(try template.render(messages: messages, addGenerationPrompt: true))
                guard all.count > e.ids.count, Array(all[..<e.ids.count]) == e.ids, all.count <= chat.contextLength else {
                    throw FormatError(path, "the chat template's rendering of the question turn does not extend the answer's")
                }
                e.ids = all
            }
            return e
        }
    }

    /// Pooled response states at each of `layers`: layer → [sequences × pooling width]. The
    /// response mean is over its tokens (from `responseStart` to the end of its turn).
    public func pooledResponseStates(_ sequences: [TrainingExample], layers: [Int], pooling: Pooling, batchSize: Int = 16,
                                     progress: ((Int) -> Void)? = nil) -> [Int: [Float]] {
        let H = config.hiddenSize, width = pooling.width(hidden: H)
        var out: [Int: [Float]] = Dictionary(uniqueKeysWithValues: layers.map { ($0, [Float](repeating: 0, count: sequences.count * width)) })
        let ends = sequences.map { e in e.ids[e.responseStart...].firstIndex { chat.stopTokens.contains($0) }.map { $0 + 1 } ?? e.ids.count }
        decoder.visitHiddenStates(sequences.map(\.ids), layers: layers, batchSize: batchSize, progress: progress) { i, layer, rows, count in
            out[layer]!.withUnsafeMutableBufferPointer { o in
                let row = o.baseAddress! + i * width
                if pooling != .last {
                    let start = sequences[i].responseStart
                    var sum = [Double](repeating: 0, count: H)
                    for r in start..<ends[i] { for j in 0..<H { sum[j] += Double(rows[r * H + j]) } }
                    let k = 1 / Double(ends[i] - start)
                    for j in 0..<H { row[j] = Float(sum[j] * k) }
                }
                if pooling != .mean { (row + (pooling == .meanAndLast ? H : 0)).update(from: rows + (count - 1) * H, count: H) }
            }
        }
        return out
    }
}

/// The learned judge: a linear classifier per kind of request over an encoder model's pooled
/// hidden states of the rendered (prompt, answer) (docs/evaluation.md, "The learned judge").
/// Degenerate answers are `other`, as the rubric says.
public final class LearnedJudge: Judge {
    public let weights: LearnedJudgeWeights
    public let encoder: LanguageModel
    public let label: String
    public var batchSize = 16
    /// Called with (answers read, answers) as batches finish.
    public var progress: ((Int, Int) -> Void)?
    public var name: String { "learned:" + label }

    public init(weights: LearnedJudgeWeights, encoder: LanguageModel, label: String) throws {
        guard weights.pooling.width(hidden: encoder.config.hiddenSize) == weights.heads[0].classifier.features else {
            throw FormatError(encoder.path, "hidden size \(encoder.config.hiddenSize) does not match the judge's \(weights.heads[0].classifier.features) features (\(weights.pooling.rawValue))")
        }
        guard weights.layer <= encoder.config.numLayers else {
            throw FormatError(encoder.path, "the judge reads layer \(weights.layer), the encoder has \(encoder.config.numLayers)")
        }
        self.weights = weights; self.encoder = encoder; self.label = label
    }

    /// The judge of a weights file (or the shipped one), with its encoder's first blocks loaded.
    /// Its name ends in the weights' digest, so results of other weights are never mistaken for its own.
    public static func load(_ path: String?, log: @escaping (String) -> Void = stderrLine) throws -> LearnedJudge {
        let bytes = try path.map { try MappedFile.contents($0, maxBytes: FileLimits.jsonBytes) } ?? Data(shippedJudgeJSON.utf8)
        let w = try LearnedJudgeWeights.decode(bytes, path: path ?? "data/judge/judge.json (compiled in)")
        let digest = String(bytes.withUnsafeBytes { sha256Hex($0) }.prefix(8))
        let encoder = try LanguageModel.load(w.encoder, blocks: w.layer, log: log)
        return try LearnedJudge(weights: w, encoder: encoder,
                                label: (path.map { URL(fileURLWithPath: $0).lastPathComponent } ?? "\(w.encoder)@\(w.layer)") + "#" + digest)
    }

    /// Class probabilities [answers × labels] of the head for `request`, and its labels.
    public func probabilities(prompts: [String], responses: [String], request: Request) throws -> (labels: [AnswerLabel], p: [Float]) {
        let head = weights.head(request)!
        let seqs = try encoder.judgedSequences(prompts: prompts, responses: responses, question: weights.question,
                                               maxPromptCharacters: weights.max_prompt_characters,
                                               maxResponseTokens: weights.max_response_tokens)
        let x = encoder.pooledResponseStates(seqs, layers: [weights.layer], pooling: weights.pooling, batchSize: batchSize) { [progress] in
            progress?($0, seqs.count)
        }[weights.layer]!
        return (head.labels, head.classifier.probabilities(x))
    }

    public func judge(prompts: [String], responses: [String], request: Request) throws -> [Verdict] {
        guard !prompts.isEmpty else { return [] }
        let (labels, p) = try probabilities(prompts: prompts, responses: responses, request: request)
        return responses.indices.map { i in
            let degenerate = isDegenerate(responses[i])
            let best = p.withUnsafeBufferPointer { argmax($0.baseAddress! + i * labels.count, count: labels.count) }
            return Verdict(label: degenerate ? .other : labels[best], degenerate: degenerate)
        }
    }
}
