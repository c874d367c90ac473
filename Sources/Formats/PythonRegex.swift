// Regular expressions as PEFT configs write them (Python `re` syntax), matched without
// backtracking: the pattern compiles to a Thompson NFA that is run over the subject as a set
// of states, so a match costs at most (program size × subject length) steps whatever the
// pattern — `(a+)+$`, which takes exponential time in Python or Swift's Regex, included.
// Only a yes/no answer is needed, so there are no captures. Syntax whose meaning needs
// backtracking (backreferences, lookaround, atomic groups, possessive repeats) or that no
// adapter config uses (inline flags, \N{…}) is refused with the construct named.

/// A compiled pattern.
struct PythonRegex {
    /// Patterns longer than this (in characters) are refused: real target_modules and
    /// rank_pattern keys are names or short alternations, at most a few hundred characters.
    static let maxPatternLength = 2000
    /// Instructions after {m,n} repeats are expanded; bounds memory and the work of one match.
    static let maxProgramSize = 20_000
    /// Groups nested deeper are refused: parsing and compiling recurse once per level.
    static let maxNesting = 50
    /// Matching steps one adapter config may spend in all (about a second): real configs
    /// need well under a million.
    static let maxMatchSteps = 100_000_000

    struct SyntaxError: Error, CustomStringConvertible {
        let message: String
        var description: String { message }
    }

    enum Assertion { case start, end, endOrFinalNewline, wordBoundary, notWordBoundary }

    enum Instruction {
        case scalar(Unicode.Scalar)
        case anyButNewline
        case set(ScalarSet)
        case split(Int, Int)
        case jump(Int)
        case assert(Assertion)
        case match
    }

    /// A bracket expression or class escape: the union of its items, maybe negated.
    struct ScalarSet {
        enum Item { case scalar(Unicode.Scalar), range(Unicode.Scalar, Unicode.Scalar), digit(Bool), word(Bool), space(Bool) }
        var items: [Item] = []
        var negated = false
        func contains(_ c: Unicode.Scalar) -> Bool {
            let hit = items.contains { item in
                switch item {
                case .scalar(let s): return s == c
                case .range(let a, let b): return a <= c && c <= b
                case .digit(let yes): return PythonRegex.isDigit(c) == yes
                case .word(let yes): return PythonRegex.isWord(c) == yes
                case .space(let yes): return PythonRegex.isSpace(c) == yes
                }
            }
            return hit != negated
        }
    }

    // Python 3's str classes: \d the Unicode decimal digits, \w letters, digits and '_', \s whitespace.
    static func isDigit(_ c: Unicode.Scalar) -> Bool { c.properties.numericType == .decimal }
    static func isWord(_ c: Unicode.Scalar) -> Bool {
        switch c.properties.generalCategory {
        case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter: return true
        default: return c == "_" || c.properties.numericType != nil
        }
    }
    static func isSpace(_ c: Unicode.Scalar) -> Bool { c.properties.isWhitespace || ("\u{1c}"..."\u{1f}").contains(c) }

    let program: [Instruction]

    init(_ pattern: String) throws {
        let scalars = Array(pattern.unicodeScalars)
        guard scalars.count <= Self.maxPatternLength else {
            throw SyntaxError(message: "longer than \(Self.maxPatternLength) characters")
        }
        var parser = Parser(s: scalars)
        let node = try parser.alternation()
        if parser.at < scalars.count { throw SyntaxError(message: "unbalanced parenthesis at position \(parser.at)") }
        var compiler = Compiler()
        try compiler.emit(node)
        compiler.program.append(.match)
        program = compiler.program
    }

