import Foundation
import Formats
import Model
import Tensor

/// Settings of one recovery (paper §5.2). Defaults follow the paper and its code.
public struct RecoveryOptions: Codable, Equatable {
    public var layer: Int? = nil            // hidden-state index; nil: ⌊2L/3⌋
    public var rate: Double = 0.002         // share of eligible weights restored per round
    public var rounds: Int = 20
    /// More rounds than any rate needs (a round restores at least one weight; the run ends
    /// when one restores none), and few enough that round counts never overflow.
    public static let maxRounds = 1_000_000
    public var lossBatch: LossBatch = .all  // prompts per loss term (the paper: all; the authors' code: 8)
    public var passSize: Int = 32           // prompts per forward/backward pass (memory, not result)
    public var prompts: [String] = RecoverySet.doNotAnswer256
    // Scenario II (only when a task check is given; §5.2.3).
    public var task: String? = nil          // what the task check measures (file, metric): part of a checkpoint's identity
    public var warmupRounds: Int = 5        // rollback-free rounds before the first task check
    public var warmupDrop: Double = 0.05    // relative task-score drop after warm-up that restarts with rollback
    public var fuseDrop: Double = 0.05      // relative drop after a later round that stops and undoes that round
    public var rollbackRate: Double = 0.2   // share of a round's restored weights rollback reverts
    public var rollbackPrompts: [String] = []   // benign prompts of the rollback direction
    // Refusal check (only when one is given): after every round, the harmful rate and benign
    // refusal rate on validation prompts; the output is the round closest to the aligned model.
    public var check: String? = nil         // what the refusal check measures: part of a checkpoint's identity
    public var harmfulSlack: Double = 0.03  // a round within this of the aligned harmful rate ends the run
    // A round may refuse at most this much more benign prompts than the aligned model. 0.02, not
    // the demo's 5-point limit: a check on 64 benign prompts is ±4–6 points of sampling noise, and
    // the chosen model must stay within the limit on prompts the check did not see (docs/decisions.md).
    public var benignSlack: Double = 0.02
    // A round that goes from too few refusals (harmful rate above the aligned model's + harmfulSlack
    // before it) to too many (benign refusal over the limit) overshot: bisect its step — restore
    // only its top half, quarter, … by |gradient| — with up to this many extra checks (0: off).
    public var bisectSteps: Int = 3
    public init() {}
}

/// Harmful rate and benign refusal rate of a model on a refusal check's prompts.
public struct RefusalRates: Codable, Equatable {
    public var harmful: Double
    public var benign_refusal: Double
    public init(harmful: Double, benign_refusal: Double) { self.harmful = harmful; self.benign_refusal = benign_refusal }
}

/// Measures a model's refusals on held-out prompts (greedy answers judged, e.g. by refusal
/// phrases): the recovery's guard against both too little and too much refusal.
public struct RefusalCheck {
    public let name: String
    public let measure: (LanguageModel) throws -> RefusalRates
    public init(name: String, measure: @escaping (LanguageModel) throws -> RefusalRates) { self.name = name; self.measure = measure }
}

/// Scores the current model on the downstream task (higher is better), e.g. exact match
/// of greedy answers on held-out prompt/response pairs.
public struct TaskCheck {
    public let name: String
    public let score: (LanguageModel) throws -> Double
    public init(name: String, score: @escaping (LanguageModel) throws -> Double) { self.name = name; self.score = score }
}

/// One line of the per-round log (JSON lines).
public struct RoundLog: Codable, Equatable {
    public var round: Int
    /// "recovery" (Scenario I, or Scenario II after a good warm-up), "warm-up", or
    /// "rollback" (Scenario II restarted from F with rollback in every round).
    public var phase: String
    public var cosine_before: Double
    public var cosine_after: Double?
    public var loss: Double
    public var candidates: Int
    public var restored: Int
    public var rolled_back: Int
    public var restored_total: Int
    public var per_layer: [String: Int]
    public var per_module: [String: Int]
    /// Task score after the round (Scenario II, from the end of warm-up on).
    public var task_score: Double?
    /// The end-of-warm-up check failed: the run restarts from F with rollback.
    public var restart: Bool?
    /// The fuse tripped: this round is undone and the recovery ends with the model before it.
    public var fuse: Bool?
    public var seconds_forward_backward: Double
    public var seconds_selection: Double
    public var seconds_rollback: Double
    public var seconds_task: Double
    public var seconds_checkpoint: Double
    /// Layer-major rounds: time spent materialising blocks from the files (not in forward_backward).
    public var seconds_load: Double? = nil
    /// Refusal check after the round (nil without one, or for a round the fuse undid).
    public var check: RefusalRates? = nil
    public var seconds_check: Double? = nil
    /// This round's model is the output (the refusal check's choice; absent: the last round's).
    public var selected: Bool? = nil
    /// The refusal check's bisection of this round's step (nil: none).
    public var bisect: [BisectStep]? = nil
}

