import Formats
import Tensor

/// One decoder block's parameters, fp32, HF layout ([out × in] matrices).
public struct LayerWeights {
    public var attnNorm: FloatBuffer   // [hidden]
    public var wq: FloatBuffer         // [heads·headDim × hidden]
    public var wk: FloatBuffer         // [kvHeads·headDim × hidden]
    public var wv: FloatBuffer         // [kvHeads·headDim × hidden]
    public var bq: FloatBuffer?        // [heads·headDim]      (qwen2)
    public var bk: FloatBuffer?        // [kvHeads·headDim]
    public var bv: FloatBuffer?        // [kvHeads·headDim]
    public var wo: FloatBuffer         // [hidden × heads·headDim]
    public var ffnNorm: FloatBuffer    // [hidden]
    public var wGate: FloatBuffer      // [intermediate × hidden]
    public var wUp: FloatBuffer        // [intermediate × hidden]
    public var wDown: FloatBuffer      // [hidden × intermediate]
    // Family extras (nil where the family has none):
    public var qNorm: FloatBuffer? = nil        // [headDim] RMSNorm of each query head before RoPE (qwen3)
    public var kNorm: FloatBuffer? = nil        // [headDim]
    /// gemma2's norms of the attention and MLP outputs (`ffnNorm` is then its pre_feedforward_layernorm).
    public var postAttnNorm: FloatBuffer? = nil // [hidden]
    public var postFfnNorm: FloatBuffer? = nil  // [hidden]
    /// phi3's fused matrices as stored; wq/wk/wv and wGate/wUp are views of their rows.
    public var wqkv: FloatBuffer? = nil         // [Q + 2K × hidden]
    public var wGateUp: FloatBuffer? = nil      // [2·intermediate × hidden]
}

/// All parameters of a decoder.
public struct ModelWeights {
    public var config: ModelConfig
    public var embed: FloatBuffer      // [vocab × hidden]
    public var layers: [LayerWeights]
    public var finalNorm: FloatBuffer  // [hidden]
    public var output: FloatBuffer?    // [vocab × hidden], nil when tied to `embed`

    /// The output projection (the embedding when tied).
    public var lmHead: FloatBuffer {
        precondition(isComplete, "a model loaded with only its first blocks has no output projection")
        return output ?? embed
    }
    /// False for a model loaded with only its first blocks (`load(…, blocks:)`).
    public var isComplete: Bool { layers.count == config.numLayers }
}

/// The names and shapes each parameter must have, in HF naming. `shape` is [out, in]
/// (or [n] for vectors); GGUF stores the same with the dimensions reversed.
public struct ParameterSpec {
    public let hfName: String
    public let shape: [Int]
    public let required: Bool
}

extension ModelConfig {
    public var qDim: Int { numHeads * headDim }
    public var kvDim: Int { numKVHeads * headDim }

    /// Every parameter of one layer, in HF naming (the file's: phi3's fused qkv_proj and
    /// gate_up_proj), with its expected shape.
    public func layerSpecs(_ i: Int) -> [ParameterSpec] {
        TensorNames.layerTensors(i, for: self).map { ParameterSpec(hfName: $0.name, shape: $0.shape, required: true) }
    }
}

