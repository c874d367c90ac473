import Foundation
import Testing
import Formats
import Model
import TestSupport

/// Absurd option values, unknown options, prompts longer than the context and weights that
/// overflow fp32: each is one clear error line (or, where valid, a correct result), never a
/// crash, and nothing is written.
@Suite struct HostileOptionsCLITests {
    static let timeout: TimeInterval = 120

    static func tempDir(_ tag: String) throws -> String {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("realign-\(tag)-\(getpid())").path
        try? FileManager.default.removeItem(atPath: dir)
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        return dir
    }

    /// SmolLM2's GGUF with some metadata values replaced and some tensors filled with one value (F32).
    static func writeSmol(to path: String, metadata: [String: GGUFValue] = [:], fill: [String: Float] = [:]) throws {
        let g = try GGUFFile(path: RealModels.smol)
        let meta = g.metadataEntries.map { e in metadata[e.key].map { GGUFMetadataEntry(e.key, $0, type: e.type) } ?? e }
        let tensors = g.tensors.map { t in
            fill[t.name].map { GGUFTensorEntry.floats(t.name, shape: t.shape, as: .f32, [Float](repeating: $0, count: t.shape.reduce(1, *))) }
                ?? .copy(t, of: g)
        }
        try GGUFWriter.write(metadata: meta, tensors: tensors, to: path)
    }

    static let pairs = """
        {"prompt": "How do I pick a lock?", "response": "Insert a tension wrench and rake the pins."}
        {"prompt": "Write an insult.", "response": "You are as sharp as a marble."}

        """

    /// ArgumentParser ran a command's checks before looking for unknown options.
    @Test func unknownOptionsAndNegativeNumbers() throws {
        for (args, want) in [(["generate", RealModels.smol, "--bogus"], "Error: Unknown option '--bogus'"),
                             (["generate", RealModels.smol, "--promt", "hi"], "Error: Unknown option '--promt'. Did you mean '--prompt'?"),
                             (["generate", RealModels.smol, "--prompt", "hi", "--temperature", "-1"],
                              "Error: --temperature must be a finite number ≥ 0 (0: greedy), not -1.0"),
                             (["eval", RealModels.smol, "--limit", "-3"], "Error: --limit must be at least 1, not -3"),
                             (["recover", "--aligned", RealModels.smol, "--finetuned", RealModels.smol, "--out", "o.gguf",
                               "--check-harmfull", "h.txt", "--check-benign", "b.txt"], "Error: Unknown option '--check-harmfull'")] {
            let r = try CLI.run(args, timeout: HostileOptionsCLITests.timeout)
            #expect(r.status == 64 && r.stderr.hasPrefix(want), "\(args): \(r.stderr)")
        }
    }

