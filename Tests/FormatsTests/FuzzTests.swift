import Foundation
import Testing
import Tensor
@testable import Formats
import TestSupport

// Seeded mutation fuzzing of the GGUF and safetensors readers: every mutated file must
// either open or throw a FormatError naming it — no crash, no hang, no other error.
//
// The GGUF seeds are the real models' headers made small: the metadata is copied byte
// for byte with every array cut to its first few elements, and the tensor infos of
// layer 0 plus the embeddings/output tensors are kept with their row counts clamped so
// each tensor's (real) data is at most 16 KB. That keeps each seed a valid ~100 KB GGUF
// whose every header field is real, so mutations reach the tensor-info and data checks.


/// A small valid GGUF made from a real one, and where its length/count/offset fields are.
struct GGUFSeed {
    var bytes: [UInt8] = []
    var u64Fields: [Int] = []     // string lengths, array counts, dims, tensor offsets, header counts
    var u32Fields: [Int] = []     // value types, element types, dim counts, tensor types
    var names: [(start: Int, count: Int)] = []   // metadata keys and tensor names
    var headerEnd = 0             // end of the tensor infos

    static func make(from path: String, maxArray: Int = 8, maxTensorBytes: Int = 16 << 10) throws -> GGUFSeed {
        let real = try MappedFile(path: path)
        let g = try GGUFFile(file: real)
        var s = GGUFSeed()
        var at = 0
        func u32() -> UInt32 { defer { at += 4 }; return real.base.loadUnaligned(fromByteOffset: at, as: UInt32.self) }
        func u64() -> UInt64 { defer { at += 8 }; return real.base.loadUnaligned(fromByteOffset: at, as: UInt64.self) }
        func put32(_ v: UInt32, field: Bool = true) { if field { s.u32Fields.append(s.bytes.count) }; withUnsafeBytes(of: v.littleEndian) { s.bytes += $0 } }
        func put64(_ v: UInt64, field: Bool = true) { if field { s.u64Fields.append(s.bytes.count) }; withUnsafeBytes(of: v.littleEndian) { s.bytes += $0 } }
        func copy(_ n: Int) { s.bytes += UnsafeRawBufferPointer(start: real.base + at, count: n); at += n }
        func string(isName: Bool = false) -> String {
            let n = Int(u64()); put64(UInt64(n))
            if isName { s.names.append((s.bytes.count, n)) }
            let str = String(decoding: UnsafeRawBufferPointer(start: real.base + at, count: n), as: UTF8.self)
            copy(n)
            return str
        }
        func value(_ type: UInt32) {
            switch type {
            case 0, 1, 7: copy(1)
            case 2, 3: copy(2)
            case 4, 5, 6: copy(4)
            case 10, 11, 12: copy(8)
            case 8: _ = string()
            case 9:
                let et = u32(); put32(et)
                let n = Int(u64())
                let keep = min(n, maxArray)
                put64(UInt64(keep))
                for i in 0..<n {
                    if i < keep { value(et) } else {
                        // skip without copying
                        let mark = s.bytes.count
                        value(et)
                        s.bytes.removeSubrange(mark...)
                        s.u64Fields.removeAll { $0 >= mark }; s.u32Fields.removeAll { $0 >= mark }
                        s.names.removeAll { $0.start >= mark }
                    }
                }
            default: preconditionFailure("unknown GGUF value type \(type)")
            }
        }
        copy(8)                                   // magic, version
        _ = u64()                                 // tensor count: written after choosing
        let kvCount = u64()
        let tensorCountAt = s.bytes.count
        put64(0); put64(kvCount)
        for _ in 0..<kvCount {
            _ = string(isName: true)
            let t = u32(); put32(t)
            value(t)
        }
        // Tensor infos: keep a few, rows clamped, offsets repacked.
        var kept: [(info: GGUFTensorInfo, rows: Int, bytes: Int)] = []
        var newOffset = 0
        for t in g.tensors {
            _ = string()  // walk past in the real file; rewritten below if kept
            s.bytes.removeSubrange((s.bytes.count - 8 - t.name.utf8.count)...)
            s.u64Fields.removeLast()
            let nd = Int(u32())
            at += 8 * nd + 4 + 8
            let keep = t.name.hasPrefix("blk.0.") || ["token_embd.weight", "output_norm.weight", "output.weight"].contains(t.name)
            guard keep else { continue }
            let rowBytes = t.type.byteCount(elements: t.columns)!
            let rows = max(1, min(t.rows, maxTensorBytes / rowBytes))
            var shape = t.shape
            if shape.count > 1 { shape = [shape[0], rows] + Array(repeating: 1, count: shape.count - 2) }
            put64(UInt64(t.name.utf8.count)); s.names.append((s.bytes.count, t.name.utf8.count)); s.bytes += Array(t.name.utf8)
            put32(UInt32(shape.count))
            for d in shape { put64(UInt64(d)) }
            put32(t.type.rawValue)
            put64(UInt64(newOffset))
            let bytes = rowBytes * (shape.count > 1 ? rows : 1)
            kept.append((t, rows, bytes))
            newOffset += (bytes + g.alignment - 1) / g.alignment * g.alignment
        }
        s.bytes.withUnsafeMutableBytes { $0.storeBytes(of: UInt64(kept.count).littleEndian, toByteOffset: tensorCountAt, as: UInt64.self) }
        s.headerEnd = s.bytes.count
        while s.bytes.count % g.alignment != 0 { s.bytes.append(0) }
        for k in kept {
            s.bytes += UnsafeRawBufferPointer(start: g.bytes(k.info), count: k.bytes)
            while s.bytes.count % g.alignment != 0 { s.bytes.append(0) }
        }
        return s
    }
}