/// One model of a round's bisection: the model before the round with only the round's
/// `restored` largest-|gradient| restores, and its refusal rates.
public struct BisectStep: Codable, Equatable {
    public var restored: Int
    public var check: RefusalRates
    public var seconds_check: Double
    /// This model is the output (then its round is `selected` too).
    public var selected: Bool? = nil
}

/// What a checkpoint holds besides the patch: enough to continue bit-identically.
struct RecoveryState: Codable {
    var options: RecoveryOptions
    var aligned: String
    var finetuned: String
    var adapter: String?
    var completedRounds: Int
    var patchFile: String               // in the checkpoint folder
    var log: [RoundLog]
    var rollback: Bool = false          // Scenario II restarted with rollback
    var baseScore: Double? = nil        // task score of F before any recovery
    var finished: Bool = false          // the fuse ended the run; patchFile is the result
    // Refusal check: the aligned and fine-tuned models' rates, and the best round so far (0: F).
    var alignedRates: RefusalRates? = nil
    var finetunedRates: RefusalRates? = nil
    var bestRound: Int? = nil
    var bestRates: RefusalRates? = nil
    var bestRestored: Int? = nil        // the best model is a bisection of bestRound with this many of its restores
    var bestPatchFile: String? = nil    // in the checkpoint folder (nil for round 0: the empty patch)
    var inputs: [String: String]? = nil  // content digests of the input files (RecoveryRun.inputDigests)
}

public struct RecoveryError: Error, CustomStringConvertible {
    public let description: String
    public init(_ d: String) { description = d }
}

/// Where a recovery writes: the model, its patch, the log, and the checkpoint folder.
public struct RecoveryPaths {
    public let out: String
    public var patch: String { out + ".patch.safetensors" }
    public var log: String { out + ".log.jsonl" }
    public var checkpoint: String { out + ".checkpoint" }
    public func roundPatch(_ round: Int) -> String { out + ".round-\(round).patch.safetensors" }
    public init(out: String) { self.out = out }
}

/// The eligible tensors of blocks 0..<blocks: attention and MLP projections and their
/// biases; norms, embeddings and the head are never changed (the authors' code).
public func eligibleTensors(weights: ModelWeights, gradients: [LayerWeights], blocks: Int) -> [EligibleTensor] {
    (0..<blocks).flatMap { eligibleTensors(block: weights.layers[$0], gradients: gradients[$0], layer: $0) }
}

/// The eligible tensors of one block, in model order.
public func eligibleTensors(block: LayerWeights, gradients: LayerWeights, layer: Int) -> [EligibleTensor] {
    zip(block.named(layer: layer), gradients.named(layer: layer)).compactMap { a, b in
        isEligible(a.name) ? EligibleTensor(name: a.name, current: a.buffer, gradient: b.buffer) : nil
    }
}

/// Whether recovery may change a block tensor: everything but the norms (layernorms, qwen3's
/// q_norm/k_norm).
func isEligible(_ name: String) -> Bool { !name.hasSuffix("norm.weight") }

/// Puts the selection's aligned values into the patch; returns how many per layer and per module (the round log's counts).
func addRestores(_ restores: [Restore], to patch: inout SparsePatch, aligned: ParameterSource) throws
    -> (perLayer: [String: Int], perModule: [String: Int]) {
    var perLayer: [String: Int] = [:], perModule: [String: Int] = [:]
    for r in restores {
        try patch.add(r.name, shape: try aligned.shape(r.name), indices: r.indices, values: r.values)
        let (l, m) = layerAndModule(r.name)
        perLayer[l, default: 0] += r.indices.count
        perModule[m, default: 0] += r.indices.count
    }
    return (perLayer, perModule)
}

