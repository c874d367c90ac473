import Foundation

/// Python `str` semantics on Swift strings. Python strings are sequences of code points
/// compared by code point, while Swift's String works on grapheme clusters with
/// canonical equivalence, so everything here goes through unicode scalars or UTF-8.

typealias Scalars = [Unicode.Scalar]

extension String {
    var scalars: Scalars { Array(unicodeScalars) }
    init(scalars: some Sequence<Unicode.Scalar>) {
        var v = String.UnicodeScalarView()
        v.append(contentsOf: scalars)
        self = String(v)
    }
    /// Code-point length, as Python's `len()`.
    var pyLength: Int { unicodeScalars.count }
}

/// `<` on strings by code point, as Python compares them.
func pyStringLess(_ a: String, _ b: String) -> Bool {
    a.unicodeScalars.lexicographicallyPrecedes(b.unicodeScalars)
}

/// Byte offsets of non-overlapping occurrences of `needle` in `hay`, leftmost first
/// (UTF-8 search is code-point search because UTF-8 is self-synchronizing). Empty
/// needle matches at every code-point boundary, as in Python. Knuth–Morris–Pratt keeps
/// the search linear in the haystack whatever the needle (a naive scan is quadratic on
/// "aaa…b").
func pyFindAll(_ hay: [UInt8], _ needle: [UInt8], limit: Int = Int.max) -> [Int] {
    var out: [Int] = []
    if needle.isEmpty {
        var i = 0
        while i <= hay.count && out.count < limit {
            out.append(i)
            if i == hay.count { break }
            i += 1
            while i < hay.count && hay[i] & 0xC0 == 0x80 { i += 1 }
        }
        return out
    }
    guard needle.count <= hay.count, limit > 0 else { return out }
    // fail[k]: length of the longest proper prefix of needle[0...k] that is also its suffix.
    var fail = [Int](repeating: 0, count: needle.count)
    var k = 0
    for i in 1..<max(needle.count, 1) {
        while k > 0 && needle[i] != needle[k] { k = fail[k - 1] }
        if needle[i] == needle[k] { k += 1 }
        fail[i] = k
    }
    k = 0
    for (i, b) in hay.enumerated() {
        while k > 0 && b != needle[k] { k = fail[k - 1] }
        if b == needle[k] { k += 1 }
        if k == needle.count {
            out.append(i + 1 - needle.count)
            if out.count == limit { break }
            k = 0   // non-overlapping: start afresh after the match
        }
    }
    return out
}

/// Byte offsets of non-overlapping occurrences found scanning from the right (as
/// str.rsplit and str.rfind do), rightmost first: a left-to-right search of the reversed
/// bytes for the reversed needle.
func pyFindAllFromRight(_ hay: [UInt8], _ needle: [UInt8], limit: Int = Int.max) -> [Int] {
    if needle.isEmpty { return limit > 0 ? [hay.count] : [] }
    return pyFindAll(Array(hay.reversed()), Array(needle.reversed()), limit: limit).map { hay.count - $0 - needle.count }
}

func utf8String(_ bytes: some Collection<UInt8>) -> String { String(decoding: bytes, as: UTF8.self) }

/// str.replace, refused before it is built if the result would pass `maxBytes`.
func pyReplace(_ s: String, _ old: String, _ new: String, count: Int = -1, maxBytes: Int) throws -> String {
    let hay = Array(s.utf8), needle = Array(old.utf8), replacement = Array(new.utf8)
    let hits = pyFindAll(hay, needle, limit: count < 0 ? Int.max : count)
    if hits.isEmpty { return s }
    let (grown, o1) = hits.count.multipliedReportingOverflow(by: replacement.count)
    let (size, o2) = (hay.count - hits.count * needle.count).addingReportingOverflow(grown)
    guard !o1, !o2, size <= maxBytes else { throw sizeLimit(maxBytes) }
    var out: [UInt8] = []
    out.reserveCapacity(size)
    var last = 0
    for h in hits {
        out.append(contentsOf: hay[last..<h])
        out.append(contentsOf: replacement)
        last = h + needle.count
    }
    out.append(contentsOf: hay[last...])
    return utf8String(out)
}

