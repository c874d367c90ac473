// ModelConfig from and to a Hugging Face `config.json` (the fields of transformers' config
// classes of the supported families). Settings the decoder does not implement (other rope
// scalings, Qwen's sliding window, other activations, o_proj/MLP biases, partial rotary)
// are refused rather than ignored, since ignoring them would silently break parity.

extension ModelConfig {
    /// Reads and validates `config.json` at `path`.
    public init(hfConfigAt path: String) throws {
        let json = try JSONValue.parseFile(path, maxBytes: FileLimits.configBytes)
        try self.init(hfConfig: json, source: path)
    }

    /// Builds a config from parsed `config.json` contents; `source` names the file in errors.
    public init(hfConfig json: JSONValue, source: String) throws {
        func fail(_ m: String) -> FormatError { FormatError(source, "config.json: \(m)") }
        guard let obj = json.object else { throw fail("not a JSON object") }
        let supported = ArchitectureTraits.table.keys.sorted().joined(separator: ", ")
        guard let type = obj["model_type"]?.string else { throw fail("missing model_type (supported: \(supported))") }
        guard let traits = ArchitectureTraits.table[type] else {
            throw fail("unsupported model_type '\(type)' (supported: \(supported))")
        }
        /// A present, non-null value of the key.
        func value(_ key: String) -> JSONValue? {
            guard let v = obj[key], v != .null else { return nil }
            return v
        }
        func int(_ key: String, default d: Int? = nil) throws -> Int {
            guard let v = value(key) else {
                if let d { return d }
                throw fail("missing \(key)")
            }
            guard let i = v.int else { throw fail("\(key) is not an integer: \(v.compact())") }
            return i
        }
        func number(_ key: String, default d: Double) throws -> Double {
            guard let v = value(key) else { return d }
            guard let x = v.double, x.isFinite else { throw fail("\(key) is not a number: \(v.compact())") }
            return x
        }
        func bool(_ key: String, default d: Bool) throws -> Bool {
            guard let v = value(key) else { return d }
            guard let b = v.bool else { throw fail("\(key) is not a boolean: \(v.compact())") }
            return b
        }

        // The MLP's activation: gemma reads `hidden_act`, gemma2 `hidden_activation`; the others are SiLU.
        let actKey = type == "gemma2" ? "hidden_activation" : "hidden_act"
        var activation = ModelConfig.Activation.silu
        if let act = value(actKey) ?? (traits.gemmaStyle ? .string("gelu_pytorch_tanh") : nil) {
            guard let a = act.string.flatMap(ModelConfig.Activation.init(rawValue:)), a == .silu || traits.gemmaStyle else {
                throw fail("\(actKey) \(act.compact()) is not supported for \(type) (\(traits.gemmaStyle ? "gelu, gelu_pytorch_tanh" : "only silu"))")
            }
            activation = a
        }
        let maxPositions = try int("max_position_embeddings", default: type == "qwen2" ? 32768 : 2048)
        var ropeScaling: ModelConfig.RopeScaling? = nil
        if let rs = value("rope_scaling") {
            // {"rope_type": "default"} is plain RoPE; "linear" and "llama3" change the frequencies
            // the same at every length; "longrope" up to its original length (phi3 configs may
            // still say "su" or "yarn" for it, as Phi3Config reads them); the others (dynamic,
            // yarn, …) are refused.
            var kind = rs["rope_type"]?.string ?? rs["type"]?.string
            if type == "phi3", kind == "su" || kind == "yarn" { kind = "longrope" }
            func field(_ k: String) throws -> Double {
                guard let x = rs[k]?.double, x.isFinite else { throw fail("rope_scaling \(rs.compact()): \(k) missing or not a number") }
                return x
            }
            switch kind {
            case "default": break
            case "linear": ropeScaling = .init(type: "linear", factor: Float(try field("factor")))
            case "llama3":
                guard let original = rs["original_max_position_embeddings"]?.int else {
                    throw fail("rope_scaling \(rs.compact()): original_max_position_embeddings missing or not an integer")
                }
                ropeScaling = .init(type: "llama3", factor: Float(try field("factor")), lowFreqFactor: Float(try field("low_freq_factor")),
                                    highFreqFactor: Float(try field("high_freq_factor")), originalMaxPositions: original)
            case "longrope":
                func factors(_ k: String) throws -> [Float] {
                    guard let a = rs[k]?.array, let x = Optional(a.compactMap(\.double)), x.count == a.count, x.allSatisfy(\.isFinite) else {
                        throw fail("rope_scaling: \(k) missing or not a list of numbers")
                    }
                    return x.map(Float.init)
                }
                // Phi3Config's original_max_position_embeddings defaults to 4096; other configs use max_position_embeddings.
                ropeScaling = .longrope(short: try factors("short_factor"), long: try factors("long_factor"), maxPositions: maxPositions,
                                        originalMaxPositions: try int("original_max_position_embeddings", default: type == "phi3" ? 4096 : maxPositions),
                                        attentionFactor: rs["attention_factor"] == nil || rs["attention_factor"] == .null ? nil : try field("attention_factor"))
            default: throw fail("rope_scaling \(rs.compact()) is not supported (default, linear, llama3, longrope)")
            }
        }
        if try bool("use_sliding_window", default: false) { throw fail("use_sliding_window is not supported") }
        if try bool("mlp_bias", default: false) { throw fail("mlp_bias is not supported") }
        if try number("partial_rotary_factor", default: 1) != 1 { throw fail("partial_rotary_factor other than 1 is not supported") }
        let attentionBias = try bool("attention_bias", default: false)
        if attentionBias && !traits.qkvBias { throw fail("attention_bias (biases on q/k/v and o_proj) is not supported for \(type)") }

        let heads = try int("num_attention_heads")
        let hidden = try int("hidden_size")
        let layers = try int("num_hidden_layers")
        let defaultHeadDim: Int? = traits.gemmaStyle ? 256 : type == "qwen3" ? 128 : nil   // the config classes' defaults
        if value("head_dim") == nil, defaultHeadDim == nil, heads > 0, hidden % heads != 0 {
            throw fail("hidden_size \(hidden) is not a multiple of num_attention_heads \(heads), and no head_dim is given")
        }
        self.init(
            architecture: type,
            vocabSize: try int("vocab_size"),
            hiddenSize: hidden,
            intermediateSize: try int("intermediate_size"),
            numLayers: layers,
            numHeads: heads,
            numKVHeads: try int("num_key_value_heads", default: heads),
            headDim: value("head_dim") == nil ? defaultHeadDim : try int("head_dim"),
            rmsNormEps: Float(try number("rms_norm_eps", default: 1e-6)),
            ropeTheta: Float(try number("rope_theta", default: 10000)),
            maxPositions: maxPositions,
            tiedEmbeddings: try bool("tie_word_embeddings", default: traits.gemmaStyle),
            qkvBias: traits.qkvBias)
        self.activation = activation
        self.ropeScaling = ropeScaling
        try validate(source: source, keys: Self.hfKeys)   // before any size is used below
        // Sliding windows: Mistral and Phi-3 in every layer when set; Gemma-2 in the layers
        // `layer_types` marks "sliding_attention" (by default every other one, from layer 0).
        if ["mistral", "phi3", "gemma2"].contains(type), value("sliding_window") != nil {
            slidingWindow = try int("sliding_window")
            if type == "gemma2" {
                if let types = value("layer_types")?.array {
                    guard types.count == layers, types.allSatisfy({ ["sliding_attention", "full_attention"].contains($0.string ?? "") }) else {
                        throw fail("layer_types must list sliding_attention or full_attention for each of the \(layers) layers")
                    }
                    slidingLayers = types.indices.filter { types[$0].string == "sliding_attention" }
                } else {
                    slidingLayers = Array(stride(from: 0, to: layers, by: 2))
                }
            }
        }
        if type == "gemma2" {
            attnLogitSoftcap = value("attn_logit_softcapping") == nil ? nil : Float(try number("attn_logit_softcapping", default: 0))
            finalLogitSoftcap = value("final_logit_softcapping") == nil ? nil : Float(try number("final_logit_softcapping", default: 0))
            queryPreAttnScalar = Float(try number("query_pre_attn_scalar", default: 256))
        }
        try validate(source: source, keys: Self.hfKeys)
    }

