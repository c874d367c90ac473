// A small strict JSON (RFC 8259) reader and writer for untrusted headers and configs:
// exact 64-bit integers, UTF-8 validated strings, duplicate keys refused, bounded
// nesting depth. Objects keep their key order.

public indirect enum JSONValue: Equatable, Sendable {
    case null
    case bool(Bool)
    case int(Int64)          // a number written without fraction or exponent that fits Int64
    case double(Double)      // any other number
    case string(String)
    case array([JSONValue])
    case object(JSONObject)

    public subscript(key: String) -> JSONValue? {
        if case .object(let o) = self { return o[key] }
        return nil
    }
    public var string: String? { if case .string(let s) = self { return s }; return nil }
    public var bool: Bool? { if case .bool(let b) = self { return b }; return nil }
    public var array: [JSONValue]? { if case .array(let a) = self { return a }; return nil }
    public var object: JSONObject? { if case .object(let o) = self { return o }; return nil }
    /// An integer value (also a double with an exact integer value, as Python may write 2.0).
    public var int: Int? {
        switch self {
        case .int(let i): return Int(exactly: i)
        case .double(let d): return d.rounded() == d && abs(d) < 9.0e15 ? Int(d) : nil
        default: return nil
        }
    }
    public var double: Double? {
        switch self {
        case .int(let i): return Double(i)
        case .double(let d): return d
        default: return nil
        }
    }
}

/// A JSON object: a dictionary plus the order in which keys were read or added.
public struct JSONObject: Equatable, Sendable {
    public private(set) var keys: [String] = []
    public private(set) var values: [String: JSONValue] = [:]
    public init() {}
    public init(_ pairs: [(String, JSONValue)]) { for (k, v) in pairs { self[k] = v } }
    public subscript(key: String) -> JSONValue? {
        get { values[key] }
        set {
            if let v = newValue {
                if values.updateValue(v, forKey: key) == nil { keys.append(key) }
            } else if values.removeValue(forKey: key) != nil {
                keys.removeAll { $0 == key }
            }
        }
    }
    public var count: Int { keys.count }
    /// Equal when the same keys map to equal values, whatever the order.
    public static func == (a: JSONObject, b: JSONObject) -> Bool { a.values == b.values }
    /// Key/value pairs in order.
    public var pairs: [(String, JSONValue)] { keys.map { ($0, values[$0]!) } }
}

public struct JSONError: Error, CustomStringConvertible {
    public let message: String
    public let offset: Int
    public var description: String { "invalid JSON at byte \(offset): \(message)" }
}

extension JSONValue {
    /// Parses a JSON file (at most `maxBytes`), with errors naming the file.
    public static func parseFile(_ path: String, maxBytes: Int = FileLimits.jsonBytes) throws -> JSONValue {
        let file = try MappedFile(path: path, maxBytes: maxBytes)
        do { return try parse(UnsafeRawBufferPointer(start: file.base, count: file.count)) } catch let e as JSONError {
            throw FormatError(path, "\(e)")
        }
    }

    /// Parses one JSON value filling all of `bytes` (surrounding whitespace allowed).
    public static func parse(_ bytes: UnsafeRawBufferPointer, maxDepth: Int = 256) throws -> JSONValue {
        var p = JSONParser(bytes.bindMemory(to: UInt8.self), maxDepth: maxDepth)
        p.skipSpace()
        let v = try p.value(depth: 0)
        p.skipSpace()
        if p.at < p.end { throw p.error("unexpected data after the value") }
        return v
    }
    public static func parse(_ bytes: [UInt8], maxDepth: Int = 256) throws -> JSONValue {
        try bytes.withUnsafeBytes { try parse($0, maxDepth: maxDepth) }
    }
    public static func parse(_ text: String, maxDepth: Int = 256) throws -> JSONValue {
        try parse(Array(text.utf8), maxDepth: maxDepth)
    }
}

private struct JSONParser {
    let s: UnsafeBufferPointer<UInt8>
    let end: Int
    let maxDepth: Int
    var at = 0
    init(_ s: UnsafeBufferPointer<UInt8>, maxDepth: Int) { self.s = s; end = s.count; self.maxDepth = maxDepth }

    func error(_ m: String) -> JSONError { JSONError(message: m, offset: at) }

    mutating func skipSpace() {
        while at < end, s[at] == 0x20 || s[at] == 0x0a || s[at] == 0x0d || s[at] == 0x09 { at += 1 }
    }

    mutating func literal(_ word: StaticString, _ v: JSONValue) throws -> JSONValue {
        let n = word.utf8CodeUnitCount
        guard end - at >= n else { throw error("truncated literal") }
        for i in 0..<n where s[at + i] != word.utf8Start[i] { throw error("invalid literal") }
        at += n
        return v
    }