func pyContains(_ s: String, _ sub: String) -> Bool {
    !pyFindAll(Array(s.utf8), Array(sub.utf8), limit: 1).isEmpty
}

func pyCount(_ s: String, _ sub: String) -> Int { pyFindAll(Array(s.utf8), Array(sub.utf8)).count }

func pyHasPrefix(_ s: String, _ p: String) -> Bool { s.utf8.starts(with: p.utf8) }
func pyHasSuffix(_ s: String, _ p: String) -> Bool { s.utf8.reversed().starts(with: p.utf8.reversed()) }

/// Code-point index of the first (or last) occurrence, or -1.
func pyFind(_ s: String, _ sub: String, last: Bool = false) -> Int {
    let hay = Array(s.utf8), needle = Array(sub.utf8)
    let hits = last ? pyFindAllFromRight(hay, needle, limit: 1) : pyFindAll(hay, needle, limit: 1)
    guard let byteOffset = hits.first else { return -1 }
    return utf8String(hay[..<byteOffset]).unicodeScalars.count
}

/// str.strip / lstrip / rstrip; `chars` nil means Python whitespace.
func pyStrip(_ s: String, _ chars: String?, left: Bool = true, right: Bool = true) -> String {
    let set = chars.map { Set($0.unicodeScalars) }
    func strip(_ c: Unicode.Scalar) -> Bool { set.map { $0.contains(c) } ?? isPythonSpace(c) }
    let sc = s.scalars
    var lo = 0, hi = sc.count
    if left { while lo < hi && strip(sc[lo]) { lo += 1 } }
    if right { while hi > lo && strip(sc[hi - 1]) { hi -= 1 } }
    if lo == 0 && hi == sc.count { return s }
    return String(scalars: sc[lo..<hi])
}

/// str.split(sep, maxsplit) and str.rsplit.
func pySplit(_ s: String, _ sep: String?, maxSplit: Int = -1, fromRight: Bool = false) throws -> [String] {
    if let sep {
        guard !sep.isEmpty else { throw TemplateError(.runtime, "empty separator") }
        let hay = Array(s.utf8), needle = Array(sep.utf8)
        var hits = pyFindAll(hay, needle)
        if maxSplit >= 0 && hits.count > maxSplit {
            if fromRight {
                hits = pyFindAllFromRight(hay, needle, limit: maxSplit).reversed()
            } else {
                hits = Array(hits.prefix(maxSplit))
            }
        }
        var parts: [String] = []
        var last = 0
        for h in hits { parts.append(utf8String(hay[last..<h])); last = h + needle.count }
        parts.append(utf8String(hay[last...]))
        return parts
    }
    // Whitespace splitting: runs of whitespace separate, ends are dropped.
    let sc = s.scalars
    var words: [Range<Int>] = []
    var i = 0
    while i < sc.count {
        while i < sc.count && isPythonSpace(sc[i]) { i += 1 }
        if i == sc.count { break }
        let start = i
        while i < sc.count && !isPythonSpace(sc[i]) { i += 1 }
        words.append(start..<i)
    }
    if maxSplit >= 0 && words.count > maxSplit {
        if maxSplit == 0 {
            let t = pyStrip(s, nil, left: !fromRight, right: fromRight)
            return t.isEmpty ? [] : [t]
        }
        if fromRight {
            let keep = words.suffix(maxSplit)
            let headEnd = words[words.count - maxSplit - 1].upperBound
            return [String(scalars: sc[0..<headEnd])] + keep.map { String(scalars: sc[$0]) }
        } else {
            let keep = words.prefix(maxSplit)
            let tailStart = words[maxSplit].lowerBound
            return keep.map { String(scalars: sc[$0]) } + [String(scalars: sc[tailStart...])]
        }
    }
    return words.map { String(scalars: sc[$0]) }
}

