import Foundation
import Testing
@testable import Formats
import Tensor
import TestSupport

private let stDir = fixturesDir() + "/safetensors"

/// A fresh empty temporary folder.
func makeTempDir(_ tag: String = "st") -> String {
    let d = NSTemporaryDirectory() + "/realign-\(tag)-\(getpid())-\(UInt64.random(in: 0...UInt64.max))"
    try! FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
    return d
}

private func readBytes(_ path: String) -> [UInt8] { [UInt8](FileManager.default.contents(atPath: path) ?? Data()) }

/// value(i) = float32(i*37 % 101 - 50) * float32(0.173), as in make_safetensors_fixtures.py
private func valueTensor(_ n: Int) -> [Float] { (0..<n).map { Float((($0 * 37) % 101) - 50) * Float(0.173) } }

@Test func readsPythonMadeMixedFile() throws {
    let f = try SafetensorsFile(path: stDir + "/mixed.safetensors")
    #expect(f.metadata == ["format": "pt", "note": "héllo\n\"quoted\""])
    let expected = try JSONValue.parse(readBytes(stDir + "/mixed.expected.json"))
    let want = expected.object!
    #expect(Set(f.names) == Set(want.keys))
    for (name, e) in want.pairs {
        let info = try #require(f.info(name))
        #expect(info.shape == e["shape"]!.array!.map { $0.int! }, "\(name)")
        if let bits = e["bits"]?.array {
            let got = try f.floats(name)
            #expect(got.map(\.bitPattern) == bits.map { UInt32($0.int!) }, "\(name)")
        } else {
            let raw = try f.rawBytes(name)
            let ints: [Int64]
            switch info.dtype {
            case .i64: ints = (0..<info.elementCount).map { Int64(littleEndian: raw.loadUnaligned(fromByteOffset: 8 * $0, as: Int64.self)) }
            case .u8: ints = raw.map { Int64($0) }
            default: Issue.record("unexpected dtype \(info.dtype)"); continue
            }
            #expect(ints == e["ints"]!.array!.map { Int64($0.int!) }, "\(name)")
            #expect(throws: FormatError.self) { try f.floats(name) }
        }
    }
    #expect(f.info("scalar")?.shape == [] && f.info("scalar")?.elementCount == 1)
    #expect(f.info("empty")?.elementCount == 0)
    #expect(try f.floats("empty") == [])
    #expect(throws: FormatError.self) { try f.floats("missing") }
}

@Test func readsShardedFolder() throws {
    let m = try SafetensorsModel(folder: stDir + "/sharded")
    #expect(m.files.count == 2)
    #expect(m.names == ["a.weight", "b.weight", "c.weight"])
    #expect(try m.floats("a.weight") == valueTensor(6))
    #expect(try m.floats("b.weight") == valueTensor(4).map { Float(Float16($0)) })
    #expect(try m.floats("c.weight") == valueTensor(8).map { bf16ToFloat(floatToBF16($0)) })
    #expect(m.info("c.weight")?.shape == [2, 2, 2])
    #expect(m.file(containing: "c.weight")?.path.hasSuffix("model-00002-of-00002.safetensors") == true)
    #expect(throws: FormatError.self) { try m.floats("nope") }
}

