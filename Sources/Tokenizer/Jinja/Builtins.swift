import Foundation

/// Arguments of a builtin call, bound by position or keyword like a Python signature.
struct Arguments {
    let function: String
    let positional: [JinjaValue]
    let keywords: [(String, JinjaValue)]

    /// The argument at `position` or named `name`, or `defaultValue`.
    func get(_ position: Int, _ name: String, _ defaultValue: JinjaValue? = nil) throws -> JinjaValue {
        if position < positional.count { return positional[position].unmarked }
        if let kw = keywords.first(where: { $0.0 == name }) { return kw.1.unmarked }
        if let defaultValue { return defaultValue }
        throw runtimeError("\(function)() missing required argument '\(name)'")
    }

    func check(max: Int, names: [String]) throws {
        if positional.count > max { throw runtimeError("\(function)() takes at most \(max) argument(s) (\(positional.count) given)") }
        for (k, _) in keywords where !names.contains(k) {
            throw runtimeError("\(function)() got an unexpected keyword argument '\(k)'")
        }
    }

    func string(_ position: Int, _ name: String, _ defaultValue: String? = nil) throws -> String {
        let v = try get(position, name, defaultValue.map { .string($0) })
        guard case .string(let s) = v else { throw runtimeError("\(function)(): '\(name)' must be str, not \(v.typeName)") }
        return s
    }

    func optionalString(_ position: Int, _ name: String) throws -> String? {
        let v = try get(position, name, JinjaValue.none)
        if case .none = v { return nil }
        guard case .string(let s) = v else { throw runtimeError("\(function)(): '\(name)' must be str or None, not \(v.typeName)") }
        return s
    }

    func int(_ position: Int, _ name: String, _ defaultValue: Int? = nil) throws -> Int {
        let v = try get(position, name, defaultValue.map { .int($0) })
        guard case .int(let i)? = v.numeric else { throw runtimeError("\(function)(): '\(name)' must be int, not \(v.typeName)") }
        return i
    }

    func bool(_ position: Int, _ name: String, _ defaultValue: Bool) throws -> Bool {
        try get(position, name, .bool(defaultValue)).truthy
    }
}

enum Builtins {
    // MARK: globals

    static let globals: [String: JinjaValue] = [
        "range": .callable(JinjaCallable("range") { interp, args, kwargs in
            guard kwargs.isEmpty else { throw runtimeError("range() takes no keyword arguments") }
            let ints = try args.map { v -> Int in
                try v.failIfUndefined()
                guard case .int(let i)? = v.numeric else {
                    throw runtimeError("'\(v.typeName)' object cannot be interpreted as an integer")
                }
                return i
            }
            var start = 0, stop = 0, step = 1
            switch ints.count {
            case 1: stop = ints[0]
            case 2: start = ints[0]; stop = ints[1]
            case 3: start = ints[0]; stop = ints[1]; step = ints[2]
            default: throw runtimeError("range expected 1 to 3 arguments, got \(ints.count)")
            }
            guard step != 0 else { throw runtimeError("range() arg 3 must not be zero") }
            var items: [JinjaValue] = []
            var v = start
            while step > 0 ? v < stop : v > stop {
                guard items.count < interp.limits.maxRange else {
                    throw TemplateError(.limit, "Range too big. The sandbox blocks ranges larger than MAX_RANGE (\(interp.limits.maxRange)).")
                }
                items.append(.int(v))
                let (next, overflow) = v.addingReportingOverflow(step)
                if overflow { break }
                v = next
            }
            try interp.charge(items: items.count)
            return .list(items)
        }),
        "namespace": .callable(JinjaCallable("namespace") { interp, args, kwargs in
            var attrs = JinjaDict()
            for a in args {
                guard case .dict(let d) = a else { throw runtimeError("namespace() positional argument must be a dict") }
                for (k, v) in d.pairs { try interp.store(&attrs, k, v) }
            }
            for (k, v) in kwargs { try interp.store(&attrs, .string(k), v) }
            let ns = JinjaNamespace(attrs)
            interp.namespaces.append(ns)
            return .namespace(ns)
        }),
        "dict": .callable(JinjaCallable("dict") { interp, args, kwargs in
            var d = JinjaDict()
            for a in args {
                guard case .dict(let other) = a else { throw runtimeError("dict() positional argument must be a dict") }
                for (k, v) in other.pairs { try interp.store(&d, k, v) }
            }
            for (k, v) in kwargs { try interp.store(&d, .string(k), v) }
            return try interp.checkedDepth(.dict(d))
        }),
        "raise_exception": .callable(JinjaCallable("raise_exception") { interp, args, kwargs in
            let message = try interp.str(args.first ?? kwargs.first(where: { $0.0 == "message" })?.1 ?? .none)
            throw TemplateError(.raised, message)
        }),
        "strftime_now": .callable(JinjaCallable("strftime_now") { interp, args, kwargs in
            let a = Arguments(function: "strftime_now", positional: args, keywords: kwargs)
            let format = try a.string(0, "format")
            try interp.charge(bytes: format.utf8.count)
            return .string(try pyStrftime(format, date: interp.now, timeZone: interp.timeZone, maxBytes: interp.limits.maxOutputBytes))
        }),
    ]