/// Opens a mutated file with `open`; anything but success or a FormatError naming the
/// file is recorded.
private func check(_ bytes: [UInt8], _ dir: String, _ name: String, _ what: String, open: (String) throws -> Void) -> Bool {
    let path = dir + "/" + name
    // Plain write, no fsync: FileManager.createFile syncs, which dominates the run time.
    guard let fp = fopen(path, "wb") else { Issue.record("cannot write \(path)"); return false }
    if !bytes.isEmpty { _ = bytes.withUnsafeBytes { fwrite($0.baseAddress!, 1, $0.count, fp) } }
    fclose(fp)
    let t0 = DispatchTime.now().uptimeNanoseconds
    defer {
        unlink(path)  // (rewriting a truncated file in place makes ext4 flush it on close)
        let ms = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e6
        if ms > 2000 { Issue.record("\(what): took \(Int(ms)) ms") }
    }
    do {
        try open(path)
        return true
    } catch let e as FormatError {
        if e.path != path && !e.path.hasPrefix(path) { Issue.record("\(what): FormatError names \(e.path), not \(path): \(e.problem)") }
        return false
    } catch {
        Issue.record("\(what): threw \(type(of: error)) \(error), not FormatError")
        return false
    }
}

/// Opens a GGUF and uses it the way the loader does: config, metadata, every tensor.
private func openGGUF(_ path: String) throws {
    let g = try GGUFFile(path: path)
    _ = try? g.modelConfig()
    _ = try? g.stringArray("tokenizer.ggml.tokens")
    var buf: [Float] = []
    for t in g.tensors where canDequantize(t.type) {
        #expect(t.offset >= 0 && t.byteCount <= g.file.count - t.offset, "tensor \(t.name) outside the file")
        guard t.elementCount <= 1 << 24 else { Issue.record("\(t.name): \(t.elementCount) elements in a small file"); continue }
        buf = [Float](repeating: 0, count: t.elementCount)
        do { try buf.withUnsafeMutableBufferPointer { try dequantize(t.type, g.bytes(t), count: t.elementCount, into: $0.baseAddress!) } }
        catch { Issue.record("\(t.name): dequantize threw \(error) for a tensor the reader accepted") }
    }
}