@Test func modelFolderWithSingleFileAndMissingFiles() throws {
    let d = makeTempDir()
    defer { try? FileManager.default.removeItem(atPath: d) }
    #expect(throws: FormatError.self) { try SafetensorsModel(folder: d) }
    try FileManager.default.copyItem(atPath: stDir + "/mixed.safetensors", toPath: d + "/model.safetensors")
    let m = try SafetensorsModel(folder: d)
    #expect(m.names.count == 7)
    // An index naming a missing shard, a path outside the folder, a tensor the shard lacks.
    for map in [#"{"x": "model-00001-of-00002.safetensors"}"#, #"{"x": "../mixed.safetensors"}"#,
                #"{"nope": "model.safetensors"}"#, #"{"scalar": 3}"#] {
        let idx = d + "/model.safetensors.index.json"
        try Array(#"{"metadata": {}, "weight_map": \#(map)}"#.utf8).withUnsafeBytes { b in try writeAtomically(idx) { try $0.write(b) } }
        #expect(throws: FormatError.self) { try SafetensorsModel(folder: d) }
    }
}

@Test func writerOutputIsByteIdenticalToPython() throws {
    let d = makeTempDir()
    defer { try? FileManager.default.removeItem(atPath: d) }
    let entries: [SafetensorsEntry] = [
        .floats("norm.weight", shape: [5], as: .f16, valueTensor(5)),
        .floats("layers.0.weight", shape: [3, 4], as: .f32, valueTensor(12)),
        .floats("emb", shape: [5, 2], as: .bf16, valueTensor(10)),
        .floats("z.last", shape: [1, 1, 1], as: .f32, valueTensor(1)),
        .floats("layers.0.bias", shape: [3], as: .f32, valueTensor(3)),
    ]
    try SafetensorsWriter.write(entries, metadata: ["format": "pt"], to: d + "/out.safetensors")
    #expect(readBytes(d + "/out.safetensors") == readBytes(stDir + "/python_written.safetensors"))
    try SafetensorsWriter.write([.floats("x", shape: [3], as: .f32, valueTensor(3))], to: d + "/nometa.safetensors")
    #expect(readBytes(d + "/nometa.safetensors") == readBytes(stDir + "/python_written_nometa.safetensors"))
    // no temporary files left behind
    #expect(try FileManager.default.contentsOfDirectory(atPath: d).sorted() == ["nometa.safetensors", "out.safetensors"])
}

@Test func writeThenReadRoundTrip() throws {
    let d = makeTempDir()
    defer { try? FileManager.default.removeItem(atPath: d) }
    let a = (0..<1000).map { Float($0) * 0.01 - 3 }
    let ids: [Int32] = [5, -1, 1 << 30]
    let idBytes = ids.flatMap { v in withUnsafeBytes(of: v.littleEndian) { Array($0) } }
    let entries: [SafetensorsEntry] = [
        .floats("a", shape: [10, 100], as: .f32, a),
        .floats("a16", shape: [1000], as: .f16, a),
        .floats("abf", shape: [2, 500], as: .bf16) { p in for i in 0..<1000 { p[i] = a[i] } },
        .raw("ids", dtype: .i32, shape: [3], bytes: idBytes),
        .floats("ünïcode \"name\"\n", shape: [0, 4], as: .f32, []),
    ]
    let path = d + "/rt.safetensors"
    try SafetensorsWriter.write(entries, metadata: ["format": "pt", "b": "2", "a": "1"], to: path)
    let f = try SafetensorsFile(path: path)
    #expect(f.metadata == ["format": "pt", "b": "2", "a": "1"])
    #expect(try f.floats("a") == a)
    #expect(try f.floats("a16") == a.map { Float(Float16($0)) })
    #expect(try f.floats("abf") == a.map { bf16ToFloat(floatToBF16($0)) })
    #expect(Array(try f.rawBytes("ids")) == idBytes)
    #expect(f.info("ünïcode \"name\"\n")?.shape == [0, 4])
    #expect(f.info("abf")?.shape == [2, 500])
    // header length is a multiple of 8
    let n = readBytes(path).prefix(8).enumerated().reduce(0) { $0 | Int($1.element) << (8 * $1.offset) }
    #expect(n % 8 == 0)

    // Bad entries are refused and leave nothing behind.
    #expect(throws: FormatError.self) { try SafetensorsWriter.write([.raw("x", dtype: .f32, shape: [2], bytes: [1, 2, 3])], to: d + "/bad.safetensors") }
    #expect(throws: FormatError.self) { try SafetensorsWriter.write([.floats("x", shape: [1], as: .f32, [1]), .floats("x", shape: [1], as: .f32, [1])], to: d + "/bad.safetensors") }
    #expect(throws: FormatError.self) { try SafetensorsWriter.write([.floats("x", shape: [1], as: .i32, [1])], to: d + "/bad.safetensors") }
    #expect(!FileManager.default.fileExists(atPath: d + "/bad.safetensors"))
    #expect(try FileManager.default.contentsOfDirectory(atPath: d) == ["rt.safetensors"])
}

@Test func shardedWriteThenRead() throws {
    let d = makeTempDir()
    defer { try? FileManager.default.removeItem(atPath: d) }
    let entries: [SafetensorsEntry] = (0..<5).map { i in .floats("t\(i)", shape: [10], as: .f32, valueTensor(10 + i).suffix(10).map { $0 }) }
    let names = try SafetensorsWriter.writeModel(entries, folder: d, maxShardBytes: 100)
    #expect(names == ["model-00001-of-00003.safetensors", "model-00002-of-00003.safetensors",
                      "model-00003-of-00003.safetensors", "model.safetensors.index.json"])
    let m = try SafetensorsModel(folder: d)
    #expect(m.files.count == 3)
    for i in 0..<5 { #expect(try m.floats("t\(i)") == Array(valueTensor(10 + i).suffix(10))) }
    let index = try JSONValue.parse(readBytes(d + "/model.safetensors.index.json"))
    #expect(index["metadata"]?["total_size"]?.int == 200)
    #expect(m.files[0].metadata == ["format": "pt"])

    let d2 = makeTempDir()
    defer { try? FileManager.default.removeItem(atPath: d2) }
    #expect(try SafetensorsWriter.writeModel(entries, folder: d2) == ["model.safetensors"])
    #expect(try SafetensorsModel(folder: d2).names.count == 5)
}

