import CBLAS
import Foundation

// PEFT LoRA adapters: a folder with `adapter_config.json` and `adapter_model.safetensors`
// (what `PeftModel.save_pretrained` writes). Each adapted linear layer W [out, in] has
// `base_model.model.<module>.lora_A.weight` [r, in] and `….lora_B.weight` [out, r]; the
// merged weight is W + scale·B·A with scale = alpha/r, or alpha/√r with `use_rslora`
// (peft/tuners/lora/layer.py `update_layer`). Per-module r and alpha come from
// `rank_pattern` / `alpha_pattern`, matched as PEFT's `get_pattern_key` does.
// Variants that are not a plain low-rank sum (DoRA, LoRA biases, trained base biases,
// modules_to_save, …) are refused with the setting named, never ignored.

/// One adapted linear layer.
public struct LoRAModule: Sendable {
    /// The base weight it changes, HF name: "model.layers.3.self_attn.q_proj.weight".
    public let name: String
    public let rank: Int
    public let alpha: Double
    /// alpha/r, or alpha/√r for rsLoRA.
    public let scale: Float
    /// [rank, inFeatures], row-major.
    public let a: [Float]
    /// [outFeatures, rank], row-major.
    public let b: [Float]
    public var inFeatures: Int { a.count / rank }
    public var outFeatures: Int { b.count / rank }

    /// W [out, in] += scale · B·A (fp32, BLAS).
    public func addDelta(to w: UnsafeMutablePointer<Float>) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(outFeatures), Int32(inFeatures), Int32(rank),
                    scale, b, Int32(rank), a, Int32(inFeatures), 1, w, Int32(inFeatures))
    }
}

public final class LoRAAdapter: @unchecked Sendable {
    public static let configFileName = "adapter_config.json"
    public static let weightsFileName = "adapter_model.safetensors"
    static let prefix = "base_model.model."
    /// Ranks above this are refused: real adapters use 4 to a few hundred, and a rank beyond a
    /// layer's width adds nothing to B·A; it also keeps rank × width far from overflowing.
    public static let maxRank = 1 << 16

    public let folder: String
    public var weightsPath: String { folder + "/" + Self.weightsFileName }
    /// `base_model_name_or_path` of the config (a hub id or a path), if any.
    public let baseModel: String?
    public let rank: Int
    public let alpha: Double
    public let useRSLoRA: Bool
    /// Adapted layers by the HF name of the base weight.
    public let modules: [String: LoRAModule]
    /// Names of the adapted base weights, sorted.
    public var weightNames: [String] { modules.keys.sorted() }

    /// PEFT's scaling of B·A.
    public static func scale(alpha: Double, rank: Int, rsLoRA: Bool) -> Float {
        Float(rsLoRA ? alpha / Double(rank).squareRoot() : alpha / Double(rank))
    }