/// str.splitlines() (without keepends).
func pySplitLines(_ s: String) -> [String] {
    let sc = s.scalars
    var lines: [String] = []
    var start = 0, i = 0
    while i < sc.count {
        let c = sc[i].value
        if c == 0x0A || c == 0x0B || c == 0x0C || c == 0x0D || c == 0x1C || c == 0x1D || c == 0x1E || c == 0x85 || c == 0x2028 || c == 0x2029 {
            lines.append(String(scalars: sc[start..<i]))
            if c == 0x0D && i + 1 < sc.count && sc[i + 1] == "\n" { i += 1 }
            i += 1
            start = i
        } else {
            i += 1
        }
    }
    if start < sc.count { lines.append(String(scalars: sc[start...])) }
    return lines
}

// MARK: case mapping

private func isCased(_ c: Unicode.Scalar) -> Bool {
    c.properties.isUppercase || c.properties.isLowercase || c.properties.generalCategory == .titlecaseLetter
}

/// Appends the case mappings of each scalar: charged by the input's size, and refused
/// once the text passes the output size limit (a mapping can be three scalars long, so
/// the result can outgrow its input).
private func mapCase(_ s: String, _ interp: Interpreter, ascii: ((UInt8) -> UInt8)? = nil,
                     _ mapping: (Unicode.Scalar, _ index: Int) -> String) throws -> String {
    try interp.charge(bytes: s.utf8.count)
    let maxBytes = interp.limits.maxOutputBytes
    // ASCII text (most of it) byte by byte: the same result, many times faster.
    if let ascii, s.utf8.allSatisfy({ $0 < 0x80 }) {
        if s.utf8.count > maxBytes { throw sizeLimit(maxBytes) }
        return String(decoding: s.utf8.map(ascii), as: UTF8.self)
    }
    var out = ""
    for (i, c) in s.unicodeScalars.enumerated() {
        out += mapping(c, i)
        if out.utf8.count > maxBytes { throw sizeLimit(maxBytes) }
    }
    return out
}

/// The case mapping of an ASCII scalar without a Unicode property lookup.
private func asciiCase(_ c: Unicode.Scalar, upper: Bool) -> String {
    let v = c.value
    if upper, v >= 0x61, v <= 0x7A { return String(Unicode.Scalar(v - 0x20)!) }
    if !upper, v >= 0x41, v <= 0x5A { return String(Unicode.Scalar(v + 0x20)!) }
    return String(c)
}

private func upperMapping(_ c: Unicode.Scalar) -> String { c.isASCII ? asciiCase(c, upper: true) : c.properties.uppercaseMapping }
private func lowerMapping(_ c: Unicode.Scalar) -> String { c.isASCII ? asciiCase(c, upper: false) : c.properties.lowercaseMapping }
private func titleMapping(_ c: Unicode.Scalar) -> String { c.isASCII ? asciiCase(c, upper: true) : c.properties.titlecaseMapping }

func pyUpper(_ s: String, _ interp: Interpreter) throws -> String {
    try mapCase(s, interp, ascii: { $0 >= 0x61 && $0 <= 0x7A ? $0 - 0x20 : $0 }) { c, _ in upperMapping(c) }
}

func pyLower(_ s: String, _ interp: Interpreter) throws -> String {
    try mapCase(s, interp, ascii: { $0 >= 0x41 && $0 <= 0x5A ? $0 + 0x20 : $0 }) { c, _ in lowerMapping(c) }
}

/// Python's str.title(): a cased character after an uncased one is title-cased,
/// every other cased character is lower-cased.
func pyTitle(_ s: String, _ interp: Interpreter) throws -> String {
    var previousCased = false
    return try mapCase(s, interp) { c, _ in
        defer { previousCased = isCased(c) }
        return previousCased ? lowerMapping(c) : titleMapping(c)
    }
}

/// Python's str.capitalize(): first character title-cased, the rest lower-cased.
func pyCapitalize(_ s: String, _ interp: Interpreter) throws -> String {
    try mapCase(s, interp) { c, i in i == 0 ? titleMapping(c) : lowerMapping(c) }
}

