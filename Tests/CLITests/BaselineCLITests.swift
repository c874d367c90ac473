import Foundation
import Testing
import Formats
import TestSupport

/// `realign baseline` on SmolLM2 and a copy with four weights of one tensor changed
/// (`ApplyPatchCLITests.writePatch`: values 1.5, −2, 3.25, 0 at indices 0, 10, 1000, 884,735).
@Suite struct BaselineCLITests {
    @Test func restoresTheChosenWeightsAndRefusesBadOptions() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("realign-baseline-cli-\(getpid())").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let patch = dir + "/p.safetensors", finetuned = dir + "/f.gguf"
        try ApplyPatchCLITests().writePatch(patch)
        #expect(try CLI.run(["apply-patch", RealModels.smol, patch, "--out", finetuned]).status == 0)
        let tensor = ApplyPatchCLITests.tensor
        var aligned = [Float](repeating: 0, count: 1536 * 576)
        try GGUFFile(path: RealModels.smol).read(tensor, into: &aligned, count: aligned.count)
        func values(_ path: String) throws -> [Float] {
            var x = [Float](repeating: 0, count: aligned.count)
            try GGUFFile(path: path).read(tensor, into: &x, count: x.count)
            return x
        }
        let changed = try values(finetuned)

        // The two largest changes: |3.25 − a| at 1000 and |−2 − a| at 10 (aligned values are ~0.1).
        let j = try CLI.json(["baseline", "magnitude", "--aligned", RealModels.smol, "--finetuned", finetuned, "--out", dir + "/m.gguf",
                              "--count", "2", "--json"])
        #expect(j["restored"] as? Int == 2 && j["differing"] as? Int == 4 && j["layer"] as? Int == 20 && j["method"] as? String == "magnitude")
        var want = changed
        for i in [10, 1000] { want[i] = aligned[i] }
        #expect(try values(dir + "/m.gguf") == want)
        #expect(FileManager.default.fileExists(atPath: dir + "/m.gguf.patch.safetensors") && FileManager.default.fileExists(atPath: dir + "/m.gguf.summary.json"))

        // As many as a patch holds (4): every change is undone; reset-blocks does the same.
        _ = try CLI.json(["baseline", "random", "--aligned", RealModels.smol, "--finetuned", finetuned, "--out", dir + "/r.gguf", "--like", patch, "--json"])
        #expect(try values(dir + "/r.gguf") == aligned)
        let reset = try CLI.json(["baseline", "reset-blocks", "--aligned", RealModels.smol, "--finetuned", finetuned, "--out", dir + "/z.gguf",
                                  "--layer", "3", "--json"])
        #expect(reset["restored"] as? Int == 4 && reset["weights"] as? Int == 3 * 3_540_096)
        #expect(try values(dir + "/z.gguf") == aligned)

        // Bad options: one clear error each, before any work.
        for (args, message) in [(["--count", "2", "--like", patch], "exactly one of --like and --count"), ([], "exactly one of --like and --count"),
                                (["--count", "-1"], "--count"), (["--count", "2", "--layer", "30"], "--layer")] {
            let r = try CLI.run(["baseline", "magnitude", "--aligned", RealModels.smol, "--finetuned", finetuned, "--out", dir + "/bad.gguf"] + args)
            #expect(r.status != 0 && r.stderr.contains(message), "\(args): \(r.stderr)")
        }
        let same = try CLI.run(["baseline", "magnitude", "--aligned", RealModels.smol, "--finetuned", finetuned, "--out", finetuned, "--count", "1"])
        #expect(same.status != 0 && same.stderr.contains(finetuned), "\(same.stderr)")
        #expect(!FileManager.default.fileExists(atPath: dir + "/bad.gguf"))
    }

    /// RESTA with U = SmolLM2 + a rank-4 adapter (scale 2): the output is F − λ·2·B·A; with F =
    /// SmolLM2 + that same adapter and λ = 1 it is SmolLM2 again.
    @Test func restaAddsTheSafetyVector() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("realign-resta-cli-\(getpid())").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let u = try AdapterCLITests.writeAdapter(dir + "/u")
        let tensor = "model.layers.1.self_attn.v_proj.weight", m = try #require(u.modules[tensor])
        let n = m.outFeatures * m.inFeatures
        func values(_ path: String) throws -> [Float] {
            var x = [Float](repeating: 0, count: n)
            try GGUFFile(path: path).read(tensor, into: &x, count: n)
            return x
        }
        let aligned = try values(RealModels.smol)
        let j = try CLI.json(["baseline", "resta", "--aligned", RealModels.smol, "--finetuned", RealModels.smol, "--unaligned", dir + "/u",
                              "--lambda", "0.5", "--out", dir + "/r.gguf", "--json"])
        #expect(j["changed_tensors"] as? Int == 6 && j["lambda"] as? Double == 0.5)
        let got = try values(dir + "/r.gguf")
        var worst: Float = 0
        for o in 0..<m.outFeatures {
            for i in 0..<m.inFeatures {
                var delta = 0.0
                for k in 0..<m.rank { delta += Double(m.b[o * m.rank + k]) * Double(m.a[k * m.inFeatures + i]) }
                worst = max(worst, abs(got[o * m.inFeatures + i] - Float(Double(aligned[o * m.inFeatures + i]) - 0.5 * 2 * delta)))
            }
        }
        #expect(worst < 1e-6, "worst error \(worst)")
        #expect(try LoRAAdapter(folder: dir + "/r.gguf.safety-adapter").modules.count == 6)

        // F fine-tuned with U's own adapter, λ = 1: back to the aligned weights.
        _ = try CLI.json(["baseline", "resta", "--aligned", RealModels.smol, "--finetuned", RealModels.smol, "--adapter", dir + "/u",
                          "--unaligned", dir + "/u", "--lambda", "1", "--out", dir + "/back.gguf", "--json"])
        let back = try values(dir + "/back.gguf")
        #expect(zip(back, aligned).allSatisfy { abs($0 - $1) < 1e-6 })

        try FileManager.default.createDirectory(atPath: dir + "/empty", withIntermediateDirectories: true)
        for (args, message) in [(["--unaligned", dir + "/u", "--lambda", "0"], "--lambda must be in (0, 100], not 0.0"),
                                (["--unaligned", dir + "/empty"], "not a PEFT adapter folder")] {
            let r = try CLI.run(["baseline", "resta", "--aligned", RealModels.smol, "--finetuned", RealModels.smol, "--out", dir + "/bad.gguf"] + args)
            #expect(r.status != 0 && r.stderr.contains(message), "\(args): \(r.stderr)")
        }
        #expect(!FileManager.default.fileExists(atPath: dir + "/bad.gguf"))
    }
}