extension SparsePatch {
    /// Restored weights per layer and per module (the keys of the round log's counts).
    public var countsPerLayerAndModule: (perLayer: [String: Int], perModule: [String: Int]) {
        var perLayer: [String: Int] = [:], perModule: [String: Int] = [:]
        for (name, n) in counts {
            let (l, m) = layerAndModule(name)
            perLayer[l, default: 0] += n
            perModule[m, default: 0] += n
        }
        return (perLayer, perModule)
    }
}

/// "model.layers.3.self_attn.q_proj.weight" → ("3", "q_proj")
func layerAndModule(_ name: String) -> (String, String) {
    let parts = name.split(separator: ".")
    let layer = parts.count > 2 ? String(parts[2]) : "?"
    let module = parts.count > 4 ? String(parts[4]) + (name.hasSuffix(".bias") ? ".bias" : "") : name
    return (layer, module)
}

/// Runs the recovery: rounds of (direction gradients → sign rule → global top-k → restore),
/// checkpointing after every round so that `resume` continues to a bit-identical result.
/// With a task check (Scenario II): warm-up rounds, a restart with rollback in every round
/// when warm-up costs too much task score, and a fuse after warm-up (paper §5.2.3).
public final class RecoveryRun {
    public let options: RecoveryOptions
    public let alignedPath: String
    public let finetunedPath: String
    /// A PEFT LoRA adapter merged into the fine-tuned model (F = base + adapter), or nil.
    public let adapterPath: String?
    public let paths: RecoveryPaths
    public let task: TaskCheck?
    public let check: RefusalCheck?
    let log: (String) -> Void
    /// Files read besides the models (prompt, task and check files): never overwritten by an
    /// output, and digested so that `--resume` refuses them changed.
    public var inputFiles: [String] = []
    /// Tests: throw right after this round's checkpoint, as a kill would stop the run.
    var stopAfterRound: Int? = nil
    /// Layer-major rounds (Streaming.swift: one block's weights and gradients in memory at a
    /// time, same result bit for bit); nil: when `RecoveryRun.residentBytes` (weights, gradients
    /// and one pass's activations) exceeds half the memory. Scenario II (a task check) always
    /// holds F whole: its task check generates.
    public var streaming: Bool? = nil
    /// A GGUF output's type for patched tensors (ModelOutput.ggufTypes).
    public var outputType: GGMLType = .f32
    /// Also write every round's patch to `paths.roundPatch(r)` (to study rounds afterwards).
    public var keepRoundPatches = false

    public init(aligned: String, finetuned: String, adapter: String? = nil, out: String, options: RecoveryOptions,
                task: TaskCheck? = nil, check: RefusalCheck? = nil, log: @escaping (String) -> Void = stderrLine) {
        var o = options
        if let task { o.task = task.name }
        if let check { o.check = check.name }
        self.alignedPath = aligned; self.finetunedPath = finetuned; self.adapterPath = adapter; self.options = o; self.task = task
        self.check = check
        self.paths = RecoveryPaths(out: out); self.log = log
    }

