import Foundation

/// Python's operators and conversions on template values: str(), repr(), truthiness,
/// arithmetic, comparison, `in`, iteration, indexing and slicing.

func runtimeError(_ message: String) -> TemplateError { TemplateError(.runtime, message) }

extension JinjaValue {
    /// Python `str(x)`, which is what `{{ x }}` and `~` print. A container's text is
    /// refused once it passes `maxBytes` (a list can hold the same long string many
    /// times over, so its text can be far larger than the memory it takes).
    func pyStr(maxBytes: Int) throws -> String {
        switch self {
        case .undefined: return ""
        case .string(let s), .markup(let s): return s
        default: return try pyRepr(maxBytes: maxBytes)
        }
    }

    /// Python `repr(x)`, used for items inside printed lists and dicts, bounded as `pyStr`.
    func pyRepr(maxBytes: Int) throws -> String {
        var out = ""
        try repr(into: &out, level: 0, maxBytes: maxBytes)
        return out
    }

    /// A repr for error messages, cut after about 100 bytes.
    var shortRepr: String {
        var out = ""
        do { try repr(into: &out, level: 0, maxBytes: 100) } catch { out = String(decoding: out.utf8.prefix(100), as: UTF8.self) + "..." }
        return out
    }

    /// Namespaces can contain themselves, so printing stops descending at a fixed depth
    /// (Python prints `{...}` for a cycle).
    private func repr(into out: inout String, level: Int, maxBytes: Int) throws {
        func put(_ s: String) throws {
            out += s
            if out.utf8.count > maxBytes { throw sizeLimit(maxBytes) }
        }
        if level > 512 { try put("..."); return }
        switch self {
        case .undefined: try put("Undefined")
        case .none: try put("None")
        case .bool(let b): try put(b ? "True" : "False")
        case .int(let i): try put(String(i))
        case .float(let d): try put(pyFloatRepr(d))
        case .string(let s): try appendPyRepr(s, into: &out, maxBytes: maxBytes)
        case .markup(let s):
            try put("Markup(")
            try appendPyRepr(s, into: &out, maxBytes: maxBytes)
            try put(")")
        case .list(let items), .tuple(let items):
            let isTuple: Bool
            if case .tuple = self { isTuple = true } else { isTuple = false }
            try put(isTuple ? "(" : "[")
            for (n, item) in items.enumerated() {
                if n > 0 { try put(", ") }
                try item.repr(into: &out, level: level + 1, maxBytes: maxBytes)
            }
            try put(isTuple ? (items.count == 1 ? ",)" : ")") : "]")
        case .dict(let d):
            try put("{")
            for n in 0..<d.count {
                if n > 0 { try put(", ") }
                try d.keys[n].repr(into: &out, level: level + 1, maxBytes: maxBytes)
                try put(": ")
                try d.values[n].repr(into: &out, level: level + 1, maxBytes: maxBytes)
            }
            try put("}")
        case .generator: try put("<generator object>")
        case .namespace(let ns):
            try put("<Namespace ")
            try JinjaValue.dict(ns.attributes).repr(into: &out, level: level + 1, maxBytes: maxBytes)
            try put(">")
        case .callable(let c): try put("<function \(c.name)>")
        }
    }

    /// The message of an undefined value, thrown when it is used for anything but
    /// printing, testing or iterating.
    func failIfUndefined() throws {
        if case .undefined(let message) = self { throw runtimeError(message) }
    }

    /// The size that the work of handling this value grows with: bytes of a string,
    /// items of a container (their own contents are charged as they are visited).
    var workSize: Int {
        switch self {
        case .string(let s), .markup(let s): return s.utf8.count
        case .list(let items), .tuple(let items), .generator(let items): return items.count * Interpreter.workPerItem
        case .dict(let d): return d.count * Interpreter.workPerItem
        default: return Interpreter.workPerItem
        }
    }
}

