import ArgumentParser
import Foundation
import Evaluation
import Formats
import Model
import Recovery

struct Eval: CheckedCommand {
    static let configuration = CommandConfiguration(
        abstract: "Harmful rate, benign refusal rate and task score of a model (greedy answers, judged).",
        discussion: """
        Defaults: the built-in held-out harmful set (CatQA, 110 prompts) and benign set (128
        prompts); no task unless --task is given. The default judge is the learned judge (three
        verdicts: harmful, refusal or other; see docs/evaluation.md); --judge phrases uses the GCG
        refusal phrases, --judge xstest XSTest's refusal prefixes, --judge MODEL asks a local chat
        model instead.
        """)

    @Argument(help: "GGUF file, HF folder or embedded model name.") var model: String
    @Option(help: "Harmful prompts: JSON lines with \"prompt\", or one per line (default: built-in CatQA 110).") var harmful: String?
    @Option(help: "Benign prompts, same format (default: built-in 128).") var benign: String?
    @Option(help: "Task examples: JSON lines with \"prompt\" and \"response\".") var task: String?
    @Option(help: "Task metric: exact, f1, rouge1, rougeL.") var metric = "exact"
    @Option(parsing: .unconditional, help: "Most new tokens per answer (an answer also stops when it fills the model's context).") var maxTokens = 128
    @Option(parsing: .unconditional, help: "Prompts per batch (64: on 2 cores, twice the answers per second of 16, the same answers).") var batch = 64
    @Option(parsing: .unconditional, help: "Use only the first N prompts of each set.") var limit: Int?
    @Flag(help: "Skip the harmful and benign sets (task score only).") var noSafety = false
    @Option(help: "Write one JSON line per prompt (prompt, response, set, harmful, refused, degenerate, score).") var outputs: String?
    @Option(help: judgeHelp) var judge: String?
    @Option(help: "A direction file (realign direction, e.g. a refusal direction with --subtract) added to every token's hidden state at its layer while generating (activation steering).") var steer: String?
    @Option(parsing: .unconditional, help: "Multiplies the --steer direction.") var steerStrength = 1.0
    @Flag(help: "Print the summary as JSON.") var json = false

    func check() throws {
        guard TaskMetric(name: metric) != nil else { throw ValidationError("--metric must be one of exact, f1, rouge1, rougeL") }
        guard maxTokens >= 1 else { throw outOfRange("--max-tokens", maxTokens, "at least 1") }
        guard batch >= 1 else { throw outOfRange("--batch", batch, "at least 1") }
        if let limit, limit < 1 { throw outOfRange("--limit", limit, "at least 1") }
        if noSafety && task == nil { throw ValidationError("--no-safety needs --task") }
        guard steerStrength.isFinite else { throw ValidationError("--steer-strength must be finite, not \(steerStrength)") }
    }

    struct Summary: Encodable {
        let harmful_rate: Double?
        let harmful_refusal_rate: Double?
        let harmful_other_rate: Double?
        let benign_refusal_rate: Double?
        let benign_other_rate: Double?
        let harmful_degenerate_rate: Double?
        let benign_degenerate_rate: Double?
        let task_score: Double?
        let n_harmful: Int
        let n_benign: Int
        let n_task: Int
        let harmful_set: String?
        let benign_set: String?
        let task_set: String?
        let judge: String
        let metric: String?
        let max_tokens: Int
        let new_tokens: Int
        let seconds: Double
        let judge_seconds: Double

        // Absent values are written as null (scripts read every key).
        func encode(to encoder: Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(harmful_rate, forKey: .harmful_rate); try c.encode(harmful_refusal_rate, forKey: .harmful_refusal_rate)
            try c.encode(harmful_other_rate, forKey: .harmful_other_rate)
            try c.encode(benign_refusal_rate, forKey: .benign_refusal_rate); try c.encode(benign_other_rate, forKey: .benign_other_rate)
            try c.encode(harmful_degenerate_rate, forKey: .harmful_degenerate_rate); try c.encode(benign_degenerate_rate, forKey: .benign_degenerate_rate)
            try c.encode(task_score, forKey: .task_score)
            try c.encode(n_harmful, forKey: .n_harmful); try c.encode(n_benign, forKey: .n_benign); try c.encode(n_task, forKey: .n_task)
            try c.encode(harmful_set, forKey: .harmful_set); try c.encode(benign_set, forKey: .benign_set); try c.encode(task_set, forKey: .task_set)
            try c.encode(judge, forKey: .judge); try c.encode(metric, forKey: .metric)
            try c.encode(max_tokens, forKey: .max_tokens); try c.encode(new_tokens, forKey: .new_tokens); try c.encode(seconds, forKey: .seconds)
            try c.encode(judge_seconds, forKey: .judge_seconds)
        }
        enum CodingKeys: String, CodingKey {
            case harmful_rate, harmful_refusal_rate, harmful_other_rate, benign_refusal_rate, benign_other_rate, harmful_degenerate_rate, benign_degenerate_rate, task_score
            case n_harmful, n_benign, n_task, harmful_set, benign_set, task_set, judge, metric, max_tokens, new_tokens, seconds, judge_seconds
        }
    }

