import Foundation

/// Decodes a JSON file written by Realign itself (a checkpoint's state, a stage's result);
/// a truncated, hand-edited or foreign file gives one line naming it and what is wrong,
/// not a `DecodingError` dump.
public func readJSONFile<T: Decodable>(_ type: T.Type, _ path: String, what: String) throws -> T {
    let data = try MappedFile.contents(path, maxBytes: FileLimits.jsonBytes)
    do { return try JSONDecoder().decode(T.self, from: data) } catch {
        throw FormatError(path, "not a valid \(what): \(decodingProblem(error))")
    }
}

/// A `DecodingError` in one line: where in the document, and what.
public func decodingProblem(_ error: Error) -> String {
    func at(_ c: DecodingError.Context) -> String {
        c.codingPath.isEmpty ? "" : c.codingPath.map { $0.intValue.map(String.init) ?? $0.stringValue }.joined(separator: ".") + ": "
    }
    switch error as? DecodingError {
    case .dataCorrupted(let c)?: return at(c) + c.debugDescription
    case .keyNotFound(let k, let c)?: return at(c) + "missing key \"\(k.stringValue)\""
    case .typeMismatch(_, let c)?, .valueNotFound(_, let c)?: return at(c) + c.debugDescription
    default: return "\(error)"
    }
}
