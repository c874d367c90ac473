import Foundation

/// Architecture settings of a decoder, read from GGUF metadata or an HF `config.json`.
/// One table of per-family flags (see `ArchitectureTraits`) instead of a type per family.
public struct ModelConfig: Equatable, Sendable, Codable {
    public var architecture: String      // HF `model_type` spelling: "llama", "qwen2"
    public var vocabSize: Int
    public var hiddenSize: Int
    public var intermediateSize: Int
    public var numLayers: Int
    public var numHeads: Int
    public var numKVHeads: Int
    public var headDim: Int
    public var rmsNormEps: Float
    public var ropeTheta: Float
    public var maxPositions: Int
    public var tiedEmbeddings: Bool
    public var qkvBias: Bool
    // Settings some families have (nil / default where a family has none).
    public var activation: Activation = .silu   // of the gated MLP
    public var ropeScaling: RopeScaling? = nil
    /// Sliding-window attention: a query at position i sees keys i−W+1...i, in the layers
    /// `slidingLayers` lists (all layers when nil).
    public var slidingWindow: Int? = nil
    public var slidingLayers: [Int]? = nil
    public var attnLogitSoftcap: Float? = nil   // scores → cap·tanh(scores/cap) before the softmax
    public var finalLogitSoftcap: Float? = nil  // logits → cap·tanh(logits/cap)
    public var queryPreAttnScalar: Float? = nil // attention scale 1/√(this) instead of 1/√headDim

    public enum Activation: String, Codable, Sendable { case silu, gelu, geluTanh = "gelu_pytorch_tanh" }

    /// transformers' `rope_scaling`: "linear" divides every frequency by `factor`; "llama3"
    /// (`_compute_llama3_parameters`) divides the low ones, keeps the high ones and blends between;
    /// "longrope" (Phi-3.5, Phi-3-128k: `_compute_longrope_parameters`) divides frequency i by
    /// short_factor[i] and multiplies cos and sin by `attentionFactor`. transformers switches a
    /// whole sequence longer than `originalMaxPositions` to the long factors (llama.cpp: a context
    /// longer than it); Realign runs the short factors and refuses longer sequences where it can.
    public struct RopeScaling: Equatable, Sendable, Codable {
        public var type: String
        public var factor: Float
        public var lowFreqFactor: Float = 1
        public var highFreqFactor: Float = 4
        public var originalMaxPositions: Int = 8192
        /// "freq_factors" (a GGUF's rope_freqs.weight): inv_freq[i] / frequencyFactors[i];
        /// "longrope": the short factors.
        public var frequencyFactors: [Float]? = nil
        public var longFactors: [Float]? = nil          // longrope: kept so a written config.json or GGUF has them
        public var attentionFactor: Float? = nil        // longrope: cos and sin are multiplied by it
        public init(type: String, factor: Float, lowFreqFactor: Float = 1, highFreqFactor: Float = 4, originalMaxPositions: Int = 8192,
                    frequencyFactors: [Float]? = nil, longFactors: [Float]? = nil, attentionFactor: Float? = nil) {
            self.type = type; self.factor = factor; self.lowFreqFactor = lowFreqFactor
            self.highFreqFactor = highFreqFactor; self.originalMaxPositions = originalMaxPositions
            self.frequencyFactors = frequencyFactors; self.longFactors = longFactors; self.attentionFactor = attentionFactor
        }

        /// longrope (`_compute_longrope_parameters`): factor = max / original positions, and the
        /// attention factor √(1 + ln factor / ln original) unless the config gives one.
        public static func longrope(short: [Float], long: [Float], maxPositions: Int, originalMaxPositions: Int, attentionFactor: Double?) -> RopeScaling {
            let factor = Double(maxPositions) / Double(originalMaxPositions)
            let attention = attentionFactor ?? (factor <= 1 ? 1 : (1 + log(factor) / log(Double(originalMaxPositions))).squareRoot())
            return RopeScaling(type: "longrope", factor: Float(factor), originalMaxPositions: originalMaxPositions,
                               frequencyFactors: short, longFactors: long, attentionFactor: Float(attention))
        }

        /// The longest sequence the scaling runs as its reference does (nil: any length).
        public var lengthLimit: Int? { type == "longrope" ? originalMaxPositions : nil }
    }

    /// The sliding window of layer `l`, or nil for full causal attention.
    public func window(layer l: Int) -> Int? {
        guard let w = slidingWindow else { return nil }
        return slidingLayers.map { $0.contains(l) } ?? true ? w : nil
    }

    /// The factor scores are multiplied by before the softmax.
    public var attentionScale: Float { 1 / (queryPreAttnScalar ?? Float(headDim)).squareRoot() }