    mutating func value(depth: Int) throws -> JSONValue {
        guard depth < maxDepth else { throw error("nesting deeper than \(maxDepth)") }
        guard at < end else { throw error("unexpected end of data") }
        switch s[at] {
        case UInt8(ascii: "{"):
            at += 1
            var obj = JSONObject()
            skipSpace()
            if at < end, s[at] == UInt8(ascii: "}") { at += 1; return .object(obj) }
            while true {
                skipSpace()
                guard at < end, s[at] == UInt8(ascii: "\"") else { throw error("expected a string key") }
                let key = try string()
                skipSpace()
                guard at < end, s[at] == UInt8(ascii: ":") else { throw error("expected ':'") }
                at += 1
                skipSpace()
                let v = try value(depth: depth + 1)
                if obj[key] != nil { throw error("duplicate key \"\(key.count > 40 ? key.prefix(40) + "…" : key)\"") }
                obj[key] = v
                skipSpace()
                guard at < end else { throw error("unterminated object") }
                if s[at] == UInt8(ascii: ",") { at += 1; continue }
                if s[at] == UInt8(ascii: "}") { at += 1; return .object(obj) }
                throw error("expected ',' or '}'")
            }
        case UInt8(ascii: "["):
            at += 1
            var arr: [JSONValue] = []
            skipSpace()
            if at < end, s[at] == UInt8(ascii: "]") { at += 1; return .array(arr) }
            while true {
                skipSpace()
                arr.append(try value(depth: depth + 1))
                skipSpace()
                guard at < end else { throw error("unterminated array") }
                if s[at] == UInt8(ascii: ",") { at += 1; continue }
                if s[at] == UInt8(ascii: "]") { at += 1; return .array(arr) }
                throw error("expected ',' or ']'")
            }
        case UInt8(ascii: "\""): return .string(try string())
        case UInt8(ascii: "t"): return try literal("true", .bool(true))
        case UInt8(ascii: "f"): return try literal("false", .bool(false))
        case UInt8(ascii: "n"): return try literal("null", .null)
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return try number()
        default: throw error("unexpected character")
        }
    }

    mutating func number() throws -> JSONValue {
        let start = at
        func digits() -> Int {
            let d0 = at
            while at < end, s[at] >= 0x30, s[at] <= 0x39 { at += 1 }
            return at - d0
        }
        if s[at] == UInt8(ascii: "-") { at += 1 }
        let intStart = at
        let nInt = digits()
        guard nInt > 0 else { throw error("invalid number") }
        if nInt > 1, s[intStart] == UInt8(ascii: "0") { throw error("leading zero in number") }
        var isInteger = true
        if at < end, s[at] == UInt8(ascii: ".") {
            at += 1; isInteger = false
            guard digits() > 0 else { throw error("invalid fraction") }
        }
        if at < end, s[at] == UInt8(ascii: "e") || s[at] == UInt8(ascii: "E") {
            at += 1; isInteger = false
            if at < end, s[at] == UInt8(ascii: "+") || s[at] == UInt8(ascii: "-") { at += 1 }
            guard digits() > 0 else { throw error("invalid exponent") }
        }
        let text = String(decoding: UnsafeBufferPointer(rebasing: s[start..<at]), as: UTF8.self)
        if isInteger, let i = Int64(text) { return .int(i) }
        guard let d = Double(text) else { throw error("invalid number") }
        return .double(d)
    }

    mutating func hex4() throws -> UInt32 {
        guard end - at >= 4 else { throw error("truncated \\u escape") }
        var v: UInt32 = 0
        for _ in 0..<4 {
            let c = s[at]
            let d: UInt32
            switch c {
            case 0x30...0x39: d = UInt32(c - 0x30)
            case 0x41...0x46: d = UInt32(c - 0x41 + 10)
            case 0x61...0x66: d = UInt32(c - 0x61 + 10)
            default: throw error("invalid \\u escape")
            }
            v = v << 4 | d
            at += 1
        }
        return v
    }

