import Foundation
import Testing
@testable import Recovery
import Model
import Formats
import Tensor
import TestSupport

/// A whole recovery on a real model: SmolLM2 as the aligned model and, as the "fine-tuned"
/// one, SmolLM2 with 3 % of the weights of its first six blocks perturbed.
/// The log without its timings (which differ from run to run).
func untimed(_ l: [RoundLog]) -> [RoundLog] {
    l.map {
        var x = $0
        x.seconds_forward_backward = 0; x.seconds_selection = 0; x.seconds_rollback = 0; x.seconds_task = 0; x.seconds_checkpoint = 0
        x.seconds_check = x.seconds_check.map { _ in 0 }
        x.bisect = x.bisect?.map { var b = $0; b.seconds_check = 0; return b }
        return x
    }
}

@Suite(.serialized) struct RecoverTests {
    static let layer = 6

    /// Writes `model` (SmolLM2 by default) with 3 % of the weights of its first `blocks` blocks
    /// shifted; returns its path and the perturbed (tensor → indices).
    static func makeFinetuned(_ dir: String, model: String = RealModels.smol, blocks: Int = layer,
                              seed: UInt64 = 42) throws -> (String, [String: Set<Int>]) {
        let g = try GGUFFile(path: model)
        var patch = SparsePatch(model: try ModelIdentity.of(model))
        var rng = SplitMix64(seed: seed)
        var perturbed: [String: Set<Int>] = [:]
        for l in 0..<blocks {
            for name in try g.modelConfig().layerSpecs(l).map(\.hfName) where !name.hasSuffix("layernorm.weight") {
                let n = try g.shape(name).reduce(1, *)
                let w = FloatBuffer(count: n)
                try g.read(name, into: w.ptr, count: n)
                var idx = Set<Int>()
                while idx.count < n * 3 / 100 { idx.insert(Int(rng.next() % UInt64(n))) }
                let sorted = idx.sorted()
                try patch.add(name, shape: try g.shape(name), indices: sorted,
                              values: sorted.map { w[$0] + 0.02 + rng.nextUnit() * 0.01 })   // a biased shift moves the direction
                perturbed[name] = idx
            }
        }
        let out = dir + "/finetuned.gguf"
        try ModelOutput.write(finetuned: model, patch: patch, to: out)
        return (out, perturbed)
    }

    /// Weights restored per round at `rate`: the eligible weights of SmolLM2's blocks below the layer (norms excluded).
    static func restoredPerRound(rate: Double) throws -> Int {
        let perBlock = try GGUFFile(path: RealModels.smol).modelConfig().layerSpecs(0).filter { !$0.hfName.hasSuffix("layernorm.weight") }
            .reduce(0) { $0 + $1.shape.reduce(1, *) }
        return Int((rate * Double(perBlock * layer)).rounded())
    }

    static func options() -> RecoveryOptions {
        var o = RecoveryOptions()
        o.layer = layer; o.rounds = 3; o.rate = 0.002; o.lossBatch = .prompts(4); o.passSize = 8
        o.prompts = Array(RecoverySet.doNotAnswer256.prefix(8))
        return o
    }

    @Test func recoversTowardTheAlignedModelAndResumesBitIdentically() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("realign-recover-\(getpid())").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let (finetuned, perturbed) = try RecoverTests.makeFinetuned(dir)

        // Uninterrupted run.
        let full = RecoveryRun(aligned: RealModels.smol, finetuned: finetuned, out: dir + "/full.gguf", options: RecoverTests.options(), log: { _ in })
        let log = try full.run()
        #expect(log.map(\.round) == [1, 2, 3])
        #expect(log[0].cosine_before < 0.999)
        #expect(zip(log, log.dropFirst()).allSatisfy { $0.cosine_after == $1.cosine_before })
        // Restoring 0.2 % at once is a large, non-infinitesimal step near the optimum: the first
        // round may overshoot (here cos 0.998 → 0.945); later rounds climb back.
        #expect(log[2].cosine_after! > log[0].cosine_after! + 0.02, "\(log.map { ($0.cosine_before, $0.cosine_after!) })")
        let k = try RecoverTests.restoredPerRound(rate: 0.002)
        #expect(log.allSatisfy { $0.restored == k && $0.candidates >= k })
        #expect(log.last!.restored_total <= 3 * k && log.last!.restored_total > k)
        #expect(log[0].per_layer.keys.allSatisfy { Int($0)! < RecoverTests.layer })