    // MARK: attribute and item access (jinja2's sandboxed getattr / getitem)

    /// `obj.name`: a method if the type has one, else the item `obj["name"]`, else undefined.
    static func getAttribute(_ obj: JinjaValue, _ name: String, _ interp: Interpreter) throws -> JinjaValue {
        let obj = obj.unmarked
        try obj.failIfUndefined()
        if let m = try method(obj, name) { return m }
        switch obj {
        case .dict(let d):
            if let v = try interp.lookup(d, .string(name)) { return v }
        case .namespace(let ns):
            if let v = try interp.lookup(ns.attributes, .string(name)) { return v }
        default: break
        }
        return .undefined("'\(obj.objectTypeRepr)' has no attribute '\(name)'")
    }

    /// `obj[key]`: the item if there is one, else (for string keys) the attribute.
    static func getItem(_ obj: JinjaValue, _ key: JinjaValue, _ interp: Interpreter) throws -> JinjaValue {
        let obj = obj.unmarked, key = key.unmarked
        try obj.failIfUndefined()
        switch (obj, key.numeric) {
        case (.list(let items), .int(let i)?), (.tuple(let items), .int(let i)?):
            let j = i < 0 ? i &+ items.count : i
            if j >= 0 && j < items.count { return items[j] }
        case (.string(let s), .int(let i)?):
            try interp.charge(bytes: s.utf8.count)
            let n = s.unicodeScalars.count
            let j = i < 0 ? i &+ n : i
            if j >= 0 && j < n { return .string(String(s.unicodeScalars[s.unicodeScalars.index(s.unicodeScalars.startIndex, offsetBy: j)])) }
        default: break
        }
        if case .dict(let d) = obj {
            switch key {
            case .list, .dict, .generator: break  // unhashable: TypeError, caught by jinja2
            default: if let v = try interp.lookup(d, key) { return v }
            }
        }
        if case .string(let name) = key {
            if let m = try method(obj, name) { return m }
            if case .namespace(let ns) = obj, let v = try interp.lookup(ns.attributes, key) { return v }
            return .undefined("'\(obj.objectTypeRepr)' has no attribute '\(name)'")
        }
        return .undefined("\(obj.objectTypeRepr) has no element \(key.shortRepr)")
    }

    private static let mutatingMethods: [String: Set<String>] = [
        "list": ["append", "clear", "pop", "reverse", "insert", "sort", "extend", "remove"],
        "dict": ["clear", "pop", "popitem", "setdefault", "update"],
    ]

    private static func bound(_ name: String, _ body: @escaping (Arguments, Interpreter) throws -> JinjaValue) -> JinjaValue {
        .callable(JinjaCallable(name) { interp, args, kwargs in
            try body(Arguments(function: name, positional: args, keywords: kwargs), interp)
        })
    }

    /// Python methods of str, dict and list that templates call. Methods that would
    /// mutate are refused like jinja2's ImmutableSandboxedEnvironment does.
    static func method(_ obj: JinjaValue, _ name: String) throws -> JinjaValue? {
        if mutatingMethods[obj.typeName]?.contains(name) == true {
            return .undefined("access to attribute '\(name)' of '\(obj.typeName)' object is unsafe.")
        }
        switch obj {
        case .string(let s): return stringMethod(s, name)
        case .dict(let d):
            switch name {
            case "items":
                return bound(name) { a, interp in
                    try a.check(max: 0, names: [])
                    try interp.charge(items: d.count)
                    return .list(d.pairs.map { .tuple([$0.0, $0.1]) })
                }
            case "keys": return bound(name) { a, _ in try a.check(max: 0, names: []); return .list(d.keys) }
            case "values": return bound(name) { a, _ in try a.check(max: 0, names: []); return .list(d.values) }
            case "get":
                return bound(name) { a, interp in
                    try a.check(max: 2, names: [])
                    if let v = try interp.lookup(d, try a.get(0, "key")) { return v }
                    return try a.get(1, "default", JinjaValue.none)
                }
            case "copy": return bound(name) { _, _ in .dict(d) }
            default: return nil
            }
        case .list(let items):
            switch name {
            case "index":
                return bound(name) { a, interp in
                    let x = try a.get(0, "value")
                    for (i, item) in items.enumerated() where try pyEqual(item, x, interp) { return .int(i) }
                    throw runtimeError("\(x.shortRepr) is not in list")
                }
            case "count":
                return bound(name) { a, interp in
                    let x = try a.get(0, "value")
                    return .int(try items.filter { try pyEqual($0, x, interp) }.count)
                }
            case "copy": return bound(name) { _, _ in .list(items) }
            default: return nil
            }
        default: return nil
        }
    }