/// Cases per seed: REALIGN_FUZZ_CASES when set (a longer run), else a count that keeps the
/// whole fuzz suite within seconds.
private let casesPerSeed: Int = {
    if let n = ProcessInfo.processInfo.environment["REALIGN_FUZZ_CASES"].flatMap(Int.init), n > 0 { return n }
    #if DEBUG
    return 300
    #else
    return 8000
    #endif
}()

private let hugeValues: [UInt64] = [.max, .max - 1, 1 << 63, UInt64(Int64.max), 1 << 40, 1 << 32, 0xFFFF_FFFF, 0, 1, 7]

@Test(arguments: ["qwen", "smol"])
func fuzzGGUFReader(_ which: String) throws {
    let seed = try GGUFSeed.make(from: which == "qwen" ? RealModels.qwen : RealModels.smol)
    let dir = makeTempDir("fuzz")
    defer { try? FileManager.default.removeItem(atPath: dir) }
    #expect(check(seed.bytes, dir, "\(which)-seed.gguf", "seed") { try openGGUF($0) }, "the unmutated seed must open")
    #expect(seed.bytes.count < 400_000)
    var rng = SplitMix64(seed: which == "qwen" ? 1 : 2)
    var opened = 0
    for i in 0..<casesPerSeed {
        var b = seed.bytes
        var what = "\(which) case \(i):"
        let mutations = Int.random(in: 1...3, using: &rng)
        for _ in 0..<mutations {
            switch Int.random(in: 0..<8, using: &rng) {
            case 0, 1:  // bit flips, mostly in the header
                let limit = Bool.random(using: &rng) ? seed.headerEnd : b.count
                for _ in 0..<Int.random(in: 1...8, using: &rng) where limit > 0 {
                    let at = Int.random(in: 0..<min(limit, b.count), using: &rng)
                    b[at] ^= UInt8(1) << UInt8.random(in: 0..<8, using: &rng)
                }
                what += " flips"
            case 2:  // truncation
                let n = Int.random(in: 0...b.count, using: &rng)
                b.removeSubrange(n...)
                what += " cut@\(n)"
            case 3, 4:  // a length / count / dim / offset set to a huge or odd value
                let at = seed.u64Fields.randomElement(using: &rng)!
                var v = hugeValues.randomElement(using: &rng)!
                if Bool.random(using: &rng) { v = UInt64(b.count) &+ UInt64.random(in: 0...64, using: &rng) &- 32 }
                if at + 8 <= b.count { b.withUnsafeMutableBytes { $0.storeBytes(of: v.littleEndian, toByteOffset: at, as: UInt64.self) } }
                what += " u64@\(at)=\(v)"
            case 5:  // a type tag or dimension count set to a random value
                let at = seed.u32Fields.randomElement(using: &rng)!
                let v = Bool.random(using: &rng) ? UInt32.random(in: 0...40, using: &rng) : UInt32.random(in: 0...UInt32.max, using: &rng)
                if at + 4 <= b.count { b.withUnsafeMutableBytes { $0.storeBytes(of: v.littleEndian, toByteOffset: at, as: UInt32.self) } }
                what += " u32@\(at)=\(v)"
            case 6:  // a duplicated metadata key or tensor name (same length, copied over)
                let a = seed.names.randomElement(using: &rng)!
                if let other = seed.names.filter({ $0.count == a.count && $0.start != a.start }).randomElement(using: &rng),
                   other.start + other.count <= b.count, a.start + a.count <= b.count {
                    b.replaceSubrange(other.start..<(other.start + other.count), with: b[a.start..<(a.start + a.count)])
                    what += " dup@\(other.start)"
                }
            default:  // bytes inserted or removed in the header, shifting everything after
                let at = Int.random(in: 0..<min(seed.headerEnd, b.count + 1), using: &rng)
                if Bool.random(using: &rng) {
                    b.insert(contentsOf: (0..<Int.random(in: 1...16, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }, at: at)
                    what += " insert@\(at)"
                } else {
                    b.removeSubrange(at..<min(b.count, at + Int.random(in: 1...16, using: &rng)))
                    what += " delete@\(at)"
                }
            }
        }
        if check(b, dir, "\(which)-\(i % 8).gguf", what, open: openGGUF) { opened += 1 }
    }
    // Some mutations (payload flips, duplicated values) leave a valid file; most do not.
    print("fuzz \(which).gguf: \(casesPerSeed) cases, \(opened) opened, \(casesPerSeed - opened) refused")
    #expect(opened > 0 && opened < casesPerSeed)
}

// MARK: - safetensors

/// Opens a safetensors file and reads every tensor.
private func openSafetensors(_ path: String) throws {
    let f = try SafetensorsFile(path: path)
    for t in f.tensors {
        let raw = try f.rawBytes(t.name)
        #expect(raw.count == t.byteCount)
        if t.dtype == .f32 || t.dtype == .f16 || t.dtype == .bf16 {
            guard t.elementCount <= 1 << 24 else { Issue.record("\(t.name): \(t.elementCount) elements in a small file"); continue }
            _ = try f.floats(t.name)
        }
    }
}

@Test func fuzzSafetensorsReader() throws {
    let seed = [UInt8](FileManager.default.contents(atPath: fixturesDir() + "/safetensors/mixed.safetensors")!)
    let dir = makeTempDir("fuzz")
    defer { try? FileManager.default.removeItem(atPath: dir) }
    #expect(check(seed, dir, "st-seed.safetensors", "seed", open: openSafetensors))
    let headerLen = Int(seed.prefix(8).enumerated().reduce(UInt64(0)) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) })
    let header = Array(seed[8..<(8 + headerLen)])
    let data = Array(seed[(8 + headerLen)...])
    let spots = JSONSpots(header)
    let numbers = spots.numbers, strings = spots.strings
    let numberTexts = ["18446744073709551615", "18446744073709551616", "9223372036854775807", "-1", "1e300", "0.5",
                       "4294967296", "99999999999999999999999", "667", "0", "[]", "null", "\"8\""]
    var rng = SplitMix64(seed: 3)
    var opened = 0
    let cases = casesPerSeed * 2
    for c in 0..<cases {
        var h = header, d = data
        var what = "case \(c):"
        var fixLength = Bool.random(using: &rng)
        for _ in 0..<Int.random(in: 1...3, using: &rng) {
            switch Int.random(in: 0..<6, using: &rng) {
            case 0:  // a number in the header replaced
                let r = numbers.randomElement(using: &rng)!
                if r.upperBound <= h.count {
                    let t = numberTexts.randomElement(using: &rng)!
                    h.replaceSubrange(r, with: Array(t.utf8)); what += " num@\(r.lowerBound)=\(t)"
                }
            case 1:  // a string copied over another (duplicate key, other dtype, bad name)
                let a = strings.randomElement(using: &rng)!, b = strings.randomElement(using: &rng)!
                if a.upperBound <= h.count, b.upperBound <= h.count {
                    let src = Array(h[a])
                    h.replaceSubrange(b, with: src); what += " str@\(b.lowerBound)"
                }
            case 2:  // byte flips in the header or data
                for _ in 0..<Int.random(in: 1...4, using: &rng) where !h.isEmpty {
                    let at = Int.random(in: 0..<h.count, using: &rng)
                    h[at] ^= UInt8(1) << UInt8.random(in: 0..<8, using: &rng)
                }
                what += " flips"
            case 3:  // data area shortened or lengthened
                if Bool.random(using: &rng), !d.isEmpty { d.removeLast(Int.random(in: 1...d.count, using: &rng)) } else { d += [0, 0, 0, 0] }
                what += " data=\(d.count)"
            case 4:  // invalid UTF-8 in a string
                let r = strings.randomElement(using: &rng)!
                if r.lowerBound < h.count { h[r.lowerBound] = [0xFF, 0xC3, 0x80, 0xED].randomElement(using: &rng)!; what += " utf8@\(r.lowerBound)" }
            default:  // header length field wrong
                fixLength = false
                what += " len"
            }
        }
        var n = UInt64(h.count)
        if !fixLength && what.hasSuffix(" len") { n = hugeValues.randomElement(using: &rng)! &+ UInt64(bitPattern: Int64.random(in: -2...2, using: &rng)) }
        var bytes = withUnsafeBytes(of: n.littleEndian) { Array($0) } + h + d
        if Int.random(in: 0..<8, using: &rng) == 0 { bytes.removeSubrange(Int.random(in: 0...bytes.count, using: &rng)...); what += " cut" }
        if check(bytes, dir, "st-\(c % 8).safetensors", what, open: openSafetensors) { opened += 1 }
    }
    print("fuzz safetensors: \(cases) cases, \(opened) opened, \(cases - opened) refused")
    #expect(opened < cases)
}

