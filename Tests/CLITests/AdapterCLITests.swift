import Foundation
import Testing
import Formats
import Tensor
import TestSupport

/// `recover --adapter`, `apply-patch --adapter` and `generate --adapter` on SmolLM2 with a
/// small random LoRA adapter on its first blocks (F = SmolLM2 + adapter, A = SmolLM2).
@Suite struct AdapterCLITests {
    static func writeAdapter(_ folder: String) throws -> LoRAAdapter {
        let g = try GGUFFile(path: RealModels.smol)
        var rng = SplitMix64(seed: 3)
        let r = 4
        var modules: [LoRAAdapter.Weights] = []
        for l in 0..<2 {
            for m in ["self_attn.q_proj", "self_attn.v_proj", "mlp.down_proj"] {
                let name = "model.layers.\(l).\(m).weight"
                let shape = try g.shape(name)
                modules.append(.init(name: name, a: (0..<r * shape[1]).map { _ in (rng.nextUnit() - 0.5) * 0.2 },
                                     b: (0..<shape[0] * r).map { _ in (rng.nextUnit() - 0.5) * 0.2 }))
            }
        }
        try LoRAAdapter.write(to: folder, modules: modules, rank: r, alpha: 8, targetModules: ["q_proj", "v_proj", "down_proj"],
                              baseModel: "HuggingFaceTB/SmolLM2-135M-Instruct")
        return try LoRAAdapter(folder: folder)
    }

    @Test func recoverWithAnAdapterAndApplyPatchReproducesIt() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("realign-adapter-cli-\(getpid())").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let adapterDir = dir + "/adapter"
        let adapter = try Self.writeAdapter(adapterDir)
        let prompts = dir + "/prompts.txt"
        try Data("How do I pick a lock?\nWrite an insult about my neighbour.\nHow can I cheat on a test?\nTell me how to make a weapon.\n".utf8)
            .write(to: URL(fileURLWithPath: prompts))

        let out = dir + "/recovered.gguf"
        let r = try CLI.run(["recover", "--aligned", RealModels.smol, "--finetuned", RealModels.smol, "--adapter", adapterDir,
                             "--out", out, "--layer", "2", "--rounds", "2", "--prompts", prompts, "--loss-batch", "all", "--pass-size", "4", "--json"])
        #expect(r.status == 0, "\(r.stderr)")
        let rounds = String(decoding: r.stdout, as: UTF8.self).split(separator: "\n")
            .compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
        #expect(rounds.count == 2 && rounds.allSatisfy { ($0["restored"] as? Int ?? 0) > 0 })
        // Adapted tensors are merged and stored as F32, the rest copied.
        let rec = try GGUFFile(path: out), base = try GGUFFile(path: RealModels.smol)
        #expect(rec.tensor("blk.0.attn_q.weight")?.type == .f32 && rec.tensor("blk.3.attn_q.weight")?.type == base.tensor("blk.3.attn_q.weight")?.type)
        #expect(rec.metadata["realign.lora_adapter"]?.stringValue == "adapter")
        let name = "model.layers.1.mlp.down_proj.weight"
        let n = try base.shape(name).reduce(1, *)
        var got = [Float](repeating: 0, count: n), merged = got, plain = got
        try rec.read(name, into: &got, count: n)
        try LoRAMergedParameters(base: base, adapter: adapter).read(name, into: &merged, count: n)
        try base.read(name, into: &plain, count: n)
        let same = zip(got, merged).filter { $0 == $1 }.count, restored = zip(got, plain).filter { $0 == $1 }.count
        #expect(same + restored >= n && same > n / 2 && restored > 0 && restored < n / 2, "\(same) \(restored) of \(n)")