    /// Runs (or, with `resume`, continues) the recovery; returns the rounds' log.
    @discardableResult
    public func run(resume: Bool = false, onRound: ((RoundLog) -> Void)? = nil) throws -> [RoundLog] {
        let fm = FileManager.default
        // Every output is checked before any work: none may be an input, or fail to be written.
        let inputs = [alignedPath, finetunedPath] + (adapterPath.map { [$0] } ?? []) + inputFiles
        try checkOutputPath(paths.out, kind: isDirectory(finetunedPath) ? .folder : .file, inputs: inputs)
        for p in [paths.patch, paths.log] { try checkOutputPath(p, kind: .file, inputs: inputs) }
        try checkOutputPath(paths.checkpoint, kind: .folder, inputs: inputs)
        guard (1...RecoveryOptions.maxRounds).contains(options.rounds) else {
            throw RecoveryError("--rounds must be in 1...\(RecoveryOptions.maxRounds)")
        }
        for p in [paths.out, paths.patch, paths.log] { removeStaleTemporaries(of: p) }
        removeStaleTemporaries(of: paths.checkpoint, everything: true)

        let t = Date()
        let digests = try inputDigests()
        log(String(format: "input digests: %.1f s", Date().timeIntervalSince(t)))
        var state = RecoveryState(options: options, aligned: alignedPath, finetuned: finetunedPath, adapter: adapterPath, completedRounds: 0,
                                  patchFile: "", log: [], inputs: digests)
        var patch: SparsePatch
        if resume, fm.fileExists(atPath: paths.checkpoint + "/state.json") {
            let stateFile = paths.checkpoint + "/state.json"
            let s: RecoveryState
            do { s = try readJSONFile(RecoveryState.self, stateFile, what: "checkpoint state") } catch {
                throw RecoveryError("\(error); remove \(paths.checkpoint) to start over")
            }
            guard s.options == options, s.aligned == alignedPath, s.finetuned == finetunedPath, s.adapter == adapterPath else {
                throw RecoveryError("\(paths.checkpoint): the checkpoint was made with other models or options; remove it to start over")
            }
            if let was = s.inputs, was != digests {
                let changed = Set(was.keys).union(digests.keys).filter { was[$0] != digests[$0] }.sorted()
                throw RecoveryError("\(paths.checkpoint): the inputs changed since the checkpoint was made (\(changed.joined(separator: ", "))); remove it to start over")
            }
            if s.inputs == nil {
                log("warning: \(stateFile) has no input digests (an older checkpoint): cannot check that the inputs are unchanged")
            }
            state = s
            state.inputs = digests
            patch = try SparsePatch.read(paths.checkpoint + "/" + s.patchFile)
            log("resuming after round \(s.completedRounds)")
        } else {
            if !resume, fm.fileExists(atPath: paths.checkpoint) {
                throw RecoveryError("\(paths.checkpoint) exists: use --resume to continue it, or remove it")
            }
            patch = SparsePatch(model: try ModelIdentity.of(finetunedPath, adapter: adapterPath))
        }
        if task == nil && options.task != nil { throw RecoveryError("options name a task check (\(options.task!)) but none was given") }
        if check == nil && options.check != nil { throw RecoveryError("options name a refusal check (\(options.check!)) but none was given") }

        // F's own values (rollback's targets): the file, or the file with the adapter merged.
        let (alignedSource, finetunedSource, alignedConfig) = try openAlignedAndFinetuned(aligned: alignedPath, finetuned: finetunedPath,
                                                                                          adapter: adapterPath)
        let layer = options.layer ?? Direction.defaultLayer(layers: alignedConfig.numLayers)
        guard layer >= 1, layer < alignedConfig.numLayers else {
            throw RecoveryError("--layer must be in 1...\(alignedConfig.numLayers - 1) (a block output before the final norm)")
        }
        let streamed = try task == nil && check == nil && (streaming ?? {
            let chat = try ChatFormat.load(finetunedPath, log: log)
            let tokens = RecoveryRun.passTokens(try options.prompts.map { try chat.promptIds($0) }, passSize: options.passSize)
            return RecoveryRun.residentBytes(alignedConfig, layer: layer, passTokens: tokens) > ProcessInfo.processInfo.physicalMemory / 2
        }())
        let rounds = streamed
            ? try streamedRounds(state: &state, patch: &patch, aligned: alignedSource, finetuned: finetunedSource, layer: layer, onRound: onRound)
            : try residentRounds(state: &state, patch: &patch, aligned: alignedSource, finetuned: finetunedSource, layer: layer, onRound: onRound)
        // Outputs: patch, log, model (all atomic), then the checkpoint goes.
        try patch.write(to: paths.patch)
        let enc = JSONEncoder()
        enc.outputFormatting = [.sortedKeys]
        var lines = Data()
        for r in rounds { lines.append(try enc.encode(r)); lines.append(Data("\n".utf8)) }
        try writeAtomically(lines, to: paths.log)
        try ModelOutput.write(finetuned: finetunedPath, adapter: adapterPath, patch: patch, to: paths.out, ggufType: outputType, overwrite: true) { self.log($0) }
        try? fm.removeItem(atPath: paths.checkpoint)
        return rounds
    }