/// The elements a Python `for` loop would see: list items, dict keys, string characters.
/// Charged by their number (a string's characters are made here).
func pyIterate(_ v: JinjaValue, _ interp: Interpreter) throws -> [JinjaValue] {
    switch v.unmarked {
    case .list(let items), .tuple(let items), .generator(let items):
        try interp.charge(items: items.count)
        return items
    case .dict(let d):
        try interp.charge(items: d.count)
        return d.keys
    case .string(let s):
        try interp.charge(items: s.utf8.count)
        return s.unicodeScalars.map { .string(String($0)) }
    case .undefined: return []
    default: throw runtimeError("'\(v.typeName)' object is not iterable")
    }
}

/// Python `len()` (a string's length is counted, so it is charged).
func pyLen(_ v: JinjaValue, _ interp: Interpreter) throws -> Int {
    switch v.unmarked {
    case .list(let items), .tuple(let items): return items.count
    case .dict(let d): return d.count
    case .string(let s):
        try interp.charge(bytes: s.utf8.count)
        return s.pyLength
    case .undefined: return 0
    default: throw runtimeError("object of type '\(v.typeName)' has no len()")
    }
}

/// Python `==`, charging the items and bytes it compares (the same long string can
/// sit in a list many times over, so one comparison can be long).
func pyEqual(_ a: JinjaValue, _ b: JinjaValue, _ interp: Interpreter) throws -> Bool {
    let a = a.unmarked, b = b.unmarked
    switch (a, b) {
    case (.string(let x), .string(let y)):
        guard x.utf8.count == y.utf8.count else { return false }
        try interp.charge(bytes: x.utf8.count)
        return x.utf8.elementsEqual(y.utf8)
    case (.list(let x), .list(let y)), (.tuple(let x), .tuple(let y)):
        guard x.count == y.count else { return false }
        try interp.charge(items: x.count)
        for (p, q) in zip(x, y) where try !pyEqual(p, q, interp) { return false }
        return true
    case (.dict(let x), .dict(let y)):
        guard x.count == y.count else { return false }
        for (k, v) in zip(x.keys, x.values) {
            guard let w = try interp.lookup(y, k), try pyEqual(v, w, interp) else { return false }
        }
        return true
    default:
        return a == b
    }
}

/// Python `<`; mixed types raise as in Python. Charged like `pyEqual`.
func pyLess(_ a: JinjaValue, _ b: JinjaValue, _ interp: Interpreter) throws -> Bool {
    let a = a.unmarked, b = b.unmarked
    try a.failIfUndefined(); try b.failIfUndefined()
    switch (a, b) {
    case (.string(let x), .string(let y)):
        // UTF-8 byte order is code-point order.
        try interp.charge(bytes: min(x.utf8.count, y.utf8.count))
        return x.utf8.lexicographicallyPrecedes(y.utf8)
    case (.list(let x), .list(let y)), (.tuple(let x), .tuple(let y)):
        try interp.charge(items: min(x.count, y.count))
        for (p, q) in zip(x, y) where try !pyEqual(p, q, interp) { return try pyLess(p, q, interp) }
        return x.count < y.count
    default:
        if let x = a.numeric, let y = b.numeric {
            switch (x, y) {
            case (.int(let i), .int(let j)): return i < j
            case (.int(let i), .float(let d)): return Double(i) < d
            case (.float(let d), .int(let j)): return d < Double(j)
            case (.float(let d), .float(let e)): return d < e
            default: break
            }
        }
        throw runtimeError("'<' not supported between instances of '\(a.typeName)' and '\(b.typeName)'")
    }
}

func pyCompare(_ op: String, _ a: JinjaValue, _ b: JinjaValue, _ interp: Interpreter) throws -> Bool {
    switch op {
    case "==": return try pyEqual(a, b, interp)
    case "!=": return try !pyEqual(a, b, interp)
    case "<": return try pyLess(a, b, interp)
    case ">": return try pyLess(b, a, interp)
    case "<=": return try pyLess(a, b, interp) || pyEqual(a, b, interp)
    case ">=": return try pyLess(b, a, interp) || pyEqual(a, b, interp)
    case "in": return try pyIn(a, b, interp)
    case "notin": return try !pyIn(a, b, interp)
    default: throw runtimeError("unknown comparison \(op)")
    }
}