// MARK: - corrupt files

/// Writes a safetensors file from a header string and data, with an optional header length.
private func craft(_ dir: String, _ name: String, header: [UInt8], data: [UInt8] = [], length: UInt64? = nil) -> String {
    let n = length ?? UInt64(header.count)
    var bytes = withUnsafeBytes(of: n.littleEndian) { Array($0) }
    bytes += header + data
    let path = dir + "/" + name
    FileManager.default.createFile(atPath: path, contents: Data(bytes))
    return path
}

private func expectFormatError(_ path: String, _ what: String, sourceLocation: SourceLocation = #_sourceLocation) {
    do {
        _ = try SafetensorsFile(path: path)
        Issue.record("\(what): opened without error", sourceLocation: sourceLocation)
    } catch let e as FormatError {
        #expect(e.path == path, "\(what)", sourceLocation: sourceLocation)
    } catch {
        Issue.record("\(what): threw \(error), not FormatError", sourceLocation: sourceLocation)
    }
}

@Test func corruptFilesGiveFormatErrorsNamingTheFile() throws {
    let d = makeTempDir()
    defer { try? FileManager.default.removeItem(atPath: d) }
    let good = readBytes(stDir + "/mixed.safetensors")
    // Truncations at several points: in the length, in the header, in the data.
    let n = Int(good.prefix(8).enumerated().reduce(UInt64(0)) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) })
    for cut in [0, 4, 7, 8, 9, 8 + n / 2, 8 + n - 1, 8 + n, good.count - 1] {
        let p = d + "/trunc\(cut).safetensors"
        FileManager.default.createFile(atPath: p, contents: Data(good.prefix(cut)))
        expectFormatError(p, "truncated at \(cut)")
    }
    func h(_ s: String) -> [UInt8] { Array(s.utf8) }
    let t = #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#
    let eight = [UInt8](repeating: 0, count: 8)
    #expect(throws: Never.self) { try SafetensorsFile(path: craft(d, "ok.safetensors", header: h(t), data: eight)) }
    expectFormatError(craft(d, "len-huge.safetensors", header: h(t), data: eight, length: UInt64.max), "huge header length")
    expectFormatError(craft(d, "len-past.safetensors", header: h(t), data: eight, length: UInt64(t.utf8.count + 9)), "header length past end")
    expectFormatError(craft(d, "len-cap.safetensors", header: h(t), data: eight, length: 200_000_000), "header over the cap")
    expectFormatError(craft(d, "off-past.safetensors", header: h(#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,16]}}"#), data: eight), "offsets past end")
    expectFormatError(craft(d, "off-huge.safetensors", header: h(#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[18446744073709551615,8]}}"#), data: eight), "huge offset")
    expectFormatError(craft(d, "off-neg.safetensors", header: h(#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[-8,0]}}"#), data: eight), "negative offset")
    expectFormatError(craft(d, "off-rev.safetensors", header: h(#"{"a":{"dtype":"F32","shape":[0],"data_offsets":[8,0]}}"#), data: eight), "reversed offsets")
    expectFormatError(craft(d, "shape.safetensors", header: h(#"{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}"#), data: eight), "shape/size mismatch")
    expectFormatError(craft(d, "shape-ovf.safetensors", header: h(#"{"a":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,8]}}"#), data: eight), "shape overflow")
    expectFormatError(craft(d, "shape-neg.safetensors", header: h(#"{"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}}"#), data: eight), "negative dim")
    expectFormatError(craft(d, "shape-frac.safetensors", header: h(#"{"a":{"dtype":"F32","shape":[2.5],"data_offsets":[0,8]}}"#), data: eight), "fractional dim")
    expectFormatError(craft(d, "dtype.safetensors", header: h(#"{"a":{"dtype":"F7","shape":[2],"data_offsets":[0,8]}}"#), data: eight), "unknown dtype")
    expectFormatError(craft(d, "nodtype.safetensors", header: h(#"{"a":{"shape":[2],"data_offsets":[0,8]}}"#), data: eight), "missing dtype")
    expectFormatError(craft(d, "utf8.safetensors", header: h(#"{"a"#) + [0xFF, 0xFE] + h(#"":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#), data: eight), "bad UTF-8")
    expectFormatError(craft(d, "json.safetensors", header: h(#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}"#), data: eight), "bad JSON")
    expectFormatError(craft(d, "json2.safetensors", header: h(#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}},"#), data: eight), "trailing comma")
    expectFormatError(craft(d, "notobj.safetensors", header: h("[1,2]   "), data: []), "not an object")
    expectFormatError(craft(d, "dup.safetensors", header: h(#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#), data: eight), "duplicate key")
    expectFormatError(craft(d, "overlap.safetensors", header: h(#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#), data: eight), "overlap")
    expectFormatError(craft(d, "hole.safetensors", header: h(#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#), data: eight), "hole")
    expectFormatError(craft(d, "leftover.safetensors", header: h(#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#), data: eight), "bytes left over")
    expectFormatError(craft(d, "meta.safetensors", header: h(#"{"__metadata__":{"a":1},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#), data: eight), "non-string metadata")
    expectFormatError(craft(d, "deep.safetensors", header: h("{\"a\":" + String(repeating: "[", count: 100_000)), data: []), "deep nesting")
    expectFormatError(d + "/does-not-exist.safetensors", "missing file")
}

@Test func safetensorsModelIsAParameterSource() throws {
    let m: any ParameterSource = try SafetensorsModel(folder: stDir + "/sharded")
    #expect(m.contains("c.weight") && !m.contains("d.weight"))
    #expect(try m.shape("a.weight") == [2, 3])
    var out = [Float](repeating: 0, count: 6)
    try m.read("a.weight", into: &out, count: 6)
    #expect(out == valueTensor(6))
    #expect(throws: FormatError.self) { try m.read("a.weight", into: &out, count: 5) }
    #expect(throws: FormatError.self) { try m.shape("d.weight") }
}