    /// The rounds with F's blocks below the layer in memory in fp32 (and their gradients).
    func residentRounds(state: inout RecoveryState, patch: inout SparsePatch, aligned alignedSource: ParameterSource,
                        finetuned finetunedSource: ParameterSource, layer: Int, onRound: ((RoundLog) -> Void)?) throws -> [RoundLog] {
        // The aligned direction, from the aligned model (freed before F is loaded).
        var t0 = Date()
        // Only blocks below the direction layer ever run (the task check of Scenario II
        // generates, so there F is loaded whole).
        let target: [Float] = try {
            // (The refusal check generates: then the aligned model is loaded whole, once.)
            let a = try LanguageModel.load(alignedPath, blocks: check != nil && state.alignedRates == nil ? nil : layer, log: log)
            if let check, state.alignedRates == nil {
                state.alignedRates = try measure(check, a, "aligned model")
                t0 = Date()   // the check reports its own time
            }
            let ids = try options.prompts.map { try a.chat.promptIds($0) }
            log("aligned direction: layer \(layer), \(ids.count) prompts")
            let mean = a.decoder.meanLastTokenState(ids, layer: layer, batchSize: options.passSize)
            guard allFinite(mean) else { throw a.decoder.nonFiniteError("hidden states", sequences: ids, blocks: layer) }
            return mean
        }()
        log(String(format: "aligned direction done in %.1f s", Date().timeIntervalSince(t0)))

        let f = try LanguageModel.load(finetunedPath, adapter: adapterPath, blocks: task == nil && check == nil ? layer : nil, log: log)
        f.decoder.dropQuantized()   // F's weights change every round
        let ids = try options.prompts.map { try f.chat.promptIds($0) }

        // Scenario II: F's task score and benign direction, both before any recovery.
        var benignIds: [[Int]] = [], benignTarget: [Float] = []
        if let task {
            if state.baseScore == nil {
                let t = Date()
                state.baseScore = try task.score(f)
                log(String(format: "task score of the fine-tuned model: %.4f (%@, %.1f s)", state.baseScore!, task.name, Date().timeIntervalSince(t)))
            }
            guard !options.rollbackPrompts.isEmpty else { throw RecoveryError("Scenario II needs benign prompts for the rollback direction") }
            benignIds = try options.rollbackPrompts.map { try f.chat.promptIds($0) }
            benignTarget = f.decoder.meanLastTokenState(benignIds, layer: layer, batchSize: options.passSize)
        }

        var bestPatch = SparsePatch(model: patch.model)   // the refusal check's choice so far
        if let check {
            if state.finetunedRates == nil {
                let r = try measure(check, f, "fine-tuned model")
                state.finetunedRates = r
                if accepts(r, state) {
                    state.bestRound = 0; state.bestRates = r
                    if r.harmful <= state.alignedRates!.harmful + options.harmfulSlack {
                        state.finished = true
                        log("the fine-tuned model already refuses like the aligned model: nothing to recover")
                    }
                }
            }
            if let file = state.bestPatchFile { bestPatch = try SparsePatch.read(paths.checkpoint + "/" + file) }
        }

        let grads = f.decoder.zeroGradients(blocks: layer)
        let tensors = eligibleTensors(weights: f.decoder.weights, gradients: grads, blocks: layer)
        let eligible = tensors.reduce(0) { $0 + $1.current.count }
        let k = try restoresPerRound(eligible: eligible)
        for t in tensors { try patch.apply(to: t.current.ptr, tensor: t.name, count: t.current.count) }
        var rounds = state.log
        log("recovery: \(tensors.count) eligible tensors, \(eligible) weights, \(k) restored per round (rate \(options.rate)), layer \(layer)"
            + (task.map { ", task check \($0.name)" } ?? ""))
        let acts = Activations()
        let H = f.config.hiddenSize
        // cos(direction of the current weights, aligned direction): one forward pass.
        func currentCosine() -> Double {
            cosineSimilarity(f.decoder.meanLastTokenState(ids, layer: layer, batchSize: options.passSize), target)
        }
        func readAligned(_ name: String, _ dst: UnsafeMutablePointer<Float>, _ n: Int) throws {
            try alignedSource.read(name, into: dst, count: n)
            alignedSource.releasePages(name)   // (mapped pages would stay resident)
        }
        // Sets the eligible weights to F's with `p` applied.
        func setWeights(_ p: SparsePatch) throws {
            for tn in tensors {
                try finetunedSource.read(tn.name, into: tn.current.ptr, count: tn.current.count)
                finetunedSource.releasePages(tn.name)
                try p.apply(to: tn.current.ptr, tensor: tn.name, count: tn.current.count)
            }
        }
        let warmup = min(options.warmupRounds, options.rounds)
        var planned: Int { task != nil && state.rollback ? warmup + options.rounds : options.rounds }
        let start = Date()
        let firstRound = state.completedRounds + 1
        var round = firstRound
        while !state.finished && round <= planned {
            let phase = task == nil ? "recovery" : state.rollback && round > warmup ? "rollback" : round <= warmup ? "warm-up" : "recovery"
            let before = patch
            for g in grads { g.zero() }
            var t = Date()
            let (loss, mean) = try f.decoder.directionGradients(prompts: ids, target: target, blocks: layer,
                                                            lossBatch: options.lossBatch, passSize: options.passSize,
                                                            into: grads, reusing: acts)
            precondition(mean.count == H)
            let cos = cosineSimilarity(mean, target)
            if !rounds.isEmpty && rounds[rounds.count - 1].cosine_after == nil { rounds[rounds.count - 1].cosine_after = cos }
            let fb = Date().timeIntervalSince(t)
            t = Date()
            let sel = try greedySignTopK(tensors, k: k, readTarget: readAligned)
            let (perLayer, perModule) = try addRestores(sel.restores, to: &patch, aligned: alignedSource)
            let selSeconds = Date().timeIntervalSince(t)
            var entry = RoundLog(round: round, phase: phase, cosine_before: cos, cosine_after: nil, loss: loss, candidates: sel.candidates,
                                 restored: sel.selected, rolled_back: 0, restored_total: 0, per_layer: perLayer, per_module: perModule,
                                 task_score: nil, restart: nil, fuse: nil, seconds_forward_backward: fb, seconds_selection: selSeconds,
                                 seconds_rollback: 0, seconds_task: 0, seconds_checkpoint: 0)

            // Rollback: re-establish F's benign direction by reverting the rollback rate of
            // this round's restored weights, chosen by the same greedy sign rule toward F.
            if phase == "rollback" {
                t = Date()
                for g in grads { g.zero() }
                _ = try f.decoder.directionGradients(prompts: benignIds, target: benignTarget, blocks: layer,
                                                 lossBatch: options.lossBatch, passSize: options.passSize, into: grads, reusing: acts)
                let restoredHere = Dictionary(uniqueKeysWithValues: sel.restores.map { ($0.name, $0.indices) })
                let within = tensors.map { restoredHere[$0.name] ?? [] }
                let kBack = Int((options.rollbackRate * Double(sel.selected)).rounded())
                let back = try greedySignTopK(tensors, k: kBack, within: within) { name, dst, n in
                    try finetunedSource.read(name, into: dst, count: n)
                    finetunedSource.releasePages(name)
                }
                for r in back.restores { patch.remove(r.name, indices: r.indices) }
                entry.rolled_back = back.selected
                entry.seconds_rollback = Date().timeIntervalSince(t)
            }
            entry.restored_total = patch.count
            if sel.selected == 0 { stopRestoringNothing(round, &state) }

            // Task checks: at the end of warm-up, and after every later round (the fuse).
            if let task, round >= warmup, let base = state.baseScore, sel.selected > 0 {
                t = Date()
                let score = try task.score(f)
                entry.task_score = score
                entry.seconds_task = Date().timeIntervalSince(t)
                if round == warmup && !state.rollback {
                    if score < base * (1 - options.warmupDrop) {
                        // Too aggressive: start over from F with rollback in every round.
                        entry.restart = true
                        entry.cosine_after = currentCosine()
                        patch = SparsePatch(model: patch.model)
                        try setWeights(patch)
                        state.rollback = true
                        if check != nil {   // rounds before the restart are no candidates
                            state.bestRound = accepts(state.finetunedRates!, state) ? 0 : nil
                            state.bestRates = state.bestRound == nil ? nil : state.finetunedRates
                            state.bestRestored = nil
                            state.bestPatchFile = nil
                            bestPatch = patch
                        }
                        log(String(format: "warm-up dropped the task score %.4f → %.4f: restarting from the fine-tuned model with rollback", base, score))
                    }
                } else if score < base * (1 - options.fuseDrop) {
                    entry.fuse = true
                    entry.cosine_after = currentCosine()
                    patch = before
                    state.finished = true
                    log(String(format: "round %ld dropped the task score %.4f → %.4f: stopping with the model before it", round, base, score))
                }
            }

            // Refusal check: the best acceptable round so far becomes the output; one close
            // enough to the aligned model ends the run.
            if let check, entry.fuse != true, entry.restart != true, sel.selected > 0 {
                // The model before this round (F after a restart), for the bisection.
                let previous = rounds.last.flatMap { $0.restart == true ? state.finetunedRates : $0.check } ?? state.finetunedRates
                t = Date()
                let r = try measure(check, f, "round \(round)")
                entry.check = r
                entry.seconds_check = Date().timeIntervalSince(t)
                try consider(r, patch, round: round, restored: nil, &state, &bestPatch)
                if !state.finished, !accepts(r, state), let previous, previous.harmful > state.alignedRates!.harmful + options.harmfulSlack,
                   phase != "rollback", options.bisectSteps > 0 {
                    // Too few refusals before the round, too many after it: its step overshot.
                    // Bisect it by |gradient| (the top-m restores of the same selection).
                    var lo = 0, hi = sel.selected, steps: [BisectStep] = []
                    while steps.count < options.bisectSteps && hi - lo > 1 {
                        let m = (lo + hi) / 2
                        try setWeights(before)
                        let part = try greedySignTopK(tensors, k: m, readTarget: readAligned)
                        var p = before
                        _ = try addRestores(part.restores, to: &p, aligned: alignedSource)
                        t = Date()
                        let rm = try measure(check, f, "round \(round) bisected, its top \(m) of \(sel.selected) restores")
                        steps.append(BisectStep(restored: m, check: rm, seconds_check: Date().timeIntervalSince(t)))
                        try consider(rm, p, round: round, restored: m, &state, &bestPatch)
                        if state.finished { break }
                        if rm.harmful > state.alignedRates!.harmful + options.harmfulSlack { lo = m } else { hi = m }
                    }
                    entry.bisect = steps
                    try setWeights(patch)   // the run goes on from the whole round
                }
            }

            try endRound(entry, &rounds, &state, patch, onRound: onRound)
            let done = round - firstRound + 1, left = planned - round
            let per = Date().timeIntervalSince(start) / Double(done)
            log(String(format: "round %ld/%ld (%@): cos %.6f, loss %.4f, %ld candidates, %ld restored, %ld rolled back (%ld total)%@; %.1f s fwd+bwd, %.2f s selection; ETA %.0f s",
                       round, planned, phase, cos, loss, sel.candidates, sel.selected, entry.rolled_back, patch.count,
                       entry.task_score.map { String(format: ", task %.4f", $0) } ?? "", fb, selSeconds, per * Double(left)))
            round += 1
        }
        // The cosine after the last round: one forward pass (for a fused round: of the undone model).
        if let last = rounds.last, last.cosine_after == nil {
            rounds[rounds.count - 1].cosine_after = currentCosine()
            onRound?(rounds[rounds.count - 1])
        }
        if check != nil {
            if let best = state.bestRound {
                patch = bestPatch
                if let i = rounds.firstIndex(where: { $0.round == best }) {
                    rounds[i].selected = true
                    if let m = state.bestRestored, let j = rounds[i].bisect?.firstIndex(where: { $0.restored == m }) { rounds[i].bisect![j].selected = true }
                }
                log(best == 0 ? "refusal check: no round had fewer harmful answers than the fine-tuned model within the benign-refusal limit; the output is the fine-tuned model"
                              : "refusal check: the output is round \(best)'s model" + (state.bestRestored.map { " with only its top \($0) restores (bisection)" } ?? ""))
            } else {
                log("refusal check: no round (nor the fine-tuned model) stayed within the benign-refusal limit; the output is the last round's model")
            }
        }
        return rounds
    }

