import ArgumentParser
import Foundation
import Evaluation
import Formats
import Model
import Recovery
import Tensor

struct Recover: CheckedCommand {
    static let configuration = CommandConfiguration(
        abstract: "Give a fine-tuned model back the alignment it lost (paper §5.2; Scenario II with --task).",
        discussion: """
        Each round: the fine-tuned model's harmful direction at --layer (mean last-prompt-token hidden
        state over the recovery prompts) is compared with the aligned model's; the loss −cos(direction,
        aligned direction) (one term over all prompts, as the paper; --loss-batch 8 as the authors' code)
        is back-propagated through the blocks below the layer; weights whose descent step points toward
        their aligned value are candidates; the --rate share of eligible weights with the largest
        |gradient| (one global cut) is set to the aligned values.
        With --task (Scenario II): --warmup-rounds rounds, then a task check; if the score fell more
        than --warmup-drop (relative), the recovery restarts from the fine-tuned model with rollback in
        every round (revert --rollback-rate of the round's restored weights, chosen by the same rule
        toward the fine-tuned values on the benign direction of --rollback-prompts); from then on a
        round that drops the score more than --fuse-drop is undone and the recovery stops.
        With --adapter, the fine-tuned model is --finetuned plus a PEFT LoRA adapter, merged in fp32; OUT
        is the merged, recovered model in --finetuned's format.
        Writes OUT (the model, in the fine-tuned model's format), OUT.patch.safetensors (the restored
        weights: `realign apply-patch` re-applies it), OUT.log.jsonl (one line per round), and keeps
        OUT.checkpoint/ while running: after a kill, the same command with --resume finishes with a
        bit-identical result.
        """)

    @Option(help: "The aligned model (GGUF, HF folder, or embedded name).") var aligned: String
    @Option(help: "The fine-tuned model (same architecture and sizes); with --adapter, the base the adapter was trained on.") var finetuned: String
    @Option(help: "A PEFT LoRA adapter folder (adapter_config.json, adapter_model.safetensors): the fine-tuned model is --finetuned with it merged (fp32).") var adapter: String?
    @Option(help: "Where to write the recovered model.") var out: String
    @Option(parsing: .unconditional, help: "Hidden-state index of the direction (default ⌊2/3 · layers⌋).") var layer: Int?
    @Option(parsing: .unconditional, help: "Share of eligible weights restored per round.") var rate: Double = 0.002
    @Option(parsing: .unconditional, help: "Rounds.") var rounds = 20
    @Option(help: "Recovery prompts (one per line or JSON lines with \"prompt\"); default: 256 built-in Do-Not-Answer prompts.") var prompts: String?
    @Option(help: "Prompts per loss term: all (−cos of the mean over all prompts and the aligned direction: the paper's loss) or N (Σ over batches of N prompts of −cos of the batch mean: the authors' code uses 8).") var lossBatch: LossBatch = .all
    @Option(parsing: .unconditional, help: "Prompts per forward/backward pass (memory only; results do not depend on it beyond rounding).") var passSize = 32
    @Option(help: "Scenario II: JSON lines of {\"prompt\", \"response\"} pairs; the task is scored on them before recovery, after warm-up and after every later round.") var task: String?
    @Option(help: "Task metric: exact, f1, rouge1 or rougeL.") var metric = "exact"
    @Option(parsing: .unconditional, help: "New tokens per task answer (greedy).") var taskMaxTokens = 128
    @Option(help: "Scenario II: benign prompts of the rollback direction (default: the task's prompts; the paper uses the fine-tuning prompts).") var rollbackPrompts: String?
    @Option(parsing: .unconditional, help: "Scenario II: rounds without rollback before the first task check.") var warmupRounds = 5
    @Option(parsing: .unconditional, help: "Scenario II: relative task-score drop after warm-up that restarts with rollback.") var warmupDrop = 0.05
    @Option(parsing: .unconditional, help: "Scenario II: relative task-score drop after a later round that undoes it and stops.") var fuseDrop = 0.05
    @Option(parsing: .unconditional, help: "Scenario II: share of a round's restored weights that rollback reverts.") var rollbackRate = 0.2
    @Option(help: "Refusal check: held-out harmful prompts; after every round the model answers them and --check-benign greedily, and the output is the round with the fewest harmful answers among those refusing at most --benign-slack more benign prompts than the aligned model; a round within --harmful-slack of the aligned harmful rate ends the run.") var checkHarmful: String?
    @Option(help: "Refusal check: held-out benign prompts (with --check-harmful).") var checkBenign: String?
    @Option(parsing: .unconditional, help: "Refusal check: new tokens per answer (refusals show in the first sentence).") var checkMaxTokens = 32
    @Option(help: judgeHelp) var judge: String?
    @Option(parsing: .unconditional, help: "Refusal check: how much more often than the aligned model a chosen round may refuse benign prompts (a margin under your limit for the check's sampling noise).") var benignSlack = RecoveryOptions().benignSlack
    @Option(parsing: .unconditional, help: "Refusal check: a round whose harmful rate is at most the aligned model's plus this ends the run.") var harmfulSlack = RecoveryOptions().harmfulSlack
    @Option(parsing: .unconditional, help: "Refusal check: when a round goes from too many harmful answers (before it) to too many benign refusals, try only its top half, quarter, … of the restores by |gradient|, with up to this many extra checks (0: off).") var checkBisect = RecoveryOptions().bisectSteps
    @Option(help: "Layer-major rounds, one block of weights and gradients in memory at a time (same result; for models larger than memory): auto (when the blocks below the layer, their gradients and one pass's activations would take more than half the memory), on, off. Not with --task.") var streaming = "auto"
    @Option(help: ggufOutputTypeHelp) var dtype: String = "f32"
    @Flag(help: "Also write every round's patch as OUT.round-N.patch.safetensors (apply-patch turns one into that round's model).") var keepRoundPatches = false
    @Flag(help: "Continue from OUT.checkpoint.") var resume = false
    @Flag(help: "Print the round log as JSON lines on stdout.") var json = false