/// jinja2's `title` filter: split on runs of `-`, whitespace and opening brackets, then
/// upper-case each piece's first character and lower-case the rest.
func jinjaTitle(_ s: String, _ interp: Interpreter) throws -> String {
    func isSplit(_ c: Unicode.Scalar) -> Bool { c == "-" || c == "(" || c == "{" || c == "[" || c == "<" || isPythonSpace(c) }
    var atStart = true
    return try mapCase(s, interp) { c, _ in
        if isSplit(c) { atStart = true; return String(c) }
        defer { atStart = false }
        return atStart ? upperMapping(c) : lowerMapping(c)
    }
}

func pyIsUpper(_ s: String) -> Bool {
    var cased = false
    for c in s.unicodeScalars {
        if c.properties.isLowercase || c.properties.generalCategory == .titlecaseLetter { return false }
        if c.properties.isUppercase { cased = true }
    }
    return cased
}

func pyIsLower(_ s: String) -> Bool {
    var cased = false
    for c in s.unicodeScalars {
        if c.properties.isUppercase || c.properties.generalCategory == .titlecaseLetter { return false }
        if c.properties.isLowercase { cased = true }
    }
    return cased
}

// MARK: repr and number formatting

/// Python's repr() of a str, appended to `out`; refused once `out` passes `maxBytes`
/// (escapes make it up to ten times longer than `s`).
func appendPyRepr(_ s: String, into out: inout String, maxBytes: Int) throws {
    let hasSingle = s.unicodeScalars.contains("'"), hasDouble = s.unicodeScalars.contains("\"")
    let quote: Unicode.Scalar = hasSingle && !hasDouble ? "\"" : "'"
    out.unicodeScalars.append(quote)
    for c in s.unicodeScalars {
        switch c {
        case quote, "\\": out.unicodeScalars.append("\\"); out.unicodeScalars.append(c)
        case "\t": out += "\\t"
        case "\n": out += "\\n"
        case "\r": out += "\\r"
        default:
            if c.value < 0x20 || c.value == 0x7F || (c.value >= 0x80 && !isPrintable(c)) {
                let h = String(c.value, radix: 16)
                let (p, w) = c.value < 0x100 ? ("\\x", 2) : c.value < 0x10000 ? ("\\u", 4) : ("\\U", 8)
                out += p + String(repeating: "0", count: w - h.count) + h
            } else {
                out.unicodeScalars.append(c)
            }
        }
        if out.utf8.count > maxBytes { throw sizeLimit(maxBytes) }
    }
    out.unicodeScalars.append(quote)
    if out.utf8.count > maxBytes { throw sizeLimit(maxBytes) }
}

/// Python's repr() of a str, unbounded (for strings known to be short).
func pyRepr(_ s: String) -> String {
    var out = ""
    try? appendPyRepr(s, into: &out, maxBytes: .max)
    return out
}

/// Python's str.isprintable() for one character.
private func isPrintable(_ c: Unicode.Scalar) -> Bool {
    switch c.properties.generalCategory {
    case .control, .format, .surrogate, .privateUse, .unassigned, .lineSeparator, .paragraphSeparator: return false
    case .spaceSeparator: return c == " "
    default: return true
    }
}

/// Python's repr() of a float: shortest round-trip digits, scientific notation outside
/// 1e-4 <= |x| < 1e16.
func pyFloatRepr(_ d: Double) -> String {
    if d.isNaN { return "nan" }
    if d.isInfinite { return d < 0 ? "-inf" : "inf" }
    if d == 0 { return d.sign == .minus ? "-0.0" : "0.0" }
    // Swift's description also gives shortest round-trip digits; take them apart.
    var text = "\(d.magnitude)"
    var exp10 = 0
    if let e = text.firstIndex(where: { $0 == "e" || $0 == "E" }) {
        exp10 = Int(text[text.index(after: e)...]) ?? 0
        text = String(text[..<e])
    }
    var intPart = text, frac = ""
    if let dot = text.firstIndex(of: ".") {
        intPart = String(text[..<dot])
        frac = String(text[text.index(after: dot)...])
    }
    var digits = Array(intPart + frac)
    var pointPos = intPart.count + exp10  // digits[0..<pointPos] are the integer part
    while digits.count > 1 && digits.first == "0" { digits.removeFirst(); pointPos -= 1 }
    while digits.count > 1 && digits.last == "0" { digits.removeLast() }
    let sciExp = pointPos - 1
    var out = d < 0 ? "-" : ""
    if sciExp >= -4 && sciExp < 16 {
        if pointPos <= 0 {
            out += "0." + String(repeating: "0", count: -pointPos) + String(digits)
        } else if pointPos >= digits.count {
            out += String(digits) + String(repeating: "0", count: pointPos - digits.count) + ".0"
        } else {
            out += String(digits[..<pointPos]) + "." + String(digits[pointPos...])
        }
    } else {
        out += String(digits[0])
        if digits.count > 1 { out += "." + String(digits[1...]) }
        out += "e" + (sciExp < 0 ? "-" : "+") + (abs(sciExp) < 10 ? "0" : "") + String(abs(sciExp))
    }
    return out
}