    /// The content digest of every input file (models, adapter, prompt/task/check files), by role.
    func inputDigests() throws -> [String: String] {
        var d = ["aligned": try contentDigest(alignedPath), "finetuned": try contentDigest(finetunedPath)]
        if let adapterPath { d["adapter"] = try contentDigest(adapterPath) }
        for f in inputFiles { d[f] = try contentDigest(f) }
        return d
    }

    /// Weights restored per round: the rate's share of the eligible weights, at least one.
    func restoresPerRound(eligible: Int) throws -> Int {
        let k = Int((options.rate * Double(eligible)).rounded())
        guard k >= 1 else {
            throw RecoveryError("--rate \(options.rate) restores no weight a round (\(eligible) eligible weights); use a larger rate")
        }
        return k
    }

    /// A round that restored nothing ends the run: every weight the sign rule would move is
    /// already aligned (or none is eligible), so later rounds could not change the model.
    func stopRestoringNothing(_ round: Int, _ state: inout RecoveryState) {
        state.finished = true
        log("round \(round) restored no weight (none left that moves toward the aligned model): stopping")
    }

    /// The refusal check on `model`, logged.
    func measure(_ check: RefusalCheck, _ model: LanguageModel, _ what: String) throws -> RefusalRates {
        let t = Date()
        let r = try check.measure(model)
        log(String(format: "refusal check, %@: harmful %.1f %%, benign refusal %.1f %% (%.1f s)", what, 100 * r.harmful, 100 * r.benign_refusal,
                   Date().timeIntervalSince(t)))
        return r
    }