// MARK: - HF folders and PEFT adapters

/// Writes a file without syncing it (as `check` does).
private func put(_ bytes: [UInt8], _ path: String) {
    guard let fp = fopen(path, "wb") else { Issue.record("cannot write \(path)"); return }
    if !bytes.isEmpty { _ = bytes.withUnsafeBytes { fwrite($0.baseAddress!, 1, $0.count, fp) } }
    fclose(fp)
}

/// Loads a folder with `open`; anything but success or a FormatError naming a path inside
/// one of `dirs` is recorded, and so is a case slower than 2 s.
private func checkFolder(_ dirs: [String], _ what: String, open: () throws -> Void) -> Bool {
    let t0 = DispatchTime.now().uptimeNanoseconds
    defer {
        let ms = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e6
        if ms > 2000 { Issue.record("\(what): took \(Int(ms)) ms") }
    }
    do {
        try open()
        return true
    } catch let e as FormatError {
        if !dirs.contains(where: { e.path.hasPrefix($0) }) { Issue.record("\(what): FormatError names \(e.path), not a file in \(dirs): \(e.problem)") }
        return false
    } catch {
        Issue.record("\(what): threw \(type(of: error)) \(error), not FormatError")
        return false
    }
}

/// Where the numbers and the strings (without their quotes) of a JSON text are.
private struct JSONSpots {
    var numbers: [Range<Int>] = [], strings: [Range<Int>] = []
    init(_ t: [UInt8]) {
        var i = 0
        while i < t.count {
            if t[i] == UInt8(ascii: "\"") {
                var j = i + 1
                while j < t.count, t[j] != UInt8(ascii: "\"") { j += t[j] == UInt8(ascii: "\\") ? 2 : 1 }
                strings.append((i + 1)..<min(j, t.count)); i = j + 1
            } else if (0x30...0x39).contains(t[i]) || t[i] == UInt8(ascii: "-") {
                var j = i + 1
                while j < t.count, (0x30...0x39).contains(t[j]) || "eE+-.".utf8.contains(t[j]) { j += 1 }
                numbers.append(i..<j); i = j
            } else { i += 1 }
        }
    }
}

