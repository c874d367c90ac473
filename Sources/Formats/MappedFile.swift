import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// An error in a model or data file: always names the file and the problem.
public struct FormatError: Error, CustomStringConvertible, Equatable {
    public let path: String
    public let problem: String
    public init(_ path: String, _ problem: String) { self.path = path; self.problem = problem }
    public var description: String { "\(path): \(problem)" }
}

/// Size bounds for files read whole: each well above any real file of its kind, and small
/// enough that a hostile one cannot exhaust memory.
public enum FileLimits {
    /// config.json, adapter_config.json, generation_config.json: a few KB in real models.
    public static let configBytes = 10_000_000
    /// tokenizer.json (Gemma's is 34 MB), tokenizer_config.json with its chat templates, chat
    /// template files, safetensors index files.
    public static let jsonBytes = 100_000_000
    /// Prompt, task and training data files, held in memory whole.
    public static let dataBytes = 1 << 30
}

/// A read-only memory map of a whole file. Model files are untrusted: every read goes
/// through a bounds-checked cursor or `bytes(at:count:)`.
public final class MappedFile: @unchecked Sendable {
    public let path: String
    public let count: Int
    public let base: UnsafeRawPointer

    /// Maps the regular file at `path` (symlinks followed). Anything else — a directory, a
    /// FIFO, a device such as /dev/zero, a socket — is refused before it is opened: opening a
    /// FIFO for reading blocks until a writer appears, and a device has no end. O_NONBLOCK
    /// keeps the open from blocking should the path be swapped for a FIFO in between.
    public init(path: String) throws {
        self.path = path
        (count, base) = try Self.map(path, maxBytes: nil)
    }

    /// As `init(path:)`, refusing a file larger than `maxBytes` before it is mapped.
    public init(path: String, maxBytes: Int) throws {
        self.path = path
        (count, base) = try Self.map(path, maxBytes: maxBytes)
    }

    private static func map(_ path: String, maxBytes: Int?) throws -> (Int, UnsafeRawPointer) {
        var st = stat()
        guard stat(path, &st) == 0 else { throw FormatError(path, "cannot open: \(String(cString: strerror(errno)))") }
        try requireRegular(st, path)
        let fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC)
        guard fd >= 0 else { throw FormatError(path, "cannot open: \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        guard fstat(fd, &st) == 0 else { throw FormatError(path, "cannot stat") }
        try requireRegular(st, path)
        if let maxBytes, st.st_size > maxBytes {
            throw FormatError(path, "the file is \(st.st_size) bytes, more than the \(maxBytes) allowed for it")
        }
        let count = Int(st.st_size)
        if count == 0 { return (0, UnsafeRawPointer(UnsafeMutableRawPointer.allocate(byteCount: 1, alignment: 64))) }
        guard let p = mmap(nil, count, PROT_READ, MAP_PRIVATE, fd, 0), p != MAP_FAILED else {
            throw FormatError(path, "cannot map \(count) bytes")
        }
        return (count, UnsafeRawPointer(p))
    }

    private static func requireRegular(_ st: stat, _ path: String) throws {
        let kind: String
        switch st.st_mode & S_IFMT {
        case S_IFREG: return
        case S_IFDIR: kind = "a directory"
        case S_IFIFO: kind = "a FIFO"
        case S_IFCHR, S_IFBLK: kind = "a device"
        case S_IFSOCK: kind = "a socket"
        default: kind = "a special file"
        }
        throw FormatError(path, "\(kind), not a regular file")
    }

    /// The bytes of a whole regular file of at most `maxBytes` bytes. Every file Realign reads
    /// by path (configs, tokenizers, templates, prompt and data files) goes through here or
    /// through `init`, so none can block on a FIFO or device or be read without a size bound.
    public static func contents(_ path: String, maxBytes: Int) throws -> Data {
        let f = try MappedFile(path: path, maxBytes: maxBytes)
        return Data(bytes: f.base, count: f.count)
    }

    /// A whole regular file as UTF-8 text (at most `maxBytes` bytes).
    public static func text(_ path: String, maxBytes: Int) throws -> String {
        let f = try MappedFile(path: path, maxBytes: maxBytes)
        guard let s = String(validating: UnsafeRawBufferPointer(start: f.base, count: f.count), as: UTF8.self) else {
            throw FormatError(path, "not UTF-8 text")
        }
        return s
    }

    deinit {
        if count > 0 { munmap(UnsafeMutableRawPointer(mutating: base), count) }
        else { UnsafeMutableRawPointer(mutating: base).deallocate() }
    }

    /// Drops the mapped pages covering `count` bytes at `p` (inside this file) from the
    /// process's resident set; later reads fault them in again from the page cache.
    public func releasePages(_ p: UnsafeRawPointer, count n: Int) {
        guard count > 0, n > 0 else { return }
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let start = (p - base) / page * page, end = min(count, p - base + n)
        guard start >= 0, end > start else { return }
        madvise(UnsafeMutableRawPointer(mutating: base + start), end - start, MADV_DONTNEED)
    }

    /// A pointer to `count` bytes at `offset`, or an error if the range leaves the file.
    public func bytes(at offset: Int, count n: Int, what: @autoclosure () -> String) throws -> UnsafeRawPointer {
        guard offset >= 0, n >= 0, offset <= count, n <= count - offset else {
            throw FormatError(path, "\(what()): \(n) bytes at offset \(offset) run past the end of the file (\(count) bytes)")
        }
        return base + offset
    }
}

/// A little-endian reader over a mapped file that refuses to step past the end.
public struct ByteCursor {
    public let file: MappedFile
    public var offset: Int
    public init(_ file: MappedFile, offset: Int = 0) { self.file = file; self.offset = offset }

    public mutating func take(_ n: Int, _ what: @autoclosure () -> String) throws -> UnsafeRawPointer {
        let p = try file.bytes(at: offset, count: n, what: what())
        offset += n
        return p
    }
    public mutating func read<T: FixedWidthInteger>(_ type: T.Type, _ what: @autoclosure () -> String) throws -> T {
        let p = try take(MemoryLayout<T>.size, what())
        return T(littleEndian: p.loadUnaligned(as: T.self))
    }
    public mutating func readFloat(_ what: @autoclosure () -> String) throws -> Float { Float(bitPattern: try read(UInt32.self, what())) }
    public mutating func readDouble(_ what: @autoclosure () -> String) throws -> Double { Double(bitPattern: try read(UInt64.self, what())) }
}
