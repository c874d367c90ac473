import Foundation
import Formats
import Model
import Tensor

// Gradient-free restores to set beside the recovery: each sets chosen weights of the
// fine-tuned model F back to the aligned model A's values, in the blocks the recovery may
// touch (below the direction layer), and returns a patch like the recovery's. They answer
// "does the gradient matter?": magnitude and random restore as many weights as a recovery
// did, chosen without it; resetting the blocks is the most any such restore can do.

/// How a gradient-free baseline chooses the weights it restores.
public enum RestoreBaseline: String, CaseIterable, Codable, Sendable {
    /// The `count` eligible weights with the largest |F − A| (one global cut, as the recovery's).
    case magnitude
    /// `count` eligible weights drawn uniformly (seeded) among those where F ≠ A.
    case random
    /// Every weight of blocks below the layer where F ≠ A, norms included: those blocks become
    /// A's (an upper bound on what restoring them can give back, and a lower bound on the task).
    case resetBlocks = "reset-blocks"
}

/// What a baseline did (its JSON summary).
public struct BaselineSummary: Codable, Equatable {
    public var method: String
    public var aligned: String
    public var finetuned: String
    public var adapter: String?
    public var layer: Int
    /// Weights the method may restore: eligible ones (reset-blocks: every one) of blocks < layer.
    public var weights: Int
    /// Of those, where F ≠ A.
    public var differing: Int
    public var restored: Int
    public var seed: UInt64?
    public var per_layer: [String: Int]
    public var per_module: [String: Int]
    public var seconds: Double

    public init(method: String, aligned: String, finetuned: String, adapter: String?, layer: Int, weights: Int, differing: Int, restored: Int,
                seed: UInt64?, per_layer: [String: Int], per_module: [String: Int], seconds: Double) {
        self.method = method; self.aligned = aligned; self.finetuned = finetuned; self.adapter = adapter; self.layer = layer
        self.weights = weights; self.differing = differing; self.restored = restored; self.seed = seed
        self.per_layer = per_layer; self.per_module = per_module; self.seconds = seconds
    }
}

/// The tensors of block i the recovery may change (everything but norms), as the file holds them.
public func eligibleSpecs(_ c: ModelConfig, block i: Int) -> [ParameterSpec] {
    c.layerSpecs(i).filter { isEligible($0.hfName) }
}

/// The two models of a recovery opened side by side: A's and F's parameters (F with the LoRA
/// adapter merged when one is given) and their common configuration. Their architectures and
/// sizes must agree and the adapter must fit F, before any work.
public func openAlignedAndFinetuned(aligned: String, finetuned: String, adapter: String?) throws
    -> (aligned: ParameterSource, finetuned: ParameterSource, config: ModelConfig) {
    let alignedConfig = try modelConfig(of: aligned)
    let finetunedConfig = try modelConfig(of: finetuned)
    guard finetunedConfig == alignedConfig else {
        throw RecoveryError("\(finetuned) and \(aligned) differ in architecture or sizes: \(finetunedConfig) vs \(alignedConfig)")
    }
    var f: ParameterSource = try openParameters(finetuned)
    if let adapter {
        let lora = try LoRAAdapter(folder: adapter)
        try lora.checkBase(finetunedConfig, model: finetuned)
        f = try LoRAMergedParameters(base: f, adapter: lora)
    }
    return (try openParameters(aligned), f, alignedConfig)
}

