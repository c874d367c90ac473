import Foundation
import Testing
import TestSupport

/// Outputs that cannot be written, or would overwrite an input, end the command at once with
/// one line naming the path, before any model is read.
@Suite struct OutputPathCLITests {
    @Test(arguments: [
        (["recover", "--aligned", RealModels.smol, "--finetuned", RealModels.smol, "--out", RealModels.smol], "is the input"),
        (["recover", "--aligned", RealModels.smol, "--finetuned", "/tmp/f.gguf", "--out", ""], "the output path is empty"),
        (["recover", "--aligned", RealModels.smol, "--finetuned", "/tmp/f.gguf", "--out", "/etc/hostname/out.gguf"], "/etc/hostname is a file, not a folder"),
        (["recover", "--aligned", RealModels.smol, "--finetuned", "/tmp/f.gguf", "--out", "/tmp"], "is an existing folder"),
        (["recover", "--aligned", RealModels.smol, "--finetuned", RealModels.smol, "--out", "/tmp/x.gguf", "--rounds", "1000000000000"], "--rounds must be in 1...1000000"),
        (["apply-patch", RealModels.smol, "/tmp/p.safetensors", "--out", RealModels.smol], "is the input"),
        (["generate", RealModels.smol, "--prompts", "/etc/hostname", "--out", "/etc/hostname"], "is the input /etc/hostname"),
        (["eval", RealModels.smol, "--outputs", RealModels.smol], "the output (--outputs) is the input"),
        (["direction", RealModels.smol, "--out", "/tmp"], "is an existing folder"),
        (["finetune", RealModels.smol, "--data", "/etc/hostname", "--out", "/etc/hostname"], "exists and is not a folder"),
        (["finetune", RealModels.smol, "--data", "/etc/hostname", "--out", "/etc"], "would hold the input /etc/hostname"),
        (["judge", "/etc/hostname", "--out", "/etc/hostname"], "is the input"),
    ])
    func refused(args: [String], expected: String) throws {
        let r = try CLI.run(args)
        #expect(r.status != 0)
        #expect(r.stderr.contains(expected), "\(args): \(r.stderr)")
        #expect(r.stderr.split(separator: "\n").count <= 3, "\(r.stderr)")   // the error, and at most the usage hint
    }

    /// A demo folder whose finished-stage file was truncated (say, by a full disk) names it.
    @Test func corruptDemoStageFileNamesIt() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("realign-demo-corrupt-\(getpid())").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try FileManager.default.createDirectory(atPath: dir + "/aligned", withIntermediateDirectories: true)
        try Data("{\"result\": {\"stage\": ".utf8).write(to: URL(fileURLWithPath: dir + "/aligned/eval.json"))
        let r = try CLI.run(["demo", "--model", RealModels.smol, "--quick", "--no-refusal-check", "--out", dir], timeout: 300)
        #expect(r.status == 1)
        #expect(r.stderr.contains("Error: \(dir)/aligned/eval.json: not a valid stage result: "), "\(r.stderr)")
    }
}
