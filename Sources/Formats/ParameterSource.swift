import Tensor
/// Anything that can hand out a named parameter as fp32 in HF layout (GGUF file,
/// safetensors folder, …). Shapes are checked by the loader.
public protocol ParameterSource {
    var path: String { get }
    func contains(_ hfName: String) -> Bool
    /// The parameter's shape in HF order ([out, in]).
    func shape(_ hfName: String) throws -> [Int]
    /// Fills `into` (count = product of shape) with the parameter in HF layout.
    func read(_ hfName: String, into: UnsafeMutablePointer<Float>, count: Int) throws
    /// Drops the parameter's memory-mapped pages from this process (they stay in the page
    /// cache): a pass that reads a large model tensor by tensor then keeps only what it is
    /// reading resident. The next read maps them again.
    func releasePages(_ hfName: String)
}

extension ParameterSource {
    public func releasePages(_ hfName: String) {}
}

extension GGUFFile: ParameterSource {
    /// GGUF name for an HF parameter name (nil if it has none).
    public func ggufName(_ hfName: String) -> String? {
        let family = (try? string("general.architecture")).flatMap(ArchitectureTraits.hfName(forGGUF:)) ?? "llama"
        return TensorNames.gguf(fromHF: hfName, architecture: family)
    }

    public func contains(_ hfName: String) -> Bool { ggufName(hfName).flatMap(tensor) != nil }

    func info(_ hfName: String) throws -> GGUFTensorInfo {
        guard let g = ggufName(hfName), let t = tensor(g) else { throw FormatError(path, "missing tensor \(hfName)") }
        return t
    }

    public func shape(_ hfName: String) throws -> [Int] { Array(try info(hfName).shape.reversed()) }

    public func releasePages(_ hfName: String) {
        if let t = try? info(hfName) { file.releasePages(bytes(t), count: t.byteCount) }
    }

    /// Dequantises to fp32; for llama-family files undoes llama.cpp's Q/K row permutation, and
    /// for Gemma files its `1 + w` norm weights (convert_hf_to_gguf.py adds 1), so that every
    /// tensor comes out as in the HF checkpoint.
    public func read(_ hfName: String, into dst: UnsafeMutablePointer<Float>, count: Int) throws {
        let t = try info(hfName)
        guard t.elementCount == count else { throw FormatError(path, "tensor \(hfName): \(t.elementCount) elements, expected \(count)") }
        do { try dequantize(t.type, bytes(t), count: count, into: dst) }
        catch { throw FormatError(path, "tensor \(t.name): \(error)") }
        if let heads = try qkPermutationHeads(hfName) {
            try unpermuteQKRows(dst, rows: t.shape.count == 1 ? count : t.rows, columns: t.shape.count == 1 ? 1 : t.columns,
                                heads: heads, source: path)
        }
        if hfName.hasSuffix("norm.weight"), let arch = try? string("general.architecture"),
           let family = ArchitectureTraits.hfName(forGGUF: arch), ArchitectureTraits.table[family]?.gemmaStyle == true {
            for i in 0..<count { dst[i] -= 1 }
        }
    }

    /// For a tensor this file stores with llama.cpp's Q/K row permutation (q_proj/k_proj
    /// weights and biases of llama-family architectures), the number of heads it permutes
    /// over; nil for every other tensor.
    public func qkPermutationHeads(_ hfName: String) throws -> Int? {
        let arch = try string("general.architecture")
        guard let hf = ArchitectureTraits.hfName(forGGUF: arch), ArchitectureTraits.table[hf]?.permutesQK == true else { return nil }
        if hfName.hasSuffix("self_attn.q_proj.weight") || hfName.hasSuffix("self_attn.q_proj.bias") {
            return try int("\(arch).attention.head_count")
        }
        if hfName.hasSuffix("self_attn.k_proj.weight") || hfName.hasSuffix("self_attn.k_proj.bias") {
            return try optionalInt("\(arch).attention.head_count_kv") ?? (try int("\(arch).attention.head_count"))
        }
        return nil
    }
}