/// The patch of a gradient-free baseline over blocks 0..<layer. `count` (magnitude, random)
/// is how many weights to restore; `seed` drives random. Reads one block of each model at a
/// time in fp32; `progress(blocksDone)` after each block.
public func baselinePatch(_ method: RestoreBaseline, aligned: ParameterSource, finetuned: ParameterSource, config c: ModelConfig,
                          layer: Int, count: Int, seed: UInt64 = 0, model: ModelIdentity?,
                          progress: (Int) -> Void = { _ in }) throws -> (patch: SparsePatch, weights: Int, differing: Int) {
    precondition(layer >= 1 && layer <= c.numLayers && count >= 0)
    var patch = SparsePatch(model: model)
    var weights = 0, differing = 0
    var top = StreamingTopK(k: method == .resetBlocks ? 0 : count)
    var rng = SplitMix64(seed: seed)
    for i in 0..<layer {
        let specs = method == .resetBlocks ? c.layerSpecs(i) : eligibleSpecs(c, block: i)
        var tensors: [EligibleTensor] = [], targets: [String: FloatBuffer] = [:]
        for spec in specs {
            let n = spec.shape.reduce(1, *)
            let f = FloatBuffer(count: n, zeroed: false), a = FloatBuffer(count: n, zeroed: false)
            try finetuned.read(spec.hfName, into: f.ptr, count: n)
            try aligned.read(spec.hfName, into: a.ptr, count: n)
            finetuned.releasePages(spec.hfName); aligned.releasePages(spec.hfName)
            for (src, x) in [(finetuned, f), (aligned, a)] where !x.allFinite {
                throw FormatError(src.path, "\(spec.hfName) holds non-finite values")
            }
            weights += n
            // The ranking score where the cut wants it: the sign rule (F − A)·g > 0 passes every
            // differing weight, and |g| is |F − A| (magnitude) or a random positive float with
            // 31 random bits (random: the top `count` of those are a uniform sample).
            let g = FloatBuffer(count: method == .resetBlocks ? 0 : n)
            var differ: [Int] = []
            for j in 0..<n where f[j] != a[j] {
                differing += 1
                switch method {
                case .resetBlocks: differ.append(j)
                case .magnitude: g[j] = f[j] - a[j]
                case .random:
                    let bits = 0x0080_0000 + UInt32(truncatingIfNeeded: rng.next() % 0x7E80_0000)   // normal floats, [2^-126, 2^127)
                    g[j] = f[j] > a[j] ? Float(bitPattern: bits) : -Float(bitPattern: bits)
                }
            }
            if method == .resetBlocks {
                try patch.add(spec.hfName, shape: spec.shape, indices: differ, values: differ.map { a[$0] })
            } else {
                tensors.append(EligibleTensor(name: spec.hfName, current: f, gradient: g))
                targets[spec.hfName] = a
            }
        }
        if method != .resetBlocks {
            try top.add(tensors, firstIndex: i * specs.count) { name, dst, n in dst.update(from: targets[name]!.ptr, count: n) }
        }
        progress(i + 1)
    }
    if method != .resetBlocks { _ = try addRestores(top.result().restores, to: &patch, aligned: aligned) }
    return (patch, weights, differing)
}

// MARK: - RESTA

/// RESTA (Bhardwaj et al. 2024): add a safety vector to the fine-tuned model, F + λ·(A − U),
/// where U is the aligned model A fine-tuned on harmful pairs. With U = A + s·B_U·A_U (a LoRA
/// adapter over A, as `realign finetune` writes), the vector is −λ·s·B_U·A_U: itself a LoRA
/// adapter. This returns the adapter whose merge into F gives RESTA's model — U's modules
/// with B scaled by −λ·s and scale 1, and, when F is a base plus its own adapter, that
/// adapter's modules beside them (ranks concatenated: [B_F·s_F | −λ·s_U·B_U]·[A_F; A_U] is
/// the sum exactly) — so the model is written like any merged adapter (`ModelOutput.write`).
/// Every module gets scale 1 (alpha = its rank).
public func restaSafetyAdapter(unaligned u: LoRAAdapter, lambda: Double, finetunedAdapter f: LoRAAdapter?) -> [(weights: LoRAAdapter.Weights, rank: Int)] {
    let names = Set(u.weightNames + (f?.weightNames ?? [])).sorted()
    return names.map { name in
        var parts: [(a: [Float], b: [Float], rank: Int, factor: Float)] = []
        if let m = f?.modules[name] { parts.append((m.a, m.b, m.rank, m.scale)) }
        if let m = u.modules[name] { parts.append((m.a, m.b, m.rank, Float(-lambda) * m.scale)) }
        let rank = parts.reduce(0) { $0 + $1.rank }, out = parts[0].b.count / parts[0].rank
        var b = [Float](repeating: 0, count: out * rank)
        var column = 0
        for p in parts {
            for o in 0..<out { for k in 0..<p.rank { b[o * rank + column + k] = p.factor * p.b[o * p.rank + k] } }
            column += p.rank
        }
        return (LoRAAdapter.Weights(name: name, a: parts.flatMap(\.a), b: b), rank)
    }
}

/// Writes adapter modules whose B already holds the scale (`restaSafetyAdapter`,
/// `safeLoRAAdapter`) as a PEFT folder: scale 1 everywhere (alpha = r), rank_pattern and
/// alpha_pattern naming each module whose rank differs.
public func writeUnscaledAdapter(_ modules: [(weights: LoRAAdapter.Weights, rank: Int)], to folder: String, baseModel: String?) throws {
    let ranks = modules.map { ($0.weights.name, $0.rank) }
    let common = Dictionary(grouping: ranks, by: \.1).max { $0.value.count < $1.value.count }!.key
    let other = ranks.filter { $0.1 != common }.map { (String($0.0.dropLast(".weight".count)), $0.1) }
    let targets = Set(modules.map { String($0.weights.name.dropLast(".weight".count).split(separator: ".").last!) }).sorted()
    try LoRAAdapter.write(to: folder, modules: modules.map(\.weights), rank: common, alpha: Double(common), rankPattern: other,
                          alphaPattern: other.map { ($0.0, Double($0.1)) }, targetModules: targets, baseModel: baseModel)
}