    /// Whether the pattern matches `subject` from its start — to its end when `whole` (Python's
    /// `re.fullmatch`), anywhere (`re.match`) otherwise. nil once `budget` steps are spent.
    func matches(_ subject: String, whole: Bool, budget: inout Int) -> Bool? {
        guard budget > 0 else { return nil }
        let s = Array(subject.unicodeScalars)
        var current: [Int] = [], next: [Int] = []
        var seen = [Int](repeating: -1, count: program.count)   // the position a state was last added at
        var stack: [Int] = []

        /// Adds `pc` and every state reachable from it without consuming input. Returns true
        /// when a match state is reached that counts at `pos`.
        func add(_ pc: Int, at pos: Int, to list: inout [Int]) -> Bool {
            var matched = false
            stack.append(pc)
            while let p = stack.popLast() {
                guard seen[p] != pos else { continue }
                seen[p] = pos
                budget -= 1
                switch program[p] {
                case .jump(let t): stack.append(t)
                case .split(let a, let b): stack.append(b); stack.append(a)
                case .assert(let a): if holds(a, at: pos, in: s) { stack.append(p + 1) }
                case .match: if !whole || pos == s.count { matched = true }
                case .scalar, .anyButNewline, .set: list.append(p)
                }
            }
            return matched
        }

        if add(0, at: 0, to: &current) { return true }
        var pos = 0
        while pos < s.count, !current.isEmpty {
            guard budget > 0 else { return nil }
            let c = s[pos]
            next.removeAll(keepingCapacity: true)
            for p in current {
                budget -= 1
                let ok: Bool
                switch program[p] {
                case .scalar(let x): ok = x == c
                case .anyButNewline: ok = c != "\n"
                case .set(let set): ok = set.contains(c)
                default: ok = false
                }
                if ok, add(p + 1, at: pos + 1, to: &next) { return true }
            }
            swap(&current, &next)
            pos += 1
        }
        return false
    }

    private func holds(_ a: Assertion, at pos: Int, in s: [Unicode.Scalar]) -> Bool {
        switch a {
        case .start: return pos == 0
        case .end: return pos == s.count
        case .endOrFinalNewline: return pos == s.count || (pos == s.count - 1 && s[pos] == "\n")
        case .wordBoundary, .notWordBoundary:
            let before = pos > 0 && Self.isWord(s[pos - 1]), after = pos < s.count && Self.isWord(s[pos])
            return (before != after) == (a == .wordBoundary)
        }
    }
}

// MARK: - parsing

extension PythonRegex {
    indirect enum Node {
        case empty
        case scalar(Unicode.Scalar)
        case anyButNewline
        case set(ScalarSet)
        case assert(Assertion)
        case concat([Node])
        case alternation([Node])
        case repeated(Node, min: Int, max: Int?)   // max nil: unbounded

        var emitsNothing: Bool {
            switch self {
            case .empty: return true
            case .concat(let items): return items.allSatisfy(\.emitsNothing)
            case .repeated(let n, _, let hi): return hi == 0 || n.emitsNothing
            default: return false
            }
        }
    }

    struct Parser {
        let s: [Unicode.Scalar]
        var at = 0
        var depth = 0

        func fail(_ m: String) -> SyntaxError { SyntaxError(message: m) }
        var peek: Unicode.Scalar? { at < s.count ? s[at] : nil }
        func starts(with text: String) -> Bool {
            let t = Array(text.unicodeScalars)
            return at + t.count <= s.count && Array(s[at..<(at + t.count)]) == t
        }

        mutating func alternation() throws -> Node {
            var branches = [try concatenation()]
            while peek == "|" { at += 1; branches.append(try concatenation()) }
            return branches.count == 1 ? branches[0] : .alternation(branches)
        }

        mutating func concatenation() throws -> Node {
            var items: [Node] = []
            while let c = peek, c != "|", c != ")" {
                let atom = try self.atom()
                let quantifierAt = at
                if let (lo, hi) = try quantifier() {
                    if case .assert = atom { throw fail("nothing to repeat at position \(quantifierAt)") }
                    if peek == "+" { throw fail("possessive repeat at position \(at) is not supported") }
                    if peek == "?" { at += 1 }   // lazy: the same strings match
                    if let c = peek, c == "*" || c == "+" || c == "?" || (c == "{" && repeatBounds(from: at) != nil) {
                        throw fail("multiple repeat at position \(at)")
                    }
                    items.append(.repeated(atom, min: lo, max: hi))
                } else {
                    items.append(atom)
                }
            }
            return items.count == 1 ? items[0] : items.isEmpty ? .empty : .concat(items)
        }