private let absurdNumbers = ["0", "-1", "-4096", "1e300", "-1e300", "0.5", "1e-50", "4294967296", "18446744073709551615", "9223372036854775807",
                             "99999999999999999999999", "16777217", "1099511627776", "1000000000", "3", "65537", "[]", "null", "\"8\"", "{}", "true"]
private let hostileStrings = ["(a+)+$", "([a-z_.0-9]+)+!", "(", ")", "[", "\\\\", ".*", "(?=x)", "(a)\\\\1", "a{1000000000}", "all-linear", "",
                              "q_proj", "v_proj", "model.layers.0.self_attn.q_proj", "..", "../x", "/dev/zero", "F64", "I8", "BF16", "U8",
                              "LORA", "llama", "gemma2", "qwen2", "llama3", "longrope", "lora_A", "\\u0000",
                              String(repeating: "a", count: 3000), String(repeating: "(", count: 80) + "x" + String(repeating: ")", count: 80)]

/// One random edit of a JSON text: a number or a string replaced by an absurd one, a string
/// copied over another (duplicate keys and names), bytes flipped, inserted or cut.
private func mutateJSON(_ t: inout [UInt8], _ spots: JSONSpots, _ rng: inout SplitMix64) -> String {
    switch Int.random(in: 0..<11, using: &rng) {   // mostly edits that keep the JSON valid
    case 0, 1, 2:
        guard let r = spots.numbers.randomElement(using: &rng), r.upperBound <= t.count else { return "" }
        let v = absurdNumbers.randomElement(using: &rng)!
        t.replaceSubrange(r, with: Array(v.utf8))
        return " num@\(r.lowerBound)=\(v)"
    case 3, 4, 5:
        guard let r = spots.strings.randomElement(using: &rng), r.upperBound <= t.count else { return "" }
        let v = hostileStrings.randomElement(using: &rng)!
        t.replaceSubrange(r, with: Array(v.utf8))
        return " str@\(r.lowerBound)=\(v.prefix(20))"
    case 6, 7:
        guard let a = spots.strings.randomElement(using: &rng), let b = spots.strings.randomElement(using: &rng),
              a.upperBound <= t.count, b.upperBound <= t.count else { return "" }
        t.replaceSubrange(b, with: Array(t[a]))
        return " dup@\(b.lowerBound)"
    case 8:
        for _ in 0..<Int.random(in: 1...4, using: &rng) where !t.isEmpty {
            t[Int.random(in: 0..<t.count, using: &rng)] ^= UInt8(1) << UInt8.random(in: 0..<8, using: &rng)
        }
        return " flips"
    case 9:
        let n = Int.random(in: 0...t.count, using: &rng)
        t.removeSubrange(n...)
        return " cut@\(n)"
    default:
        let at = Int.random(in: 0...t.count, using: &rng)
        let junk = [",", "{", "}", "[", "]", ":", "\"", "\"x\":1,", ",\"r\":0"].randomElement(using: &rng)!
        t.insert(contentsOf: Array(junk.utf8), at: at)
        return " insert@\(at)"
    }
}