    func check() throws {
        if let layer, layer < 1 { throw outOfRange("--layer", layer, "at least 1 (a block's output)") }
        guard rate > 0, rate <= 1 else { throw ValidationError("--rate must be in (0, 1]") }
        guard (1...RecoveryOptions.maxRounds).contains(rounds) else { throw outOfRange("--rounds", rounds, "in 1...\(RecoveryOptions.maxRounds)") }
        guard passSize >= 1 else { throw outOfRange("--pass-size", passSize, "at least 1") }
        if case .prompts(let n) = lossBatch, n > passSize { throw ValidationError("need --loss-batch ≤ --pass-size (\(n) > \(passSize))") }
        guard taskMaxTokens >= 1 else { throw outOfRange("--task-max-tokens", taskMaxTokens, "at least 1") }
        guard TaskMetric(name: metric) != nil else { throw ValidationError("--metric must be one of \(TaskMetric.allCases.map(\.rawValue).joined(separator: ", "))") }
        guard warmupRounds >= 1, (0...1).contains(warmupDrop), (0...1).contains(fuseDrop), (0...1).contains(rollbackRate) else {
            throw ValidationError("need --warmup-rounds ≥ 1 and --warmup-drop, --fuse-drop, --rollback-rate in [0, 1]")
        }
        _ = try ggufOutputType(dtype)
        guard ["auto", "on", "off"].contains(streaming) else { throw ValidationError("--streaming must be auto, on or off") }
        if task != nil && streaming == "on" { throw ValidationError("--streaming on does not work with --task (the task check needs the whole model)") }
        guard (checkHarmful == nil) == (checkBenign == nil) else { throw ValidationError("--check-harmful and --check-benign go together") }
        if judge != nil && checkHarmful == nil { throw ValidationError("--judge judges the refusal check: it needs --check-harmful and --check-benign") }
        guard checkMaxTokens >= 1, checkBisect >= 0, (0...1).contains(benignSlack), (0...1).contains(harmfulSlack) else {
            throw ValidationError("need --check-max-tokens ≥ 1, --check-bisect ≥ 0 and --benign-slack, --harmful-slack in [0, 1]")
        }
        if checkHarmful != nil && streaming == "on" { throw ValidationError("--streaming on does not work with a refusal check (it generates with the whole model)") }
        if task == nil && rollbackPrompts != nil { throw ValidationError("--rollback-prompts needs --task (rollback is part of Scenario II)") }
    }

