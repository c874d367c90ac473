import Foundation

/// JSON in and out of template values, both the way Python's `json` module does it:
/// parsing keeps object key order and the int/float distinction, and `tojson` follows
/// `json.dumps(x, ensure_ascii=False, indent=..., separators=..., sort_keys=...)`.

extension JinjaValue {
    /// Parses JSON text (as Python's json.loads would) into a value.
    public init(json: String) throws {
        var p = JSONParser(bytes: Array(json.utf8))
        p.skipSpace()
        let v = try p.value(depth: 0)
        p.skipSpace()
        guard p.i == p.bytes.count else { throw p.fail("extra data") }
        self = v
    }

    /// `json.dumps` of this value with transformers' `tojson` defaults.
    public func jsonString(indent: String? = nil, sortKeys: Bool = false) throws -> String {
        var out = ""
        var options = JSONOptions()
        options.indent = indent
        options.sortKeys = sortKeys
        var unbounded = JinjaLimits()
        unbounded.maxSteps = .max
        unbounded.maxOutputBytes = .max
        try writeJSON(self, &out, options, level: 0, Interpreter(limits: unbounded, now: Date(), timeZone: .current))
        return out
    }
}

struct JSONOptions {
    var indent: String? = nil
    var itemSeparator: String? = nil  // default depends on indent, as in Python
    var keySeparator = ": "
    var sortKeys = false
    var ensureASCII = false
    var maxBytes = Int.max
}

private struct JSONParser {
    let bytes: [UInt8]
    var i = 0

    func fail(_ message: String) -> TemplateError { TemplateError(.runtime, "invalid JSON: \(message) at byte \(i)") }

    mutating func skipSpace() {
        while i < bytes.count, bytes[i] == 0x20 || bytes[i] == 0x0A || bytes[i] == 0x0D || bytes[i] == 0x09 { i += 1 }
    }

    mutating func literal(_ word: String, _ v: JinjaValue) throws -> JinjaValue {
        let w = Array(word.utf8)
        guard i + w.count <= bytes.count, Array(bytes[i..<(i + w.count)]) == w else { throw fail("unexpected character") }
        i += w.count
        return v
    }

    mutating func value(depth: Int) throws -> JinjaValue {
        guard depth < 512 else { throw fail("nested too deeply") }
        guard i < bytes.count else { throw fail("unexpected end") }
        switch bytes[i] {
        case UInt8(ascii: "{"):
            i += 1
            var d = JinjaDict()
            skipSpace()
            if i < bytes.count, bytes[i] == UInt8(ascii: "}") { i += 1; return .dict(d) }
            while true {
                skipSpace()
                guard i < bytes.count, bytes[i] == UInt8(ascii: "\"") else { throw fail("expected a key") }
                let k = try string()
                skipSpace()
                guard i < bytes.count, bytes[i] == UInt8(ascii: ":") else { throw fail("expected ':'") }
                i += 1
                skipSpace()
                d[.string(k)] = try value(depth: depth + 1)
                skipSpace()
                guard i < bytes.count else { throw fail("unexpected end") }
                if bytes[i] == UInt8(ascii: ",") { i += 1; continue }
                if bytes[i] == UInt8(ascii: "}") { i += 1; return .dict(d) }
                throw fail("expected ',' or '}'")
            }
        case UInt8(ascii: "["):
            i += 1
            var items: [JinjaValue] = []
            skipSpace()
            if i < bytes.count, bytes[i] == UInt8(ascii: "]") { i += 1; return .list(items) }
            while true {
                skipSpace()
                items.append(try value(depth: depth + 1))
                skipSpace()
                guard i < bytes.count else { throw fail("unexpected end") }
                if bytes[i] == UInt8(ascii: ",") { i += 1; continue }
                if bytes[i] == UInt8(ascii: "]") { i += 1; return .list(items) }
                throw fail("expected ',' or ']'")
            }
        case UInt8(ascii: "\""): return .string(try string())
        case UInt8(ascii: "t"): return try literal("true", .bool(true))
        case UInt8(ascii: "f"): return try literal("false", .bool(false))
        case UInt8(ascii: "n"): return try literal("null", .none)
        case UInt8(ascii: "N"): return try literal("NaN", .float(.nan))
        case UInt8(ascii: "I"): return try literal("Infinity", .float(.infinity))
        default: return try number()
        }
    }