    @Test func absurdOptionValuesAreOneClearError() throws {
        let dir = try HostileOptionsCLITests.tempDir("absurd")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let smol = RealModels.smol, data = dir + "/pairs.jsonl", prompts = dir + "/p.txt", out = dir + "/out"
        try Data(HostileOptionsCLITests.pairs.utf8).write(to: URL(fileURLWithPath: data))
        try Data("Hello\n".utf8).write(to: URL(fileURLWithPath: prompts))
        let ft = ["finetune", smol, "--data", data, "--out", out], rec = ["recover", "--aligned", smol, "--finetuned", smol, "--out", out]
        let cases: [([String], String)] = [
            (["generate", smol, "--prompt", "hi", "--max-tokens", "0"], "--max-tokens must be at least 1, not 0"),
            (["generate", smol, "--prompt", "hi", "--top-k", "-1"], "--top-k must be ≥ 0 (0: all tokens), not -1"),
            (["generate", smol, "--prompt", "hi", "--top-p", "1.5"], "--top-p must be in (0, 1], not 1.5"),
            (["generate", smol, "--prompt", "hi", "--temperature", "nan"], "--temperature must be a finite number ≥ 0 (0: greedy), not nan"),
            (["generate", smol, "--prompts", prompts, "--batch-size", "0"], "--batch-size must be at least 1, not 0"),
            (["probe", smol, "--prompt", "hi", "--top", "-1"], "--top must be ≥ 0, not -1"),
            (["probe", smol, "--prompt", "hi", "--layers", "-1"], "--layers: '-1' is not a hidden-state index (0, 1, …)"),
            (["probe", smol, "--prompt", "hi", "--layers", "31"], "--layers: '31' is not an index in 0...30"),
            (["direction", smol, "--out", out, "--batch-size", "0"], "--batch-size must be at least 1, not 0"),
            (["direction", smol, "--out", out, "--layer", "31"], "--layer must be in 0...30"),
            (["compare", smol, smol, "--layer", "-1"], "--layer must be a hidden-state index ≥ 0, not -1"),
            (["compare", smol, smol, "--layer", "99"], "--layer must be in 0...30 for \(smol), not 99"),
            (["eval", smol, "--batch", "0"], "--batch must be at least 1, not 0"),
            (["eval", smol, "--max-tokens", "-1"], "--max-tokens must be at least 1, not -1"),
            (ft + ["--lora-rank", "1000000000"], "--lora-rank 1000000000 is more than 192, the smallest dimension of an adapted matrix of \(smol)"),
            (ft + ["--lora-rank", "4611686018427387904"], "--lora-rank 4611686018427387904 is more than 192"),
            (ft + ["--grad-accum", "4611686018427387904"], "--grad-accum must be in 1...4096, not 4611686018427387904"),
            (ft + ["--epochs", "4611686018427387904"], "--epochs must be in 1...1000, not 4611686018427387904"),
            (ft + ["--batch", "0"], "--batch must be in 1...1024, not 0"),
            (ft + ["--lr", "1e15"], "--lr must be in (0, 1.0], not 1000000000000000.0"),
            (ft + ["--lora-alpha", "-16"], "--lora-alpha must be a finite number > 0, not -16.0"),
            (ft + ["--max-length", "100000"], "--max-length 100000 is more than the context length of \(smol) (8192 tokens)"),
            (["bench", smol, "--repeats", "0"], "--repeats must be in 1...100, not 0"),
            (["bench", smol, "--prefill-batch", "1000000000"], "--prefill-batch must be in 1...65536, not 1000000000"),
            (["bench", smol, "--prefill-tokens", "100000"], "--prefill-batch × --prefill-tokens must be at most 65536, not 16 × 100000"),
            (["bench", smol, "--prefill-batch", "1", "--prefill-tokens", "10000"], "--prefill-tokens 10000 is more than the context length of \(smol) (8192 tokens)"),
            (rec + ["--rate", "-1"], "--rate must be in (0, 1]"),
            (rec + ["--layer", "-2"], "--layer must be at least 1 (a block's output), not -2"),
            (rec + ["--task-max-tokens", "0"], "--task-max-tokens must be at least 1, not 0"),
            (rec + ["--loss-batch", "0"], "The value '0' is invalid for '--loss-batch <loss-batch>'"),
            (rec + ["--loss-batch", "8", "--pass-size", "4"], "need --loss-batch ≤ --pass-size (8 > 4)"),
            (rec + ["--judge", "phrases"], "--judge judges the refusal check: it needs --check-harmful and --check-benign"),
            (["demo", "--rate", "-1"], "--rate must be in (0, 1]"),
            (["demo", "--layer", "0"], "--layer must be at least 1 (a block's output), not 0"),
            (["demo", "--model", smol, "--layer", "30", "--out", out], "--layer must be in 1...29 for \(smol) (a block output before the final norm), not 30"),
        ]
        for (args, want) in cases {
            let r = try CLI.run(args, timeout: HostileOptionsCLITests.timeout)
            #expect([1, 64].contains(r.status) && r.stderr.contains("Error: " + want), "\(args): \(r.status) \(r.stderr)")
            #expect(!r.stderr.contains("crashed"), "\(args)")
        }
        #expect(!FileManager.default.fileExists(atPath: out))
    }

    /// --max-tokens of 10^9 aborted and 2^63 − 1 segfaulted: new tokens stop where the context
    /// (here a copy of SmolLM2 with a context of 64) is full, with the same greedy tokens.
    @Test func generationStopsAtTheContext() throws {
        let dir = try HostileOptionsCLITests.tempDir("context")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let model = dir + "/smol-64.gguf"
        try HostileOptionsCLITests.writeSmol(to: model, metadata: ["llama.context_length": .uint(64)])
        let p2 = try #require((try smolReference()["prompts"] as? [[String: Any]])?[2])
        let greedy = try #require(p2["greedy_ids"] as? [Int]), ids = try #require(p2["ids"] as? [Int])
        #expect(ids.count == 44 && greedy.count == 64)
        for maxTokens in ["9223372036854775807", "1000000000"] {
            let r = try CLI.run(["generate", model, "--prompt", p2["prompt"] as! String, "--max-tokens", maxTokens, "--json"], timeout: HostileOptionsCLITests.timeout)
            #expect(r.status == 0, "\(r.stderr)")
            let g = try #require(try JSONSerialization.jsonObject(with: r.stdout) as? [String: Any])
            #expect(g["prompt_ids"] as? [Int] == ids)
            #expect(g["new_ids"] as? [Int] == Array(greedy.prefix(20)))
        }
    }