    /// This family's entry of the table.
    public var traits: ArchitectureTraits { ArchitectureTraits.table[architecture] ?? ArchitectureTraits.table["llama"]! }

    enum CodingKeys: String, CodingKey {
        case architecture, vocabSize = "vocab_size", hiddenSize = "hidden_size", intermediateSize = "intermediate_size"
        case numLayers = "num_layers", numHeads = "num_heads", numKVHeads = "num_kv_heads", headDim = "head_dim"
        case rmsNormEps = "rms_norm_eps", ropeTheta = "rope_theta", maxPositions = "max_positions"
        case tiedEmbeddings = "tied_embeddings", qkvBias = "qkv_bias"
        case activation, ropeScaling = "rope_scaling", slidingWindow = "sliding_window", slidingLayers = "sliding_layers"
        case attnLogitSoftcap = "attn_logit_softcap", finalLogitSoftcap = "final_logit_softcap"
        case queryPreAttnScalar = "query_pre_attn_scalar"
    }

    public init(architecture: String, vocabSize: Int, hiddenSize: Int, intermediateSize: Int, numLayers: Int,
                numHeads: Int, numKVHeads: Int, headDim: Int? = nil, rmsNormEps: Float, ropeTheta: Float,
                maxPositions: Int, tiedEmbeddings: Bool, qkvBias: Bool) {
        self.architecture = architecture; self.vocabSize = vocabSize; self.hiddenSize = hiddenSize
        self.intermediateSize = intermediateSize; self.numLayers = numLayers; self.numHeads = numHeads
        self.numKVHeads = numKVHeads; self.headDim = headDim ?? (numHeads > 0 ? hiddenSize / numHeads : 0)
        self.rmsNormEps = rmsNormEps; self.ropeTheta = ropeTheta; self.maxPositions = maxPositions
        self.tiedEmbeddings = tiedEmbeddings; self.qkvBias = qkvBias
    }

    // Bounds on the sizes a config may declare: far above any released model's, and low
    // enough that products of them (weights, activations, KV caches) cannot overflow.
    public static let maxVocabSize = 10_000_000
    /// hidden size, and heads × head dim.
    public static let maxWidth = 1 << 17
    public static let maxIntermediateSize = 1 << 19
    public static let maxLayers = 1000
    public static let maxHeadDim = 1024
    /// Positions (context length, sliding windows, rope-scaling lengths): 16M tokens, above
    /// the longest released context (10M).
    public static let maxContextLength = 1 << 24