    mutating func number() throws -> JinjaValue {
        let start = i
        if i < bytes.count, bytes[i] == UInt8(ascii: "-") {
            i += 1
            if i < bytes.count, bytes[i] == UInt8(ascii: "I") { return try literal("Infinity", .float(-.infinity)) }
        }
        var isFloat = false
        func digits() { while i < bytes.count, bytes[i] >= 0x30, bytes[i] <= 0x39 { i += 1 } }
        let intStart = i
        digits()
        guard i > intStart else { throw fail("unexpected character") }
        if i < bytes.count, bytes[i] == UInt8(ascii: ".") {
            i += 1; isFloat = true
            let f = i; digits()
            guard i > f else { throw fail("bad number") }
        }
        if i < bytes.count, bytes[i] == UInt8(ascii: "e") || bytes[i] == UInt8(ascii: "E") {
            i += 1; isFloat = true
            if i < bytes.count, bytes[i] == UInt8(ascii: "+") || bytes[i] == UInt8(ascii: "-") { i += 1 }
            let e = i; digits()
            guard i > e else { throw fail("bad number") }
        }
        let text = utf8String(bytes[start..<i])
        if !isFloat, let v = Int(text) { return .int(v) }
        guard let d = Double(text) else { throw fail("bad number") }
        return .float(d)
    }

    mutating func string() throws -> String {
        i += 1  // opening quote
        var out: [UInt8] = []
        while true {
            guard i < bytes.count else { throw fail("unterminated string") }
            let b = bytes[i]
            i += 1
            if b == UInt8(ascii: "\"") { break }
            if b != UInt8(ascii: "\\") { out.append(b); continue }
            guard i < bytes.count else { throw fail("unterminated string") }
            let e = bytes[i]
            i += 1
            switch e {
            case UInt8(ascii: "\""): out.append(0x22)
            case UInt8(ascii: "\\"): out.append(0x5C)
            case UInt8(ascii: "/"): out.append(0x2F)
            case UInt8(ascii: "b"): out.append(0x08)
            case UInt8(ascii: "f"): out.append(0x0C)
            case UInt8(ascii: "n"): out.append(0x0A)
            case UInt8(ascii: "r"): out.append(0x0D)
            case UInt8(ascii: "t"): out.append(0x09)
            case UInt8(ascii: "u"):
                var code = try hex4()
                if code >= 0xD800 && code < 0xDC00, i + 1 < bytes.count, bytes[i] == UInt8(ascii: "\\"), bytes[i + 1] == UInt8(ascii: "u") {
                    let save = i
                    i += 2
                    let low = try hex4()
                    if low >= 0xDC00 && low < 0xE000 { code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00) } else { i = save }
                }
                let scalar = Unicode.Scalar(code) ?? "\u{FFFD}"
                out.append(contentsOf: Array(String(scalar).utf8))
            default: throw fail("invalid escape")
            }
        }
        return utf8String(out)
    }

    mutating func hex4() throws -> UInt32 {
        guard i + 4 <= bytes.count, let v = UInt32(utf8String(bytes[i..<(i + 4)]), radix: 16) else { throw fail("bad \\u escape") }
        i += 4
        return v
    }
}

private func jsonFloat(_ d: Double) -> String {
    if d.isNaN { return "NaN" }
    if d.isInfinite { return d < 0 ? "-Infinity" : "Infinity" }
    return pyFloatRepr(d)
}