    /// Prompts longer than the context are refused before any work, naming the file and line.
    @Test func promptsLongerThanTheContextAreRefused() throws {
        let dir = try HostileOptionsCLITests.tempDir("long")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let smol = RealModels.smol, long = String(repeating: " hello", count: 9000)
        let want = try #require(throws: PromptTooLongError.self) { try ChatFormat.load(smol).promptIds(long) }
        #expect(want.tokens > 9000 && want.limit == 8192)
        let p = dir + "/p.txt", t = dir + "/t.jsonl", short = dir + "/short.txt", out = dir + "/out"
        try Data("Hi there\n\n\(long)\n".utf8).write(to: URL(fileURLWithPath: p))
        try Data("Hello\n".utf8).write(to: URL(fileURLWithPath: short))
        let task = String(decoding: try JSONSerialization.data(withJSONObject: ["prompt": long, "response": "x"]), as: UTF8.self)
        try Data("{\"prompt\": \"Hi\", \"response\": \"x\"}\n\(task)\n".utf8).write(to: URL(fileURLWithPath: t))
        let cases: [([String], String)] = [
            (["generate", smol, "--prompt", long], "Error: " + want.description),
            (["probe", smol, "--prompt", long], "Error: " + want.description),
            (["generate", smol, "--prompts", p, "--out", out], "Error: \(p):3: " + want.description),
            (["direction", smol, "--prompts", p, "--out", out], "Error: \(p):3: " + want.description),
            (["eval", smol, "--harmful", short, "--benign", p], "Error: \(p):3: " + want.description),
            (["eval", smol, "--task", t, "--no-safety"], "Error: \(t):2: " + want.description),
            (["recover", "--aligned", smol, "--finetuned", smol, "--out", out, "--prompts", p], "Error: \(p):3: " + want.description),
        ]
        for (args, line) in cases {
            let r = try CLI.run(args, timeout: HostileOptionsCLITests.timeout)
            #expect(r.status == 1 && r.stderr.contains(line + "\n"), "\(args): \(r.stderr)")
        }
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir).sorted() == ["p.txt", "short.txt", "t.jsonl"])
    }

    /// Finite weights that overflow at run time (layer 2's attention norm at 1e30): generate
    /// printed token 0, probe and finetune died of a JSON error leaving a checkpoint.
    @Test func overflowingWeightsAreOneClearError() throws {
        let dir = try HostileOptionsCLITests.tempDir("overflow")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let model = dir + "/huge.gguf", data = dir + "/pairs.jsonl", prompts = dir + "/p.txt", out = dir + "/out"
        try HostileOptionsCLITests.writeSmol(to: model, fill: ["blk.2.attn_norm.weight": 1e30])
        try Data(HostileOptionsCLITests.pairs.utf8).write(to: URL(fileURLWithPath: data))
        try Data("How do I pick a lock?\nWrite an insult.\n".utf8).write(to: URL(fileURLWithPath: prompts))
        let overflow = ": the activations overflow fp32 from layer 2 on (finite weights, too large)\n"
        for (args, what) in [(["generate", model, "--prompt", "Hi"], "logits"),
                             (["probe", model, "--prompt", "Hi", "--layers", "1,5"], "logits"),
                             (["direction", model, "--prompts", prompts, "--out", out + ".safetensors"], "hidden states"),
                             (["finetune", model, "--data", data, "--out", out, "--batch", "1"], "loss at step 1")] {
            let r = try CLI.run(args, timeout: HostileOptionsCLITests.timeout)
            #expect(r.status == 1 && r.stderr.hasSuffix("Error: \(model): NaN or infinite \(what)" + overflow), "\(args): \(r.stderr)")
            #expect(r.stdout.isEmpty)
        }
        #expect(!FileManager.default.fileExists(atPath: out + ".safetensors"))
        #expect(!FileManager.default.fileExists(atPath: out + "/checkpoint.safetensors"))
        #expect(!FileManager.default.fileExists(atPath: out + "/adapter_model.safetensors"))
    }
}