    /// A string method: its input is charged as scanned, and a result that can be larger
    /// than the input is sized (or built against the output size limit) before it exists.
    private static func stringMethod(_ s: String, _ name: String) -> JinjaValue? {
        func method(_ body: @escaping (Arguments, Interpreter) throws -> JinjaValue) -> JinjaValue {
            bound(name) { a, interp in
                try interp.charge(bytes: s.utf8.count)
                try chargeArguments(a, interp)
                return try body(a, interp)
            }
        }
        switch name {
        case "strip", "lstrip", "rstrip":
            return method { a, _ in
                try a.check(max: 1, names: ["chars"])
                return .string(pyStrip(s, try a.optionalString(0, "chars"), left: name != "rstrip", right: name != "lstrip"))
            }
        case "split", "rsplit":
            return method { a, interp in
                try a.check(max: 2, names: ["sep", "maxsplit"])
                let parts = try pySplit(s, try a.optionalString(0, "sep"), maxSplit: try a.int(1, "maxsplit", -1), fromRight: name == "rsplit")
                try interp.charge(items: parts.count)
                return .list(parts.map { .string($0) })
            }
        case "splitlines":
            return method { _, interp in
                let lines = pySplitLines(s)
                try interp.charge(items: lines.count)
                return .list(lines.map { .string($0) })
            }
        case "startswith", "endswith":
            return method { a, interp in
                let p = try a.get(0, name == "startswith" ? "prefix" : "suffix")
                let options: [JinjaValue]
                if case .tuple(let l) = p { options = l } else { options = [p] }
                for o in options {
                    guard case .string(let t) = o.unmarked else {
                        throw runtimeError("\(name) first arg must be str or a tuple of str, not \(o.typeName)")
                    }
                    try interp.charge(bytes: min(t.utf8.count, s.utf8.count) + Interpreter.workPerItem)
                    if name == "startswith" ? pyHasPrefix(s, t) : pyHasSuffix(s, t) { return .bool(true) }
                }
                return .bool(false)
            }
        case "upper": return method { _, interp in .string(try pyUpper(s, interp)) }
        case "lower": return method { _, interp in .string(try pyLower(s, interp)) }
        case "title": return method { _, interp in .string(try pyTitle(s, interp)) }
        case "capitalize": return method { _, interp in .string(try pyCapitalize(s, interp)) }
        case "replace":
            return method { a, interp in
                try a.check(max: 3, names: ["count"])
                let result = try pyReplace(s, try a.string(0, "old"), try a.string(1, "new"), count: try a.int(2, "count", -1),
                                           maxBytes: interp.limits.maxOutputBytes)
                try interp.charge(bytes: result.utf8.count)
                return .string(result)
            }
        case "find", "rfind", "index", "rindex":
            return method { a, _ in
                let i = pyFind(s, try a.string(0, "sub"), last: name.hasPrefix("r"))
                if i < 0 && name.hasSuffix("index") { throw runtimeError("substring not found") }
                return .int(i)
            }
        case "count": return method { a, _ in .int(pyCount(s, try a.string(0, "sub"))) }
        case "join":
            return method { a, interp in
                let parts = try pyIterate(try a.get(0, "iterable"), interp).map { v -> String in
                    guard case .string(let t) = v.unmarked else { throw runtimeError("sequence item: expected str instance, \(v.typeName) found") }
                    return t
                }
                // The size first: a long separator between many parts multiplies.
                let (seps, o1) = s.utf8.count.multipliedReportingOverflow(by: max(parts.count - 1, 0))
                var size = seps
                var overflow = o1
                for p in parts where !overflow { (size, overflow) = size.addingReportingOverflow(p.utf8.count) }
                if overflow { throw sizeLimit(interp.limits.maxOutputBytes) }
                try interp.checkSize(size)
                try interp.charge(bytes: size)
                return .string(parts.joined(separator: s))
            }
        case "format": return method { a, interp in .string(try pyStrFormat(s, a.positional, a.keywords, interp)) }
        case "isdigit", "isnumeric", "isdecimal":
            return method { _, _ in .bool(!s.isEmpty && s.unicodeScalars.allSatisfy { $0.properties.numericType != nil }) }
        case "isalpha": return method { _, _ in .bool(!s.isEmpty && s.unicodeScalars.allSatisfy { $0.properties.isAlphabetic }) }
        case "isalnum":
            return method { _, _ in .bool(!s.isEmpty && s.unicodeScalars.allSatisfy { $0.properties.isAlphabetic || $0.properties.numericType != nil }) }
        case "isspace": return method { _, _ in .bool(!s.isEmpty && s.unicodeScalars.allSatisfy(isPythonSpace)) }
        case "isupper": return method { _, _ in .bool(pyIsUpper(s)) }
        case "islower": return method { _, _ in .bool(pyIsLower(s)) }
        case "removeprefix": return method { a, _ in let p = try a.string(0, "prefix"); return .string(pyHasPrefix(s, p) ? utf8String(s.utf8.dropFirst(p.utf8.count)) : s) }
        case "removesuffix": return method { a, _ in let p = try a.string(0, "suffix"); return .string(pyHasSuffix(s, p) && !p.isEmpty ? utf8String(s.utf8.dropLast(p.utf8.count)) : s) }
        default: return nil
        }
    }