/// A JSON string literal as Python's json encoder writes it, appended to `out`; refused
/// once `out` passes `maxBytes` (escapes make it up to twelve times longer than `s`).
func jsonQuote(_ s: String, into out: inout String, ensureASCII: Bool, maxBytes: Int) throws {
    out += "\""
    for c in s.unicodeScalars {
        if out.utf8.count > maxBytes { throw jsonSizeLimit(maxBytes) }
        switch c {
        case "\"": out += "\\\""
        case "\\": out += "\\\\"
        case "\n": out += "\\n"
        case "\r": out += "\\r"
        case "\t": out += "\\t"
        case "\u{08}": out += "\\b"
        case "\u{0C}": out += "\\f"
        default:
            if c.value < 0x20 || (ensureASCII && c.value > 0x7E) {
                func u(_ v: UInt32) -> String {
                    let h = String(v, radix: 16)
                    return "\\u" + String(repeating: "0", count: 4 - h.count) + h
                }
                if c.value >= 0x10000 {
                    let v = c.value - 0x10000
                    out += u(0xD800 + (v >> 10)) + u(0xDC00 + (v & 0x3FF))
                } else {
                    out += u(c.value)
                }
            } else {
                out.unicodeScalars.append(c)
            }
        }
    }
    out += "\""
    if out.utf8.count > maxBytes { throw jsonSizeLimit(maxBytes) }
}

private func jsonSizeLimit(_ maxBytes: Int) -> TemplateError {
    TemplateError(.limit, "tojson output exceeds the output size limit (\(maxBytes) bytes)")
}

/// Writes `v` as JSON; the text is refused once it passes `o.maxBytes` (each piece is
/// checked before it is appended), and sorting keys is charged to `interp`.
func writeJSON(_ v: JinjaValue, _ out: inout String, _ o: JSONOptions, level: Int, _ interp: Interpreter) throws {
    guard level < 256 else { throw TemplateError(.runtime, "tojson: value nested too deeply") }
    func put(_ s: String) throws {
        guard out.utf8.count + s.utf8.count <= o.maxBytes else { throw jsonSizeLimit(o.maxBytes) }
        out += s
    }
    let v = v.unmarked
    let itemSep = o.itemSeparator ?? (o.indent == nil ? ", " : ",")
    func newline(_ l: Int) throws {
        if let ind = o.indent {
            let (size, overflow) = ind.utf8.count.multipliedReportingOverflow(by: l)
            guard !overflow, out.utf8.count + 1 + size <= o.maxBytes else { throw jsonSizeLimit(o.maxBytes) }
            out += "\n"
            for _ in 0..<l { out += ind }
        }
    }
    switch v {
    case .none: try put("null")
    case .bool(let b): try put(b ? "true" : "false")
    case .int(let i): try put(String(i))
    case .float(let d): try put(jsonFloat(d))
    case .string(let s): try jsonQuote(s, into: &out, ensureASCII: o.ensureASCII, maxBytes: o.maxBytes)
    case .list(let items), .tuple(let items):
        if items.isEmpty { try put("[]"); return }
        try put("[")
        for (n, item) in items.enumerated() {
            if n > 0 { try put(itemSep) }
            try newline(level + 1)
            try writeJSON(item, &out, o, level: level + 1, interp)
        }
        try newline(level)
        try put("]")
    case .dict(let d):
        if d.isEmpty { try put("{}"); return }
        var pairs = d.pairs
        if o.sortKeys {
            pairs = try stableSorted(pairs) {
                try interp.charge(items: 1)
                return try pyLess($0.0, $1.0, interp)
            }
        }
        try put("{")
        for (n, (k, item)) in pairs.enumerated() {
            if n > 0 { try put(itemSep) }
            try newline(level + 1)
            let key: String
            switch k {
            case .string(let s): key = s
            case .int(let i): key = String(i)
            case .float(let f): key = jsonFloat(f)
            case .bool(let b): key = b ? "true" : "false"
            case .none: key = "null"
            default: throw TemplateError(.runtime, "keys must be str, int, float, bool or None, not \(k.typeName)")
            }
            try jsonQuote(key, into: &out, ensureASCII: o.ensureASCII, maxBytes: o.maxBytes)
            try put(o.keySeparator)
            try writeJSON(item, &out, o, level: level + 1, interp)
        }
        try newline(level)
        try put("}")
    default:
        throw TemplateError(.runtime, "Object of type \(v.typeName) is not JSON serializable")
    }
}
