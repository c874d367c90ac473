import ArgumentParser
import Foundation
import Formats
import Recovery
import Tensor

/// Prints a JSON object on stdout (keys sorted, so output is stable for scripts).
func printJSON<T: Encodable>(_ value: T) throws {
    FileHandle.standardOutput.write(try jsonLine(value))
}

/// One JSON value on one line, keys sorted, newline-terminated (JSON lines output).
func jsonLine<T: Encodable>(_ value: T) throws -> Data {
    let e = JSONEncoder()
    e.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
    return try e.encode(value) + Data("\n".utf8)
}

/// Values as JSON lines, written atomically.
func writeJSONLines<T: Encodable>(_ values: [T], to path: String) throws {
    var lines = Data()
    for v in values { lines.append(try jsonLine(v)) }
    try writeAtomically(lines, to: path)
}

/// Peak resident memory of this process, in bytes.
func peakResidentBytes() -> Int {
    var u = rusage()
    getrusage(Int32(RUSAGE_SELF.rawValue), &u)
    return u.ru_maxrss * 1024
}

/// `--dtype` of a GGUF output: the type patched tensors are stored as.
func ggufOutputType(_ name: String) throws -> GGMLType {
    guard let t = ModelOutput.ggufTypes.first(where: { $0.name.lowercased() == name.lowercased() }) else {
        throw ValidationError("--dtype must be one of \(ModelOutput.ggufTypes.map { $0.name.lowercased() }.joined(separator: ", "))")
    }
    return t
}

/// The help text of `--dtype`.
let ggufOutputTypeHelp = ArgumentHelp("GGUF output only: type of patched tensors: f32 (lossless), f16, q8_0 or q4_k (lossy; rows that are not whole blocks fall back to q8_0, then f16).")