/// A safetensors file's header (JSON) and data area, to mutate separately.
private func splitSafetensors(_ bytes: [UInt8]) -> (header: [UInt8], data: [UInt8]) {
    let n = Int(bytes.prefix(8).enumerated().reduce(UInt64(0)) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) })
    return (Array(bytes[8..<(8 + n)]), Array(bytes[(8 + n)...]))
}

private func joinSafetensors(_ header: [UInt8], _ data: [UInt8], length: UInt64? = nil) -> [UInt8] {
    withUnsafeBytes(of: (length ?? UInt64(header.count)).littleEndian) { Array($0) } + header + data
}

/// A tiny llama HF folder: config.json and model.safetensors (or shards and an index).
private func makeTinyFolder(_ dir: String, sharded: Bool) throws -> ModelConfig {
    let c = ModelConfig(architecture: "llama", vocabSize: 16, hiddenSize: 8, intermediateSize: 16, numLayers: 2, numHeads: 2,
                        numKVHeads: 1, headDim: 4, rmsNormEps: 1e-5, ropeTheta: 10000, maxPositions: 64, tiedEmbeddings: true, qkvBias: false)
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    try c.writeHFConfig(to: dir + "/config.json")
    let entries = TensorNames.hfNames(for: c).map { name in
        let shape = TensorNames.hfShape(name, for: c)!
        return SafetensorsEntry.floats(name, shape: shape, as: name.hasSuffix("norm.weight") ? .f32 : .bf16,
                                       (0..<shape.reduce(1, *)).map { Float(($0 * 37) % 11) * 0.01 - 0.05 })
    }
    try SafetensorsWriter.writeModel(entries, folder: dir, maxShardBytes: sharded ? 600 : 1 << 30)
    return c
}

/// Loads a folder as the loader does: config, tensor lookup, every tensor as fp32.
private func openHFFolder(_ dir: String) throws {
    let config = try ModelConfig(hfConfigAt: dir + "/config.json")
    let model = try SafetensorsModel(folder: dir)
    for name in TensorNames.hfNames(for: config) where model.contains(name) {
        let n = try model.shape(name).reduce(1, *)
        guard n <= 1 << 20 else { Issue.record("\(name): \(n) elements in a tiny folder"); continue }
        var buf = [Float](repeating: 0, count: n)
        try model.read(name, into: &buf, count: n)
    }
}