// MARK: strftime

private let weekdayNames = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"]
private let monthNames = ["January", "February", "March", "April", "May", "June", "July", "August", "September",
                          "October", "November", "December"]

/// C-locale strftime (glibc's, as Python on Linux uses) for the directives templates use:
/// %d %e %m %Y %y %H %I %M %S %p %j %a %A %b %h %B %%, with the glibc flags `-` (no
/// padding), `_` (pad with spaces), `0` (pad with zeros) and `^` (upper case). Unknown
/// directives are left as written.
func pyStrftime(_ format: String, date: Date, timeZone: TimeZone, maxBytes: Int) throws -> String {
    var cal = Calendar(identifier: .gregorian)
    cal.timeZone = timeZone
    let c = cal.dateComponents([.year, .month, .day, .hour, .minute, .second, .weekday], from: date)
    let year = c.year ?? 1970, month = min(max(c.month ?? 1, 1), 12), day = c.day ?? 1
    let hour = c.hour ?? 0, minute = c.minute ?? 0, second = c.second ?? 0
    let weekday = min(max((c.weekday ?? 1) - 1, 0), 6)
    let dayOfYear = cal.ordinality(of: .day, in: .year, for: date) ?? 1
    var out = ""
    let chars = Array(format)
    var i = 0
    while i < chars.count {
        let ch = chars[i]
        i += 1
        guard ch == "%" else {
            out.append(ch)
            if out.utf8.count > maxBytes { throw sizeLimit(maxBytes) }
            continue
        }
        let start = i - 1
        var flag: Character? = nil
        if i < chars.count, "-_0^".contains(chars[i]) { flag = chars[i]; i += 1 }
        guard i < chars.count else { out += String(chars[start...]); break }
        let d = chars[i]
        i += 1
        func number(_ v: Int, _ width: Int, _ fill: Character) -> String {
            let s = String(v)
            let padding: Character? = flag == "-" ? nil : flag == "_" ? " " : flag == "0" ? "0" : fill
            guard let padding, s.count < width else { return s }
            return String(repeating: padding, count: width - s.count) + s
        }
        func text(_ s: String) -> String { flag == "^" ? s.uppercased() : s }
        switch d {
        case "d": out += number(day, 2, "0")
        case "e": out += number(day, 2, " ")
        case "m": out += number(month, 2, "0")
        case "Y": out += String(year)
        case "y": out += number(year % 100, 2, "0")
        case "H": out += number(hour, 2, "0")
        case "I": out += number(hour % 12 == 0 ? 12 : hour % 12, 2, "0")
        case "M": out += number(minute, 2, "0")
        case "S": out += number(second, 2, "0")
        case "j": out += number(dayOfYear, 3, "0")
        case "p": out += hour < 12 ? "AM" : "PM"
        case "a": out += text(String(weekdayNames[weekday].prefix(3)))
        case "A": out += text(weekdayNames[weekday])
        case "b", "h": out += text(String(monthNames[month - 1].prefix(3)))
        case "B": out += text(monthNames[month - 1])
        case "%": out += "%"
        default: out += String(chars[start..<i])
        }
        if out.utf8.count > maxBytes { throw sizeLimit(maxBytes) }
    }
    return out
}