    /// str.format with `{}`, `{0}`, `{name}`, `{x!r}` and `{{ }}`; format specs are refused.
    /// The text is built against the output size limit: one field can repeat a long argument.
    static func pyStrFormat(_ format: String, _ args: [JinjaValue], _ kwargs: [(String, JinjaValue)],
                            _ interp: Interpreter) throws -> String {
        let maxBytes = interp.limits.maxOutputBytes
        let sc = format.scalars
        var out = ""
        func put(_ piece: String) throws {
            try interp.checkSize(out.utf8.count + piece.utf8.count)
            try interp.charge(bytes: piece.utf8.count)
            out += piece
        }
        var i = 0, auto = 0
        while i < sc.count {
            let c = sc[i]
            if c == "{" {
                if i + 1 < sc.count && sc[i + 1] == "{" { try put("{"); i += 2; continue }
                guard let close = sc[i...].firstIndex(of: "}") else { throw runtimeError("Single '{' encountered in format string") }
                var field = String(scalars: sc[(i + 1)..<close])
                var conversion: String? = nil
                if let bang = field.firstIndex(of: "!") { conversion = String(field[field.index(after: bang)...]); field = String(field[..<bang]) }
                if field.contains(":") { throw runtimeError("format specs in str.format are not supported") }
                let v: JinjaValue
                if field.isEmpty {
                    guard auto < args.count else { throw runtimeError("Replacement index \(auto) out of range for positional args tuple") }
                    v = args[auto]; auto += 1
                } else if let n = Int(field) {
                    guard n >= 0 && n < args.count else { throw runtimeError("Replacement index \(n) out of range for positional args tuple") }
                    v = args[n]
                } else {
                    guard let kw = kwargs.first(where: { $0.0 == field }) else { throw runtimeError("KeyError: '\(field)'") }
                    v = kw.1
                }
                try put(conversion == "r" ? try v.pyRepr(maxBytes: maxBytes) : try v.pyStr(maxBytes: maxBytes))
                i = close + 1
            } else if c == "}" {
                guard i + 1 < sc.count && sc[i + 1] == "}" else { throw runtimeError("Single '}' encountered in format string") }
                try put("}"); i += 2
            } else {
                try put(String(c)); i += 1
            }
        }
        return out
    }

    // MARK: filters

    /// jinja2's make_attrgetter: "a.b.0" looks up items (with attribute fallback) by parts.
    static func attributePath(_ item: JinjaValue, _ path: JinjaValue, _ interp: Interpreter) throws -> JinjaValue {
        guard case .string(let p) = path else { return try getItem(item, path, interp) }
        try interp.charge(bytes: p.utf8.count)
        var v = item
        for part in p.split(separator: ".", omittingEmptySubsequences: false) {
            let key: JinjaValue = part.allSatisfy({ $0.isASCII && $0.isNumber }) && !part.isEmpty ? .int(Int(part) ?? 0) : .string(String(part))
            v = try getItem(v, key, interp)
        }
        return v
    }

    /// Parameter names (after the value) of the filters with fixed signatures; calls
    /// with more arguments or unknown keywords fail, as they do in Python.
    private static let filterParameters: [String: [String]] = [
        "safe": [], "e": [], "escape": [], "forceescape": [], "string": [], "trim": ["chars"], "upper": [], "lower": [],
        "title": [], "capitalize": [], "length": [], "count": [], "replace": ["old", "new", "count"],
        "default": ["default_value", "boolean"], "d": ["default_value", "boolean"], "join": ["d", "attribute"],
        "first": [], "last": [], "list": [], "reverse": [], "items": [],
        "tojson": ["ensure_ascii", "indent", "separators", "sort_keys"], "int": ["default", "base"], "float": ["default"],
        "abs": [], "round": ["precision", "method"], "indent": ["width", "first", "blank"],
        "unique": ["case_sensitive", "attribute"], "sort": ["reverse", "case_sensitive", "attribute"],
        "dictsort": ["case_sensitive", "by", "reverse"], "min": ["case_sensitive", "attribute"],
        "max": ["case_sensitive", "attribute"], "sum": ["attribute", "start"], "attr": ["name"], "center": ["width"],
        "wordcount": [],
    ]

    /// Tests that take no argument besides the value.
    private static let unaryTests: Set<String> = [
        "defined", "undefined", "none", "boolean", "true", "false", "integer", "float", "number", "string", "mapping",
        "iterable", "sequence", "callable", "odd", "even", "lower", "upper", "escaped", "filter", "test",
    ]

    /// Charges the size of a builtin's arguments (a long `chars`, separator or needle is
    /// read or copied by the call).
    static func chargeArguments(_ a: Arguments, _ interp: Interpreter) throws {
        for v in a.positional { try interp.charge(bytes: v.workSize) }
        for (_, v) in a.keywords { try interp.charge(bytes: v.workSize) }
    }

