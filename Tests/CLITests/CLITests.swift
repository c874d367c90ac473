import Foundation
import Testing
import TestSupport

/// The command line as scripts use it: JSON shapes, exact ids, exit status and error text.
struct CLI {
    /// The `realign` binary built beside this test bundle.
    static let binary: String = {
        let beside = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        for dir in [beside, beside.deletingLastPathComponent()] {
            let p = dir.appendingPathComponent("realign").path
            if FileManager.default.isExecutableFile(atPath: p) { return p }
        }
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        return root.appendingPathComponent(".build/release/realign").path
    }()

    struct Result { let status: Int32; let stdout: Data; let stderr: String }

    /// Runs the binary; with a `timeout`, the process is killed after that many seconds (the
    /// bugs the hostile-input tests guard against ran for hours, a refusal takes a second).
    static func run(_ args: [String], timeout: TimeInterval? = nil) throws -> Result {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: binary)
        p.arguments = args
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        try p.run()
        if let timeout {
            let pid = p.processIdentifier
            DispatchQueue.global().asyncAfter(deadline: .now() + timeout) { if p.isRunning { kill(pid, SIGKILL) } }
        }
        let o = out.fileHandleForReading.readDataToEndOfFile()
        let e = err.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return Result(status: p.terminationStatus, stdout: o, stderr: String(decoding: e, as: UTF8.self))
    }

    static func json(_ args: [String]) throws -> [String: Any] {
        let r = try run(args)
        #expect(r.status == 0, "\(args): \(r.stderr)")
        return try #require(try JSONSerialization.jsonObject(with: r.stdout) as? [String: Any])
    }
}

/// transformers' reference for SmolLM2 (made by scripts/make_model_fixtures.py).
func smolReference() throws -> [String: Any] {
    let path = fixturesDir().replacingOccurrences(of: "CLITests", with: "ModelTests") + "/smol/reference.json"
    return try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path))) as? [String: Any])
}

@Suite struct CLITests {
    @Test func inspect() throws {
        let j = try CLI.json(["inspect", RealModels.smol, "--json"])
        #expect(j["format"] as? String == "gguf")
        #expect(j["tensor_count"] as? Int == 272)
        #expect(j["tensor_types"] as? [String: Int] == ["F32": 61, "Q4_1": 210, "Q8_0": 1])
        let c = try #require(j["config"] as? [String: Any])
        #expect(c["architecture"] as? String == "llama")
        #expect(c["num_layers"] as? Int == 30)
        #expect(j["has_chat_template"] as? Bool == true)
    }

    @Test func tokenize() throws {
        let j = try CLI.json(["tokenize", RealModels.qwen, "Hello, world! 123", "--json"])
        #expect(j["ids"] as? [Int] == [9707, 11, 1879, 0, 220, 16, 17, 18])
    }

    @Test func templateAndGenerateMatchTransformers() throws {
        let ref = try smolReference()
        let p0 = try #require((ref["prompts"] as? [[String: Any]])?.first)
        let prompt = try #require(p0["prompt"] as? String)
        let msgs = FileManager.default.temporaryDirectory.appendingPathComponent("msgs-\(getpid()).json")
        try JSONSerialization.data(withJSONObject: [["role": "user", "content": prompt]]).write(to: msgs)
        defer { try? FileManager.default.removeItem(at: msgs) }
        let t = try CLI.json(["template", RealModels.smol, "--messages", msgs.path, "--json"])
        #expect(t["text"] as? String == p0["text"] as? String)

        let g = try CLI.json(["generate", RealModels.smol, "--prompt", prompt, "--max-tokens", "64", "--json"])
        #expect(g["prompt_ids"] as? [Int] == p0["ids"] as? [Int])
        #expect(g["new_ids"] as? [Int] == p0["greedy_ids"] as? [Int])
        #expect((g["text"] as? String)?.isEmpty == false)
    }

    @Test func generateManyPromptsWritesJSONLines() throws {
        let ref = try smolReference()
        let prompts = try #require(ref["prompts"] as? [[String: Any]]).prefix(3)
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("realign-cli-\(getpid())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        // One plain line, two JSON lines.
        let lines = [prompts[0]["prompt"] as! String] + prompts.dropFirst().map {
            String(decoding: try! JSONSerialization.data(withJSONObject: ["prompt": $0["prompt"]!]), as: UTF8.self)
        }
        try (lines.joined(separator: "\n") + "\n").write(to: dir.appendingPathComponent("p.txt"), atomically: true, encoding: .utf8)
        let out = dir.appendingPathComponent("out.jsonl").path
        let r = try CLI.run(["generate", RealModels.smol, "--prompts", dir.appendingPathComponent("p.txt").path,
                             "--max-tokens", "64", "--batch-size", "2", "--out", out])
        #expect(r.status == 0, "\(r.stderr)")
        let got = try String(contentsOfFile: out, encoding: .utf8).split(separator: "\n").map {
            try #require(try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any])
        }
        #expect(got.count == 3)
        for (g, p) in zip(got, prompts) {
            #expect(g["prompt"] as? String == p["prompt"] as? String)
            #expect(g["new_ids"] as? [Int] == p["greedy_ids"] as? [Int])
        }
    }

    @Test func probe() throws {
        let ref = try smolReference()
        let p0 = try #require((ref["prompts"] as? [[String: Any]])?.first)
        let j = try CLI.json(["probe", RealModels.smol, "--prompt", p0["prompt"] as! String, "--layers", "0,20,30", "--json"])
        let hidden = try #require(j["hidden"] as? [String: [Double]])
        #expect(Set(hidden.keys) == ["0", "20", "30"])
        #expect(hidden["20"]?.count == 576)
        let top = try #require(j["top_logits"] as? [[Double]])
        #expect(top.map { Int($0[0]) } == p0["top10_ids"] as? [Int])
        // Index 30 (= L) is after the final norm: compare with transformers' last hidden state.
        let want = try Data(contentsOf: URL(fileURLWithPath: fixturesDir().replacingOccurrences(of: "CLITests", with: "ModelTests") + "/smol/hidden_last.f32"))
        let w = want.withUnsafeBytes { Array($0.bindMemory(to: Float.self)[(30 * 576)..<(31 * 576)]) }
        let got = hidden["30"]!.map(Float.init)
        #expect(maxRelativeError(got, w, floor: 1e-2) < 1e-3)
    }

    @Test func badInputIsOneClearError() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("realign-bad-\(getpid())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let cut = dir.appendingPathComponent("cut.gguf").path
        try Data(try Data(contentsOf: URL(fileURLWithPath: RealModels.smol), options: .alwaysMapped).prefix(3_000_000)).write(to: URL(fileURLWithPath: cut))
        for args in [["inspect", cut], ["generate", cut, "--prompt", "hi"]] {
            let r = try CLI.run(args)
            #expect(r.status == 1)
            #expect(r.stderr.contains(cut) && r.stderr.contains("runs past the end of the file"), "\(r.stderr)")
        }
        let r = try CLI.run(["inspect", "no-such-model"])
        #expect(r.status != 0 && r.stderr.contains("not an embedded model"))
        let v = try CLI.run(["generate", RealModels.smol])
        #expect(v.status != 0 && v.stderr.contains("exactly one of --prompt and --prompts"))
    }
}