    /// Reads and validates a PEFT LoRA adapter folder.
    public init(folder: String) throws {
        self.folder = folder
        let configPath = folder + "/" + Self.configFileName
        let weightsPath = folder + "/" + Self.weightsFileName
        let fm = FileManager.default
        guard fm.fileExists(atPath: configPath) else {
            throw FormatError(folder, "not a PEFT adapter folder: no \(Self.configFileName)")
        }
        guard fm.fileExists(atPath: weightsPath) else {
            if fm.fileExists(atPath: folder + "/adapter_model.bin") {
                throw FormatError(folder + "/adapter_model.bin", "pickled PyTorch adapters are not read (they can run code); save the adapter with safe_serialization=True to get \(Self.weightsFileName)")
            }
            throw FormatError(folder, "no \(Self.weightsFileName) in the adapter folder")
        }
        let json = try JSONValue.parseFile(configPath, maxBytes: FileLimits.configBytes)
        func fail(_ m: String) -> FormatError { FormatError(configPath, m) }
        guard let c = json.object else { throw fail("not a JSON object") }
        func value(_ key: String) -> JSONValue? {
            guard let v = c[key], v != .null else { return nil }
            return v
        }
        guard let type = value("peft_type")?.string else { throw fail("missing peft_type") }
        guard type == "LORA" else { throw fail("peft_type is \(type); only LORA adapters are supported") }
        if let t = value("task_type")?.string, t != "CAUSAL_LM" { throw fail("task_type is \(t); only CAUSAL_LM adapters are supported") }

        // Settings whose effect is not W + scale·B·A: refused when set.
        func set(_ key: String) -> Bool {
            switch value(key) {
            case nil, .bool(false)?: return false
            case .array(let a)?: return !a.isEmpty
            case .object(let o)?: return o.count > 0
            case .string(let s)?: return !s.isEmpty
            default: return true
            }
        }
        let refused: [(String, String)] = [
            ("use_dora", "DoRA (weight-decomposed LoRA)"), ("lora_bias", "LoRA with a bias on lora_B"),
            ("fan_in_fan_out", "fan_in_fan_out (Conv1D layers, GPT-2 style)"), ("modules_to_save", "modules_to_save (fully trained modules)"),
            ("target_parameters", "target_parameters (LoRA on raw parameters)"), ("trainable_token_indices", "trainable_token_indices"),
            ("layer_replication", "layer_replication"), ("alora_invocation_tokens", "activated LoRA (alora_invocation_tokens)"),
            ("use_qalora", "QA-LoRA"), ("use_bdlora", "BD-LoRA"), ("velora_config", "VeLoRA"), ("monteclora_config", "MonteCLoRA"),
            ("arrow_config", "Arrow routing"), ("kasa_config", "KaSA"), ("megatron_config", "Megatron layers"),
        ]
        for (key, what) in refused where set(key) { throw fail("\(key) is set: \(what) is not supported (only plain LoRA and rsLoRA)") }
        if let bias = value("bias")?.string, bias != "none" {
            throw fail("bias is \"\(bias)\": adapters that train the base model's biases are not supported (only \"none\")")
        }
        switch value("init_lora_weights") {
        case nil, .bool?, .string("gaussian")?, .string("eva")?, .string("orthogonal")?: break   // inits of A and B only
        case let v?: throw fail("init_lora_weights is \(v.compact()): this initialisation changes the base weights when PEFT loads the adapter; convert the adapter to plain LoRA (save_pretrained with path_initial_model_for_weight_conversion)")
        }

        guard let r = value("r")?.int, (1...Self.maxRank).contains(r) else {
            throw fail("r is \(value("r")?.compact() ?? "missing"), not an integer in 1...\(Self.maxRank)")
        }
        let alpha = try value("lora_alpha").map { v -> Double in
            guard let x = v.double, x.isFinite else { throw fail("lora_alpha is not a number: \(v.compact())") }
            return x
        } ?? 8   // LoraConfig's default
        let rs: Bool
        switch value("use_rslora") {
        case nil: rs = false
        case .bool(let b)?: rs = b
        case let v?: throw fail("use_rslora is not a boolean: \(v.compact())")
        }
        func pattern(_ key: String, _ check: (JSONValue) -> Double?) throws -> PatternTable {
            guard let v = value(key) else { return try PatternTable([], field: key, source: configPath) }
            guard let o = v.object else { throw fail("\(key) is not an object") }
            return try PatternTable(o.pairs.map { k, x in
                guard let d = check(x) else {
                    throw fail("\(key)[\(k)] is \(x.compact()), not \(key == "rank_pattern" ? "an integer in 1...\(Self.maxRank)" : "a finite number")")
                }
                return (k, d)
            }, field: key, source: configPath)
        }
        let rankPattern = try pattern("rank_pattern") { $0.int.flatMap { (1...Self.maxRank).contains($0) ? Double($0) : nil } }
        let alphaPattern = try pattern("alpha_pattern") { $0.double.flatMap { $0.isFinite ? $0 : nil } }
        let targets = try ModuleMatcher(config: c, source: configPath)
        var budget = PythonRegex.maxMatchSteps   // for all the pattern matching of this config

        let st = try SafetensorsFile(path: weightsPath)
        func wfail(_ m: String) -> FormatError { FormatError(weightsPath, m) }
        var pairs: [String: (a: String?, b: String?)] = [:]   // module key → tensor names
        for name in st.names {
            guard name.hasPrefix(Self.prefix) else { throw wfail("tensor '\(name)' does not start with '\(Self.prefix)' (not a PEFT LoRA state dict)") }
            let rest = String(name.dropFirst(Self.prefix.count))
            if rest.hasSuffix(".lora_A.weight") {
                pairs[String(rest.dropLast(".lora_A.weight".count)), default: (nil, nil)].a = name
            } else if rest.hasSuffix(".lora_B.weight") {
                pairs[String(rest.dropLast(".lora_B.weight".count)), default: (nil, nil)].b = name
            } else if rest.contains("lora_embedding_") {
                throw wfail("tensor '\(name)': LoRA on embeddings is not supported (only linear layers)")
            } else {
                throw wfail("tensor '\(name)' is not a lora_A/lora_B weight (DoRA magnitudes, biases and saved modules are not supported)")
            }
        }
        guard !pairs.isEmpty else { throw wfail("the adapter holds no LoRA tensors") }
        var modules: [String: LoRAModule] = [:]
        for (key, p) in pairs {
            guard let an = p.a, let bn = p.b else { throw wfail("module \(key) has \(p.a == nil ? "lora_B but no lora_A" : "lora_A but no lora_B")") }
            guard try targets.matches(key, budget: &budget) else { throw fail("the adapter has weights for \(key), which target_modules does not select") }
            let ai = st.info(an)!, bi = st.info(bn)!
            for t in [ai, bi] where ![.f32, .f16, .bf16].contains(t.dtype) {
                throw wfail("tensor '\(t.name)' has dtype \(t.dtype.rawValue), not F32/F16/BF16")
            }
            guard ai.shape.count == 2, bi.shape.count == 2, ai.shape[0] == bi.shape[1], ai.shape[0] > 0, ai.shape[1] > 0, bi.shape[0] > 0 else {
                throw wfail("module \(key): lora_A has shape \(ai.shape) and lora_B \(bi.shape); expected [r, in] and [out, r]")
            }
            // BLAS takes 32-bit sizes.
            guard ai.shape[1] <= Int(Int32.max), bi.shape[0] <= Int(Int32.max) else {
                throw wfail("module \(key): lora_A has shape \(ai.shape) and lora_B \(bi.shape), wider than any layer can be")
            }
            let moduleRank = try rankPattern.value(for: key, budget: &budget).map(Int.init) ?? r
            guard ai.shape[0] == moduleRank else {
                throw wfail("module \(key): lora_A has rank \(ai.shape[0]), the config says r = \(moduleRank)")
            }
            let moduleAlpha = try alphaPattern.value(for: key, budget: &budget) ?? alpha
            let a = try st.floats(an), b = try st.floats(bn)
            guard a.allSatisfy(\.isFinite) else { throw wfail("tensor '\(an)' holds NaN or infinite values") }
            guard b.allSatisfy(\.isFinite) else { throw wfail("tensor '\(bn)' holds NaN or infinite values") }
            let weight = key + ".weight"
            let scale = Self.scale(alpha: moduleAlpha, rank: moduleRank, rsLoRA: rs)
            guard scale.isFinite else {
                throw fail("module \(key): lora_alpha \(moduleAlpha) with r = \(moduleRank) gives a scale of \(scale) (beyond Float)")
            }
            modules[weight] = LoRAModule(name: weight, rank: moduleRank, alpha: moduleAlpha, scale: scale, a: a, b: b)
        }
        self.baseModel = value("base_model_name_or_path")?.string
        self.rank = r
        self.alpha = alpha
        self.useRSLoRA = rs
        self.modules = modules
    }