/// Python `item in container`.
func pyIn(_ item: JinjaValue, _ container: JinjaValue, _ interp: Interpreter) throws -> Bool {
    let item = item.unmarked
    switch container.unmarked {
    case .string(let s):
        guard case .string(let sub) = item else {
            if case .undefined(let m) = item { throw runtimeError(m) }
            throw runtimeError("'in <string>' requires string as left operand, not \(item.typeName)")
        }
        try interp.charge(bytes: s.utf8.count + sub.utf8.count)
        return pyContains(s, sub)
    case .list(let items), .tuple(let items), .generator(let items):
        for x in items {
            try interp.charge(items: 1)
            if try pyEqual(x, item, interp) { return true }
        }
        return false
    case .dict(let d):
        if case .list = item { throw runtimeError("unhashable type: 'list'") }
        if case .dict = item { throw runtimeError("unhashable type: 'dict'") }
        return try interp.lookup(d, item) != nil
    case .undefined: return false
    default: throw runtimeError("argument of type '\(container.typeName)' is not iterable")
    }
}

/// Stable merge sort with a throwing comparator (Python's sorted() is stable).
func stableSorted<T>(_ items: [T], by less: (T, T) throws -> Bool) throws -> [T] {
    if items.count < 2 { return items }
    let mid = items.count / 2
    let left = try stableSorted(Array(items[..<mid]), by: less)
    let right = try stableSorted(Array(items[mid...]), by: less)
    var out: [T] = []
    out.reserveCapacity(items.count)
    var i = 0, j = 0
    while i < left.count && j < right.count {
        if try less(right[j], left[i]) { out.append(right[j]); j += 1 } else { out.append(left[i]); i += 1 }
    }
    out.append(contentsOf: left[i...])
    out.append(contentsOf: right[j...])
    return out
}

// MARK: arithmetic

private func overflow(_ op: String) -> TemplateError {
    runtimeError("integer result of '\(op)' is too large")
}

private func operandError(_ op: String, _ a: JinjaValue, _ b: JinjaValue) -> TemplateError {
    runtimeError("unsupported operand type(s) for \(op): '\(a.typeName)' and '\(b.typeName)'")
}

/// Python floor division and modulo on ints (rounding toward negative infinity).
private func floorDivMod(_ a: Int, _ b: Int) throws -> (Int, Int) {
    guard b != 0 else { throw runtimeError("integer division or modulo by zero") }
    if a == Int.min && b == -1 { throw overflow("//") }
    var q = a / b, r = a % b
    if r != 0 && ((r < 0) != (b < 0)) { q -= 1; r += b }
    return (q, r)
}

private func floatMod(_ a: Double, _ b: Double) throws -> Double {
    guard b != 0 else { throw runtimeError("float modulo") }
    var r = a.truncatingRemainder(dividingBy: b)
    if r != 0 && ((r < 0) != (b < 0)) { r += b }
    else if r == 0 { r = b < 0 ? -0.0 : 0.0 }
    return r
}

