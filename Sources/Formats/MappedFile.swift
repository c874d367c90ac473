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

/// A read-only memory map of a whole file. Model files are untrusted: every read goes
/// through a bounds-checked cursor or `bytes(at:count:)`.
public final class MappedFile: @unchecked Sendable {
    public let path: String
    public let count: Int
    public let base: UnsafeRawPointer

    public init(path: String) throws {
        self.path = path
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else { throw FormatError(path, "cannot open: \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw FormatError(path, "cannot stat") }
        guard (st.st_mode & S_IFMT) == S_IFREG else { throw FormatError(path, "not a regular file") }
        count = Int(st.st_size)
        if count == 0 {
            base = UnsafeRawPointer(UnsafeMutableRawPointer.allocate(byteCount: 1, alignment: 64))
            return
        }
        guard let p = mmap(nil, count, PROT_READ, MAP_PRIVATE, fd, 0), p != MAP_FAILED else {
            throw FormatError(path, "cannot map \(count) bytes")
        }
        base = UnsafeRawPointer(p)
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