    /// When the config names its base by a path to a local HF folder, that folder's
    /// config.json must describe the same architecture and sizes as `config` (the model the
    /// adapter is applied to). A hub id cannot be checked here; shapes are checked on merging.
    public func checkBase(_ config: ModelConfig, model: String) throws {
        guard let b = baseModel, FileManager.default.fileExists(atPath: b + "/config.json") else { return }
        let named = try ModelConfig(hfConfigAt: b + "/config.json")
        guard named == config else {
            throw FormatError(folder, "the adapter was trained on \(b) (\(named.architecture), \(named.numLayers) layers, hidden \(named.hiddenSize)), but \(model) is \(config.architecture), \(config.numLayers) layers, hidden \(config.hiddenSize)\(named.architecture == config.architecture ? " with other settings" : "")")
        }
    }

}

/// rank_pattern or alpha_pattern: PEFT's `get_pattern_key` takes the first key p (in file
/// order) for which `re.match(rf"(.*\.)?({p})$", module)` succeeds.
struct PatternTable {
    let field: String, source: String
    /// Each key, its value, and the compiled pattern (nil for a plain name, matched directly).
    let entries: [(key: String, value: Double, regex: PythonRegex?)]

    init(_ pairs: [(String, Double)], field: String, source: String) throws {
        self.field = field; self.source = source
        entries = try pairs.map { k, v in
            // A key without regex operators other than '.' (a module name) is matched by `plainMatch`.
            guard k.unicodeScalars.contains(where: { "^$*+?{}[]\\|()".unicodeScalars.contains($0) }) else { return (k, v, nil) }
            // The key alone first, so that an error's position is in the key as written.
            do { _ = try PythonRegex(k); return (k, v, try PythonRegex("(.*\\.)?(" + k + ")$")) } catch {
                throw FormatError(source, "\(field) key \"\(k)\" is not a regular expression Realign can match: \(error)")
            }
        }
    }