// MARK: - Safe LoRA

/// One adapted weight's fate under Safe LoRA.
public struct SafeLoRALayer: Codable, Equatable {
    public var name: String
    /// cos(ΔW, C·ΔW) in the Frobenius inner product.
    public var similarity: Double
    public var projected: Bool
}

/// Safe LoRA (Hsu et al. 2024): each adapted weight's update ΔW = s·B·A is replaced by its
/// projection C·ΔW onto the alignment subspace, C = V·Vᵀ/‖V‖_F with V = W_aligned − W_base,
/// when cos(ΔW, C·ΔW) < `threshold`. C·ΔW = s·(V·(Vᵀ·B)/‖V‖_F)·A is again a LoRA update, so the
/// result is an adapter (B holding the scale, as `writeUnscaledAdapter` writes it). The
/// similarity needs only r × r matrices: ⟨B₁A, B₂A⟩ = tr(B₁ᵀB₂·AAᵀ).
public func safeLoRAAdapter(_ adapter: LoRAAdapter, aligned: ParameterSource, base: ParameterSource, threshold: Double) throws
    -> (modules: [(weights: LoRAAdapter.Weights, rank: Int)], layers: [SafeLoRALayer]) {
    var modules: [(weights: LoRAAdapter.Weights, rank: Int)] = [], layers: [SafeLoRALayer] = []
    for name in adapter.weightNames {
        let m = adapter.modules[name]!, out = m.outFeatures, inF = m.inFeatures, r = m.rank
        let v = FloatBuffer(count: out * inF, zeroed: false), w = FloatBuffer(count: out * inF, zeroed: false)
        try aligned.read(name, into: v.ptr, count: v.count)
        try base.read(name, into: w.ptr, count: w.count)
        aligned.releasePages(name); base.releasePages(name)
        var norm = 0.0
        for i in 0..<v.count { v[i] -= w[i]; norm += Double(v[i]) * Double(v[i]) }
        norm = norm.squareRoot()
        guard norm > 0, norm.isFinite else {
            throw FormatError(base.path, "\(name) is the same in the aligned and the base model (or not finite): no alignment subspace to project on")
        }
        // B' = V·(Vᵀ·B)/‖V‖_F.
        let vtb = FloatBuffer(count: inF * r)
        m.b.withUnsafeBufferPointer { b in
            gemm(transA: true, transB: false, m: inF, n: r, k: out, a: v.ptr, lda: inF, b: b.baseAddress!, ldb: r, c: vtb.ptr, ldc: r)
        }
        var bp = [Float](repeating: 0, count: out * r)
        bp.withUnsafeMutableBufferPointer { p in
            gemm(transA: false, transB: false, m: out, n: r, k: inF, alpha: Float(1 / norm), a: v.ptr, lda: inF, b: vtb.ptr, ldb: r, c: p.baseAddress!, ldc: r)
        }
        // Gram matrices in Double: G = A·Aᵀ [r × r], then tr(XᵀY·G) for X, Y ∈ {B, B'}.
        var g = [Double](repeating: 0, count: r * r)
        for i in 0..<r { for j in 0..<r { var d = 0.0; for c in 0..<inF { d += Double(m.a[i * inF + c]) * Double(m.a[j * inF + c]) }; g[i * r + j] = d } }
        func inner(_ x: [Float], _ y: [Float]) -> Double {
            var xty = [Double](repeating: 0, count: r * r)
            for o in 0..<out { for i in 0..<r { for j in 0..<r { xty[i * r + j] += Double(x[o * r + i]) * Double(y[o * r + j]) } } }
            var t = 0.0
            for i in 0..<r { for j in 0..<r { t += xty[i * r + j] * g[j * r + i] } }
            return t
        }
        let similarity = inner(m.b, bp) / max((inner(m.b, m.b) * inner(bp, bp)).squareRoot(), 1e-300)
        let project = similarity < threshold
        let b = (project ? bp : m.b).map { $0 * m.scale }
        modules.append((LoRAAdapter.Weights(name: name, a: m.a, b: b), r))
        layers.append(SafeLoRALayer(name: name, similarity: similarity, projected: project))
    }
    return (modules, layers)
}