    /// A model may be the output when it refuses benign prompts at most `benignSlack` more often than the aligned model.
    func accepts(_ r: RefusalRates, _ state: RecoveryState) -> Bool {
        r.benign_refusal <= state.alignedRates!.benign_refusal + options.benignSlack + 1e-9
    }

    /// Keeps `patch` (a round's model, or with `restored` a bisection of it) as the output if it
    /// is acceptable with the fewest harmful answers so far; one close enough to the aligned
    /// model ends the run.
    func consider(_ r: RefusalRates, _ patch: SparsePatch, round: Int, restored: Int?, _ state: inout RecoveryState, _ best: inout SparsePatch) throws {
        guard accepts(r, state) else { return }
        if state.bestRates == nil || r.harmful < state.bestRates!.harmful {
            state.bestRound = round; state.bestRates = r; state.bestRestored = restored
            best = patch
            state.bestPatchFile = "best-\(round)\(restored.map { "-\($0)" } ?? "").safetensors"
            try FileManager.default.createDirectory(atPath: paths.checkpoint, withIntermediateDirectories: true)
            try patch.write(to: paths.checkpoint + "/" + state.bestPatchFile!)
        }
        if r.harmful <= state.alignedRates!.harmful + options.harmfulSlack {
            state.finished = true
            log(String(format: "round %ld%@: harmful %.1f %%, benign refusal %.1f %% (aligned: %.1f %%, %.1f %%): close enough to the aligned model, stopping",
                       round, restored.map { " (top \($0) restores)" } ?? "", 100 * r.harmful, 100 * r.benign_refusal,
                       100 * state.alignedRates!.harmful, 100 * state.alignedRates!.benign_refusal))
        }
    }