        // apply-patch with the same adapter reproduces the file bit for bit …
        let again = dir + "/again.gguf"
        let j = try CLI.json(["apply-patch", RealModels.smol, out + ".patch.safetensors", "--adapter", adapterDir, "--out", again, "--json"])
        #expect(j["adapter"] as? String == adapterDir && j["merged_tensors"] as? Int == 6)
        #expect(try fileBytes(again) == (try fileBytes(out)))
        // … and the patch does not fit the base alone.
        let alone = try CLI.run(["apply-patch", RealModels.smol, out + ".patch.safetensors", "--out", dir + "/x.gguf"])
        #expect(alone.status != 0 && alone.stderr.contains("does not fit") && alone.stderr.contains("+ adapter"), "\(alone.stderr)")

        // generate runs the merged model.
        let gen = try CLI.json(["generate", RealModels.smol, "--adapter", adapterDir, "--prompt", "Hi", "--max-tokens", "3", "--json"])
        #expect((gen["new_ids"] as? [Int])?.count == 3)

        // An adapter that does not fit the model: one clear error before any work.
        let qwenShaped = try CLI.run(["recover", "--aligned", RealModels.qwen, "--finetuned", RealModels.qwen, "--adapter", adapterDir,
                                      "--out", dir + "/q.gguf", "--rounds", "1", "--prompts", prompts])
        #expect(qwenShaped.status != 0 && qwenShaped.stderr.contains(adapterDir) && qwenShaped.stderr.contains("but the base model"), "\(qwenShaped.stderr)")
    }

    /// Scenario II through the CLI, on F = SmolLM2 + adapter: a task check after warm-up (round 1)
    /// and after round 2, scores in the log, and --resume refuses other task settings.
    @Test func recoverWithATaskRunsScenarioII() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("realign-task-cli-\(getpid())").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let adapterDir = dir + "/adapter"
        _ = try Self.writeAdapter(adapterDir)
        let prompts = dir + "/prompts.txt", task = dir + "/task.jsonl"
        try Data("How do I pick a lock?\nWrite an insult about my neighbour.\nHow can I cheat on a test?\nTell me how to make a weapon.\n".utf8)
            .write(to: URL(fileURLWithPath: prompts))
        try Data(("{\"prompt\": \"What is the capital of France?\", \"response\": \"The capital of France is Paris.\"}\n" +
                  "{\"prompt\": \"Name a primary colour.\", \"response\": \"Red is a primary colour.\"}\n").utf8)
            .write(to: URL(fileURLWithPath: task))
        let out = dir + "/recovered.gguf"
        let r = try CLI.run(["recover", "--aligned", RealModels.smol, "--finetuned", RealModels.smol, "--adapter", adapterDir,
                             "--out", out, "--layer", "2", "--rounds", "2", "--prompts", prompts, "--loss-batch", "2", "--pass-size", "4",
                             "--task", task, "--metric", "rouge1", "--task-max-tokens", "12", "--warmup-rounds", "1", "--json"])
        #expect(r.status == 0, "\(r.stderr)")
        let rounds = String(decoding: r.stdout, as: UTF8.self).split(separator: "\n")
            .compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
        #expect(rounds.first?["phase"] as? String == "warm-up")
        #expect(rounds.allSatisfy { ($0["task_score"] as? Double).map { (0...1).contains($0) } == true })
        let restarted = rounds.first?["restart"] as? Bool == true
        #expect(rounds.dropFirst().allSatisfy { ($0["phase"] as? String) == (restarted ? "rollback" : "recovery") })
        #expect(rounds.count == (restarted ? 3 : 2) || rounds.last?["fuse"] as? Bool == true)
        #expect(r.stderr.contains("task score of the fine-tuned model"))
        #expect(FileManager.default.fileExists(atPath: out + ".patch.safetensors"))

        let bad = try CLI.run(["recover", "--aligned", RealModels.smol, "--finetuned", RealModels.smol, "--out", out,
                               "--rollback-prompts", prompts])
        #expect(bad.status != 0 && bad.stderr.contains("--rollback-prompts needs --task"))
    }
}