/// Python's binary arithmetic. Strings and lists built by + and * are sized (and
/// refused past the output size limit) before they are built, and charged as work.
func pyArithmetic(_ op: String, _ a: JinjaValue, _ b: JinjaValue, _ interp: Interpreter) throws -> JinjaValue {
    let maxBytes = interp.limits.maxOutputBytes
    switch (op, a, b) {
    case ("+", .markup(let x), .markup(let y)): return .markup(try interp.concatenated(x, y))
    case ("+", .markup(let x), .string(let y)): return .markup(try interp.concatenated(x, try htmlEscape(y, maxBytes: maxBytes)))
    case ("+", .string(let x), .markup(let y)): return .markup(try interp.concatenated(try htmlEscape(x, maxBytes: maxBytes), y))
    case ("%", .markup(let format), _):
        // Markup % args escapes the arguments.
        func escaped(_ v: JinjaValue) throws -> JinjaValue {
            if case .string(let s) = v { return .markup(try htmlEscape(s, maxBytes: maxBytes)) }
            return v
        }
        let args: JinjaValue
        if case .tuple(let items) = b { args = .tuple(try items.map(escaped)) } else { args = try escaped(b) }
        return .markup(try pyPercentFormat(format, args, interp))
    case ("*", .markup, _), ("*", _, .markup):
        let r = try pyArithmetic(op, a.unmarked, b.unmarked, interp)
        if case .string(let s) = r { return .markup(s) }
        return r
    default: break
    }
    let a = a.unmarked, b = b.unmarked
    if op == "%", case .string(let format) = a { return .string(try pyPercentFormat(format, b, interp)) }
    try a.failIfUndefined(); try b.failIfUndefined()
    if let x = a.numeric, let y = b.numeric {
        switch (x, y) {
        case (.int(let i), .int(let j)):
            switch op {
            case "+": let (r, o) = i.addingReportingOverflow(j); if o { throw overflow(op) }; return .int(r)
            case "-": let (r, o) = i.subtractingReportingOverflow(j); if o { throw overflow(op) }; return .int(r)
            case "*": let (r, o) = i.multipliedReportingOverflow(by: j); if o { throw overflow(op) }; return .int(r)
            case "/":
                guard j != 0 else { throw runtimeError("division by zero") }
                return .float(Double(i) / Double(j))
            case "//": return .int(try floorDivMod(i, j).0)
            case "%": return .int(try floorDivMod(i, j).1)
            case "**":
                if j < 0 {
                    guard i != 0 else { throw runtimeError("0.0 cannot be raised to a negative power") }
                    return .float(Foundation.pow(Double(i), Double(j)))
                }
                var result = 1, base = i, e = j
                while e > 0 {
                    if e & 1 == 1 { let (r, o) = result.multipliedReportingOverflow(by: base); if o { throw overflow(op) }; result = r }
                    e >>= 1
                    if e > 0 { let (r, o) = base.multipliedReportingOverflow(by: base); if o { throw overflow(op) }; base = r }
                }
                return .int(result)
            default: break
            }
        default:
            let d = x.asDouble, e = y.asDouble
            switch op {
            case "+": return .float(d + e)
            case "-": return .float(d - e)
            case "*": return .float(d * e)
            case "/":
                guard e != 0 else { throw runtimeError("float division by zero") }
                return .float(d / e)
            case "//":
                guard e != 0 else { throw runtimeError("float floor division by zero") }
                return .float(((d - (try floatMod(d, e))) / e).rounded())
            case "%": return .float(try floatMod(d, e))
            case "**":
                if d == 0 && e < 0 { throw runtimeError("0.0 cannot be raised to a negative power") }
                if d < 0 && e != e.rounded() { throw runtimeError("complex results are not supported") }
                return .float(Foundation.pow(d, e))
            default: break
            }
        }
        throw operandError(op, a, b)
    }
    switch (op, a, b) {
    case ("+", .string(let s), .string(let t)):
        return .string(try interp.concatenated(s, t))
    case ("+", .list(let s), .list(let t)):
        try interp.checkSize(s.count + t.count)
        try interp.charge(items: s.count + t.count)
        return .list(s + t)
    case ("+", .tuple(let s), .tuple(let t)):
        try interp.checkSize(s.count + t.count)
        try interp.charge(items: s.count + t.count)
        return .tuple(s + t)
    case ("+", .string, _): throw runtimeError("can only concatenate str (not \"\(b.typeName)\") to str")
    case ("+", .list, _): throw runtimeError("can only concatenate list (not \"\(b.typeName)\") to list")
    case ("*", .string, _), ("*", .list, _), ("*", .tuple, _), ("*", _, .string), ("*", _, .list), ("*", _, .tuple):
        let (seq, times) = a.numeric == nil ? (a, b) : (b, a)
        guard case .int(let n)? = times.numeric else {
            throw runtimeError("can't multiply sequence by non-int of type '\(times.typeName)'")
        }
        let count = max(n, 0)
        switch seq {
        case .string(let s):
            let (total, o) = s.utf8.count.multipliedReportingOverflow(by: count)
            guard !o, total <= maxBytes else { throw sizeLimit(maxBytes) }
            try interp.charge(bytes: total)
            // By doubling: a copy per doubling rather than an append per repetition.
            var bytes = Array(s.utf8)
            bytes.reserveCapacity(total)
            while bytes.count < total { bytes.append(contentsOf: bytes[..<min(bytes.count, total - bytes.count)]) }
            return .string(count == 0 ? "" : String(decoding: bytes, as: UTF8.self))
        case .list(let items), .tuple(let items):
            let (total, o) = items.count.multipliedReportingOverflow(by: count)
            guard !o, total <= maxBytes else { throw sizeLimit(maxBytes) }
            try interp.charge(items: total)
            var out: [JinjaValue] = []
            out.reserveCapacity(total)
            if !items.isEmpty { for _ in 0..<count { out.append(contentsOf: items) } }
            if case .tuple = seq { return .tuple(out) }
            return .list(out)
        default: break
        }
    default: break
    }
    throw operandError(op, a, b)
}

