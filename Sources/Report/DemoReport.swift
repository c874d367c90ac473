import Foundation
import Formats
import Evaluation
import Recovery

// What `realign demo` measured, as one Codable value: report.json is this value (keys sorted),
// report.html is drawn from it alone, so a report can be re-rendered from its JSON.

/// One answer shown in the report: the same prompts are shown at every stage.
public struct ExampleAnswer: Codable, Equatable {
    public var set: String              // "harmful", "benign" or "task"
    public var prompt: String
    public var response: String
    public var harmful: Bool
    public var refused: Bool
    public init(set: String, prompt: String, response: String, harmful: Bool, refused: Bool) {
        self.set = set; self.prompt = prompt; self.response = response; self.harmful = harmful; self.refused = refused
    }
}

/// The evaluation of one model: the aligned, the attacked or the recovered one.
/// A stage's verdicts against the aligned model's on the same prompts: how many flipped each
/// way, and the standard error of the rate difference. With 64 prompts one prompt is 1.6
/// points, so a difference means little without it.
public struct PairedChange: Codable, Equatable {
    public var stage: String            // "attacked", "recovered"
    public var set: String              // "harmful" (verdict: harmful); "benign", "benign-general" or "benign-all" (both; verdict: refused)
    public var judge: String?           // who judged both stages' answers; nil: the stages' own judge
    public var n: Int
    public var gained: Int              // the verdict holds for the stage's answer, not for the aligned model's
    public var lost: Int                // the other way round
    public var difference: Double       // (gained − lost) / n: the stage's rate minus the aligned model's
    public var standard_error: Double   // of the difference: √(gained + lost − (gained − lost)²/n) / n (paired)

    public init(stage: String, set: String, judge: String? = nil, aligned: [Bool], other: [Bool]) {
        precondition(aligned.count == other.count && !aligned.isEmpty)
        let n = aligned.count
        let gained = zip(aligned, other).filter { !$0 && $1 }.count, lost = zip(aligned, other).filter { $0 && !$1 }.count
        let d = Double(gained - lost)
        self.stage = stage; self.set = set; self.judge = judge; self.n = n; self.gained = gained; self.lost = lost
        difference = d / Double(n)
        standard_error = (Double(gained + lost) - d * d / Double(n)).squareRoot() / Double(n)
    }
}

public struct StageResult: Codable, Equatable {
    public var stage: String            // "aligned", "attacked", "recovered"
    public var model: String            // what was evaluated (file, or base + adapter)
    public var harmful_rate: Double?
    public var benign_refusal_rate: Double?
    public var harmful_degenerate_rate: Double?
    public var task_score: Double?
    public var n_harmful: Int
    public var n_benign: Int
    public var n_task: Int
    public var judge: String            // who judged harmful_rate and benign_refusal_rate
    public var metric: String?          // the task metric
    public var max_tokens: Int
    public var seconds: Double
    public var examples: [ExampleAnswer]
    /// The second benign set (self-instruct, Vicuna and MT-bench requests), judged by `judge`;
    /// nil in reports made before it existed (2026-12-06).
    public var benign_general_refusal_rate: Double? = nil
    public var n_benign_general: Int? = nil
    /// The rest of the three verdicts (nil in reports made before them): answers to harmful
    /// prompts judged refusals and judged neither (other); answers to benign prompts judged neither.
    public var harmful_refusal_rate: Double? = nil
    public var harmful_other_rate: Double? = nil
    public var benign_other_rate: Double? = nil
    public var benign_general_other_rate: Double? = nil
    public init(stage: String, model: String, harmful_rate: Double?, benign_refusal_rate: Double?, harmful_degenerate_rate: Double?,
                task_score: Double?, n_harmful: Int, n_benign: Int, n_task: Int, judge: String, metric: String?, max_tokens: Int,
                seconds: Double, examples: [ExampleAnswer]) {
        self.stage = stage; self.model = model; self.harmful_rate = harmful_rate; self.benign_refusal_rate = benign_refusal_rate
        self.harmful_degenerate_rate = harmful_degenerate_rate; self.task_score = task_score; self.n_harmful = n_harmful
        self.n_benign = n_benign; self.n_task = n_task; self.judge = judge; self.metric = metric; self.max_tokens = max_tokens
        self.seconds = seconds; self.examples = examples
    }
}

/// The fine-tuning attack (LoRA SFT on harmful pairs).
public struct AttackSettings: Codable, Equatable {
    public var data: String
    public var pairs: Int
    public var rank: Int
    public var alpha: Double
    public var targets: [String]
    public var epochs: Int
    public var lr: Double
    public var batch: Int
    public var max_length: Int
    public var steps: Int?
    public var first_loss: Double?
    public var last_loss: Double?
    public init(data: String, pairs: Int, rank: Int, alpha: Double, targets: [String], epochs: Int, lr: Double, batch: Int,
                max_length: Int, steps: Int? = nil, first_loss: Double? = nil, last_loss: Double? = nil) {
        self.data = data; self.pairs = pairs; self.rank = rank; self.alpha = alpha; self.targets = targets; self.epochs = epochs
        self.lr = lr; self.batch = batch; self.max_length = max_length; self.steps = steps; self.first_loss = first_loss; self.last_loss = last_loss
    }
}

