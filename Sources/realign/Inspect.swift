import ArgumentParser
import Formats
import Model

struct Inspect: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Architecture, sizes, tensor types and counts, template presence.")

    @Argument(help: "GGUF file, HF folder or embedded model name.") var model: String
    @Flag(help: "Print JSON.") var json = false

    struct Report: Encodable {
        let path: String
        let format: String
        let gguf_version: Int?
        let config: ModelConfig
        let parameters: Int
        let tensor_count: Int
        let tensor_types: [String: Int]
        let bytes: Int
        let has_chat_template: Bool
        let tokenizer: [String: String]
    }

    func run() throws {
        let path = try ModelStore.resolve(model)
        let r = isDirectory(path) ? try hfReport(path) : try ggufReport(path)
        if json { try printJSON(r); return }
        let c = r.config
        print("""
        \(path)
          format        \(r.format)\(r.gguf_version.map { " v\($0)" } ?? ""), \(r.bytes) bytes
          architecture  \(c.architecture): \(c.numLayers) layers, hidden \(c.hiddenSize), \
        intermediate \(c.intermediateSize), heads \(c.numHeads)/\(c.numKVHeads) (kv), head dim \(c.headDim)
          vocabulary    \(c.vocabSize), \(c.tiedEmbeddings ? "tied" : "untied") output, QKV bias \(c.qkvBias ? "yes" : "no")
          rope theta    \(c.ropeTheta), rms eps \(c.rmsNormEps), context \(c.maxPositions)
          parameters    \(r.parameters)
          tensors       \(r.tensor_count): \(r.tensor_types.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", "))
          chat template \(r.has_chat_template ? "yes" : "no")
        """)
    }

    func ggufReport(_ path: String) throws -> Report {
        let g = try GGUFFile(path: path)
        var types: [String: Int] = [:]
        for t in g.tensors { types[t.type.name, default: 0] += 1 }
        var tok: [String: String] = [:]
        for k in ["tokenizer.ggml.model", "tokenizer.ggml.pre"] { tok[k] = g.metadata[k]?.stringValue }
        for k in ["tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id", "tokenizer.ggml.padding_token_id"] {
            tok[k] = g.metadata[k]?.intValue.map(String.init)
        }
        return Report(path: path, format: "gguf", gguf_version: Int(g.version), config: try g.modelConfig(),
                      parameters: g.tensors.reduce(0) { $0 + $1.elementCount }, tensor_count: g.tensors.count,
                      tensor_types: types, bytes: g.file.count,
                      has_chat_template: g.metadata["tokenizer.chat_template"] != nil, tokenizer: tok)
    }

    func hfReport(_ path: String) throws -> Report {
        let config = try ModelConfig(hfConfigAt: path + "/config.json")
        let st = try SafetensorsModel(folder: path)
        let tensors = st.files.flatMap(\.tensors)
        var types: [String: Int] = [:]
        for t in tensors { types[t.dtype.rawValue, default: 0] += 1 }
        let chat = try ChatFormat(hfFolder: path, vocabSize: config.vocabSize, contextLength: config.maxPositions)
        var tok: [String: String] = ["pre_tokenizer": chat.tokenizer.preTokenizer.rawValue]
        if let b = chat.tokenizer.bosId { tok["bos_token_id"] = String(b) }
        if let e = chat.tokenizer.eosId { tok["eos_token_id"] = String(e) }
        return Report(path: path, format: "safetensors", gguf_version: nil, config: config,
                      parameters: tensors.reduce(0) { $0 + $1.elementCount }, tensor_count: tensors.count,
                      tensor_types: types, bytes: st.files.reduce(0) { $0 + $1.file.count },
                      has_chat_template: chat.template != nil, tokenizer: tok)
    }
}
