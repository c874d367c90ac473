import Foundation
import Testing
@testable import Recovery
import Formats
import TestSupport

/// A recovery's bad outputs and changed inputs: refused before any work, or on --resume.
@Suite(.serialized) struct RecoverInputTests {
    static func tempDir(_ tag: String) throws -> String {
        let d = FileManager.default.temporaryDirectory.appendingPathComponent("realign-\(tag)-\(getpid())").path
        try? FileManager.default.removeItem(atPath: d)
        try FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
        return d
    }

    static func message(_ body: () throws -> Void) -> String? {
        do { try body(); return nil } catch { return "\(error)" }
    }

    @Test func badOutputsAreRefusedBeforeAnyWork() throws {
        let dir = try Self.tempDir("outputs")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let finetuned = dir + "/finetuned.gguf"
        try FileManager.default.copyItem(atPath: RealModels.smol, toPath: finetuned)
        try Data("x".utf8).write(to: URL(fileURLWithPath: dir + "/file"))
        let before = try fileBytes(finetuned)
        func run(_ out: String) -> String? {
            let r = RecoveryRun(aligned: RealModels.smol, finetuned: finetuned, out: out, options: RecoverTests.options(), log: { _ in })
            return Self.message { try r.run() }
        }
        let cases: [(String, String)] = [
            (RealModels.smol, "is the input \(RealModels.smol)"),
            (finetuned, "is the input \(finetuned)"),
            (dir, "is an existing folder"),
            ("", "the output path is empty"),
            (dir + "/file/out.gguf", "\(dir)/file is a file, not a folder"),
        ]
        for (out, expected) in cases {
            let m = run(out)
            #expect(m?.contains(expected) == true, "\(out): \(m ?? "no error")")
        }
        // OUT's patch would overwrite an input: OUT.patch.safetensors is the fine-tuned model.
        let sneaky = dir + "/sneaky.gguf"
        try FileManager.default.copyItem(atPath: RealModels.smol, toPath: sneaky + ".patch.safetensors")
        let r = RecoveryRun(aligned: RealModels.smol, finetuned: sneaky + ".patch.safetensors", out: sneaky, options: RecoverTests.options(), log: { _ in })
        #expect(Self.message { try r.run() }?.contains("is the input") == true)
        // Nothing was written, the inputs are untouched.
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir).sorted() == ["file", "finetuned.gguf", "sneaky.gguf.patch.safetensors"])
        #expect(try fileBytes(finetuned) == before)
    }

    @Test func resumeRefusesChangedInputsAndCleansUp() throws {
        let dir = try Self.tempDir("changed")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let (finetuned, _) = try RecoverTests.makeFinetuned(dir)
        let out = dir + "/out.gguf"
        func run(_ stopAfter: Int? = nil, resume: Bool) throws -> [RoundLog] {
            let r = RecoveryRun(aligned: RealModels.smol, finetuned: finetuned, out: out, options: RecoverTests.options(), log: { _ in })
            r.stopAfterRound = stopAfter
            return try r.run(resume: resume)
        }
        #expect(throws: RecoveryError.self) { try run(1, resume: false) }
        let state = RecoveryPaths(out: out).checkpoint + "/state.json"
        #expect(FileManager.default.fileExists(atPath: state))

        // One byte of the fine-tuned model's tensor data changes (its size, names and the
        // sampled fingerprint stay the same): resuming is refused, naming the input.
        let original = try fileBytes(finetuned)
        var changed = original
        changed[changed.count - 100_000] ^= 1
        try changed.write(to: URL(fileURLWithPath: finetuned))
        let m = Self.message { _ = try run(resume: true) }
        #expect(m?.contains("the inputs changed since the checkpoint was made (finetuned)") == true, "\(m ?? "no error")")

        // A corrupt state names its file.
        try original.write(to: URL(fileURLWithPath: finetuned))
        let good = try fileBytes(state)
        try Data(good.prefix(good.count / 2)).write(to: URL(fileURLWithPath: state))
        let m2 = Self.message { _ = try run(resume: true) }
        #expect(m2?.hasPrefix("\(state): not a valid checkpoint state") == true, "\(m2 ?? "no error")")
        #expect(m2?.contains("\n") == false)

        // The original inputs resume; a temporary file of a killed model write is removed.
        try good.write(to: URL(fileURLWithPath: state))
        let stale = dir + "/.out.gguf.tmp-99999999-42"
        try Data(count: 1000).write(to: URL(fileURLWithPath: stale))
        let log = try run(resume: true)
        #expect(log.map(\.round) == [1, 2, 3])
        #expect(!FileManager.default.fileExists(atPath: stale))
    }

    /// A huge round count at a large rate ends when a round restores nothing.
    @Test func roundsStopWhenNothingIsLeftToRestore() throws {
        let dir = try Self.tempDir("exhaust")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let (finetuned, _) = try RecoverTests.makeFinetuned(dir)
        var o = RecoverTests.options()
        o.rate = 0.5; o.rounds = RecoveryOptions.maxRounds
        var lines: [String] = []
        let log = try RecoveryRun(aligned: RealModels.smol, finetuned: finetuned, out: dir + "/r.gguf", options: o, log: { lines.append($0) }).run()
        #expect(log.count < 40, "\(log.map(\.restored))")
        #expect(log.last!.restored == 0)
        #expect(log.dropLast().allSatisfy { $0.restored > 0 })
        #expect(lines.contains { $0.contains("round \(log.count)/\(RecoveryOptions.maxRounds)") })
        #expect(lines.contains { $0.contains("restored no weight") })
        // Layer-major rounds stop at the same round.
        let streamed = RecoveryRun(aligned: RealModels.smol, finetuned: finetuned, out: dir + "/t.gguf", options: o, log: { _ in })
        streamed.streaming = true
        #expect(try streamed.run().map(\.restored) == log.map(\.restored))

        o.rate = 1e-9   // rounds to no weight at all
        let m = Self.message { try RecoveryRun(aligned: RealModels.smol, finetuned: finetuned, out: dir + "/s.gguf", options: o, log: { _ in }).run() }
        #expect(m?.contains("restores no weight a round") == true, "\(m ?? "no error")")
        o.rate = 0.1; o.rounds = RecoveryOptions.maxRounds + 1
        #expect(Self.message { try RecoveryRun(aligned: RealModels.smol, finetuned: finetuned, out: dir + "/s.gguf", options: o, log: { _ in }).run() }?
            .contains("--rounds must be in 1...") == true)
    }
}