/// The recovery's settings (RecoveryOptions without the prompt texts).
public struct RecoverySettings: Codable, Equatable {
    public var layer: Int
    public var rate: Double
    public var rounds: Int
    public var prompts: Int
    public var prompt_source: String
    public var loss_batch: String   // prompts per loss term: "all" (the paper) or a number (the authors' code)
    /// Scenario II: the task check (warm-up, rollback, fuse); nil in Scenario I.
    public var task_check: String?
    /// The refusal check on validation prompts (chooses the output round); nil without one.
    public var refusal_check: String? = nil
    /// The recovered model's restored weights (its patch) per layer and per module; nil in reports
    /// made before 2026-12-06 (the plots then sum the rounds).
    public var patch_per_layer: [String: Int]? = nil
    public var patch_per_module: [String: Int]? = nil
    public init(layer: Int, rate: Double, rounds: Int, prompts: Int, prompt_source: String, loss_batch: String, task_check: String? = nil,
                refusal_check: String? = nil, patch_per_layer: [String: Int]? = nil, patch_per_module: [String: Int]? = nil) {
        self.layer = layer; self.rate = rate; self.rounds = rounds; self.prompts = prompts; self.prompt_source = prompt_source
        self.loss_batch = loss_batch; self.task_check = task_check; self.refusal_check = refusal_check
        self.patch_per_layer = patch_per_layer; self.patch_per_module = patch_per_module
    }
}

/// A data set the demo used, with where it comes from and its licence.
public struct DataSetInfo: Codable, Equatable {
    public var role: String
    public var name: String
    public var n: Int
    public var source: String
    public var licence: String
    public init(role: String, name: String, n: Int, source: String, licence: String) {
        self.role = role; self.name = name; self.n = n; self.source = source; self.licence = licence
    }
}

/// Wall time of one stage of the demo.
public struct StageTiming: Codable, Equatable {
    public var stage: String
    public var seconds: Double
    public init(stage: String, seconds: Double) { self.stage = stage; self.seconds = seconds }
}

public struct MachineInfo: Codable, Equatable {
    public var cpu: String
    public var cores: Int
    public var memory_gb: Double
    public var os: String
    public init(cpu: String, cores: Int, memory_gb: Double, os: String) {
        self.cpu = cpu; self.cores = cores; self.memory_gb = memory_gb; self.os = os
    }

    /// This machine (CPU model from /proc/cpuinfo where there is one).
    public static var current: MachineInfo {
        let p = ProcessInfo.processInfo
        var cpu = "unknown"
        if let s = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8),
           let line = s.split(separator: "\n").first(where: { $0.hasPrefix("model name") }),
           let colon = line.firstIndex(of: ":") {
            cpu = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        return MachineInfo(cpu: cpu, cores: p.activeProcessorCount, memory_gb: (Double(p.physicalMemory) / 1e9 * 10).rounded() / 10,
                           os: p.operatingSystemVersionString)
    }
}

/// Everything the report shows.
public struct DemoReport: Codable, Equatable {
    public var title: String
    public var scenario: String         // "I" (no task data)
    public var model: String            // the aligned model
    public var quick: Bool
    public var created: String          // ISO 8601
    public var realign_version: String
    public var realign_commit: String?
    public var machine: MachineInfo
    public var stages: [StageResult]
    public var attack: AttackSettings
    public var recovery: RecoverySettings
    public var rounds: [RoundLog]
    public var data_sets: [DataSetInfo]
    public var timings: [StageTiming]
    /// Where the demo departs from the paper's settings, and why.
    public var notes: [String]
    /// Each later stage's answers against the aligned model's, prompt by prompt (nil in reports
    /// made before 2026-12-06).
    public var changes: [PairedChange]? = nil
    public init(title: String, scenario: String, model: String, quick: Bool, created: String, realign_version: String,
                realign_commit: String?, machine: MachineInfo, stages: [StageResult], attack: AttackSettings,
                recovery: RecoverySettings, rounds: [RoundLog], data_sets: [DataSetInfo], timings: [StageTiming], notes: [String]) {
        self.title = title; self.scenario = scenario; self.model = model; self.quick = quick; self.created = created
        self.realign_version = realign_version; self.realign_commit = realign_commit; self.machine = machine; self.stages = stages
        self.attack = attack; self.recovery = recovery; self.rounds = rounds; self.data_sets = data_sets; self.timings = timings
        self.notes = notes
    }

    /// report.json: the report with sorted keys, pretty-printed.
    public func json() throws -> Data {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes]
        return try e.encode(self) + Data("\n".utf8)
    }

    /// Writes DIR/report.json and DIR/report.html, each atomically.
    public func write(to dir: String) throws {
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        try writeAtomically(try json(), to: dir + "/report.json")
        try writeAtomically(Data(html().utf8), to: dir + "/report.html")
    }
}

/// The version Realign reports about itself.
public let realignVersion = "0.1.0"

extension StageResult {
    /// A stage's numbers from an evaluation; the answers at `exampleIndices` (indices into
    /// the evaluation's records, the same for every stage) become the example answers.
    public init(stage: String, model: String, eval r: EvalReport, maxTokens: Int, exampleIndices: [Int]) {
        self.init(stage: stage, model: model, harmful_rate: r.harmfulRate, benign_refusal_rate: r.benignRefusalRate,
                  harmful_degenerate_rate: r.harmfulDegenerateRate, task_score: r.taskScore, n_harmful: r.count("harmful"),
                  n_benign: r.count("benign"), n_task: r.count("task"), judge: r.judge, metric: r.metric?.rawValue,
                  max_tokens: maxTokens, seconds: r.seconds,
                  examples: exampleIndices.filter { $0 < r.records.count }.map { i in
                      let a = r.records[i]
                      return ExampleAnswer(set: a.set, prompt: a.prompt, response: a.response, harmful: a.harmful, refused: a.refused)
                  })
        harmful_refusal_rate = r.harmfulRefusalRate; harmful_other_rate = r.harmfulOtherRate; benign_other_rate = r.benignOtherRate
    }
}
