import ArgumentParser
import Foundation
import Evaluation
import Formats
import Model

struct TrainJudge: CheckedCommand {
    static let configuration = CommandConfiguration(
        commandName: "train-judge",
        abstract: "Train the learned judge on answers labelled by reading (data/judge/labels.jsonl).",
        discussion: """
        Uses the lines whose "split" is "train" (answers to prompts no report uses). Reads the
        encoder's hidden states of every rendered (prompt, answer) once, cross-validates every
        candidate layer, pooling and L2 strength with folds split by prompt (no prompt on both
        sides), picks the cheapest layer within --tolerance points of the best out-of-fold
        accuracy, shifts the class each head's rate counts (harmful; refusal) so its out-of-fold count
        matches the labels' (the rate must not lean toward the majority class), fits the final
        heads on all training answers and writes them to --out. Prints the out-of-fold agreement
        of the chosen setting with that shift, per head and per source.
        """)

    @Argument(help: "Labelled answers (JSON lines with prompt, response, request, label, split).") var labels: String
    @Option(help: "Where to write the judge's weights (.json).") var out: String
    @Option(help: "Also write the weights as Swift source, to compile them in as the shipped judge.") var swift: String?
    @Option(help: "Encoder model (GGUF, HF folder or embedded name).") var encoder = "qwen2.5-coder-0.5b"
    @Option(help: "Candidate hidden-state layers, comma-separated.") var layers = "4,8,12,16"
    @Option(help: "A question asked after each answer, as a next user turn (only the last-token poolings read it).") var question: String?
    @Option(parsing: .unconditional, help: "Cross-validation folds.") var folds = 5
    @Option(help: "Candidate L2 strengths, comma-separated.") var l2 = "0.01,0.1,1"
    @Option(parsing: .unconditional, help: "Prefer a cheaper layer while its out-of-fold accuracy is within this many points of the best.") var tolerance = 1.0
    @Flag(help: "Print the result as JSON.") var json = false

    var layerList: [Int] { layers.split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) } }
    var l2List: [Float] { l2.split(separator: ",").compactMap { Float($0.trimmingCharacters(in: .whitespaces)) } }

    func check() throws {
        guard !layerList.isEmpty, layerList.count == layers.split(separator: ",").count, layerList.allSatisfy({ (0...4096).contains($0) }) else {
            throw ValidationError("--layers must be a comma-separated list of layers 0…4096")
        }
        guard !l2List.isEmpty, l2List.count == l2.split(separator: ",").count, l2List.allSatisfy({ $0 >= 0 && $0 <= 100 }) else {
            throw ValidationError("--l2 must be a comma-separated list of numbers 0…100")
        }
        guard (2...20).contains(folds) else { throw outOfRange("--folds", folds, "2…20") }
        guard tolerance >= 0 && tolerance <= 100 else { throw outOfRange("--tolerance", tolerance, "0…100") }
    }

    struct Result: Encodable {
        let labels: String
        let labels_sha256: String
        let encoder: String
        let folds: Int
        let settings: [JudgeSetting]
        let chosen: JudgeSetting
        /// Out-of-fold agreement of the chosen setting per head, and per source and head.
        let agreement: [String: Agreement]
        let by_source: [String: [String: Agreement]]
    }

    func run() throws {
        try checkOutputPath(out, kind: .file, inputs: [labels])
        if let swift { try checkOutputPath(swift, kind: .file, inputs: [labels], option: "--swift") }
        let answers = try readJudgedLines(labels).filter { $0.labelled && $0.answer.split == "train" }.map(\.answer)
        for request in Request.allCases {
            let n = answers.filter { $0.request == request }.count
            guard n >= 2 * folds else { throw ValidationError("\(labels): \(n) labelled \(request.rawValue)-request answers in the train split; need at least \(2 * folds)") }
        }
        let digest = try MappedFile.contents(labels, maxBytes: FileLimits.dataBytes).withUnsafeBytes { sha256Hex($0) }
        let m = try LanguageModel.load(encoder, blocks: layerList.max()!)
        let seqs = try m.judgedSequences(prompts: answers.map(\.prompt), responses: answers.map(\.response), question: question,
                                         maxPromptCharacters: 2000, maxResponseTokens: 128)
        let tokens = seqs.reduce(0) { $0 + $1.ids.count }
        stderrLine("train-judge: \(answers.count) answers (\(tokens) tokens) through \(layerList.max()!) blocks of \(encoder)")
        let start = Date()
        let states = m.pooledResponseStates(seqs, layers: layerList, pooling: .meanAndLast) { done in
            let t = Date().timeIntervalSince(start)
            progressLine("states \(done)/\(seqs.count), \(String(format: "%.0f", Double(done) / max(t, 1e-9))) answers/s, ETA \(String(format: "%.0f", t / Double(done) * Double(seqs.count - done))) s",
                         final: done == seqs.count)
        }
        let training = JudgeTraining(answers: answers, states: states, hidden: m.config.hiddenSize, folds: folds, l2s: l2List, tolerance: tolerance)
        let settings = training.settings { stderrLine("train-judge: " + $0) }
        let chosen = training.choose(settings)
        let calibration = training.calibration(chosen)
        var predicted = [AnswerLabel](repeating: .other, count: answers.count)
        for request in Request.allCases {
            let idx = answers.indices.filter { answers[$0].request == request }
            for (i, label) in zip(idx, calibration[request]!.predicted) { predicted[i] = label }
        }
        let (agreement, bySource) = agreements(answers, judged: predicted)
        func pct(_ x: Double) -> String { String(format: "%.1f", 100 * x) }
        let weights = LearnedJudgeWeights(
            encoder: encoder, layer: chosen.layer, pooling: chosen.pooling, question: question, heads: training.fit(chosen, offsets: calibration.mapValues(\.offset)),
            training: ["labels": URL(fileURLWithPath: labels).lastPathComponent, "labels_sha256": digest, "split": "train",
                       "answers": String(answers.count), "folds": "\(folds), by prompt",
                       "l2": chosen.l2.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", "),
                       "rated_class_offset": Request.allCases.map { "\($0.rawValue) \(String(format: "%.2f", calibration[$0]!.offset))" }.joined(separator: ", "),
                       "out_of_fold_accuracy": Request.allCases.map { "\($0.rawValue) \(pct(agreement[$0.rawValue]!.accuracy)) %" }.joined(separator: ", "),
                       "command": "realign train-judge \(labels) --layers \(layers) --folds \(folds) --l2 \(l2) --tolerance \(tolerance)"
                           + (question.map { " --question \($0.debugDescription)" } ?? "")])
        let jsonEncoder = JSONEncoder()
        jsonEncoder.outputFormatting = [.sortedKeys]
        let encoded = try jsonEncoder.encode(weights)
        try writeAtomically(encoded, to: out)
        if let swift { try writeAtomically(Data(LearnedJudgeWeights.swiftSource(json: String(decoding: encoded, as: UTF8.self)).utf8), to: swift) }
        let r = Result(labels: labels, labels_sha256: digest, encoder: encoder, folds: folds, settings: settings, chosen: chosen,
                       agreement: agreement, by_source: bySource)
        if json { try printJSON(r); return }
        print("chosen: layer \(chosen.layer), \(chosen.pooling.rawValue), out-of-fold accuracy \(pct(chosen.accuracy)) %")
        for request in Request.allCases {
            let a = agreement[request.rawValue]!
            print("  \(request.rawValue): \(a.agree)/\(a.n) \(pct(a.accuracy)) % [\(pct(a.ci95[0])), \(pct(a.ci95[1]))]; binary \(pct(a.binary_accuracy)) %")
        }
    }
}