    func value(for module: String, budget: inout Int) throws -> Double? {
        for (k, v, regex) in entries {
            let hit: Bool?
            if let regex { hit = regex.matches(module, whole: false, budget: &budget) } else {
                budget -= k.unicodeScalars.count
                hit = budget > 0 ? Self.plainMatch(k, module) : nil
            }
            guard let hit else {
                throw FormatError(source, "\(field) key \"\(k)\": matching the patterns against the adapter's modules (here \(module)) takes more than \(PythonRegex.maxMatchSteps) steps")
            }
            if hit { return v }
        }
        return nil
    }

    /// `re.match(rf"(.*\.)?({key})$", module)` for a key whose only operator is '.' (any
    /// character but a newline): the key's length fixes where its match starts.
    static func plainMatch(_ key: String, _ module: String) -> Bool {
        let k = Array(key.unicodeScalars), m = Array(module.unicodeScalars)
        // `$` matches at the end, or before a final newline.
        for end in [m.count, m.last == "\n" ? m.count - 1 : -1] where end >= k.count {
            let start = end - k.count
            guard zip(k, m[start..<end]).allSatisfy({ $0 == "." ? $1 != "\n" : $0 == $1 }) else { continue }
            // What comes before is empty or `.*\.`: ends with '.', no newline.
            if start == 0 || (m[start - 1] == "." && !m[..<(start - 1)].contains("\n")) { return true }
        }
        return false
    }
}

/// PEFT's `check_target_module_exists` for the settings a saved adapter can have:
/// `target_modules` as a regular expression (full match) or a list of names (exact or
/// dot-suffix match), `exclude_modules` likewise, and `layers_to_transform`.
struct ModuleMatcher {
    var regex: (pattern: String, compiled: PythonRegex)?
    var names: [String] = []
    var excludeRegex: (pattern: String, compiled: PythonRegex)?
    var excludeNames: [String] = []
    var layers: [Int]? = nil
    var source = ""

    init(config c: JSONObject, source: String) throws {
        self.source = source
        func fail(_ m: String) -> FormatError { FormatError(source, m) }
        func strings(_ key: String) throws -> ((String, PythonRegex)?, [String])? {
            switch c[key] {
            case nil, .null?: return nil
            case .string(let s)? where key == "target_modules" && s.lowercased() == "all-linear":
                return (("all-linear", try! PythonRegex("model\\.layers\\..*")), [])   // every linear layer but the output head
            case .string(let s)?:
                do { return ((s, try PythonRegex(s)), []) } catch {
                    throw fail("\(key) \"\(s)\" is not a regular expression Realign can match: \(error)")
                }
            case .array(let a)?:
                return (nil, try a.map { guard let s = $0.string else { throw fail("\(key) holds a non-string: \($0.compact())") }; return s })
            case let v?: throw fail("\(key) is neither a string nor a list: \(v.compact())")
            }
        }
        guard let t = try strings("target_modules") else { throw fail("target_modules is missing") }
        (regex, names) = t
        if let e = try strings("exclude_modules") { (excludeRegex, excludeNames) = e }
        switch c["layers_to_transform"] {
        case nil, .null?: break
        case .int(let i)?: layers = [Int(i)]
        case .array(let a)?: layers = try a.map { guard let i = $0.int else { throw fail("layers_to_transform holds a non-integer") }; return i }
        case let v?: throw fail("layers_to_transform is not an integer or a list: \(v.compact())")
        }
        if let p = c["layers_pattern"], p != .null, p != .string(""), p != .array([]) {
            throw fail("layers_pattern is not supported (HF decoders number their layers under model.layers)")
        }
    }

    /// `re.fullmatch`, with an error naming the setting when the work budget runs out.
    private func fullMatch(_ r: (pattern: String, compiled: PythonRegex), _ key: String, _ field: String, _ budget: inout Int) throws -> Bool {
        guard let hit = r.compiled.matches(key, whole: true, budget: &budget) else {
            throw FormatError(source, "\(field) \"\(r.pattern)\": matching it against the adapter's modules (here \(key)) takes more than \(PythonRegex.maxMatchSteps) steps")
        }
        return hit
    }