        /// `*`, `+`, `?` or a valid `{m}`, `{m,}`, `{,n}`, `{m,n}` at the cursor (consumed).
        mutating func quantifier() throws -> (Int, Int?)? {
            switch peek {
            case "*": at += 1; return (0, nil)
            case "+": at += 1; return (1, nil)
            case "?": at += 1; return (0, 1)
            case "{":
                guard let (lo, hi, end) = repeatBounds(from: at) else { return nil }   // a literal '{'
                if let hi, hi < lo { throw fail("min repeat greater than max repeat at position \(at)") }
                at = end
                return (lo, hi)
            default: return nil
            }
        }

        /// Python reads `{` as a repeat only when digits (and one comma) follow up to `}`.
        func repeatBounds(from start: Int) -> (Int, Int?, Int)? {
            var i = start + 1
            func number() -> Int?? {
                var v = 0, digits = 0
                while i < s.count, ("0"..."9").contains(s[i]) {
                    v = min(v * 10 + Int(s[i].value - 48), Int(UInt32.max)); digits += 1; i += 1
                }
                return digits == 0 ? .some(nil) : .some(v)
            }
            let lo = number()!
            if i < s.count, s[i] == "}" { return lo.map { ($0, $0, i + 1) } }
            guard i < s.count, s[i] == "," else { return nil }
            i += 1
            let hi = number()!
            guard i < s.count, s[i] == "}" else { return nil }
            return (lo ?? 0, hi, i + 1)
        }

        mutating func atom() throws -> Node {
            let c = s[at]
            switch c {
            case "(":
                at += 1
                if peek == "?" {
                    if starts(with: "?:") { at += 2 }
                    else if starts(with: "?P<") {
                        guard let close = s[at...].firstIndex(of: ">") else { throw fail("missing > in group name") }
                        at = close + 1
                    } else if starts(with: "?=") || starts(with: "?!") || starts(with: "?<=") || starts(with: "?<!") {
                        throw fail("lookaround at position \(at - 1) is not supported")
                    } else if starts(with: "?P=") || starts(with: "?(") {
                        throw fail("backreference at position \(at - 1) is not supported")
                    } else if starts(with: "?>") {
                        throw fail("atomic group at position \(at - 1) is not supported")
                    } else {
                        throw fail("the group extension (?\(at + 1 < s.count ? String(s[at + 1]) : "") at position \(at - 1) is not supported")
                    }
                }
                depth += 1
                guard depth <= PythonRegex.maxNesting else { throw fail("groups nested deeper than \(PythonRegex.maxNesting)") }
                let inner = try alternation()
                guard peek == ")" else { throw fail("missing ), unterminated subpattern") }
                at += 1
                depth -= 1
                return inner
            case ")": throw fail("unbalanced parenthesis at position \(at)")
            case "[": return .set(try bracket())
            case ".": at += 1; return .anyButNewline
            case "^": at += 1; return .assert(.start)
            case "$": at += 1; return .assert(.endOrFinalNewline)
            case "*", "+", "?": throw fail("nothing to repeat at position \(at)")
            case "{" where repeatBounds(from: at) != nil: throw fail("nothing to repeat at position \(at)")
            case "\\": return try escape(inSet: false)
            default: at += 1; return .scalar(c)
            }
        }

        /// An escape at the cursor (the backslash). In a set, class escapes come back as `.set`
        /// and `\b` is a backspace.
        mutating func escape(inSet: Bool) throws -> Node {
            at += 1
            guard let c = peek else { throw fail("bad escape (end of pattern)") }
            at += 1
            func hex(_ n: Int) throws -> Node {
                guard at + n <= s.count, let v = UInt32(String(String.UnicodeScalarView(s[at..<(at + n)])), radix: 16),
                      let u = Unicode.Scalar(v) else { throw fail("bad escape \\\(c) at position \(at - 2)") }
                at += n
                return .scalar(u)
            }
            switch c {
            case "d", "D": return .set(ScalarSet(items: [.digit(c == "d")]))
            case "w", "W": return .set(ScalarSet(items: [.word(c == "w")]))
            case "s", "S": return .set(ScalarSet(items: [.space(c == "s")]))
            case "n": return .scalar("\n")
            case "t": return .scalar("\t")
            case "r": return .scalar("\r")
            case "f": return .scalar("\u{0C}")
            case "v": return .scalar("\u{0B}")
            case "a": return .scalar("\u{07}")
            case "x": return try hex(2)
            case "u": return try hex(4)
            case "U": return try hex(8)
            case "0":   // up to two more octal digits
                var v: UInt32 = 0
                for _ in 0..<2 where peek.map({ ("0"..."7").contains($0) }) == true { v = v * 8 + s[at].value - 48; at += 1 }
                return .scalar(Unicode.Scalar(v)!)
            case "b" where inSet: return .scalar("\u{08}")
            case "b" where !inSet: return .assert(.wordBoundary)
            case "B" where !inSet: return .assert(.notWordBoundary)
            case "A" where !inSet: return .assert(.start)
            case "Z" where !inSet: return .assert(.end)
            default:
                if c.properties.numericType == .decimal { throw fail("backreference \\\(c) at position \(at - 2) is not supported") }
                if c.isASCII && c.properties.isAlphabetic { throw fail("bad escape \\\(c) at position \(at - 2)") }
                return .scalar(c)
            }
        }

