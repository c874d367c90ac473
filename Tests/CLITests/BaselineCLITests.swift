import Foundation
import Testing
import Formats
import Tensor
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

    /// Safe LoRA with a made-up base (SmolLM2 with 40 weights of each adapted tensor moved):
    /// with threshold 1.01 every update is projected, B' = V·(Vᵀ·B)/‖V‖; with −1.01 none is.
    @Test func safeLoRAProjectsOntoTheAlignmentSubspace() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("realign-safelora-cli-\(getpid())").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let u = try AdapterCLITests.writeAdapter(dir + "/u"), smol = try GGUFFile(path: RealModels.smol)
        // The base: a patch moving 40 weights of every adapted tensor, applied to SmolLM2.
        var rng = SplitMix64(seed: 9)
        var entries: [SafetensorsEntry] = [], shapes: [String] = []
        for name in u.weightNames {
            let shape = try smol.shape(name), n = shape[0] * shape[1]
            let idx = Array(Set((0..<40).map { _ in Int64(rng.next() % UInt64(n)) })).sorted()
            entries.append(.raw(name + "/indices", dtype: .i64, shape: [idx.count], bytes: idx.flatMap { i in withUnsafeBytes(of: i.littleEndian) { Array($0) } }))
            entries.append(.floats(name + "/values", shape: [idx.count], as: .f32, idx.map { _ in rng.nextUnit() - 0.5 }))
            shapes.append("\"\(name)\":[\(shape[0]),\(shape[1])]")
        }
        try SafetensorsWriter.write(entries, metadata: ["format": "realign-patch", "version": "1", "shapes": "{" + shapes.joined(separator: ",") + "}"],
                                    to: dir + "/base.patch")
        #expect(try CLI.run(["apply-patch", RealModels.smol, dir + "/base.patch", "--out", dir + "/base.gguf"]).status == 0)

        let tensor = "model.layers.1.self_attn.v_proj.weight", m = try #require(u.modules[tensor])
        let out = m.outFeatures, inF = m.inFeatures, r = m.rank
        func values(_ path: String) throws -> [Float] {
            var x = [Float](repeating: 0, count: out * inF)
            try GGUFFile(path: path).read(tensor, into: &x, count: x.count)
            return x
        }
        let w = try values(RealModels.smol), v = zip(w, try values(dir + "/base.gguf")).map { Double($0) - Double($1) }
        let vNorm = v.reduce(0) { $0 + $1 * $1 }.squareRoot()
        // B' = V·(Vᵀ·B)/‖V‖, in Double.
        var vtb = [Double](repeating: 0, count: inF * r)
        for o in 0..<out { for c in 0..<inF where v[o * inF + c] != 0 { for k in 0..<r { vtb[c * r + k] += v[o * inF + c] * Double(m.b[o * r + k]) } } }
        var bp = [Double](repeating: 0, count: out * r)
        for o in 0..<out { for c in 0..<inF where v[o * inF + c] != 0 { for k in 0..<r { bp[o * r + k] += v[o * inF + c] * vtb[c * r + k] / vNorm } } }
        func merged(_ b: (Int, Int) -> Double) -> [Float] {
            (0..<out * inF).map { e in
                let o = e / inF, c = e % inF
                var d = 0.0
                for k in 0..<r { d += b(o, k) * Double(m.a[k * inF + c]) }
                return Float(Double(w[e]) + Double(m.scale) * d)
            }
        }
        for (threshold, projected, want) in [("1.01", 6, merged { bp[$0 * r + $1] }), ("-1.01", 0, merged { Double(m.b[$0 * r + $1]) })] {
            let j = try CLI.json(["baseline", "safe-lora", "--aligned", RealModels.smol, "--finetuned", RealModels.smol, "--adapter", dir + "/u",
                                  "--base", dir + "/base.gguf", "--threshold", threshold, "--out", dir + "/s\(projected).gguf", "--json"])
            #expect(j["projected"] as? Int == projected)
            let got = try values(dir + "/s\(projected).gguf")
            let worst = zip(got, want).map { abs($0 - $1) }.max()!
            #expect(worst < 1e-5, "threshold \(threshold): worst error \(worst)")
        }
        let same = try CLI.run(["baseline", "safe-lora", "--aligned", RealModels.smol, "--finetuned", RealModels.smol, "--adapter", dir + "/u",
                                "--base", RealModels.smol, "--out", dir + "/x.gguf"])
        #expect(same.status != 0 && same.stderr.contains("no alignment subspace"), "\(same.stderr)")
        let noAdapter = try CLI.run(["baseline", "safe-lora", "--aligned", RealModels.smol, "--finetuned", RealModels.smol,
                                     "--base", dir + "/base.gguf", "--out", dir + "/x.gguf"])
        #expect(noAdapter.status != 0 && noAdapter.stderr.contains("safe-lora needs --adapter"), "\(noAdapter.stderr)")
    }
}