extension LayerWeights {
    /// Builds a layer from its tensors by HF name (`tensor(name, shape)`), splitting phi3's fused
    /// matrices into row views.
    static func make(_ i: Int, config c: ModelConfig, _ tensor: (String, [Int]) throws -> FloatBuffer) throws -> LayerWeights {
        let p = "model.layers.\(i).", t = c.traits
        let H = c.hiddenSize, Q = c.qDim, K = c.kvDim, I = c.intermediateSize
        func get(_ name: String, _ shape: [Int]) throws -> FloatBuffer { try tensor(p + name, shape) }
        let attnNorm = try get("input_layernorm.weight", [H])   // (first: a missing layer is reported by its first tensor)
        var wq, wk, wv, wGate, wUp: FloatBuffer
        var wqkv, wGateUp: FloatBuffer?
        if t.fusedProjections {
            let qkv = try get("self_attn.qkv_proj.weight", [Q + 2 * K, H]), gu = try get("mlp.gate_up_proj.weight", [2 * I, H])
            wq = FloatBuffer(viewing: qkv, offset: 0, count: Q * H)
            wk = FloatBuffer(viewing: qkv, offset: Q * H, count: K * H)
            wv = FloatBuffer(viewing: qkv, offset: (Q + K) * H, count: K * H)
            wGate = FloatBuffer(viewing: gu, offset: 0, count: I * H)
            wUp = FloatBuffer(viewing: gu, offset: I * H, count: I * H)
            wqkv = qkv; wGateUp = gu
        } else {
            wq = try get("self_attn.q_proj.weight", [Q, H]); wk = try get("self_attn.k_proj.weight", [K, H])
            wv = try get("self_attn.v_proj.weight", [K, H])
            wGate = try get("mlp.gate_proj.weight", [I, H]); wUp = try get("mlp.up_proj.weight", [I, H])
        }
        return LayerWeights(
            attnNorm: attnNorm, wq: wq, wk: wk, wv: wv,
            bq: c.qkvBias ? try get("self_attn.q_proj.bias", [Q]) : nil,
            bk: c.qkvBias ? try get("self_attn.k_proj.bias", [K]) : nil,
            bv: c.qkvBias ? try get("self_attn.v_proj.bias", [K]) : nil,
            wo: try get("self_attn.o_proj.weight", [H, Q]),
            ffnNorm: try get(t.sandwichNorms ? "pre_feedforward_layernorm.weight" : "post_attention_layernorm.weight", [H]),
            wGate: wGate, wUp: wUp, wDown: try get("mlp.down_proj.weight", [H, I]),
            qNorm: t.qkNorm ? try get("self_attn.q_norm.weight", [c.headDim]) : nil,
            kNorm: t.qkNorm ? try get("self_attn.k_norm.weight", [c.headDim]) : nil,
            postAttnNorm: t.sandwichNorms ? try get("post_attention_layernorm.weight", [H]) : nil,
            postFfnNorm: t.sandwichNorms ? try get("post_feedforward_layernorm.weight", [H]) : nil,
            wqkv: wqkv, wGateUp: wGateUp)
    }
}

extension ModelWeights {
    /// Loads and checks every parameter: right shape, all finite. With `blocks`, only the
    /// embedding and the first `blocks` decoder blocks: hidden states up to that index are
    /// all a recovery needs, and the rest of a large model then never takes memory.
    public static func load(config: ModelConfig, from src: ParameterSource, blocks: Int? = nil) throws -> ModelWeights {
        let c = config
        // (each tensor's mapped pages are dropped once it is in fp32: they would double the resident size)
        func get(_ name: String, _ shape: [Int]) throws -> FloatBuffer {
            defer { src.releasePages(name) }
            return try read(name, shape, from: src, config: c)
        }
        let n = min(blocks ?? c.numLayers, c.numLayers)
        let layers = try (0..<n).map { try LayerWeights.make($0, config: c, get) }
        let embed = try get("model.embed_tokens.weight", [c.vocabSize, c.hiddenSize])
        guard n == c.numLayers else {
            return ModelWeights(config: c, embed: embed, layers: layers, finalNorm: FloatBuffer(count: 0), output: nil)
        }
        let output: FloatBuffer? = c.tiedEmbeddings ? nil : try get("lm_head.weight", [c.vocabSize, c.hiddenSize])
        return ModelWeights(config: c, embed: embed, layers: layers,
                            finalNorm: try get("model.norm.weight", [c.hiddenSize]), output: output)
    }

    /// Block `i` alone, checked as `load` checks it; each tensor's mapped pages are dropped
    /// after reading (layer-major passes over a model larger than memory).
    public static func loadBlock(_ i: Int, config c: ModelConfig, from src: ParameterSource) throws -> LayerWeights {
        try LayerWeights.make(i, config: c) { name, shape in
            defer { src.releasePages(name) }
            return try read(name, shape, from: src, config: c)
        }
    }

    /// One parameter: right shape, all finite. Gemma's RMSNorms multiply by (1 + w), which
    /// transformers computes in fp32: norm buffers hold 1 + w, so the one RMSNorm kernel
    /// serves (gradients are the same).
    static func read(_ name: String, _ shape: [Int], from src: ParameterSource, config c: ModelConfig) throws -> FloatBuffer {
        guard src.contains(name) else { throw FormatError(src.path, "missing tensor \(name)") }
        let have = try src.shape(name)
        guard have == shape else {
            throw FormatError(src.path, "tensor \(name) has shape \(have), expected \(shape) for this config")
        }
        let buf = FloatBuffer(count: shape.reduce(1, *), zeroed: false)
        try src.read(name, into: buf.ptr, count: buf.count)
        guard buf.allFinite else { throw FormatError(src.path, "tensor \(name) holds NaN or infinite values") }
        if c.traits.gemmaStyle && name.hasSuffix("norm.weight") { for i in 0..<buf.count { buf[i] += 1 } }
        return buf
    }
}