    func run() throws {
        if let outputs {
            try checkOutputPath(outputs, kind: .file, inputs: [model] + [harmful, benign, task].compactMap { $0 }, option: "--outputs")
        }
        let start = Date()
        func cut<T>(_ xs: [T]) -> [T] { limit.map { Array(xs.prefix($0)) } ?? xs }
        let harmfulLines = noSafety ? nil : try harmful.map { cut(try readPromptLines($0)) }
        let benignLines = noSafety ? nil : try benign.map { cut(try readPromptLines($0)) }
        let taskLines = try task.map { cut(try TaskExample.readJSONLWithLines($0)) }
        let harmfulPrompts = noSafety ? [] : harmfulLines?.map(\.text) ?? cut(DataSets.catqa110)
        let benignPrompts = noSafety ? [] : benignLines?.map(\.text) ?? cut(DataSets.benign128)
        let examples = taskLines?.map(\.example) ?? []
        let m = try LanguageModel.load(model)
        if let steer {
            let d = try Recovery.Direction.read(steer)
            guard d.values.count == m.config.hiddenSize, (1..<m.config.numLayers).contains(d.layer) else {
                throw ValidationError("\(steer): a direction of \(d.values.count) values at layer \(d.layer) does not fit \(model) (hidden \(m.config.hiddenSize), layers 1...\(m.config.numLayers - 1))")
            }
            m.decoder.steering = (d.layer, d.values.map { $0 * Float(steerStrength) })
        }
        // Every prompt of a file fits the context, before any answer is generated.
        if let harmful, let harmfulLines { _ = try promptIds(harmfulLines, of: harmful, chat: m.chat) }
        if let benign, let benignLines { _ = try promptIds(benignLines, of: benign, chat: m.chat) }
        if let task, let taskLines { _ = try promptIds(taskLines.map { ($0.line, $0.example.prompt) }, of: task, chat: m.chat) }
        let judgeModel = try makeJudge(judge)
        let total = harmfulPrompts.count + benignPrompts.count + examples.count
        stderrLine("eval: \(harmfulPrompts.count) harmful, \(benignPrompts.count) benign, \(examples.count) task prompts, up to \(maxTokens) new tokens each, judge \(judgeModel.name)")
        var before = 0, lastSet = "", lastDone = -1
        let tty = isatty(2) != 0
        let report = try evaluate(model: m, harmful: harmfulPrompts, benign: benignPrompts, task: examples,
                                  metric: TaskMetric(name: metric)!, judge: judgeModel, maxNewTokens: maxTokens, batchSize: batch) { set, p in
            if set != lastSet { if !lastSet.isEmpty { before += lastSet == "harmful" ? harmfulPrompts.count : benignPrompts.count }; lastSet = set }
            let done = before + p.done
            let rate = Double(p.newTokens) / max(p.seconds, 1e-9)
            let all = Date().timeIntervalSince(start)
            let eta = done > 0 ? all / Double(done) * Double(total - done) : 0
            let line = "\(set): \(p.done)/\(p.total) prompts, \(String(format: "%.1f", rate)) tokens/s, ETA \(String(format: "%.0f", eta)) s"
            // On a terminal the line is rewritten every step; in a log, one line per finished batch.
            if tty { progressLine(line, final: p.done == p.total) } else if p.done != lastDone { stderrLine(line) }
            lastDone = p.done
        }
        if let outputs { try writeJSONLines(report.records, to: outputs) }
        let s = Summary(harmful_rate: report.harmfulRate, harmful_refusal_rate: report.harmfulRefusalRate, harmful_other_rate: report.harmfulOtherRate,
                        benign_refusal_rate: report.benignRefusalRate, benign_other_rate: report.benignOtherRate,
                        harmful_degenerate_rate: report.harmfulDegenerateRate, benign_degenerate_rate: report.benignDegenerateRate,
                        task_score: report.taskScore, n_harmful: harmfulPrompts.count, n_benign: benignPrompts.count, n_task: examples.count,
                        harmful_set: noSafety ? nil : (harmful ?? "built-in catqa110"), benign_set: noSafety ? nil : (benign ?? "built-in benign128"),
                        task_set: task, judge: report.judge, metric: report.metric?.rawValue, max_tokens: maxTokens,
                        new_tokens: report.newTokens, seconds: Date().timeIntervalSince(start), judge_seconds: report.judgeSeconds)
        if json { try printJSON(s); return }
        func pct(_ x: Double?) -> String { x.map { String(format: "%.1f %%", 100 * $0) } ?? "—" }
        print("harmful rate        \(pct(s.harmful_rate))  (\(s.n_harmful) prompts, judge \(s.judge); refusal \(pct(s.harmful_refusal_rate)), other \(pct(s.harmful_other_rate)), degenerate \(pct(s.harmful_degenerate_rate)))")
        print("benign refusal rate \(pct(s.benign_refusal_rate))  (\(s.n_benign) prompts; other \(pct(s.benign_other_rate)), degenerate \(pct(s.benign_degenerate_rate)))")
        if let t = s.task_score { print("task score          \(String(format: "%.4f", t))  (\(s.n_task) examples, \(s.metric!))") }
        print("time                \(String(format: "%.0f", s.seconds)) s (judging \(String(format: "%.1f", s.judge_seconds)) s)")
    }
}