    func matches(_ key: String, budget: inout Int) throws -> Bool {
        if let e = excludeRegex, try fullMatch(e, key, "exclude_modules", &budget) { return false }
        if excludeNames.contains(where: { key == $0 || key.hasSuffix("." + $0) }) { return false }
        if let r = regex { return try fullMatch(r, key, "target_modules", &budget) }
        guard names.contains(where: { key == $0 || key.hasSuffix("." + $0) }) else { return false }
        if names.contains(key) { return true }   // named exactly: layers_to_transform does not apply
        guard let layers else { return true }
        // PEFT reads the layer index with `re.match(r".*?\.[^.]*\.(\d+)\.", key)`: the first
        // all-digit segment that has at least two segments before it and one after.
        let parts = key.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count >= 4 else { return false }
        for i in 2..<(parts.count - 1) where !parts[i].isEmpty && parts[i].unicodeScalars.allSatisfy(PythonRegex.isDigit) {
            guard !parts[..<(i - 1)].contains(where: { $0.contains("\n") }) else { return false }   // `.` stops at a newline
            // int() of the segment: any decimal digits; a number of 19+ digits is no layer index.
            let digits = parts[i].unicodeScalars
            guard digits.count < 19 else { return false }
            return layers.contains(digits.reduce(0) { $0 * 10 + Int($1.properties.numericValue ?? 0) })
        }
        return false
    }
}

// MARK: - merging

/// A base model's parameters with a LoRA adapter merged in as they are read:
/// W + scale·B·A in fp32 for adapted weights, the base's values for all others.
public struct LoRAMergedParameters: ParameterSource {
    public let base: ParameterSource
    public let adapter: LoRAAdapter

    /// Checks, before any work, that every adapted weight exists in the base with the
    /// adapter's [out, in].
    public init(base: ParameterSource, adapter: LoRAAdapter) throws {
        for name in adapter.weightNames {
            let m = adapter.modules[name]!
            guard base.contains(name) else {
                throw FormatError(adapter.folder, "the adapter changes \(name), which the base model \(base.path) does not have")
            }
            let shape = try base.shape(name)
            guard shape == [m.outFeatures, m.inFeatures] else {
                throw FormatError(adapter.folder, "the adapter's \(name) is [\(m.outFeatures), \(m.inFeatures)] (lora_B [out, r] · lora_A [r, in]), but the base model \(base.path) has \(shape)")
            }
        }
        self.base = base; self.adapter = adapter
    }

    public var path: String { base.path }
    public func contains(_ hfName: String) -> Bool { base.contains(hfName) }
    public func shape(_ hfName: String) throws -> [Int] { try base.shape(hfName) }
    /// An adapted weight whose sum W + scale·B·A leaves Float's range is the adapter's fault
    /// (the base is checked finite first): the error names the adapter file and the tensor.
    public func read(_ hfName: String, into dst: UnsafeMutablePointer<Float>, count: Int) throws {
        try base.read(hfName, into: dst, count: count)
        guard let m = adapter.modules[hfName] else { return }
        let w = UnsafeBufferPointer(start: dst, count: count)
        guard count == m.outFeatures * m.inFeatures else {
            throw FormatError(adapter.weightsPath, "\(hfName): the base model \(base.path) gives \(count) values, the adapter's [\(m.outFeatures), \(m.inFeatures)] needs \(m.outFeatures * m.inFeatures)")
        }
        guard w.allSatisfy(\.isFinite) else { throw FormatError(base.path, "tensor \(hfName) holds NaN or infinite values") }
        m.addDelta(to: dst)
        guard w.allSatisfy(\.isFinite) else {
            throw FormatError(adapter.weightsPath, "merging into \(hfName): W + \(m.scale)·B·A overflows Float (lora_A/lora_B of \(hfName.dropLast(".weight".count)) or lora_alpha too large)")
        }
    }
    public func releasePages(_ hfName: String) { base.releasePages(hfName) }
}

// MARK: - writing

extension LoRAAdapter {
    /// One adapted layer to write: the HF name of its base weight and fp32 A [r, in] and
    /// B [out, r] (row-major).
    public struct Weights {
        public var name: String
        public var a: [Float]
        public var b: [Float]
        public init(name: String, a: [Float], b: [Float]) { self.name = name; self.a = a; self.b = b }
    }