    /// Refuses sizes the decoder cannot run (zero, negative, non-dividing heads, absurd
    /// values). `keys` gives the file's name of a field (by its `ModelConfig` JSON key, e.g.
    /// "max_positions" → "qwen2.context_length"), so an error names the key to fix.
    public func validate(source: String, keys: [String: String] = [:]) throws {
        func need(_ ok: Bool, _ what: String) throws { if !ok { throw FormatError(source, "bad model config: \(what)") } }
        func key(_ k: CodingKeys) -> String { keys[k.rawValue] ?? k.rawValue }
        func count(_ v: Int, _ k: CodingKeys, _ range: ClosedRange<Int>) throws {
            try need(range.contains(v), "\(key(k)) is \(v) (allowed: \(range.lowerBound)...\(range.upperBound))")
        }
        func positive(_ v: Float, _ k: CodingKeys, below limit: Float = .infinity) throws {
            try need(v > 0 && v.isFinite && v < limit, "\(key(k)) is \(v) (must be finite and > 0\(limit.isFinite ? " and < \(limit)" : ""))")
        }
        try need(ArchitectureTraits.table[architecture] != nil,
                 "unknown architecture '\(architecture)' (supported: \(ArchitectureTraits.table.keys.sorted().joined(separator: ", ")))")
        try count(vocabSize, .vocabSize, 1...Self.maxVocabSize)
        try count(hiddenSize, .hiddenSize, 1...Self.maxWidth)
        try count(intermediateSize, .intermediateSize, 1...Self.maxIntermediateSize)
        try count(numLayers, .numLayers, 1...Self.maxLayers)
        try count(numHeads, .numHeads, 1...Self.maxWidth)
        try count(numKVHeads, .numKVHeads, 1...numHeads)
        try need(numHeads % numKVHeads == 0, "\(key(.numHeads)) \(numHeads) is not a multiple of \(key(.numKVHeads)) \(numKVHeads)")
        try count(headDim, .headDim, 2...Self.maxHeadDim)
        try need(headDim % 2 == 0, "\(key(.headDim)) \(headDim) is odd (RoPE rotates pairs)")
        try need(numHeads * headDim <= Self.maxWidth, "\(key(.numHeads)) × \(key(.headDim)) is \(numHeads) × \(headDim) = \(numHeads * headDim) (allowed: up to \(Self.maxWidth))")
        try positive(rmsNormEps, .rmsNormEps, below: 1)
        try positive(ropeTheta, .ropeTheta)
        try count(maxPositions, .maxPositions, 1...Self.maxContextLength)
        if let r = ropeScaling {
            try need(["linear", "llama3", "freq_factors", "longrope"].contains(r.type) && r.factor > 0 && r.factor.isFinite, "rope scaling \(r.type) factor \(r.factor)")
            if r.type == "freq_factors" || r.type == "longrope" {
                try need(r.frequencyFactors?.count == headDim / 2 && r.frequencyFactors!.allSatisfy { $0 > 0 && $0.isFinite }, "rope frequency factors")
            }
            if r.type == "longrope" {
                try need(r.longFactors?.count == headDim / 2 && r.longFactors!.allSatisfy { $0 > 0 && $0.isFinite }, "longrope long factors")
                try need(r.originalMaxPositions > 1 && r.originalMaxPositions <= Self.maxContextLength && (r.attentionFactor ?? 1) > 0 && (r.attentionFactor ?? 1).isFinite,
                         "longrope original positions \(r.originalMaxPositions), attention factor \(r.attentionFactor ?? 1)")
            }
            if r.type == "llama3" {
                try need(r.highFreqFactor > r.lowFreqFactor && r.lowFreqFactor > 0 && r.highFreqFactor.isFinite
                         && r.originalMaxPositions > 0 && r.originalMaxPositions <= Self.maxContextLength,
                         "llama3 rope scaling low/high freq factors \(r.lowFreqFactor)/\(r.highFreqFactor)")
            }
        }
        if let w = slidingWindow { try count(w, .slidingWindow, 1...Self.maxContextLength) }
        if let l = slidingLayers { try need(l.allSatisfy { (0..<numLayers).contains($0) }, "sliding layers outside 0..<\(numLayers)") }
        for cap in [attnLogitSoftcap, finalLogitSoftcap] { if let cap { try need(cap > 0 && cap.isFinite, "soft-cap \(cap)") } }
        if let s = queryPreAttnScalar { try need(s > 0 && s.isFinite, "query_pre_attn_scalar \(s)") }
    }
}

/// What differs between the families the one decoder runs (settings that vary within a
/// family, such as windows or soft-caps, are in `ModelConfig`).
public struct ArchitectureTraits: Sendable {
    public var ggufName: String          // `general.architecture` in GGUF
    public var qkvBias: Bool
    public var permutesQK: Bool          // llama.cpp stores Q/K rows permuted for llama-family weights
    public var hfClass: String = ""      // `architectures[0]` in an HF config.json
    public var qkNorm = false            // RMSNorm over each head of q and k before RoPE (qwen3)
    public var sandwichNorms = false     // norms after attention and MLP too (gemma2)
    public var gemmaStyle = false        // embeddings × √hidden (in the dtype), RMSNorm by (1 + w), gelu MLP
    public var fusedProjections = false  // qkv_proj and gate_up_proj stored fused (phi3)

    public static let table: [String: ArchitectureTraits] = [
        "llama": ArchitectureTraits(ggufName: "llama", qkvBias: false, permutesQK: true, hfClass: "LlamaForCausalLM"),
        "mistral": ArchitectureTraits(ggufName: "llama", qkvBias: false, permutesQK: true, hfClass: "MistralForCausalLM"),
        "qwen2": ArchitectureTraits(ggufName: "qwen2", qkvBias: true, permutesQK: false, hfClass: "Qwen2ForCausalLM"),
        "qwen3": ArchitectureTraits(ggufName: "qwen3", qkvBias: false, permutesQK: false, hfClass: "Qwen3ForCausalLM", qkNorm: true),
        "gemma": ArchitectureTraits(ggufName: "gemma", qkvBias: false, permutesQK: false, hfClass: "GemmaForCausalLM", gemmaStyle: true),
        "gemma2": ArchitectureTraits(ggufName: "gemma2", qkvBias: false, permutesQK: false, hfClass: "Gemma2ForCausalLM",
                                     sandwichNorms: true, gemmaStyle: true),
        "phi3": ArchitectureTraits(ggufName: "phi3", qkvBias: false, permutesQK: false, hfClass: "Phi3ForCausalLM", fusedProjections: true),
    ]

    /// The family a GGUF architecture is read as ("llama" also holds Mistral's files: llama.cpp
    /// converts them to llama).
    public static func hfName(forGGUF name: String) -> String? {
        table[name]?.ggufName == name ? name : table.first { $0.value.ggufName == name }?.key
    }
}