    static func filter(_ name: String, _ value: JinjaValue, _ args: [JinjaValue], _ kwargs: [(String, JinjaValue)],
                       _ interp: Interpreter) throws -> JinjaValue {
        let a = Arguments(function: name, positional: args, keywords: kwargs)
        if let params = filterParameters[name] { try a.check(max: params.count, names: params) }
        try chargeArguments(a, interp)
        if case .markup(let s) = value {
            switch name {
            case "safe", "e", "escape": return value  // already markup: not escaped again
            case "string": return value
            case "trim", "upper", "lower", "capitalize", "indent", "center", "format", "reverse":
                // markupsafe wraps these str methods to return Markup.
                if case .string(let r) = try filter(name, .string(s), args, kwargs, interp) { return .markup(r) }
            default: break
            }
        }
        let value = value.unmarked
        let maxBytes = interp.limits.maxOutputBytes
        /// `str(value)`, charged as scanned.
        func text() throws -> String {
            let t = try interp.str(value)
            try interp.charge(bytes: t.utf8.count)
            return t
        }
        func iterate(_ v: JinjaValue) throws -> [JinjaValue] { try pyIterate(v, interp) }
        switch name {
        case "safe", "e", "escape", "forceescape":
            // Markup(value): a string. Autoescaping is off in transformers, so a Markup
            // string behaves as a plain one afterwards.
            return .markup(name == "safe" ? try text() : try htmlEscape(try text(), maxBytes: maxBytes))
        case "string": return .string(try text())
        case "trim": return .string(pyStrip(try text(), try a.optionalString(0, "chars")))
        case "upper": return .string(try pyUpper(try text(), interp))
        case "lower": return .string(try pyLower(try text(), interp))
        case "title": return .string(try jinjaTitle(try text(), interp))
        case "capitalize": return .string(try pyCapitalize(try text(), interp))
        case "length", "count": return .int(try pyLen(value, interp))
        case "replace":
            let count: Int
            if case .none = try a.get(2, "count", JinjaValue.none) { count = -1 } else { count = try a.int(2, "count") }
            let result = try pyReplace(try text(), try interp.str(try a.get(0, "old")), try interp.str(try a.get(1, "new")),
                                       count: count, maxBytes: maxBytes)
            try interp.charge(bytes: result.utf8.count)
            return .string(result)
        case "default", "d":
            let boolean = try a.bool(1, "boolean", false)
            let useDefault = value.isUndefined || (boolean && !value.truthy)
            return useDefault ? try a.get(0, "default_value", .string("")) : value
        case "join":
            var items = try iterate(value)
            let attr = try a.get(1, "attribute", JinjaValue.none)
            if !attr.isNone { items = try items.map { try attributePath($0, attr, interp) } }
            let sep = try interp.str(try a.get(0, "d", .string("")))
            var out = ""
            for (i, item) in items.enumerated() {
                let piece = try interp.str(item)
                try interp.checkSize(out.utf8.count + (i > 0 ? sep.utf8.count : 0) + piece.utf8.count)
                try interp.charge(bytes: (i > 0 ? sep.utf8.count : 0) + piece.utf8.count)
                if i > 0 { out += sep }
                out += piece
            }
            return .string(out)
        case "first":
            if case .string(let s) = value { return s.unicodeScalars.first.map { .string(String($0)) } ?? .undefined("No first item, sequence was empty.") }
            return try iterate(value).first ?? .undefined("No first item, sequence was empty.")
        case "last":
            if case .generator = value { throw runtimeError("'generator' object is not reversible") }
            if case .string(let s) = value { return s.unicodeScalars.last.map { .string(String($0)) } ?? .undefined("No last item, sequence was empty.") }
            return try iterate(value).last ?? .undefined("No last item, sequence was empty.")
        case "list": return .list(try iterate(value))
        case "reverse":
            if case .string(let s) = value {
                try interp.charge(bytes: s.utf8.count)
                return .string(String(scalars: s.unicodeScalars.reversed()))
            }
            return .generator(try iterate(value).reversed())
        case "items":
            if value.isUndefined { return .generator([]) }
            guard case .dict(let d) = value else { throw runtimeError("Can only get item pairs from a mapping.") }
            try interp.charge(items: d.count)
            return .generator(d.pairs.map { .tuple([$0.0, $0.1]) })
        case "tojson":
            try a.check(max: 4, names: ["ensure_ascii", "indent", "separators", "sort_keys"])
            var o = JSONOptions()
            o.maxBytes = maxBytes
            o.ensureASCII = try a.bool(0, "ensure_ascii", false)
            switch try a.get(1, "indent", JinjaValue.none) {
            case .none: break
            case .string(let s): o.indent = s
            case let v:
                guard case .int(let n)? = v.numeric else { throw runtimeError("indent must be an int or a string") }
                o.indent = String(repeating: " ", count: min(max(n, 0), 1000))
            }
            switch try a.get(2, "separators", JinjaValue.none) {
            case .none: break
            case .list(let seps) where seps.count == 2, .tuple(let seps) where seps.count == 2:
                guard case .string(let item) = seps[0].unmarked, case .string(let key) = seps[1].unmarked else { throw runtimeError("separators must be strings") }
                o.itemSeparator = item
                o.keySeparator = key
            default: throw runtimeError("separators must be a pair of strings")
            }
            o.sortKeys = try a.bool(3, "sort_keys", false)
            var out = ""
            try writeJSON(value, &out, o, level: 0, interp)
            try interp.charge(bytes: out.utf8.count)
            return .string(out)
        case "int":
            let def = try a.get(0, "default", .int(0))
            let base = try a.int(1, "base", 10)
            try interp.charge(bytes: value.workSize)
            return try toInt(value, base: base) ?? def
        case "float":
            let def = try a.get(0, "default", .float(0))
            try interp.charge(bytes: value.workSize)
            return try toFloat(value).map { .float($0) } ?? def
        case "abs":
            try value.failIfUndefined()
            switch value.numeric {
            case .int(let i)?:
                guard i != Int.min else { throw runtimeError("integer result of 'abs' is too large") }
                return .int(abs(i))
            case .float(let d)?: return .float(abs(d))
            default: throw runtimeError("bad operand type for abs(): '\(value.typeName)'")
            }
        case "round":
            let precision = try a.int(0, "precision", 0)
            let method = try a.string(1, "method", "common")
            guard ["common", "ceil", "floor"].contains(method) else { throw runtimeError("method must be common, ceil or floor") }
            try value.failIfUndefined()
            guard let n = value.numeric else { throw runtimeError("type \(value.typeName) doesn't define __round__ method") }
            let scale = Foundation.pow(10.0, Double(precision))
            let x = n.asDouble * scale
            let r: Double
            switch method {
            case "ceil": r = x.rounded(.up)
            case "floor": r = x.rounded(.down)
            default: r = x.rounded(.toNearestOrEven)
            }
            if case .int(let i) = n, method == "common" {
                if precision >= 0 { return .int(i) }
                guard let rounded = Int(exactly: (r / scale).rounded()) else { throw runtimeError("integer result of 'round' is too large") }
                return .int(rounded)
            }
            return .float(r / scale)
        case "indent":
            guard case .string(let text) = value else {
                try value.failIfUndefined()
                throw runtimeError("unsupported operand type(s) for +=: '\(value.typeName)' and 'str'")
            }
            let width = try a.get(0, "width", .int(4))
            let indentation: String
            if case .string(let s) = width { indentation = s } else {
                guard case .int(let w)? = width.numeric else { throw runtimeError("indent width must be int or str") }
                indentation = String(repeating: " ", count: min(max(w, 0), 1000))
            }
            let first = try a.bool(1, "first", false), blank = try a.bool(2, "blank", false)
            try interp.charge(bytes: text.utf8.count)
            var lines = pySplitLines(text + "\n")
            // The size first: every line gets the indentation.
            let (indents, o1) = indentation.utf8.count.multipliedReportingOverflow(by: lines.count + 1)
            let (size, o2) = indents.addingReportingOverflow(text.utf8.count + lines.count)
            if o1 || o2 { throw sizeLimit(maxBytes) }
            try interp.checkSize(size)
            try interp.charge(bytes: size)
            var rv: String
            if blank {
                rv = lines.joined(separator: "\n" + indentation)
            } else {
                rv = lines.isEmpty ? "" : lines.removeFirst()
                if !lines.isEmpty { rv += "\n" + lines.map { $0.isEmpty ? $0 : indentation + $0 }.joined(separator: "\n") }
            }
            if first { rv = indentation + rv }
            return .string(rv)
        case "map":
            if !value.truthy { return .generator([]) }  // jinja2 skips falsy values without iterating
            let items = try iterate(value)
            if args.isEmpty, let attr = kwargs.first(where: { $0.0 == "attribute" })?.1 {
                let def = kwargs.first(where: { $0.0 == "default" })?.1
                return .generator(try items.map { item in
                    let v = try attributePath(item, attr, interp)
                    if let def, v.isUndefined { return def }
                    return v
                })
            }
            guard case .string(let filterName)? = args.first else { throw runtimeError("map requires a filter argument") }
            let rest = Array(args.dropFirst())
            return .generator(try items.map { try filter(filterName, $0, rest, kwargs, interp) })
        case "select", "reject", "selectattr", "rejectattr":
            if !value.truthy { return .generator([]) }
            let items = try iterate(value)
            let byAttribute = name.hasSuffix("attr")
            let wanted = name.hasPrefix("select")
            var rest = args
            var attr: JinjaValue = .none
            if byAttribute {
                guard !rest.isEmpty else { throw runtimeError("Missing parameter for attribute name") }
                attr = rest.removeFirst()
            }
            var out: [JinjaValue] = []
            for item in items {
                let subject = byAttribute ? try attributePath(item, attr, interp) : item
                let ok: Bool
                if case .string(let testName)? = rest.first {
                    ok = try test(testName, subject, Array(rest.dropFirst()), kwargs, interp)
                } else {
                    ok = subject.truthy
                }
                if ok == wanted { out.append(item) }
            }
            return .generator(out)
        case "unique":
            let caseSensitive = try a.bool(0, "case_sensitive", false)
            let attr = try a.get(1, "attribute", JinjaValue.none)
            var seen: [JinjaValue] = []
            var out: [JinjaValue] = []
            for item in try iterate(value) {
                var key = (attr.isNone ? item : try attributePath(item, attr, interp)).unmarked
                if !caseSensitive, case .string(let s) = key { key = .string(try pyLower(s, interp)) }
                switch key {
                case .list, .dict, .generator: throw runtimeError("unhashable type: '\(key.typeName)'")
                default: break
                }
                // Each new item is compared with every kept one: charged per comparison.
                try interp.charge(items: seen.count)
                if try !seen.contains(where: { try pyEqual($0, key, interp) }) { seen.append(key); out.append(item) }
            }
            return .generator(out)
        case "sort":
            let reverse = try a.bool(0, "reverse", false)
            let caseSensitive = try a.bool(1, "case_sensitive", false)
            let attr = try a.get(2, "attribute", JinjaValue.none)
            let items = try iterate(value)
            let keys = try items.map { item -> JinjaValue in
                let k = (attr.isNone ? item : try attributePath(item, attr, interp)).unmarked
                if !caseSensitive, case .string(let s) = k { return .string(try pyLower(s, interp)) }
                return k
            }
            // jinja2 sorts by one-element key lists, and list comparison treats equal
            // elements as equal without calling `<` on them.
            func less(_ x: JinjaValue, _ y: JinjaValue) throws -> Bool {
                try interp.charge(items: 1)
                return try pyEqual(x, y, interp) ? false : try pyLess(x, y, interp)
            }
            let order = try stableSorted(Array(items.indices)) { i, j in
                reverse ? try less(keys[j], keys[i]) : try less(keys[i], keys[j])
            }
            return .list(order.map { items[$0] })
        case "dictsort":
            guard case .dict(let d) = value else { throw runtimeError("You can only sort by either \"key\" or \"value\"") }
            let caseSensitive = try a.bool(0, "case_sensitive", false)
            let by = try a.string(1, "by", "key")
            let reverse = try a.bool(2, "reverse", false)
            guard by == "key" || by == "value" else { throw runtimeError("You can only sort by either \"key\" or \"value\"") }
            try interp.charge(items: d.count)
            let keys = try d.pairs.map { p -> JinjaValue in
                let k = (by == "key" ? p.0 : p.1).unmarked
                if !caseSensitive, case .string(let s) = k { return .string(try pyLower(s, interp)) }
                return k
            }
            let order = try stableSorted(Array(keys.indices)) { i, j in
                try interp.charge(items: 1)
                return reverse ? try pyLess(keys[j], keys[i], interp) : try pyLess(keys[i], keys[j], interp)
            }
            return .list(order.map { .tuple([d.keys[$0], d.values[$0]]) })
        case "min", "max":
            let caseSensitive = try a.bool(0, "case_sensitive", false)
            let attr = try a.get(1, "attribute", JinjaValue.none)
            let items = try iterate(value)
            guard var best = items.first else { return .undefined("No aggregated item, sequence was empty.") }
            func key(_ v: JinjaValue) throws -> JinjaValue {
                let k = (attr.isNone ? v : try attributePath(v, attr, interp)).unmarked
                if !caseSensitive, case .string(let s) = k { return .string(try pyLower(s, interp)) }
                return k
            }
            for item in items.dropFirst() {
                let better = name == "min" ? try pyLess(try key(item), try key(best), interp) : try pyLess(try key(best), try key(item), interp)
                if better { best = item }
            }
            return best
        case "sum":
            let attr = try a.get(0, "attribute", JinjaValue.none)
            var total = try a.get(1, "start", .int(0))
            for item in try iterate(value) {
                total = try pyArithmetic("+", total, attr.isNone ? item : try attributePath(item, attr, interp), interp)
            }
            return total
        case "attr":
            return try getAttribute(value, try a.string(0, "name"), interp)
        case "format":
            if !args.isEmpty && !kwargs.isEmpty { throw runtimeError("can't handle positional and keyword arguments at the same time") }
            return .string(try pyPercentFormat(try text(), .tuple(args), interp))
        case "center":
            let width = try a.int(0, "width", 80)
            let s = try text()
            let n = s.pyLength
            guard width > n else { return .string(s) }
            // The padded size first.
            guard width - n <= maxBytes - s.utf8.count else { throw sizeLimit(maxBytes) }
            try interp.charge(bytes: s.utf8.count + (width - n))
            let total = width - n
            let left = total / 2 + (total & width & 1)
            return .string(String(repeating: " ", count: left) + s + String(repeating: " ", count: total - left))
        case "wordcount":
            return .int(try text().split(whereSeparator: { !($0.isLetter || $0.isNumber || $0 == "_") }).count)
        case "batch", "slice", "groupby", "truncate", "wordwrap", "urlize", "urlencode", "xmlattr", "filesizeformat",
             "pprint", "random", "striptags":
            throw runtimeError("filter '\(name)' is not supported")
        default:
            throw TemplateError(.runtime, "No filter named '\(name)'.")
        }
    }