        /// A bracket expression; the cursor is at its `[`.
        mutating func bracket() throws -> ScalarSet {
            let start = at
            at += 1
            var set = ScalarSet()
            if peek == "^" { set.negated = true; at += 1 }
            var first = true
            while true {
                guard let c = peek else { throw fail("unterminated character set at position \(start)") }
                if c == "]" && !first { at += 1; return set }
                first = false
                let lo: Node
                if c == "\\" { lo = try escape(inSet: true) } else { at += 1; lo = .scalar(c) }
                guard case .scalar(let a) = lo else {
                    if case .set(let inner) = lo { set.items += inner.items }
                    if peek == "-", at + 1 < s.count, s[at + 1] != "]" { throw fail("bad character range at position \(start)") }
                    continue
                }
                // A range a-b; a '-' before ']' is a literal.
                if peek == "-", at + 1 < s.count, s[at + 1] != "]" {
                    at += 1
                    let hiNode: Node
                    if s[at] == "\\" { hiNode = try escape(inSet: true) } else { hiNode = .scalar(s[at]); at += 1 }
                    guard case .scalar(let b) = hiNode else { throw fail("bad character range at position \(start)") }
                    guard a <= b else { throw fail("bad character range \(a)-\(b) at position \(start)") }
                    set.items.append(.range(a, b))
                } else {
                    set.items.append(.scalar(a))
                }
            }
        }
    }

    struct Compiler {
        var program: [Instruction] = []

        mutating func emit(_ node: Node) throws {
            guard program.count <= PythonRegex.maxProgramSize else {
                throw SyntaxError(message: "too large once its repeats are expanded (more than \(PythonRegex.maxProgramSize) steps)")
            }
            switch node {
            case .empty: break
            case .scalar(let c): program.append(.scalar(c))
            case .anyButNewline: program.append(.anyButNewline)
            case .set(let s): program.append(.set(s))
            case .assert(let a): program.append(.assert(a))
            case .concat(let items): for n in items { try emit(n) }
            case .alternation(let branches):
                var jumps: [Int] = []
                for (i, b) in branches.enumerated() {
                    if i < branches.count - 1 {
                        let split = program.count
                        program.append(.split(split + 1, -1))
                        try emit(b)
                        jumps.append(program.count)
                        program.append(.jump(-1))
                        program[split] = .split(split + 1, program.count)
                    } else {
                        try emit(b)
                    }
                }
                for j in jumps { program[j] = .jump(program.count) }
            case .repeated(let n, _, _) where n.emitsNothing: break   // (a count of 10^9 must not loop)
            case .repeated(let n, let lo, let hi):
                for _ in 0..<lo { try emit(n) }
                if let hi {
                    for _ in lo..<hi {   // each further copy optional
                        let split = program.count
                        program.append(.split(split + 1, -1))
                        try emit(n)
                        program[split] = .split(split + 1, program.count)
                    }
                } else {                 // a loop: split(body, out); body; jump split
                    let split = program.count
                    program.append(.split(split + 1, -1))
                    try emit(n)
                    program.append(.jump(split))
                    program[split] = .split(split + 1, program.count)
                }
            }
            guard program.count <= PythonRegex.maxProgramSize else {
                throw SyntaxError(message: "too large once its repeats are expanded (more than \(PythonRegex.maxProgramSize) steps)")
            }
        }
    }
}