@Test(arguments: [false, true])
func fuzzHFFolder(_ sharded: Bool) throws {
    let seedDir = makeTempDir("fuzz-hf-seed")
    let dir = makeTempDir("fuzz-hf")
    defer { for d in [seedDir, dir] { try? FileManager.default.removeItem(atPath: d) } }
    _ = try makeTinyFolder(seedDir, sharded: sharded)
    let files = try FileManager.default.contentsOfDirectory(atPath: seedDir).sorted()
    #expect(files.contains(sharded ? SafetensorsModel.indexFileName : SafetensorsModel.singleFileName), "\(files)")
    let seed = Dictionary(uniqueKeysWithValues: try files.map { ($0, [UInt8](try fileBytes(seedDir + "/" + $0))) })
    var spots: [String: JSONSpots] = [:]
    for (name, bytes) in seed { spots[name] = JSONSpots(name.hasSuffix(".json") ? bytes : splitSafetensors(bytes).header) }
    for (name, bytes) in seed { put(bytes, dir + "/" + name) }
    #expect(checkFolder([dir], "seed") { try openHFFolder(dir) }, "the unmutated folder must load")
    var rng = SplitMix64(seed: sharded ? 5 : 4)
    var opened = 0
    let cases = casesPerSeed / 2
    for c in 0..<cases {
        var what = "\(sharded ? "sharded " : "")case \(c):"
        let name = files.randomElement(using: &rng)!
        var bytes = seed[name]!
        let mutations = Int.random(in: 1...3, using: &rng)
        if name.hasSuffix(".json") {
            for _ in 0..<mutations { what += " \(name)" + mutateJSON(&bytes, spots[name]!, &rng) }
        } else {
            var (h, d) = splitSafetensors(bytes)
            var length: UInt64? = nil
            for _ in 0..<mutations {
                switch Int.random(in: 0..<12, using: &rng) {
                case 0: if !d.isEmpty { d.removeLast(Int.random(in: 1...d.count, using: &rng)) }; what += " \(name) data=\(d.count)"
                case 1: length = hugeValues.randomElement(using: &rng)!; what += " \(name) len=\(length!)"
                default: what += " \(name)" + mutateJSON(&h, spots[name]!, &rng)
                }
            }
            bytes = joinSafetensors(h, d, length: length)
        }
        put(bytes, dir + "/" + name)
        if checkFolder([dir], what, open: { try openHFFolder(dir) }) { opened += 1 }
        put(seed[name]!, dir + "/" + name)
    }
    print("fuzz HF folder\(sharded ? " (sharded)" : ""): \(cases) cases, \(opened) opened, \(cases - opened) refused")
    #expect(opened < cases)
}

/// A PEFT adapter for the tiny folder's q_proj and v_proj, with rank and alpha patterns,
/// layers_to_transform and a regex-free target list.
private func makeTinyAdapter(_ dir: String, base: String, config c: ModelConfig) throws {
    var weights: [LoRAAdapter.Weights] = []
    for l in 0..<c.numLayers {
        for (m, out) in [("q_proj", c.numHeads * c.headDim), ("v_proj", c.numKVHeads * c.headDim)] {
            let r = l == 1 && m == "v_proj" ? 3 : 2
            weights.append(.init(name: "model.layers.\(l).self_attn.\(m).weight", a: (0..<r * c.hiddenSize).map { Float($0 % 5) * 0.1 },
                                 b: (0..<out * r).map { Float($0 % 3) * 0.1 - 0.1 }))
        }
    }
    try LoRAAdapter.write(to: dir, modules: weights, rank: 2, alpha: 4, rankPattern: [("layers.1.self_attn.v_proj", 3)],
                          alphaPattern: [("q_proj", 6)], targetModules: ["q_proj", "v_proj"], baseModel: base, dtype: .bf16)
}