    /// Python int(x) / int(s, base), then int(float(x)) — jinja2's `int` filter.
    private static func toInt(_ v: JinjaValue, base: Int) throws -> JinjaValue? {
        switch v {
        case .undefined(let message): throw runtimeError(message)  // int(Undefined) raises
        case .int, .bool: return v.numeric
        case .float(let d):
            guard d.isFinite, let i = Int(exactly: d.rounded(.towardZero)) else { return nil }
            return .int(i)
        case .string(let s):
            var t = pyStrip(s, nil).replacingOccurrences(of: "_", with: "")
            var negative = false
            if t.hasPrefix("-") || t.hasPrefix("+") { negative = t.hasPrefix("-"); t.removeFirst() }
            var b = base
            let lower = t.lowercased()
            for (prefix, pb) in [("0x", 16), ("0o", 8), ("0b", 2)] where lower.hasPrefix(prefix) && (base == pb || base == 0) {
                t.removeFirst(2); b = pb
            }
            if b == 0 { b = 10 }
            if b >= 2 && b <= 36, !t.isEmpty, t.allSatisfy({ $0.isASCII }), let i = Int(t, radix: b) {
                return .int(negative ? -i : i)
            }
            if let d = try toFloat(v), d.isFinite, let i = Int(exactly: d.rounded(.towardZero)) { return .int(i) }
            return nil
        default: return nil
        }
    }

