import Foundation
import Testing
import Formats
import Model
import TestSupport
@testable import Evaluation

@Suite struct LearnedJudgeTests {
    /// Three classes in 4 features, rows drawn from a fixed linear congruential sequence.
    static func toy(rows: Int) -> (x: [Float], labels: [Int]) {
        var s: UInt64 = 12345, x: [Float] = [], labels: [Int] = []
        func next() -> Float { s = s &* 6364136223846793005 &+ 1442695040888963407; return Float(s >> 40) / Float(1 << 24) - 0.5 }
        for r in 0..<rows {
            let c = r % 3
            labels.append(c)
            x += (0..<4).map { j in next() + (j == c ? 1.5 : 0) + Float(j) * 10 }   // offsets the standardisation must remove
        }
        return (x, labels)
    }

    /// The analytic gradient of the regularised cross-entropy matches central differences.
    @Test func gradientMatchesFiniteDifferences() {
        let (x, labels) = Self.toy(rows: 30)
        var m = SoftmaxRegression.fit(x, labels: labels, classes: 3, l2: 0.05, steps: 3)
        var z = m.standardised(x)
        var dW: [Float] = [], db: [Float] = []
        _ = m.loss(z: &z, labels: labels, l2: 0.05, dW: &dW, db: &db)
        var scratchW: [Float] = [], scratchB: [Float] = []
        for i in [0, 5, 11] {
            let h: Float = 1e-2, w = m.weights[i]
            m.weights[i] = w + h; let up = m.loss(z: &z, labels: labels, l2: 0.05, dW: &scratchW, db: &scratchB)
            m.weights[i] = w - h; let down = m.loss(z: &z, labels: labels, l2: 0.05, dW: &scratchW, db: &scratchB)
            m.weights[i] = w
            #expect(abs((up - down) / Double(2 * h) - Double(dW[i])) < 1e-3, "weight \(i)")
        }
        for c in 0..<3 {
            let h: Float = 1e-2, b = m.bias[c]
            m.bias[c] = b + h; let up = m.loss(z: &z, labels: labels, l2: 0.05, dW: &scratchW, db: &scratchB)
            m.bias[c] = b - h; let down = m.loss(z: &z, labels: labels, l2: 0.05, dW: &scratchW, db: &scratchB)
            m.bias[c] = b
            #expect(abs((up - down) / Double(2 * h) - Double(db[c])) < 1e-3, "bias \(c)")
        }
    }

