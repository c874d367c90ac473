import Foundation
import Testing
@testable import Formats

// XXH64 against the reference implementation (scripts/make_xxh64_vectors.py, PyPI xxhash),
// content digests, output-path checks and the clean-up of interrupted atomic writes.

@Test func xxh64MatchesReference() {
    let vectors: [(Int, UInt64, UInt64)] = [
        (0, 0, 0xef46db3751d8e999), (1, 0, 0x1f25c8d0bc1f4bb6), (3, 0, 0x31d2363f52e564c9), (4, 0, 0x9bb64b7d66ee9fda),
        (7, 0, 0x9a7b149959ce60d8), (8, 0, 0xdab99d95c6f90092), (15, 0, 0x1b47cb8243cc8e32), (31, 0, 0xa2aa5f33cc4a6119),
        (32, 0, 0x23c3c17ef790fd97), (33, 0, 0x50a7cfc7ba588784), (63, 0, 0x5e3e54b431c7493c), (100, 0, 0xa61f8d4c170fe531),
        (1000, 0, 0x5f235fa033f1a3fb), (100, 12345, 0xacb8a02891fea7d2),
    ]
    for (n, seed, expected) in vectors {
        let data = (0..<n).map { UInt8((7 * $0 + 3) % 256) }
        #expect(data.withUnsafeBytes { xxh64($0, seed: seed) } == expected, "n \(n) seed \(seed)")
    }
}

@Test func contentDigestSeesEveryByte() throws {
    let d = makeTempDir("digest")
    defer { try? FileManager.default.removeItem(atPath: d) }
    var bytes = [UInt8](repeating: 1, count: 100_000)
    let file = d + "/model.bin"
    try Data(bytes).write(to: URL(fileURLWithPath: file))
    let a = try contentDigest(file)
    #expect(a.count == 16)
    bytes[54_321] ^= 0x10   // one bit in the middle, where a sampled fingerprint would not look
    try Data(bytes).write(to: URL(fileURLWithPath: file))
    #expect(try contentDigest(file) != a)
    // A folder: its files' names, sizes and contents.
    let folderDigest = try contentDigest(d)
    try Data([1, 2, 3]).write(to: URL(fileURLWithPath: d + "/config.json"))
    let withConfig = try contentDigest(d)
    #expect(withConfig != folderDigest)
    try Data([1, 2, 4]).write(to: URL(fileURLWithPath: d + "/config.json"))
    #expect(try contentDigest(d) != withConfig)
    #expect(throws: FormatError.self) { try contentDigest(d + "/missing") }
}

private func outputError(_ out: String, _ kind: OutputKind = .file, inputs: [String] = []) -> String? {
    do { try checkOutputPath(out, kind: kind, inputs: inputs); return nil } catch { return "\(error)" }
}

@Test func outputPathRefusesInputsFoldersAndFiles() throws {
    let d = makeTempDir("out")
    defer { try? FileManager.default.removeItem(atPath: d) }
    let model = d + "/model.gguf", folder = d + "/hf"
    try Data([0]).write(to: URL(fileURLWithPath: model))
    try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: false)
    try Data([0]).write(to: URL(fileURLWithPath: folder + "/model.safetensors"))

    #expect(outputError("")?.contains("the output path is empty") == true)
    #expect(outputError(model, inputs: [model])?.contains("is the input \(model)") == true)
    #expect(outputError(d + "/./sub/../model.gguf", inputs: [model])?.contains("is the input") == true)
    try FileManager.default.createSymbolicLink(atPath: d + "/link.gguf", withDestinationPath: model)
    #expect(outputError(d + "/link.gguf", inputs: [model])?.contains("is the input") == true)
    #expect(link(model, d + "/hard.gguf") == 0)
    #expect(outputError(d + "/hard.gguf", inputs: [model])?.contains("is the input") == true)
    #expect(outputError(folder + "/model.safetensors", inputs: [folder])?.contains("inside the input folder") == true)
    #expect(outputError(d, .folder, inputs: [model])?.contains("would hold the input") == true)
    #expect(outputError(folder)?.contains("is an existing folder") == true)
    #expect(outputError(model, .folder)?.contains("exists and is not a folder") == true)
    #expect(outputError(model + "/out.gguf")?.contains("is a file, not a folder") == true)
    #expect(mkfifo(d + "/fifo", 0o644) == 0)
    #expect(outputError(d + "/fifo")?.contains("not a regular file") == true)
    // Valid: a new file beside the input (its missing folders are made), an existing file, a folder.
    #expect(outputError(d + "/a/b/out.gguf", inputs: [model, folder]) == nil)
    #expect(FileManager.default.fileExists(atPath: d + "/a/b"))
    #expect(outputError(model, inputs: [folder]) == nil)
    #expect(outputError(d + "/new-folder", .folder, inputs: [model]) == nil)
}

@Test func staleTemporariesOfDeadProcessesAreRemoved() throws {
    let d = makeTempDir("tmp")
    defer { try? FileManager.default.removeItem(atPath: d) }
    // A pid that is not running: above the kernel's pid_max.
    let dead = ".out.gguf.tmp-99999999-12345", live = ".out.gguf.tmp-\(getpid())-1", other = ".other.gguf.tmp-99999999-7"
    for n in [dead, live, other, "out.gguf"] { try Data([0]).write(to: URL(fileURLWithPath: d + "/" + n)) }
    try FileManager.default.createDirectory(atPath: d + "/.hf.tmp-99999999-3", withIntermediateDirectories: false)
    removeStaleTemporaries(of: d + "/out.gguf")
    let left = Set(try FileManager.default.contentsOfDirectory(atPath: d))
    #expect(left == [live, other, "out.gguf", ".hf.tmp-99999999-3"])
    removeStaleTemporaries(of: d, everything: true)
    #expect(Set(try FileManager.default.contentsOfDirectory(atPath: d)) == [live, "out.gguf"])
}