/// markupsafe.escape for a plain string, refused once it passes `maxBytes` (an escape
/// is up to five times longer than the character).
func htmlEscape(_ s: String, maxBytes: Int) throws -> String {
    var out = ""
    for c in s.unicodeScalars {
        switch c {
        case "&": out += "&amp;"
        case "<": out += "&lt;"
        case ">": out += "&gt;"
        case "\"": out += "&#34;"
        case "'": out += "&#39;"
        default: out.unicodeScalars.append(c)
        }
        if out.utf8.count > maxBytes { throw sizeLimit(maxBytes) }
    }
    return out
}

func sizeLimit(_ maxBytes: Int) -> TemplateError {
    TemplateError(.limit, "a string or list grew past the output size limit (\(maxBytes) bytes)")
}

extension JinjaValue {
    var asDouble: Double {
        switch self {
        case .int(let i): return Double(i)
        case .float(let d): return d
        case .bool(let b): return b ? 1 : 0
        default: return .nan
        }
    }
}

/// printf-style `format % args` for %s %r %d %i %f %x %%, with the flags `-+ 0#`, a
/// width and a precision. Each piece, padding included, is sized against the output size
/// limit before it is built.
func pyPercentFormat(_ format: String, _ args: JinjaValue, _ interp: Interpreter) throws -> String {
    let maxBytes = interp.limits.maxOutputBytes
    var values: [JinjaValue]
    if case .tuple(let items) = args { values = items } else { values = [args] }
    let sc = format.scalars
    try interp.charge(bytes: format.utf8.count)
    var out = "", next = 0
    func put(_ s: String, padding: Int = 0, _ fill: Unicode.Scalar = " ", left: Bool = false) throws {
        guard padding <= maxBytes - out.utf8.count - s.utf8.count else { throw sizeLimit(maxBytes) }
        try interp.charge(bytes: s.utf8.count + padding)
        if left { out += s }
        if padding > 0 { out += String(repeating: String(fill), count: padding) }
        if !left { out += s }
    }
    /// A run of ASCII digits (saturating: a number past `maxBytes` is refused anyway).
    func number(_ i: inout Int) -> Int? {
        var n: Int? = nil
        while i < sc.count, sc[i].isASCII, sc[i].properties.numericType == .decimal {
            let (m, o1) = (n ?? 0).multipliedReportingOverflow(by: 10)
            let (d, o2) = m.addingReportingOverflow(Int(sc[i].value - 0x30))
            n = o1 || o2 ? Int.max : d
            i += 1
        }
        return n
    }
    var i = 0
    while i < sc.count {
        let c = sc[i]
        i += 1
        guard c == "%" else { try put(String(c)); continue }
        var flags = Set<Unicode.Scalar>()
        while i < sc.count, "-+ 0#".unicodeScalars.contains(sc[i]) { flags.insert(sc[i]); i += 1 }
        let width = number(&i) ?? 0
        var precision: Int? = nil
        if i < sc.count, sc[i] == "." {
            i += 1
            precision = number(&i) ?? 0
        }
        guard i < sc.count else { throw runtimeError("incomplete format") }
        let conv = sc[i]
        i += 1
        if conv == "%" { try put("%"); continue }
        guard next < values.count else { throw runtimeError("not enough arguments for format string") }
        let v = values[next]
        next += 1
        if width > maxBytes || (precision ?? 0) > maxBytes { throw sizeLimit(maxBytes) }
        var text: String
        var sign = ""
        switch conv {
        case "s", "r":
            text = conv == "s" ? try v.pyStr(maxBytes: maxBytes) : try v.pyRepr(maxBytes: maxBytes)
            if let precision, text.unicodeScalars.count > precision { text = String(scalars: text.unicodeScalars.prefix(precision)) }
        case "d", "i", "x":
            guard let n = v.numeric else {
                if conv == "x" { throw runtimeError("%x format: an integer is required, not \(v.typeName)") }
                throw runtimeError("%\(conv) format: a real number is required, not \(v.typeName)")
            }
            let k: Int
            if case .int(let j) = n { k = j } else {
                if conv == "x" { throw runtimeError("%x format: an integer is required, not float") }
                let d = n.asDouble
                guard d.isFinite, let j = Int(exactly: d.rounded(.towardZero)) else { throw runtimeError("cannot convert float to integer") }
                k = j
            }
            text = String(k.magnitude, radix: conv == "x" ? 16 : 10)
            if let precision, text.count < precision { text = String(repeating: "0", count: precision - text.count) + text }
            if conv == "x" && flags.contains("#") { text = "0x" + text }
            if k < 0 { sign = "-" }
        case "f", "F":
            guard let n = v.numeric else { throw runtimeError("must be real number, not \(v.typeName)") }
            let d = n.asDouble
            let p = precision ?? 6
            // At most 309 integer digits, a point and `p` decimals.
            guard p <= maxBytes - out.utf8.count - 320 else { throw sizeLimit(maxBytes) }
            text = formatFixed(d.magnitude, p)
            if d.sign == .minus && !d.isNaN { sign = "-" }
            if conv == "F" { text = text.uppercased() }
        default: throw runtimeError("unsupported format character '\(conv)'")
        }
        if conv != "s" && conv != "r" && sign.isEmpty { sign = flags.contains("+") ? "+" : flags.contains(" ") ? " " : "" }
        let length = sign.unicodeScalars.count + text.unicodeScalars.count
        let padding = max(width - length, 0)
        if flags.contains("-") {
            try put(sign + text, padding: padding, left: true)
        } else if flags.contains("0") && conv != "s" && conv != "r" {
            try put(sign)
            try put(text, padding: padding, "0")
        } else {
            try put(sign + text, padding: padding)
        }
    }
    // Python skips this check when the argument supports indexing (list, dict, ...).
    var indexable = false
    switch args {
    case .list, .dict, .undefined: indexable = true
    default: break
    }
    if next < values.count && !indexable { throw runtimeError("not all arguments converted during string formatting") }
    return out
}

/// `%.Nf` formatting: round half to even on the exact binary value (the C library's).
func formatFixed(_ d: Double, _ precision: Int) -> String {
    if d.isNaN { return "nan" }
    if d.isInfinite { return d < 0 ? "-inf" : "inf" }
    return String(format: "%.\(max(precision, 0))f", d)
}