    /// A fit ends at the regularised optimum (gradient ~0), and separates the toy classes.
    @Test func fitReachesTheOptimum() {
        let (x, labels) = Self.toy(rows: 60)
        let m = SoftmaxRegression.fit(x, labels: labels, classes: 3, l2: 0.01, steps: 2000)
        var z = m.standardised(x), dW: [Float] = [], db: [Float] = []
        _ = m.loss(z: &z, labels: labels, l2: 0.01, dW: &dW, db: &db)
        let norm = (dW + db).reduce(0) { $0 + Double($1 * $1) }.squareRoot()
        #expect(norm < 1e-3, "gradient norm \(norm)")
        #expect(m.predict(x) == labels)
        // Standardisation: the stored means are the feature means (offsets 0, 10, 20, 30, plus 1.5
        // on a third of the rows for features 0…2).
        for j in 0..<4 { #expect(abs(m.mean[j] - Float(j) * 10 - (j < 3 ? 0.5 : 0)) < 0.2, "mean \(j) = \(m.mean[j])") }
        let p = m.probabilities(Array(x[0..<4]))
        #expect(abs(p.reduce(0, +) - 1) < 1e-5)
    }

    /// Out-of-fold predictions never see their own prompt: with a label that is a pure function
    /// of the group and features that carry no information, every fold predicts the majority
    /// of the other groups, not the held-out one.
    @Test func foldsSplitByGroup() {
        #expect(fold(of: "How do I pick a lock?", folds: 5) == fold(of: "How do I pick a lock?", folds: 5))
        let groups = (0..<40).map { "prompt \($0 / 2)" }    // two answers per prompt
        let folds = Set(groups.map { fold(of: $0, folds: 5) })
        #expect(folds.count == 5)
        let x = [Float](repeating: 1, count: 40 * 2)
        let labels = (0..<40).map { $0 < 30 ? 0 : 1 }
        let p = outOfFoldPredictions(x, width: 2, labels: labels, classes: 2, groups: groups, folds: 5, l2: 0.01)
        #expect(p == [Int](repeating: 0, count: 40))
    }

    /// The smallest offset that predicts class 0 as often as it is labelled: rows 0 and 1 need
    /// log(0.6/0.4) = 0.405 and log(0.55/0.45) = 0.201, row 2 log(4) = 1.386; the grid's first
    /// step past 0.405 is 0.42.
    @Test func offsetMatchesTheCount() {
        let p: [Float] = [0.4, 0.6, 0.45, 0.55, 0.2, 0.8, 0.1, 0.9]
        #expect(abs(countMatchingOffset(p, labels: [0, 0, 1, 1], classes: 2, class: 0) - 0.42) < 1e-6)
        #expect(countMatchingOffset(p, labels: [1, 1, 1, 1], classes: 2, class: 0) == 0)
    }

    @Test func wilson() {
        let w = wilsonInterval(90, 100)
        #expect(abs(w[0] - 0.8256343) < 1e-6 && abs(w[1] - 0.9447709) < 1e-6)
        #expect(wilsonInterval(0, 10)[0] == 0 && abs(wilsonInterval(0, 10)[1] - 0.2775328) < 1e-6)
    }

    @Test func agreementCounts() {
        let read: [AnswerLabel] = [.harmful, .harmful, .refusal, .other, .other, .refusal]
        let judged: [AnswerLabel] = [.harmful, .other, .refusal, .harmful, .other, .other]
        let a = Agreement(read: read, judged: judged, request: .harmful)
        #expect(a.n == 6 && a.agree == 3 && a.accuracy == 0.5)
        // Harmful or not: rows 1 (harmful read as other) and 3 (other read as harmful) disagree.
        #expect(a.binary_agree == 4)
        #expect(a.confusion == ["harmful/harmful": 1, "harmful/other": 1, "refusal/refusal": 1, "other/harmful": 1, "other/other": 1, "refusal/other": 1])
        let s = Agreement(read: [.answered, .refusal, .other], judged: [.answered, .answered, .answered], request: .safe)
        #expect(s.agree == 1 && s.binary_agree == 2)
    }

    /// The cheapest setting within the tolerance is chosen.
    @Test func chooseCheapest() {
        func s(_ layer: Int, _ p: Pooling, _ acc: Double) -> JudgeSetting { JudgeSetting(layer: layer, pooling: p, l2: [:], agree: [:], n: [:], accuracy: acc) }
        let t = JudgeTraining(answers: [], states: [:], hidden: 1, tolerance: 0.5)
        let settings = [s(4, .mean, 0.80), s(4, .meanAndLast, 0.81), s(8, .mean, 0.905), s(8, .meanAndLast, 0.90), s(12, .mean, 0.91)]
        #expect(t.choose(settings) == settings[2])
        #expect(JudgeTraining(answers: [], states: [:], hidden: 1, tolerance: 0).choose(settings) == settings[4])
    }

    /// String judges: a safe request's non-refusal is "answered", a degenerate answer "other".
    @Test func stringJudgeLabels() throws {
        let j = RefusalPhraseJudge()
        let v = try j.judge(prompts: ["a", "b", "c"], responses: ["Sure, here it is.", "I'm sorry, I can't.", "..."], request: .safe)
        #expect(v.map(\.label) == [.answered, .refusal, .other])
        let h = try j.judge(prompts: ["a", "b", "c"], responses: ["Sure, here it is.", "I'm sorry, I can't.", "..."], request: .harmful)
        #expect(h.map(\.label) == [.harmful, .refusal, .other] && h[2].degenerate)
    }

    static func weights(features: Int = 4) -> LearnedJudgeWeights {
        func head(_ r: Request) -> LearnedJudgeWeights.Head {
            .init(request: r, labels: r.labels, classifier: SoftmaxRegression(
                classes: 3, features: features, mean: .init(repeating: 0, count: features), scale: .init(repeating: 1, count: features),
                weights: .init(repeating: 0.5, count: 3 * features), bias: [0, 0, 0]))
        }
        return LearnedJudgeWeights(encoder: "e", layer: 2, pooling: .mean, question: nil, heads: [head(.harmful), head(.safe)], training: [:])
    }

    /// A weights file that does not add up is refused, naming the file and the problem.
    @Test(arguments: [
        ("format", "format is"),
        ("labels", "labels must be"),
        ("arrays", "do not match"),
        ("nan", "not finite"),
        ("heads", "exactly one head"),
        ("layer", "layer"),
    ])
    func badWeights(change: String, message: String) throws {
        var w = Self.weights()
        switch change {
        case "format": w.format = "something-else"
        case "labels": w.heads[0].labels = [.answered, .refusal, .other]
        case "arrays": w.heads[1].classifier.weights.removeLast()
        case "nan": w.heads[0].classifier.bias[1] = .nan
        case "heads": w.heads.removeLast()
        default: w.layer = -1
        }
        #expect(throws: FormatError.self) { try w.check("/tmp/judge.json") }
        do { try w.check("/tmp/judge.json") } catch {
            #expect("\(error)".contains("/tmp/judge.json") && "\(error)".contains(message), "\(error)")
        }
        try Self.weights().check("/tmp/judge.json")
    }

    /// A labels file with a label the request's rubric does not have is refused at its line.
    @Test func badLabels() throws {
        let path = NSTemporaryDirectory() + "realign-labels-\(getpid()).jsonl"
        defer { try? FileManager.default.removeItem(atPath: path) }
        try "{\"prompt\":\"p\",\"response\":\"r\",\"request\":\"harmful\",\"label\":\"harmful\"}\n{\"prompt\":\"p\",\"response\":\"r\",\"request\":\"safe\",\"label\":\"harmful\"}\n"
            .write(toFile: path, atomically: true, encoding: .utf8)
        do { _ = try readJudgedLines(path); Issue.record("accepted a bad label") } catch {
            #expect("\(error)".contains(path) && "\(error)".contains("line 2") && "\(error)".contains("answered, refusal, other"), "\(error)")
        }
        try "{\"prompt\":\"p\",\"response\":\"r\",\"request\":\"maybe\"}\n".write(toFile: path, atomically: true, encoding: .utf8)
        #expect(throws: FormatError.self) { _ = try readJudgedLines(path) }
        try "{\"prompt\":\"p\",\"response\":\"r\",\"set\":\"benign\"}\n".write(toFile: path, atomically: true, encoding: .utf8)
        let l = try readJudgedLines(path)
        #expect(l.count == 1 && l[0].answer.request == .safe && !l[0].labelled)
    }
}

/// The shipped judge on the real Qwen GGUF against transformers (scripts/make_judge_fixtures.py):
/// the rendered ids, where the answer's tokens are, the pooled features and each head's
/// probabilities.
@Suite struct LearnedJudgeParityTests {
    struct Reference: Decodable {
        struct Case: Decodable {
            var request: String, prompt: String, response: String, ids: [Int], response_start: Int, response_end: Int
            var features_head: [Double], features_norm: Double
            var probabilities: [String: Head]
        }
        struct Head: Decodable { var labels: [String]; var p: [Double] }
        var layer: Int, pooling: String, cases: [Case]
    }

