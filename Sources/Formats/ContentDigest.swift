import Foundation

// A content digest of input files, to refuse resuming a long run from inputs that changed.
// XXH64 (Yann Collet's xxHash, 64-bit), not SHA-256: it must read every byte of a model file
// at the start of each run, and runs at memory speed where this SHA-256 does ~120 MB/s
// (8 s for a 0.5B model's two files, over a minute for a 7B). It guards against mistakes
// (an edited or re-downloaded file), not against an adversary choosing collisions.

private let p1: UInt64 = 0x9E37_79B1_85EB_CA87
private let p2: UInt64 = 0xC2B2_AE3D_27D4_EB4F
private let p3: UInt64 = 0x1656_67B1_9E37_79F9
private let p4: UInt64 = 0x85EB_CA77_C2B2_AE63
private let p5: UInt64 = 0x27D4_EB2F_1656_67C5

@inline(__always) private func rotl(_ x: UInt64, _ r: UInt64) -> UInt64 { (x << r) | (x >> (64 - r)) }
@inline(__always) private func xxRound(_ acc: UInt64, _ input: UInt64) -> UInt64 { rotl(acc &+ input &* p2, 31) &* p1 }
@inline(__always) private func xxMerge(_ acc: UInt64, _ v: UInt64) -> UInt64 { (acc ^ xxRound(0, v)) &* p1 &+ p4 }

/// XXH64 of `data` (checked against the reference implementation in ContentDigestTests).
public func xxh64(_ data: UnsafeRawBufferPointer, seed: UInt64 = 0) -> UInt64 {
    let n = data.count
    guard let base = data.baseAddress else { return xxAvalanche(seed &+ p5) }
    var p = 0
    var h: UInt64
    @inline(__always) func u64(_ at: Int) -> UInt64 { UInt64(littleEndian: base.loadUnaligned(fromByteOffset: at, as: UInt64.self)) }
    if n >= 32 {
        var v1 = seed &+ p1 &+ p2, v2 = seed &+ p2, v3 = seed, v4 = seed &- p1
        let end = n - 32
        while p <= end {
            v1 = xxRound(v1, u64(p)); v2 = xxRound(v2, u64(p + 8)); v3 = xxRound(v3, u64(p + 16)); v4 = xxRound(v4, u64(p + 24))
            p += 32
        }
        h = rotl(v1, 1) &+ rotl(v2, 7) &+ rotl(v3, 12) &+ rotl(v4, 18)
        h = xxMerge(h, v1); h = xxMerge(h, v2); h = xxMerge(h, v3); h = xxMerge(h, v4)
    } else {
        h = seed &+ p5
    }
    h = h &+ UInt64(n)
    while p + 8 <= n {
        h = rotl(h ^ xxRound(0, u64(p)), 27) &* p1 &+ p4
        p += 8
    }
    if p + 4 <= n {
        let w = UInt64(UInt32(littleEndian: base.loadUnaligned(fromByteOffset: p, as: UInt32.self)))
        h = rotl(h ^ (w &* p1), 23) &* p2 &+ p3
        p += 4
    }
    while p < n {
        h = rotl(h ^ (UInt64(base.load(fromByteOffset: p, as: UInt8.self)) &* p5), 11) &* p1
        p += 1
    }
    return xxAvalanche(h)
}

private func xxAvalanche(_ x: UInt64) -> UInt64 {
    var h = x
    h ^= h >> 33; h = h &* p2
    h ^= h >> 29; h = h &* p3
    h ^= h >> 32
    return h
}

/// The digest of a file's bytes, or of a folder's files (each visible regular file's name,
/// size and XXH64, in name order; subfolders are not read): 16 hex digits.
public func contentDigest(_ path: String) throws -> String {
    var isDir: ObjCBool = false
    guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir) else { throw FormatError(path, "no such file or folder") }
    func fileDigest(_ p: String) throws -> UInt64 {
        let m = try MappedFile(path: p)
        defer { m.releasePages(m.base, count: m.count) }
        return xxh64(UnsafeRawBufferPointer(start: m.base, count: m.count))
    }
    guard isDir.boolValue else { return String(format: "%016llx", try fileDigest(path)) }
    var lines = ""
    for name in try FileManager.default.contentsOfDirectory(atPath: path).sorted() where !name.hasPrefix(".") {
        let p = path + "/" + name
        var st = stat()
        guard stat(p, &st) == 0, st.st_mode & S_IFMT == S_IFREG else { continue }
        lines += "\(name)\t\(st.st_size)\t\(String(format: "%016llx", try fileDigest(p)))\n"
    }
    return Array(lines.utf8).withUnsafeBytes { String(format: "%016llx", xxh64($0)) }
}
