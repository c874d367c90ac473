import Foundation
import Testing
@testable import Formats
import TestSupport

// Special files where a model, config, tokenizer or adapter file is expected.

/// Runs `load` within a time bound; when it blocks (on a FIFO), records that and opens the
/// FIFO's write end to let it go. Returns the error it threw, if any.
private func loadError(_ what: String, fifo: String? = nil, _ load: @escaping () throws -> Void) -> Error? {
    guard let result = within(seconds: 10, load) else {
        Issue.record("\(what): still blocked after 10 s")
        if let fifo { let fd = open(fifo, O_WRONLY | O_NONBLOCK); if fd >= 0 { close(fd) } }
        return nil
    }
    if case .failure(let e) = result { return e }
    Issue.record("\(what): loaded")
    return nil
}

@Suite struct NonRegularFileTests {
    /// A FIFO where a model, config, tokenizer or adapter file is expected: every loader
    /// returns at once with an error naming the path (opening it would wait for a writer).
    @Test func fifoIsRefusedWithoutBlocking() throws {
        let dir = makeTempDir("fifo")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        func fifo(_ name: String) -> String {
            let p = dir + "/" + name
            try? FileManager.default.createDirectory(atPath: (p as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            #expect(mkfifo(p, 0o600) == 0)
            return p
        }
        let adapterConfig = #"{"peft_type": "LORA", "r": 2, "target_modules": ["q_proj"]}"#
        try FileManager.default.createDirectory(atPath: dir + "/adapter-w", withIntermediateDirectories: true)
        try Data(adapterConfig.utf8).write(to: URL(fileURLWithPath: dir + "/adapter-w/adapter_config.json"))
        let cases: [(String, String, () throws -> Void)] = [
            ("GGUF", fifo("model.gguf"), { _ = try GGUFFile(path: dir + "/model.gguf") }),
            ("safetensors", fifo("one.safetensors"), { _ = try SafetensorsFile(path: dir + "/one.safetensors") }),
            ("safetensors folder", fifo("st/model.safetensors"), { _ = try SafetensorsModel(folder: dir + "/st") }),
            ("safetensors index", fifo("sharded/model.safetensors.index.json"), { _ = try SafetensorsModel(folder: dir + "/sharded") }),
            ("config.json", fifo("hf/config.json"), { _ = try ModelConfig(hfConfigAt: dir + "/hf/config.json") }),
            ("JSON", fifo("tokenizer.json"), { _ = try JSONValue.parseFile(dir + "/tokenizer.json") }),
            ("text", fifo("prompts.txt"), { _ = try MappedFile.text(dir + "/prompts.txt", maxBytes: FileLimits.dataBytes) }),
            ("adapter config", fifo("adapter-c/adapter_config.json"), {
                FileManager.default.createFile(atPath: dir + "/adapter-c/adapter_model.safetensors", contents: Data())
                _ = try LoRAAdapter(folder: dir + "/adapter-c")
            }),
            ("adapter weights", fifo("adapter-w/adapter_model.safetensors"), { _ = try LoRAAdapter(folder: dir + "/adapter-w") }),
        ]
        for (what, path, load) in cases {
            let e = loadError(what, fifo: path, load)
            #expect(e as? FormatError == FormatError(path, "a FIFO, not a regular file"), "\(what): \(String(describing: e))")
        }
    }

    /// A directory, a device (also through a symlink) or a socket as the file.
    @Test func directoryDeviceAndSocketAreRefused() throws {
        let dir = makeTempDir("special")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let link = dir + "/config.json"
        try FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: "/dev/zero")
        let socketPath = dir + "/sock.gguf"
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &addr.sun_path) { p in for (i, b) in socketPath.utf8.enumerated() { p[i] = b } }
        let bound = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) } }
        #expect(bound == 0)
        let cases: [(String, String, () throws -> Void)] = [
            ("directory", dir, { _ = try GGUFFile(path: dir) }),
            ("/dev/zero", "/dev/zero", { _ = try GGUFFile(path: "/dev/zero") }),
            ("symlink to /dev/zero", link, { _ = try ModelConfig(hfConfigAt: link) }),
            ("socket", socketPath, { _ = try GGUFFile(path: socketPath) }),
        ]
        let kinds = ["a directory", "a device", "a device", "a socket"]
        for ((what, path, load), kind) in zip(cases, kinds) {
            let e = loadError(what, load)
            #expect(e as? FormatError == FormatError(path, "\(kind), not a regular file"), "\(what): \(String(describing: e))")
        }
    }

    /// A config.json of 20 GB (sparse) is refused by its size, before it is mapped or read.
    @Test func hugeConfigIsRefusedBySize() throws {
        let dir = makeTempDir("huge")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let p = dir + "/config.json"
        let fd = open(p, O_WRONLY | O_CREAT, 0o600)
        #expect(ftruncate(fd, 20_000_000_000) == 0)
        close(fd)
        #expect(throws: FormatError(p, "the file is 20000000000 bytes, more than the \(FileLimits.configBytes) allowed for it")) {
            _ = try ModelConfig(hfConfigAt: p)
        }
    }
}