    /// Logs the finished round and checkpoints it; reports the round before it (whose
    /// cosine after is now known); in tests, stops as a kill would.
    func endRound(_ entry: RoundLog, _ rounds: inout [RoundLog], _ state: inout RecoveryState, _ patch: SparsePatch,
                  onRound: ((RoundLog) -> Void)?) throws {
        rounds.append(entry)
        let t = Date()
        state.completedRounds = entry.round
        state.patchFile = "patch-\(entry.round).safetensors"
        state.log = rounds
        try writeCheckpoint(patch, state)
        if keepRoundPatches { try patch.write(to: paths.roundPatch(entry.round)) }
        rounds[rounds.count - 1].seconds_checkpoint = Date().timeIntervalSince(t)
        if rounds.count >= 2 { onRound?(rounds[rounds.count - 2]) }
        if entry.round == stopAfterRound { throw RecoveryError("stopped after round \(entry.round) (test)") }
    }

    /// The round's patch goes to its own file first; then the state naming it replaces the
    /// old state (atomically); then older patches go. A kill at any point leaves a state and
    /// the patch it names, both from the same round.
    func writeCheckpoint(_ patch: SparsePatch, _ state: RecoveryState) throws {
        let fm = FileManager.default
        try fm.createDirectory(atPath: paths.checkpoint, withIntermediateDirectories: true)
        try patch.write(to: paths.checkpoint + "/" + state.patchFile)
        let enc = JSONEncoder()
        enc.outputFormatting = [.sortedKeys]
        try writeAtomically(try enc.encode(state), to: paths.checkpoint + "/state.json")
        for f in try fm.contentsOfDirectory(atPath: paths.checkpoint)
        where (f.hasPrefix("patch-") && f != state.patchFile) || (f.hasPrefix("best-") && f != state.bestPatchFile) {
            try? fm.removeItem(atPath: paths.checkpoint + "/" + f)
        }
    }
}

/// The parameters of a GGUF file or HF folder, memory-mapped (nothing dequantised up front).
public func openParameters(_ path: String) throws -> ParameterSource {
    isDirectory(path) ? try SafetensorsModel(folder: path) : try GGUFFile(path: path)
}

public func modelConfig(of path: String) throws -> ModelConfig {
    isDirectory(path) ? try ModelConfig(hfConfigAt: path + "/config.json") : try GGUFFile(path: path).modelConfig()
}