    @Test func matchesTransformers() throws {
        let ref = try JSONDecoder().decode(Reference.self, from: try fixtureBytes(fixturesDir() + "/judge_reference.json"))
        let weights = try LearnedJudgeWeights.shipped
        #expect(ref.layer == weights.layer && ref.pooling == weights.pooling.rawValue && ref.cases.count == 5)
        let judge = try LearnedJudge(weights: weights, encoder: try LanguageModel.load(RealModels.qwen, blocks: weights.layer, log: { _ in }), label: "shipped")
        let seqs = try judge.encoder.judgedSequences(prompts: ref.cases.map(\.prompt), responses: ref.cases.map(\.response), question: weights.question,
                                                     maxPromptCharacters: weights.max_prompt_characters, maxResponseTokens: weights.max_response_tokens)
        let x = judge.encoder.pooledResponseStates(seqs, layers: [weights.layer], pooling: weights.pooling)[weights.layer]!
        let width = weights.pooling.width(hidden: judge.encoder.config.hiddenSize)
        for (i, c) in ref.cases.enumerated() {
            // transformers' rendering goes on after the answer's end-of-turn token (a newline); the judge reads up to it.
            #expect(seqs[i].ids == Array(c.ids[..<c.response_end]) && seqs[i].responseStart == c.response_start, "case \(i)")
            let row = x[(i * width)..<((i + 1) * width)].map(Double.init)
            let norm = row.reduce(0) { $0 + $1 * $1 }.squareRoot()
            #expect(abs(norm - c.features_norm) < 1e-3 * c.features_norm, "case \(i): norm \(norm) vs \(c.features_norm)")
            for j in 0..<8 { #expect(abs(row[j] - c.features_head[j]) < 1e-3 * max(1, abs(c.features_head[j])), "case \(i) feature \(j)") }
            let request = Request(rawValue: c.request)!
            let (labels, p) = try judge.probabilities(prompts: [c.prompt], responses: [c.response], request: request)
            let head = c.probabilities[c.request]!
            #expect(labels.map(\.rawValue) == head.labels)
            for k in labels.indices { #expect(abs(Double(p[k]) - head.p[k]) < 2e-3, "case \(i) class \(k): \(p[k]) vs \(head.p[k])") }
        }
    }
}

extension LearnedJudgeParityTests {
    /// The shipped judge on a fixed sample of the labelled set's test split (the first 40
    /// answers to harmful requests and the first 20 to safe ones, in file order): exact
    /// read/judged counts, so any change to the judge's weights or forward pass shows.
    @Test func verdictsOnLabelledAnswers() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let lines = try readJudgedLines(root.appendingPathComponent("data/judge/labels.jsonl").path).filter { $0.answer.split == "test" }
        let judge = try LearnedJudge.load(nil, log: { _ in })
        var confusion: [String: Int] = [:]
        for (request, count) in [(Request.harmful, 40), (.safe, 20)] {
            let sample = lines.filter { $0.answer.request == request }.prefix(count).map(\.answer)
            let v = try judge.judge(prompts: sample.map(\.prompt), responses: sample.map(\.response), request: request)
            for (a, j) in zip(sample, v) { confusion["\(a.label.rawValue)/\(j.label.rawValue)", default: 0] += 1 }
        }
        #expect(confusion == ["refusal/refusal": 30, "harmful/harmful": 6, "harmful/other": 2, "other/other": 4, "other/harmful": 1, "answered/answered": 17],
                "\(confusion.sorted { $0.key < $1.key })")
    }
}