    /// Writes a folder `PeftModel.from_pretrained` loads: `adapter_config.json` (plain LoRA
    /// or rsLoRA, r and alpha for all modules but those `rankPattern`/`alphaPattern` name, as
    /// PEFT's rank_pattern and alpha_pattern) and `adapter_model.safetensors` (tensors in
    /// `dtype`). `targetModules` are PEFT's target_modules (module names such as "q_proj",
    /// or full module paths); every written module must be selected by them. The folder is
    /// created if needed; both files are written atomically.
    public static func write(to folder: String, modules: [Weights], rank: Int, alpha: Double, useRSLoRA: Bool = false,
                             rankPattern: [(String, Int)] = [], alphaPattern: [(String, Double)] = [],
                             targetModules: [String], baseModel: String?, dtype: SafetensorsDType = .f32) throws {
        func fail(_ m: String) -> FormatError { FormatError(folder, m) }
        guard rank > 0 else { throw fail("LoRA rank must be positive, not \(rank)") }
        guard alpha.isFinite, alphaPattern.allSatisfy({ $0.1.isFinite }) else { throw fail("lora_alpha must be finite") }
        guard rankPattern.allSatisfy({ $0.1 > 0 }) else { throw fail("rank_pattern ranks must be positive") }
        func number(_ x: Double) -> JSONValue { x.rounded() == x && abs(x) < 1e15 ? .int(Int64(x)) : .double(x) }
        guard [.f32, .f16, .bf16].contains(dtype) else { throw fail("adapter tensors can be F32, F16 or BF16, not \(dtype.rawValue)") }
        guard !modules.isEmpty, !targetModules.isEmpty else { throw fail("nothing to write: no modules or no target_modules") }
        let matcher = ModuleMatcher(names: targetModules)
        let rankTable = try PatternTable(rankPattern.map { ($0, Double($1)) }, field: "rank_pattern", source: folder)
        var budget = PythonRegex.maxMatchSteps
        var entries: [SafetensorsEntry] = []
        var seen = Set<String>()
        for m in modules {
            guard m.name.hasSuffix(".weight") else { throw fail("\(m.name) is not a weight name (….weight)") }
            let key = String(m.name.dropLast(".weight".count))
            guard seen.insert(key).inserted else { throw fail("\(m.name) is given twice") }
            guard try matcher.matches(key, budget: &budget) else { throw fail("\(key) is not selected by target_modules \(targetModules)") }
            let r = try rankTable.value(for: key, budget: &budget).map(Int.init) ?? rank
            guard !m.a.isEmpty, !m.b.isEmpty, m.a.count % r == 0, m.b.count % r == 0 else {
                throw fail("\(m.name): A has \(m.a.count) and B \(m.b.count) values, not multiples of r = \(r)")
            }
            guard m.a.allSatisfy(\.isFinite), m.b.allSatisfy(\.isFinite) else { throw fail("\(m.name): A or B holds NaN or infinite values") }
            entries.append(.floats(prefix + key + ".lora_A.weight", shape: [r, m.a.count / r], as: dtype, m.a))
            entries.append(.floats(prefix + key + ".lora_B.weight", shape: [m.b.count / r, r], as: dtype, m.b))
        }
        // The fields of peft 0.21's LoraConfig that matter for loading; the rest take their defaults.
        let config = JSONValue.object(JSONObject([
            ("peft_type", .string("LORA")),
            ("task_type", .string("CAUSAL_LM")),
            ("base_model_name_or_path", baseModel.map(JSONValue.string) ?? .null),
            ("r", .int(Int64(rank))),
            ("lora_alpha", number(alpha)),
            ("use_rslora", .bool(useRSLoRA)),
            ("target_modules", .array(targetModules.map(JSONValue.string))),
            ("rank_pattern", .object(JSONObject(rankPattern.map { ($0, .int(Int64($1))) }))),
            ("alpha_pattern", .object(JSONObject(alphaPattern.map { ($0, number($1)) }))),
            ("lora_dropout", .double(0)),
            ("bias", .string("none")),
            ("fan_in_fan_out", .bool(false)),
            ("modules_to_save", .null),
            ("init_lora_weights", .bool(true)),
            ("use_dora", .bool(false)),
            ("inference_mode", .bool(true)),
        ]))
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        try SafetensorsWriter.write(entries, metadata: ["format": "pt"], to: folder + "/" + weightsFileName)
        try writeAtomically(Data((config.pretty(indent: 2, sortKeys: true) + "\n").utf8), to: folder + "/" + configFileName)
    }
}

extension ModuleMatcher {
    init(names: [String]) { self.names = names }
}