        // Every restored weight was a perturbed one and now holds the aligned value.
        let patch = try SparsePatch.read(full.paths.patch)
        let aligned = try GGUFFile(path: RealModels.smol), recovered = try GGUFFile(path: full.paths.out)
        for name in patch.tensorNames {
            let e = patch.entries[name]!
            let n = e.elementCount
            let a = FloatBuffer(count: n), r = FloatBuffer(count: n)
            try aligned.read(name, into: a.ptr, count: n)
            try recovered.read(name, into: r.ptr, count: n)
            for (i, v) in zip(e.indices, e.values) {
                #expect(perturbed[name]!.contains(Int(i)))
                #expect(v == a[Int(i)] && r[Int(i)] == v)
            }
        }

        // Killed after round 2, then resumed: the same bytes.
        let cut = RecoveryRun(aligned: RealModels.smol, finetuned: finetuned, out: dir + "/cut.gguf", options: RecoverTests.options(), log: { _ in })
        cut.stopAfterRound = 2
        #expect((#expect(throws: RecoveryError.self) { try cut.run() })?.description == "stopped after round 2 (test)")
        let checkpointState = try fileBytes(cut.paths.checkpoint + "/state.json")
        // Without --resume: refuses to overwrite the checkpoint, which stays as it was.
        #expect((#expect(throws: RecoveryError.self) { try cut.run() })?.description
                == "\(cut.paths.checkpoint) exists: use --resume to continue it, or remove it")
        #expect(try fileBytes(cut.paths.checkpoint + "/state.json") == checkpointState)
        let resumed = RecoveryRun(aligned: RealModels.smol, finetuned: finetuned, out: dir + "/cut.gguf", options: RecoverTests.options(), log: { _ in })
        let log2 = try resumed.run(resume: true)
        #expect(untimed(log2) == untimed(log))
        #expect(try fileBytes(full.paths.patch) == fileBytes(resumed.paths.patch))
        #expect(try fileBytes(full.paths.out) == fileBytes(resumed.paths.out))
        #expect(!FileManager.default.fileExists(atPath: resumed.paths.checkpoint))

        // Other options refuse the checkpoint of a different run.
        var o = RecoverTests.options(); o.rounds = 4
        let other = RecoveryRun(aligned: RealModels.smol, finetuned: finetuned, out: dir + "/cut2.gguf", options: RecoverTests.options(), log: { _ in })
        other.stopAfterRound = 1
        #expect((#expect(throws: RecoveryError.self) { try other.run() })?.description == "stopped after round 1 (test)")
        let refused = #expect(throws: RecoveryError.self) {
            try RecoveryRun(aligned: RealModels.smol, finetuned: finetuned, out: dir + "/cut2.gguf", options: o, log: { _ in }).run(resume: true)
        }
        #expect(refused?.description == "\(other.paths.checkpoint): the checkpoint was made with other models or options; remove it to start over")
    }

    /// With a small step (≈ 200 weights a round) the first-order picture holds: every round
    /// brings the direction closer to the aligned one.
    @Test func smallStepsIncreaseTheCosineEveryRound() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("realign-small-\(getpid())").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let (finetuned, _) = try RecoverTests.makeFinetuned(dir)
        var o = RecoverTests.options()
        o.rate = 0.00001
        let log = try RecoveryRun(aligned: RealModels.smol, finetuned: finetuned, out: dir + "/r.gguf", options: o, log: { _ in }).run()
        #expect(log.allSatisfy { $0.cosine_after! > $0.cosine_before }, "\(log.map { ($0.cosine_before, $0.cosine_after!) })")
    }

    @Test func mismatchedModelsAreRefusedBeforeAnyWork() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("realign-mismatch-\(getpid())").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var logged: [String] = []
        let r = RecoveryRun(aligned: RealModels.qwen, finetuned: RealModels.smol, out: dir + "/x.gguf", options: RecoverTests.options(),
                            log: { logged.append($0) })
        let e = #expect(throws: RecoveryError.self) { try r.run() }
        #expect(e?.description == "\(RealModels.smol) and \(RealModels.qwen) differ in architecture or sizes: "
                + "\(try modelConfig(of: RealModels.smol)) vs \(try modelConfig(of: RealModels.qwen))")
        // Refused before the rounds (their first line is the aligned direction's) and before any output.
        #expect(logged.allSatisfy { $0.hasPrefix("input digests:") }, "\(logged)")
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir).isEmpty)
    }

    // MARK: - Scenario II

    /// A task score that falls as the recovery changes F: 1 − (eligible weights differing
    /// from F) / scale. Deterministic in the weights, so a resumed run sees the same scores.
    static func weightDriftCheck(finetuned: String, scale: Double) -> TaskCheck {
        TaskCheck(name: "drift/\(scale)") { model in 1 - Double(try changedWeights(model, from: finetuned)) / scale }
    }

    /// How many eligible weights of blocks below `layer` differ from the model at `finetuned`.
    static func changedWeights(_ model: LanguageModel, from finetuned: String) throws -> Int {
        let source = try GGUFFile(path: finetuned)
        var changed = 0
        for l in 0..<layer {
            for (name, buffer) in model.decoder.weights.layers[l].named(layer: l) where !name.hasSuffix("layernorm.weight") {
                let ref = FloatBuffer(count: buffer.count)
                try source.read(name, into: ref.ptr, count: buffer.count)
                for i in 0..<buffer.count where buffer[i] != ref[i] { changed += 1 }
            }
        }
        return changed
    }

    static func scenarioIIOptions() -> RecoveryOptions {
        var o = options()
        o.rounds = 5; o.warmupRounds = 1; o.warmupDrop = 0.05; o.fuseDrop = 0.15
        o.rollbackPrompts = ["Write a haiku about autumn.", "What is 17 times 23?", "Summarise the plot of Hamlet in two sentences.",
                             "How do I sort a list in Python?"]
        return o
    }

    /// Warm-up drops the score 8 % (> 5 %): restart from F with rollback; each rollback round
    /// keeps 80 % of its restored weights, so the score falls 6.7 % a round until the fuse
    /// (15 %) undoes the third rollback round. A run killed after round 2 resumes to the same bytes.
    @Test func scenarioIIRestartsWithRollbackAndTheFuseUndoesTheRoundThatDropsTheScore() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("realign-scenario2-\(getpid())").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let (finetuned, _) = try RecoverTests.makeFinetuned(dir)
        let o = RecoverTests.scenarioIIOptions()
        let k = try RecoverTests.restoredPerRound(rate: o.rate)
        let check = RecoverTests.weightDriftCheck(finetuned: finetuned, scale: 12 * Double(k))

        let full = RecoveryRun(aligned: RealModels.smol, finetuned: finetuned, out: dir + "/full.gguf", options: o, task: check, log: { _ in })
        let log = try full.run()
        #expect(log.map(\.phase) == ["warm-up", "rollback", "rollback", "rollback"])
        #expect(log.map(\.round) == [1, 2, 3, 4])
        #expect(log[0].restart == true && log[0].rolled_back == 0)
        #expect(log.dropFirst().allSatisfy { $0.restored == k && $0.rolled_back == Int((0.2 * Double(k)).rounded()) })
        #expect(log[1].restored_total == k - log[1].rolled_back)           // the restart emptied the patch
        #expect(log[3].fuse == true && log.dropLast().allSatisfy { $0.fuse == nil })
        let scores = log.map { $0.task_score! }
        #expect(abs(scores[0] - (1 - 1.0 / 12)) < 1e-9)
        #expect(scores[1] > 0.85 && scores[2] > 0.85 && scores[3] < 0.85, "\(scores)")
        // The result is the model after round 3.
        let patch = try SparsePatch.read(full.paths.patch)
        #expect(patch.count == log[2].restored_total)
        #expect(abs(try check.score(LanguageModel.load(full.paths.out, log: { _ in })) - scores[2]) < 1e-9)

        let cut = RecoveryRun(aligned: RealModels.smol, finetuned: finetuned, out: dir + "/cut.gguf", options: o, task: check, log: { _ in })
        cut.stopAfterRound = 2
        #expect(throws: RecoveryError.self) { try cut.run() }
        let resumed = RecoveryRun(aligned: RealModels.smol, finetuned: finetuned, out: dir + "/cut.gguf", options: o, task: check, log: { _ in })
        #expect(untimed(try resumed.run(resume: true)) == untimed(log))
        #expect(try fileBytes(full.paths.patch) == fileBytes(resumed.paths.patch))
        #expect(try fileBytes(full.paths.out) == fileBytes(resumed.paths.out))
    }

    /// A warm-up that keeps the task score goes on without rollback, checking after every round.
    @Test func scenarioIIWithAGoodWarmUpContinuesWithoutRollback() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("realign-scenario2b-\(getpid())").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let (finetuned, _) = try RecoverTests.makeFinetuned(dir)
        var o = RecoverTests.scenarioIIOptions()
        o.rounds = 3; o.warmupRounds = 2
        let check = TaskCheck(name: "constant") { _ in 0.5 }
        let log = try RecoveryRun(aligned: RealModels.smol, finetuned: finetuned, out: dir + "/r.gguf", options: o, task: check, log: { _ in }).run()
        #expect(log.map(\.phase) == ["warm-up", "warm-up", "recovery"])
        #expect(log.map(\.task_score) == [nil, 0.5, 0.5])
        #expect(log.allSatisfy { $0.rolled_back == 0 && $0.restart == nil && $0.fuse == nil })
    }

    /// A refusal check with scripted rates: the aligned model's, and per round (by how many
    /// eligible weights differ from F, k per round; 0: F itself), so a resumed run sees the same.
    /// `partial`: the rates of models between rounds (a bisection), by their number of changed weights.
    static func scriptedRefusals(finetuned: String, k: Int, aligned: RefusalRates, rounds: [RefusalRates],
                                 partial: [Int: RefusalRates] = [:]) -> RefusalCheck {
        RefusalCheck(name: "scripted") { model in
            guard model.path == finetuned else { return aligned }
            let changed = try changedWeights(model, from: finetuned)
            if let r = partial[changed] { return r }
            precondition(changed % k == 0, "\(changed) changed weights, k = \(k)")
            return rounds[changed / k]
        }
    }

    /// The refusal check keeps the acceptable round (benign refusal ≤ aligned + 2 points, the default) with the
    /// fewest harmful answers, and the first round within 3 points of the aligned harmful rate
    /// ends the run; the output is that round's model. A run killed after round 2 resumes to the
    /// same bytes.
    @Test func refusalCheckChoosesTheRoundClosestToTheAlignedModel() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("realign-refusals-\(getpid())").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let (finetuned, _) = try RecoverTests.makeFinetuned(dir)
        var o = RecoverTests.options()
        o.rounds = 6
        o.bisectSteps = 0   // (bisection: the next test)
        let k = try RecoverTests.restoredPerRound(rate: o.rate)
        let aligned = RefusalRates(harmful: 0.30, benign_refusal: 0.10)
        func rates(_ h: Double, _ b: Double) -> RefusalRates { RefusalRates(harmful: h, benign_refusal: b) }
        // F; round 1 better; round 2 refuses 3 points more benign prompts than the aligned model (over the 2-point default);
        // round 3 worse than 1; round 4 close enough at exactly +2 points: stop.
        #expect(o.benignSlack == 0.02 && o.harmfulSlack == 0.03)
        let script = [rates(0.9, 0.0), rates(0.6, 0.12), rates(0.2, 0.13), rates(0.7, 0.1), rates(0.32, 0.12), rates(0.1, 0.1), rates(0.1, 0.1)]
        let check = RecoverTests.scriptedRefusals(finetuned: finetuned, k: k, aligned: aligned, rounds: script)
        var lines: [String] = []
        let run = RecoveryRun(aligned: RealModels.smol, finetuned: finetuned, out: dir + "/r.gguf", options: o, check: check, log: { lines.append($0) })
        let log = try run.run()
        #expect(log.map(\.round) == [1, 2, 3, 4])
        #expect(log.map(\.check) == Array(script[1...4]))
        #expect(log.map(\.selected) == [nil, nil, nil, true])
        #expect(lines.contains { $0.contains("close enough to the aligned model, stopping") })
        #expect(try SparsePatch.read(run.paths.patch).count == 4 * k)

        // Without round 4's stop (a tighter slack), round 1 stays the best of the six: the output is round 1's model.
        o.harmfulSlack = 0.01
        let script2 = [rates(0.9, 0.0), rates(0.6, 0.12), rates(0.2, 0.3), rates(0.7, 0.1), rates(0.65, 0.15), rates(0.1, 0.2), rates(0.5, 0.16)]
        let check2 = RecoverTests.scriptedRefusals(finetuned: finetuned, k: k, aligned: aligned, rounds: script2)
        let full = RecoveryRun(aligned: RealModels.smol, finetuned: finetuned, out: dir + "/full.gguf", options: o, check: check2, log: { _ in })
        full.keepRoundPatches = true
        let log2 = try full.run()
        #expect(try (1...6).map { try SparsePatch.read(full.paths.roundPatch($0)).count } == (1...6).map { $0 * k })
        #expect(log2.count == 6 && log2.map(\.selected) == [true, nil, nil, nil, nil, nil])
        let one = RecoveryRun(aligned: RealModels.smol, finetuned: finetuned, out: dir + "/one.gguf",
                              options: { var x = RecoverTests.options(); x.rounds = 1; return x }(), log: { _ in })
        try one.run()
        #expect(try fileBytes(full.paths.patch) == fileBytes(one.paths.patch))
        #expect(try fileBytes(full.paths.roundPatch(1)) == fileBytes(one.paths.patch))
        #expect(try fileBytes(full.paths.out) == fileBytes(one.paths.out))

        let cut = RecoveryRun(aligned: RealModels.smol, finetuned: finetuned, out: dir + "/cut.gguf", options: o, check: check2, log: { _ in })
        cut.stopAfterRound = 2
        #expect(throws: RecoveryError.self) { try cut.run() }
        let resumed = RecoveryRun(aligned: RealModels.smol, finetuned: finetuned, out: dir + "/cut.gguf", options: o, check: check2, log: { _ in })
        #expect(untimed(try resumed.run(resume: true)) == untimed(log2))
        #expect(try fileBytes(full.paths.out) == fileBytes(resumed.paths.out))

        // A fine-tuned model that already refuses like the aligned one: no round runs, the output is F.
        let same = RecoverTests.scriptedRefusals(finetuned: finetuned, k: k, aligned: aligned, rounds: [rates(0.305, 0.1)])
        let none = RecoveryRun(aligned: RealModels.smol, finetuned: finetuned, out: dir + "/none.gguf", options: o, check: same, log: { _ in })
        #expect(try none.run().isEmpty)
        #expect(try SparsePatch.read(none.paths.patch).count == 0)
    }

    /// A round that goes from too many harmful answers to too many benign refusals is bisected:
    /// its top half of restores by |gradient| (too many refusals still), then its top quarter
    /// (close enough: the output, and the run ends). The output is the first round plus a prefix
    /// of the second round's selection; a run killed after round 1 resumes to the same bytes.
    @Test func refusalCheckBisectsARoundThatOvershoots() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("realign-bisect-\(getpid())").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let (finetuned, _) = try RecoverTests.makeFinetuned(dir)
        var o = RecoverTests.options()
        o.rounds = 4
        #expect(o.bisectSteps == 3)
        let k = try RecoverTests.restoredPerRound(rate: o.rate)
        let aligned = RefusalRates(harmful: 0.30, benign_refusal: 0.10)
        func rates(_ h: Double, _ b: Double) -> RefusalRates { RefusalRates(harmful: h, benign_refusal: b) }
        // F; round 1: too many harmful answers (acceptable, the best so far); round 2: too many benign refusals.
        let script = [rates(0.9, 0.0), rates(0.6, 0.10), rates(0.1, 0.3), rates(0.5, 0.1), rates(0.5, 0.1)]
        let partial = [k + k / 2: rates(0.2, 0.2), k + k / 4: rates(0.31, 0.11)]
        let check = RecoverTests.scriptedRefusals(finetuned: finetuned, k: k, aligned: aligned, rounds: script, partial: partial)
        var lines: [String] = []
        let run = RecoveryRun(aligned: RealModels.smol, finetuned: finetuned, out: dir + "/r.gguf", options: o, check: check, log: { lines.append($0) })
        run.keepRoundPatches = true
        let log = try run.run()
        #expect(log.map(\.round) == [1, 2])
        #expect(log.map(\.check) == [script[1], script[2]])
        #expect(log[0].bisect == nil)   // F had too many harmful answers, but round 1 no benign overshoot
        #expect(log[1].bisect?.map(\.restored) == [k / 2, k / 4])
        #expect(log[1].bisect?.map(\.check) == [partial[k + k / 2]!, partial[k + k / 4]!])
        #expect(log[1].bisect?.map(\.selected) == [nil, true])
        #expect(log.map(\.selected) == [nil, true])
        #expect(lines.contains { $0.contains("round 2 (top \(k / 4) restores)") && $0.contains("close enough to the aligned model, stopping") })

        // The output: round 1's patch plus the first k/4 of round 2's restores (a subset of round 2's patch).
        let out = try SparsePatch.read(run.paths.patch)
        let round1 = try SparsePatch.read(run.paths.roundPatch(1)), round2 = try SparsePatch.read(run.paths.roundPatch(2))
        #expect(out.count == k + k / 4 && round2.count == 2 * k)
        #expect(try RecoverTests.changedWeights(LanguageModel.load(run.paths.out), from: finetuned) == k + k / 4)
        func indices(_ p: SparsePatch, _ name: String) -> Set<UInt32> { Set(p.entries[name]?.indices ?? []) }
        for name in round2.tensorNames {
            let o2 = indices(round2, name), oo = indices(out, name), o1 = indices(round1, name)
            #expect(o1.isSubset(of: oo) && oo.isSubset(of: o2))
        }

        // Killed after round 1, resumed: the same log and model.
        let cut = RecoveryRun(aligned: RealModels.smol, finetuned: finetuned, out: dir + "/cut.gguf", options: o, check: check, log: { _ in })
        cut.stopAfterRound = 1
        #expect(throws: RecoveryError.self) { try cut.run() }
        let resumed = RecoveryRun(aligned: RealModels.smol, finetuned: finetuned, out: dir + "/cut.gguf", options: o, check: check, log: { _ in })
        #expect(untimed(try resumed.run(resume: true)) == untimed(log))
        #expect(try fileBytes(run.paths.out) == fileBytes(resumed.paths.out))
    }
}
