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
}