    /// A string starting at the opening quote.
    mutating func string() throws -> String {
        at += 1
        let start = at
        // Fast path: no escapes.
        while at < end, s[at] != UInt8(ascii: "\""), s[at] != UInt8(ascii: "\\"), s[at] >= 0x20 { at += 1 }
        guard at < end else { throw error("unterminated string") }
        if s[at] == UInt8(ascii: "\"") {
            guard let str = String(validating: UnsafeBufferPointer(rebasing: s[start..<at]), as: UTF8.self) else {
                throw error("string is not valid UTF-8")
            }
            at += 1
            return str
        }
        var out = Array(UnsafeBufferPointer(rebasing: s[start..<at]))
        while true {
            guard at < end else { throw error("unterminated string") }
            let c = s[at]
            if c == UInt8(ascii: "\"") { at += 1; break }
            if c < 0x20 { throw error("control character in string") }
            if c != UInt8(ascii: "\\") { out.append(c); at += 1; continue }
            at += 1
            guard at < end else { throw error("unterminated escape") }
            let e = s[at]; at += 1
            switch e {
            case UInt8(ascii: "\""): out.append(0x22)
            case UInt8(ascii: "\\"): out.append(0x5c)
            case UInt8(ascii: "/"): out.append(0x2f)
            case UInt8(ascii: "b"): out.append(0x08)
            case UInt8(ascii: "f"): out.append(0x0c)
            case UInt8(ascii: "n"): out.append(0x0a)
            case UInt8(ascii: "r"): out.append(0x0d)
            case UInt8(ascii: "t"): out.append(0x09)
            case UInt8(ascii: "u"):
                var code = try hex4()
                if code >= 0xD800, code < 0xDC00 {
                    guard end - at >= 6, s[at] == UInt8(ascii: "\\"), s[at + 1] == UInt8(ascii: "u") else {
                        throw error("unpaired surrogate")
                    }
                    at += 2
                    let low = try hex4()
                    guard low >= 0xDC00, low < 0xE000 else { throw error("unpaired surrogate") }
                    code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)
                } else if code >= 0xDC00, code < 0xE000 {
                    throw error("unpaired surrogate")
                }
                out.append(contentsOf: String(Character(Unicode.Scalar(code)!)).utf8)
            default: throw error("invalid escape")
            }
        }
        guard let str = String(validating: out, as: UTF8.self) else { throw error("string is not valid UTF-8") }
        return str
    }
}

// MARK: - writing

extension JSONValue {
    /// Compact JSON (no spaces), keys in object order; non-ASCII written as UTF-8, as
    /// serde_json does.
    public func compact() -> String {
        var out = ""
        write(into: &out, indent: nil, level: 0, sortKeys: false)
        return out
    }
    /// Indented JSON like Python's `json.dumps(v, indent=2, sort_keys=sortKeys)`, except
    /// non-ASCII characters are kept as UTF-8 (Python's `ensure_ascii=False`).
    public func pretty(indent: Int = 2, sortKeys: Bool = true) -> String {
        var out = ""
        write(into: &out, indent: indent, level: 0, sortKeys: sortKeys)
        return out
    }

    private func write(into out: inout String, indent: Int?, level: Int, sortKeys: Bool) {
        func newline(_ lvl: Int) {
            if let n = indent { out += "\n" + String(repeating: " ", count: n * lvl) }
        }
        switch self {
        case .null: out += "null"
        case .bool(let b): out += b ? "true" : "false"
        case .int(let i): out += String(i)
        case .double(let d): out += jsonNumber(d)
        case .string(let s): appendJSONString(s, to: &out)
        case .array(let a):
            if a.isEmpty { out += "[]"; return }
            out += "["
            for (i, v) in a.enumerated() {
                if i > 0 { out += indent == nil ? "," : "," }
                newline(level + 1)
                v.write(into: &out, indent: indent, level: level + 1, sortKeys: sortKeys)
            }
            newline(level)
            out += "]"
        case .object(let o):
            if o.count == 0 { out += "{}"; return }
            out += "{"
            let keys = sortKeys ? o.keys.sorted { $0.unicodeScalars.lexicographicallyPrecedes($1.unicodeScalars) } : o.keys
            for (i, k) in keys.enumerated() {
                if i > 0 { out += "," }
                newline(level + 1)
                appendJSONString(k, to: &out)
                out += indent == nil ? ":" : ": "
                o[k]!.write(into: &out, indent: indent, level: level + 1, sortKeys: sortKeys)
            }
            newline(level)
            out += "}"
        }
    }
}

/// A double as JSON: integral values keep a ".0" like Python; non-finite values (not
/// representable in JSON) become null.
func jsonNumber(_ d: Double) -> String {
    guard d.isFinite else { return "null" }
    return "\(d)"
}

/// Appends `s` as a quoted JSON string: escapes quote, backslash and control characters
/// (\b \f \n \r \t, others as \u00XX), everything else as is.
public func appendJSONString(_ s: String, to out: inout String) {
    out += "\""
    for u in s.unicodeScalars {
        switch u {
        case "\"": out += "\\\""
        case "\\": out += "\\\\"
        case "\n": out += "\\n"
        case "\r": out += "\\r"
        case "\t": out += "\\t"
        case "\u{08}": out += "\\b"
        case "\u{0C}": out += "\\f"
        default:
            if u.value < 0x20 {
                let h = String(u.value, radix: 16)
                out += "\\u" + String(repeating: "0", count: 4 - h.count) + h
            } else {
                out.unicodeScalars.append(u)
            }
        }
    }
    out += "\""
}
