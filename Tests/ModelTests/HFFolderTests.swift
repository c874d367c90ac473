import Foundation
import Testing
@testable import Model
import Formats
import TestSupport

/// An HF folder (config.json + sharded safetensors + tokenizer files) holding SmolLM2's
/// weights gives the same model as the GGUF: identical logits in F32, close in BF16.
@Suite struct HFFolderTests {
    static func makeFolder(dtype: SafetensorsDType, tag: String) throws -> String {
        let g = try GGUFFile(path: RealModels.smol)
        let config = try g.modelConfig()
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("realign-hf-\(tag)-\(dtype.rawValue)-\(getpid())").path
        try? FileManager.default.removeItem(atPath: dir)
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let entries = try TensorNames.hfNames(for: config).filter { g.contains($0) }.map { name in
            SafetensorsEntry.floats(name, shape: try g.shape(name), as: dtype) { dst in
                try g.read(name, into: dst, count: try g.shape(name).reduce(1, *))
            }
        }
        _ = try SafetensorsWriter.writeModel(entries, folder: dir, maxShardBytes: 150_000_000)   // several shards
        try config.writeHFConfig(to: dir + "/config.json")
        let tok = fixturesDir().replacingOccurrences(of: "ModelTests", with: "TokenizerTests") + "/smollm2-digits"
        for f in ["tokenizer.json", "tokenizer_config.json"] { try FileManager.default.copyItem(atPath: tok + "/" + f, toPath: dir + "/" + f) }
        try Data(#"{"eos_token_id": 2}"#.utf8).write(to: URL(fileURLWithPath: dir + "/generation_config.json"))
        return dir
    }

    @Test(arguments: [SafetensorsDType.f32, .bf16])
    func sameLogitsAsGGUF(_ dtype: SafetensorsDType) throws {
        let dir = try HFFolderTests.makeFolder(dtype: dtype, tag: "logits")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir).contains("model.safetensors.index.json"))   // sharded
        let hf = try LanguageModel.load(dir)
        let gguf = try LanguageModel.load(RealModels.smol)
        gguf.decoder.dropQuantized()   // the same (BLAS) arithmetic on both sides
        #expect(hf.config == gguf.config)
        #expect(hf.chat.stopTokens.contains(2))
        let ids = [1, 9690, 198, 2683, 314, 253, 5356, 11173, 2]
        let a = hf.decoder.forward(tokens: [ids], sequences: [0], cache: KVCache(config: hf.config, capacities: [ids.count]))
        let b = gguf.decoder.forward(tokens: [ids], sequences: [0], cache: KVCache(config: gguf.config, capacities: [ids.count]))
        if dtype == .f32 {
            let same = a == b   // (not inside #expect: a failure would print every logit)
            #expect(same)
        } else {
            let err = a.withUnsafeBufferPointer { x in b.withUnsafeBufferPointer { vectorRelativeError(x.baseAddress!, $0.baseAddress!, count: a.count) } }
            #expect(err < 0.05 && err > 0, "bf16 rounding changes the logits a little: \(err)")
        }
    }

    /// A FIFO in place of any of the folder's text files: loading returns at once with an
    /// error naming it (opening it would wait for a writer forever).
    @Test(arguments: ["tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "generation_config.json"])
    func fifoInTheFolderIsAClearError(_ name: String) throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("realign-hf-fifo-\(getpid())-\(name)").path
        try? FileManager.default.removeItem(atPath: dir)
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let tok = fixturesDir().replacingOccurrences(of: "ModelTests", with: "TokenizerTests") + "/smollm2-digits"
        for f in ["tokenizer.json", "tokenizer_config.json"] where f != name {
            try FileManager.default.copyItem(atPath: tok + "/" + f, toPath: dir + "/" + f)
        }
        let fifo = dir + "/" + name
        #expect(mkfifo(fifo, 0o600) == 0)
        guard let result = within(seconds: 10, { try ChatFormat(hfFolder: dir, vocabSize: 49152, contextLength: 8192) }) else {
            Issue.record("\(name): still blocked after 10 s")
            let fd = open(fifo, O_WRONLY | O_NONBLOCK)
            if fd >= 0 { close(fd) }
            return
        }
        #expect(throws: FormatError(fifo, "a FIFO, not a regular file")) { _ = try result.get() }
    }

    @Test func missingAndMismatchedTensorsAreClearErrors() throws {
        let dir = try HFFolderTests.makeFolder(dtype: .f32, tag: "errors")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        // A config that says 31 layers: layer 30's tensors are missing.
        var c = try ModelConfig(hfConfigAt: dir + "/config.json")
        c.numLayers = 31
        try c.writeHFConfig(to: dir + "/config.json")
        #expect(throws: FormatError(dir, "missing tensor model.layers.30.input_layernorm.weight")) { _ = try LanguageModel.load(dir) }
        c.numLayers = 30
        c.intermediateSize = 1024
        try c.writeHFConfig(to: dir + "/config.json")
        #expect(throws: FormatError(dir, "tensor model.layers.0.mlp.gate_proj.weight has shape [1536, 576], expected [1024, 576] for this config")) {
            _ = try LanguageModel.load(dir)
        }
    }
}
