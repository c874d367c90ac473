import Foundation
import Formats
import Model
import Tensor

// Recovery rounds for models larger than memory (Scenario I): every pass is layer-major
// (Model/Streaming.swift), so only one block of F is in fp32 at a time, materialised from
// F's file plus the patch when a pass reaches it and dropped after; its gradients go to the
// selection as soon as they are complete (`StreamingTopK`), and the restores are applied to
// the patch after the last block. The result is that of the resident rounds, bit for bit;
// the price is reading each block twice per round (forward, backward) and recomputing each
// block's forward in the backward.

extension RecoveryRun {
    /// Bytes the resident rounds hold for blocks 0..<layer: weights and gradients in fp32,
    /// the embedding, and the activations one pass of `passTokens` tokens saves in every
    /// block for the backward (x, q, k, v, attention output, mid-block x, gate, up).
    /// Measured on a 1.5B shape (layer 18, 32 prompts of ~40 tokens): 9.25 GiB estimated, 9.71 GiB peak.
    public static func residentBytes(_ c: ModelConfig, layer: Int, passTokens: Int) -> UInt64 {
        let perBlock = c.layerSpecs(0).reduce(0) { $0 + $1.shape.reduce(1, *) }
        let perToken = 2 * c.hiddenSize + 2 * c.numKVHeads * c.headDim + 2 * c.numHeads * c.headDim + 2 * c.intermediateSize
        return UInt64(4 * (2 * layer * perBlock + c.vocabSize * c.hiddenSize + layer * passTokens * perToken))
    }

    /// The most tokens one pass of `passSize` prompts holds (passes are consecutive prompts).
    static func passTokens(_ ids: [[Int]], passSize: Int) -> Int {
        stride(from: 0, to: ids.count, by: max(passSize, 1)).map { ids[$0..<min($0 + passSize, ids.count)].reduce(0) { $0 + $1.count } }.max() ?? 0
    }

    func streamedRounds(state: inout RecoveryState, patch: inout SparsePatch, aligned alignedSource: ParameterSource,
                        finetuned finetunedSource: ParameterSource, layer: Int, onRound: ((RoundLog) -> Void)?) throws -> [RoundLog] {
        // The aligned direction (the aligned model's embedding and one block at a time).
        let t0 = Date()
        let target: [Float] = try {
            let a = try LanguageModel.load(alignedPath, blocks: 0, log: log)
            let ids = try options.prompts.map { try a.chat.promptIds($0) }
            log("aligned direction (layer-major): layer \(layer), \(ids.count) prompts")
            return try a.decoder.streamedMeanLastTokenState(ids, layer: layer, batchSize: options.passSize) {
                try ModelWeights.loadBlock($0, config: a.config, from: alignedSource)
            }
        }()
        log(String(format: "aligned direction done in %.1f s", Date().timeIntervalSince(t0)))

        let f = try LanguageModel.load(finetunedPath, adapter: adapterPath, blocks: 0, log: log)   // embedding and tokenizer
        let c = f.config, H = c.hiddenSize
        let ids = try options.prompts.map { try f.chat.promptIds($0) }
        var loadSeconds = 0.0
        // Block i of the current model: F's stored values with the patch's restored ones.
        func currentBlock(_ i: Int, _ p: SparsePatch) throws -> LayerWeights {
            let t = Date()
            defer { loadSeconds += Date().timeIntervalSince(t) }
            return try ModelWeights.loadBlock(i, config: c, from: PatchedParameters(finetunedSource, p))
        }
        let specs = eligibleSpecs(c, block: 0), perBlock = specs.count
        let eligible = layer * specs.reduce(0) { $0 + $1.shape.reduce(1, *) }
        let k = try restoresPerRound(eligible: eligible)
        log("recovery (layer-major, one block in memory at a time): \(layer * perBlock) eligible tensors, \(eligible) weights, "
            + "\(k) restored per round (rate \(options.rate)), layer \(layer)")

        var rounds = state.log
        let planned = options.rounds
        let start = Date()
        let firstRound = state.completedRounds + 1
        var round = firstRound
        while !state.finished && round <= planned {
            let roundStart = Date()
            loadSeconds = 0
            var selSeconds = 0.0
            var top = StreamingTopK(k: k)
            let current = patch
            let (loss, mean) = try f.decoder.streamedDirectionGradients(
                prompts: ids, target: target, blocks: layer, lossBatch: options.lossBatch, passSize: options.passSize,
                block: { try currentBlock($0, current) }) { i, w, g in
                    let t = Date()
                    try top.add(eligibleTensors(block: w, gradients: g, layer: i), firstIndex: i * perBlock) { name, dst, n in
                        try alignedSource.read(name, into: dst, count: n)
                        alignedSource.releasePages(name)
                    }
                    selSeconds += Date().timeIntervalSince(t)
                }
            precondition(mean.count == H)
            let fb = Date().timeIntervalSince(roundStart) - selSeconds - loadSeconds
            let cos = cosineSimilarity(mean, target)
            if !rounds.isEmpty && rounds[rounds.count - 1].cosine_after == nil { rounds[rounds.count - 1].cosine_after = cos }
            let t = Date()
            let sel = top.result()
            // Restored after every block's gradient: the round's gradient is that of the weights before it.
            let (perLayer, perModule) = try addRestores(sel.restores, to: &patch, aligned: alignedSource)
            selSeconds += Date().timeIntervalSince(t)
            var entry = RoundLog(round: round, phase: "recovery", cosine_before: cos, cosine_after: nil, loss: loss, candidates: sel.candidates,
                                 restored: sel.selected, rolled_back: 0, restored_total: patch.count, per_layer: perLayer, per_module: perModule,
                                 task_score: nil, restart: nil, fuse: nil, seconds_forward_backward: fb, seconds_selection: selSeconds,
                                 seconds_rollback: 0, seconds_task: 0, seconds_checkpoint: 0)
            entry.seconds_load = loadSeconds
            if sel.selected == 0 { stopRestoringNothing(round, &state) }
            try endRound(entry, &rounds, &state, patch, onRound: onRound)
            let per = Date().timeIntervalSince(start) / Double(round - firstRound + 1)
            log(String(format: "round %ld/%ld (recovery, layer-major): cos %.6f, loss %.4f, %ld candidates, %ld restored (%ld total); %.1f s fwd+bwd, %.1f s loading blocks, %.2f s selection; ETA %.0f s",
                       round, planned, cos, loss, sel.candidates, sel.selected, patch.count, fb, loadSeconds, selSeconds, per * Double(planned - round)))
            round += 1
        }
        // The cosine after the last round: one layer-major forward pass.
        if let last = rounds.last, last.cosine_after == nil {
            let final = patch
            let mean = try f.decoder.streamedMeanLastTokenState(ids, layer: layer, batchSize: options.passSize) { try currentBlock($0, final) }
            rounds[rounds.count - 1].cosine_after = cosineSimilarity(mean, target)
            onRound?(rounds[rounds.count - 1])
        }
        return rounds
    }
}