/// Parses an adapter and merges it onto the tiny base: every adapted weight read as fp32.
private func openAdapter(_ dir: String, base: String, config: ModelConfig) throws {
    let a = try LoRAAdapter(folder: dir)
    try a.checkBase(config, model: base)
    let merged = try LoRAMergedParameters(base: try SafetensorsModel(folder: base), adapter: a)
    for name in a.weightNames {
        let n = try merged.shape(name).reduce(1, *)
        var buf = [Float](repeating: 0, count: n)
        try merged.read(name, into: &buf, count: n)
    }
}

@Test func fuzzPEFTAdapter() throws {
    let base = makeTempDir("fuzz-lora-base")
    let seedDir = makeTempDir("fuzz-lora-seed")
    let dir = makeTempDir("fuzz-lora")
    defer { for d in [base, seedDir, dir] { try? FileManager.default.removeItem(atPath: d) } }
    let config = try makeTinyFolder(base, sharded: false)
    try makeTinyAdapter(seedDir, base: base, config: config)
    let configName = LoRAAdapter.configFileName, weightsName = LoRAAdapter.weightsFileName
    let plainConfig = [UInt8](try fileBytes(seedDir + "/" + configName))
    let seedWeights = [UInt8](try fileBytes(seedDir + "/" + weightsName))
    // Regex settings too, so that mutations reach the pattern matcher: target_modules as a
    // regular expression in half the cases, exclude_modules and layers_to_transform.
    let regexConfig = Array(String(decoding: plainConfig, as: UTF8.self).replacingOccurrences(
        of: "\"target_modules\"", with: "\"exclude_modules\": \"lm_head\", \"layers_to_transform\": [0, 1], \"target_modules_list\"")
        .replacingOccurrences(of: "\"task_type\"", with: "\"target_modules\": \"model\\\\.layers\\\\.\\\\d+\\\\.self_attn\\\\.(q|v)_proj\", \"task_type\"").utf8)
    for cfg in [plainConfig, regexConfig] {
        put(cfg, dir + "/" + configName); put(seedWeights, dir + "/" + weightsName)
        #expect(checkFolder([dir], "seed") { try openAdapter(dir, base: base, config: config) }, "the unmutated adapter must load")
    }
    let (header, data) = splitSafetensors(seedWeights)
    let headerSpots = JSONSpots(header)
    var rng = SplitMix64(seed: 6)
    var opened = 0
    let cases = casesPerSeed / 2
    for c in 0..<cases {
        var what = "case \(c):"
        var cfg = c % 2 == 0 ? regexConfig : plainConfig, h = header, d = data
        var length: UInt64? = nil
        let cfgSpots = JSONSpots(cfg)
        for _ in 0..<Int.random(in: 1...3, using: &rng) {
            switch Int.random(in: 0..<12, using: &rng) {
            case 0..<7: what += " config" + mutateJSON(&cfg, cfgSpots, &rng)
            case 7, 8, 9: what += " weights" + mutateJSON(&h, headerSpots, &rng)
            case 10:  // values: huge, NaN, or data cut
                if Bool.random(using: &rng), !d.isEmpty { d.removeLast(Int.random(in: 1...d.count, using: &rng)); what += " data=\(d.count)" }
                else if d.count >= 2 {   // a BF16 value near Float's largest, or a NaN
                    let at = Int.random(in: 0..<(d.count / 2), using: &rng) * 2
                    d.replaceSubrange(at..<(at + 2), with: Bool.random(using: &rng) ? [0x7f, 0x7f] : [0xc0, 0x7f]); what += " bf16@\(at)"
                }
            default: length = hugeValues.randomElement(using: &rng)!; what += " len=\(length!)"
            }
        }
        put(cfg, dir + "/" + configName)
        put(joinSafetensors(h, d, length: length), dir + "/" + weightsName)
        if checkFolder([dir, base], what, open: { try openAdapter(dir, base: base, config: config) }) { opened += 1 }
    }
    print("fuzz PEFT adapter: \(cases) cases, \(opened) opened, \(cases - opened) refused")
    #expect(opened > 0 && opened < cases)
}