    private static func toFloat(_ v: JinjaValue) throws -> Double? {
        switch v {
        case .undefined(let message): throw runtimeError(message)
        case .int, .bool, .float: return v.numeric?.asDouble
        case .string(let s):
            let t = pyStrip(s, nil).replacingOccurrences(of: "_", with: "").lowercased()
            switch t {
            case "inf", "+inf", "infinity", "+infinity": return .infinity
            case "-inf", "-infinity": return -.infinity
            case "nan", "+nan", "-nan": return .nan
            default:
                guard !t.isEmpty, t.allSatisfy({ $0.isASCII && ($0.isNumber || "+-.e".contains($0)) }) else { return nil }
                return Double(t)
            }
        default: return nil
        }
    }

    // MARK: tests

    static func test(_ name: String, _ value: JinjaValue, _ args: [JinjaValue], _ kwargs: [(String, JinjaValue)],
                     _ interp: Interpreter) throws -> Bool {
        let a = Arguments(function: name, positional: args, keywords: kwargs)
        try chargeArguments(a, interp)
        if name == "escaped", case .markup = value { return true }
        let value = value.unmarked
        if unaryTests.contains(name) && (!args.isEmpty || !kwargs.isEmpty) {
            throw runtimeError("test '\(name)' takes no arguments (\(args.count + kwargs.count) given)")
        }
        switch name {
        case "defined": return !value.isUndefined
        case "undefined": return value.isUndefined
        case "none": return value.isNone
        case "boolean": if case .bool = value { return true }; return false
        case "true": if case .bool(true) = value { return true }; return false
        case "false": if case .bool(false) = value { return true }; return false
        case "integer": if case .int = value { return true }; return false
        case "float": if case .float = value { return true }; return false
        case "number": return value.numeric != nil
        case "string": if case .string = value { return true }; return false
        case "mapping": if case .dict = value { return true }; return false
        case "iterable":
            switch value {
            case .list, .tuple, .dict, .string, .generator, .undefined: return true
            default: return false
            }
        case "sequence":
            switch value {
            case .list, .tuple, .dict, .string, .undefined: return true
            default: return false
            }
        case "callable":
            switch value {
            case .callable, .undefined: return true  // jinja2's Undefined defines __call__
            default: return false
            }
        case "odd", "even":
            // jinja2 computes `value % 2 == 1` with Python's %, whatever the type.
            let r = try pyArithmetic("%", value, .int(2), interp)
            return r == .int(name == "odd" ? 1 : 0)
        case "divisibleby":
            return try pyArithmetic("%", value, try a.get(0, "num"), interp) == .int(0)
        case "lower", "upper":
            let s = try interp.str(value)
            try interp.charge(bytes: s.utf8.count)
            return name == "lower" ? pyIsLower(s) : pyIsUpper(s)
        case "in": return try pyIn(value, try a.get(0, "seq"), interp)
        case "==", "eq", "equalto": return try pyEqual(value, try a.get(0, "other"), interp)
        case "!=", "ne": return try !pyEqual(value, try a.get(0, "other"), interp)
        case ">", "gt", "greaterthan": return try pyLess(try a.get(0, "other"), value, interp)
        case ">=", "ge": return try pyCompare(">=", value, try a.get(0, "other"), interp)
        case "<", "lt", "lessthan": return try pyLess(value, try a.get(0, "other"), interp)
        case "<=", "le": return try pyCompare("<=", value, try a.get(0, "other"), interp)
        case "sameas":
            let other = try a.get(0, "other")
            switch (value, other) {
            case (.none, .none), (.undefined, .undefined): return true
            case (.bool(let x), .bool(let y)): return x == y
            case (.namespace(let x), .namespace(let y)): return x === y
            default: return false
            }
        case "escaped": return false
        case "filter":
            guard case .string(let n) = value else { return false }
            return knownFilters.contains(n)
        case "test":
            guard case .string(let n) = value else { return false }
            return knownTests.contains(n)
        default:
            throw TemplateError(.runtime, "No test named '\(name)'.")
        }
    }

    /// Every filter jinja2 knows (some are refused at render time); an unknown name is a
    /// syntax error, as in jinja2, even on a branch that never runs.
    static let knownFilters: Set<String> = [
        "abs", "attr", "batch", "capitalize", "center", "count", "d", "default", "dictsort", "e", "escape",
        "filesizeformat", "first", "float", "forceescape", "format", "groupby", "indent", "int", "items", "join", "last",
        "length", "list", "lower", "map", "max", "min", "pprint", "random", "reject", "rejectattr", "replace", "reverse",
        "round", "safe", "select", "selectattr", "slice", "sort", "string", "striptags", "sum", "title", "tojson", "trim",
        "truncate", "unique", "upper", "urlencode", "urlize", "wordcount", "wordwrap", "xmlattr",
    ]

    static let knownTests: Set<String> = [
        "odd", "even", "divisibleby", "defined", "undefined", "filter", "test", "none", "boolean", "false", "true",
        "integer", "float", "lower", "upper", "string", "mapping", "number", "sequence", "iterable", "callable", "sameas",
        "escaped", "in", "==", "eq", "equalto", "!=", "ne", ">", "gt", "greaterthan", "ge", ">=", "<", "lt", "lessthan",
        "<=", "le",
    ]
}