    func run() throws {
        let files = [prompts, task, rollbackPrompts, checkHarmful, checkBenign].compactMap { $0 }
        // Before any work (a model may have to be fetched first); RecoveryRun checks every output again.
        try checkOutputPath(out, kind: isDirectory(finetuned) ? .folder : .file, inputs: [aligned, finetuned] + (adapter.map { [$0] } ?? []) + files)
        var o = RecoveryOptions()
        o.layer = layer; o.rate = rate; o.rounds = rounds; o.lossBatch = lossBatch; o.passSize = passSize
        if let prompts {   // every line must fit the context: refused here with its line, before any work
            let lines = try readPromptLines(prompts)
            _ = try promptIds(lines, of: prompts, chat: try ChatFormat.load(finetuned))
            o.prompts = lines.map(\.text)
        }
        var check: TaskCheck? = nil
        if let task {
            let examples = try TaskExample.readJSONL(task)
            guard !examples.isEmpty else { throw ValidationError("\(task) has no examples") }
            let m = TaskMetric(name: metric)!, maxTokens = taskMaxTokens
            o.warmupRounds = warmupRounds; o.warmupDrop = warmupDrop; o.fuseDrop = fuseDrop; o.rollbackRate = rollbackRate
            o.rollbackPrompts = try rollbackPrompts.map(readPrompts) ?? Array(examples.map(\.prompt).prefix(256))
            check = taskCheck("\(task) (\(m.rawValue), \(examples.count) examples, \(maxTokens) tokens)", examples, metric: m, maxTokens: maxTokens)
        }
        var refusals: RefusalCheck? = nil
        if let checkHarmful, let checkBenign {
            o.harmfulSlack = harmfulSlack; o.benignSlack = benignSlack; o.bisectSteps = checkBisect
            refusals = makeRefusalCheck(harmful: try readPrompts(checkHarmful), benign: try readPrompts(checkBenign), maxTokens: checkMaxTokens,
                                    name: "\(checkHarmful) + \(checkBenign)", judge: try makeJudge(judge))
        }
        let r = RecoveryRun(aligned: try ModelStore.resolve(aligned), finetuned: try ModelStore.resolve(finetuned), adapter: adapter,
                            out: out, options: o, task: check, check: refusals)
        r.streaming = streaming == "auto" ? nil : streaming == "on"
        r.outputType = try ggufOutputType(dtype)
        r.keepRoundPatches = keepRoundPatches
        r.inputFiles = files
        try r.run(resume: resume) { line in
            if json { try? printJSON(line) }
        }
        if !json { print("\(out)\n\(r.paths.patch)\n\(r.paths.log)") }
    }
}

/// A Scenario II task check: the mean `metric` of greedy answers to `examples`, with progress on one line.
func taskCheck(_ name: String, _ examples: [TaskExample], metric: TaskMetric, maxTokens: Int) -> TaskCheck {
    TaskCheck(name: name) { model in
        // 16 per batch, as when the documented recoveries ran: a step of at most 8 rows reads the
        // quantised weights, so the batch size can flip a rare greedy tie.
        try taskScore(model: model, examples: examples, metric: metric, maxNewTokens: maxTokens, batchSize: 16) { p in
            progressLine(String(format: "task check: %ld/%ld answers", p.done, p.total))
        }.mean
    }
}

/// A refusal check: `judge`'s harmful rate on `harmful` and refusal rate on `benign`, greedy
/// answers of at most `maxTokens` tokens, 64 prompts per batch.
func makeRefusalCheck(harmful: [String], benign: [String], maxTokens: Int, name: String, judge: Judge) -> RefusalCheck {
    RefusalCheck(name: "\(name) (\(harmful.count) harmful, \(benign.count) benign, \(maxTokens) tokens, judge \(judge.name))") { model in
        let r = try evaluate(model: model, harmful: harmful, benign: benign, judge: judge, maxNewTokens: maxTokens, batchSize: 64) { set, p in
            progressLine("refusal check: \(set) \(p.done)/\(p.total) answers")
        }
        return RefusalRates(harmful: r.harmfulRate ?? 0, benign_refusal: r.benignRefusalRate ?? 0)
    }
}

extension LossBatch: ExpressibleByArgument {
    public init?(argument: String) {
        if argument == "all" { self = .all; return }
        guard let n = Int(argument), n >= 1 else { return nil }
        self = .prompts(n)
    }
    public var defaultValueDescription: String { description }
}