    /// config.json's names of the fields `validate` checks.
    static let hfKeys = ["num_layers": "num_hidden_layers", "num_heads": "num_attention_heads",
                         "num_kv_heads": "num_key_value_heads", "max_positions": "max_position_embeddings"]

    /// This config as transformers' `config.json` fields; `extra` entries (e.g.
    /// `bos_token_id`, `eos_token_id`, `torch_dtype`) are added or override.
    public func hfConfigJSON(extra: JSONObject = JSONObject()) -> JSONValue {
        // The shortest decimal that reads back as the same Float ("1e-06", not 9.99…e-07).
        func float(_ x: Float) -> JSONValue { .double(Double("\(x)") ?? Double(x)) }
        var o = JSONObject()
        o["architectures"] = .array([.string(ArchitectureTraits.table[architecture]?.hfClass ?? "")])
        o["model_type"] = .string(architecture)
        o["vocab_size"] = .int(Int64(vocabSize))
        o["hidden_size"] = .int(Int64(hiddenSize))
        o["intermediate_size"] = .int(Int64(intermediateSize))
        o["num_hidden_layers"] = .int(Int64(numLayers))
        o["num_attention_heads"] = .int(Int64(numHeads))
        o["num_key_value_heads"] = .int(Int64(numKVHeads))
        o["head_dim"] = .int(Int64(headDim))
        o[architecture == "gemma2" ? "hidden_activation" : "hidden_act"] = .string(activation.rawValue)
        o["rms_norm_eps"] = float(rmsNormEps)
        o["rope_theta"] = float(ropeTheta)
        if let r = ropeScaling {
            var rs = JSONObject()
            rs["rope_type"] = .string(r.type)
            rs["factor"] = float(r.factor)
            if r.type == "llama3" {
                rs["low_freq_factor"] = float(r.lowFreqFactor)
                rs["high_freq_factor"] = float(r.highFreqFactor)
                rs["original_max_position_embeddings"] = .int(Int64(r.originalMaxPositions))
            }
            if r.type == "longrope" {   // as Phi-3.5's config.json (Phi3Config takes exactly these three fields; the factors follow from the two lengths)
                rs = JSONObject([("type", .string("longrope")), ("short_factor", .array((r.frequencyFactors ?? []).map(float))),
                                 ("long_factor", .array((r.longFactors ?? []).map(float)))])
                o["original_max_position_embeddings"] = .int(Int64(r.originalMaxPositions))
            }
            o["rope_scaling"] = .object(rs)
        } else {
            o["rope_scaling"] = .null
        }
        if ["mistral", "phi3", "gemma2"].contains(architecture) {
            o["sliding_window"] = slidingWindow.map { .int(Int64($0)) } ?? .null
        }
        if architecture == "gemma2" {
            o["layer_types"] = .array((0..<numLayers).map { .string(window(layer: $0) == nil ? "full_attention" : "sliding_attention") })
            o["attn_logit_softcapping"] = attnLogitSoftcap.map(float) ?? .null
            o["final_logit_softcapping"] = finalLogitSoftcap.map(float) ?? .null
            o["query_pre_attn_scalar"] = queryPreAttnScalar.map(float) ?? .null
        }
        o["max_position_embeddings"] = .int(Int64(maxPositions))
        o["tie_word_embeddings"] = .bool(tiedEmbeddings)
        if architecture == "llama" {
            o["attention_bias"] = .bool(false)
            o["mlp_bias"] = .bool(false)
        }
        if architecture == "qwen2" || architecture == "qwen3" { o["use_sliding_window"] = .bool(false) }
        for (k, v) in extra.pairs { o[k] = v }
        return .object(o)
    }

    /// Writes `config.json` atomically, formatted like transformers (indent 2, sorted keys).
    public func writeHFConfig(to path: String, extra: JSONObject = JSONObject()) throws {
        let text = Array((hfConfigJSON(extra: extra).pretty(indent: 2, sortKeys: true) + "\n").utf8)
        try writeAtomically(path) { out in try text.withUnsafeBytes { try out.write($0) } }
    }
}
