import Foundation

/// A value inside a Jinja template, modelled on the Python objects that transformers'
/// jinja2 environment sees (str, int, float, bool, None, list, dict, Undefined).
public enum JinjaValue: Sendable {
    /// A missing variable, attribute or item. Renders as "" and is falsy; most other
    /// operations fail with `message` (as jinja2's default `Undefined` does).
    case undefined(String)
    case none
    case bool(Bool)
    case int(Int)
    case float(Double)
    case string(String)
    /// A markupsafe `Markup` string (from `safe` or `escape`). It prints as itself, but
    /// `+` and `%` HTML-escape the plain strings combined with it, as markupsafe does
    /// even with autoescaping off.
    case markup(String)
    case list([JinjaValue])
    /// A Python tuple: like a list, but printed with parentheses and spread by `%`.
    case tuple([JinjaValue])
    case dict(JinjaDict)
    /// The result of a filter that Python returns as a generator (select, map, ...):
    /// iterable and always truthy, but without a length or indexing.
    case generator([JinjaValue])
    case namespace(JinjaNamespace)
    case callable(JinjaCallable)

    /// Markup as a plain string: most operations treat the two alike.
    var unmarked: JinjaValue {
        if case .markup(let s) = self { return .string(s) }
        return self
    }

    var isUndefined: Bool { if case .undefined = self { return true }; return false }
    var isNone: Bool { if case .none = self { return true }; return false }

    /// Python truthiness.
    var truthy: Bool {
        switch self {
        case .undefined, .none: return false
        case .bool(let b): return b
        case .int(let i): return i != 0
        case .float(let d): return d != 0
        case .string(let s), .markup(let s): return !s.isEmpty
        case .list(let l), .tuple(let l): return !l.isEmpty
        case .dict(let d): return !d.isEmpty
        case .generator, .namespace, .callable: return true
        }
    }

    /// Python's type name, for error messages.
    var typeName: String {
        switch self {
        case .undefined: return "Undefined"
        case .none: return "NoneType"
        case .bool: return "bool"
        case .int: return "int"
        case .float: return "float"
        case .string: return "str"
        case .markup: return "Markup"
        case .list: return "list"
        case .tuple: return "tuple"
        case .dict: return "dict"
        case .generator: return "generator"
        case .namespace: return "Namespace"
        case .callable: return "function"
        }
    }

    /// jinja2's `object_type_repr`, used in undefined messages.
    var objectTypeRepr: String {
        switch self {
        case .none: return "None"
        default: return "\(typeName) object"
        }
    }
}

extension JinjaValue: ExpressibleByStringLiteral, ExpressibleByIntegerLiteral, ExpressibleByFloatLiteral,
    ExpressibleByBooleanLiteral, ExpressibleByArrayLiteral, ExpressibleByDictionaryLiteral, ExpressibleByNilLiteral
{
    public init(stringLiteral value: String) { self = .string(value) }
    public init(integerLiteral value: Int) { self = .int(value) }
    public init(floatLiteral value: Double) { self = .float(value) }
    public init(booleanLiteral value: Bool) { self = .bool(value) }
    public init(arrayLiteral elements: JinjaValue...) { self = .list(elements) }
    public init(dictionaryLiteral elements: (String, JinjaValue)...) {
        var d = JinjaDict()
        for (k, v) in elements { d[.string(k)] = v }
        self = .dict(d)
    }
    public init(nilLiteral: ()) { self = .none }
}

extension JinjaValue: Equatable {
    /// Python `==` (1 == 1.0 == True; undefined equals undefined). Namespaces and
    /// callables compare by identity.
    public static func == (a: JinjaValue, b: JinjaValue) -> Bool {
        if case .markup = a { return a.unmarked == b.unmarked }
        if case .markup = b { return a == b.unmarked }
        switch (a, b) {
        case (.undefined, .undefined), (.none, .none): return true
        case (.string(let x), .string(let y)): return sameCodePoints(x, y)
        case (.list(let x), .list(let y)), (.tuple(let x), .tuple(let y)): return x == y
        case (.dict(let x), .dict(let y)): return x == y
        case (.namespace(let x), .namespace(let y)): return x === y
        case (.callable(let x), .callable(let y)): return x === y
        case (.generator, .generator): return false
        default:
            if let x = a.numeric, let y = b.numeric {
                switch (x, y) {
                case (.int(let i), .int(let j)): return i == j
                case (.int(let i), .float(let d)), (.float(let d), .int(let i)): return Double(i) == d && d.isFinite && Int(exactly: d) == i
                case (.float(let d), .float(let e)): return d == e
                default: return false
                }
            }
            return false
        }
    }

    /// Numbers with bools promoted to ints, as Python arithmetic sees them.
    var numeric: JinjaValue? {
        switch self {
        case .bool(let b): return .int(b ? 1 : 0)
        case .int, .float: return self
        default: return nil
        }
    }
}

/// An insertion-ordered dictionary, like a Python dict. Chat-template dicts are small,
/// so lookups are a linear scan with Python key equality.
public struct JinjaDict: Sendable, Equatable {
    public private(set) var keys: [JinjaValue] = []
    public private(set) var values: [JinjaValue] = []

    public init() {}
    public init(_ pairs: [(String, JinjaValue)]) { for (k, v) in pairs { self[.string(k)] = v } }
    /// Pairs whose string keys are known to be distinct (no lookups while building).
    init(distinctKeys pairs: [(String, JinjaValue)]) {
        keys = pairs.map { .string($0.0) }
        values = pairs.map(\.1)
    }

    public var count: Int { keys.count }
    public var isEmpty: Bool { keys.isEmpty }

    func index(of key: JinjaValue) -> Int? {
        index(of: key) { $0 == $1 }
    }

    /// The index of `key`, comparing non-string keys with `equal`.
    func index(of key: JinjaValue, equal: (JinjaValue, JinjaValue) throws -> Bool) rethrows -> Int? {
        if case .string(let s) = key.unmarked {
            var i = 0
            while i < keys.count {
                if case .string(let t) = keys[i], sameCodePoints(t, s) { return i }
                i += 1
            }
            return nil
        }
        for i in keys.indices where try equal(keys[i], key) { return i }
        return nil
    }

    /// Replaces the value at `index`, or appends the pair when `index` is nil.
    mutating func set(_ value: JinjaValue, for key: JinjaValue, at index: Int?) {
        if let index { values[index] = value } else { keys.append(key.unmarked); values.append(value) }
    }

    public subscript(key: JinjaValue) -> JinjaValue? {
        get { index(of: key).map { values[$0] } }
        set {
            if let i = index(of: key) {
                if let v = newValue { values[i] = v } else { keys.remove(at: i); values.remove(at: i) }
            } else if let v = newValue {
                keys.append(key.unmarked); values.append(v)
            }
        }
    }

    public subscript(key: String) -> JinjaValue? {
        get { self[.string(key)] }
        set { self[.string(key)] = newValue }
    }

    var pairs: [(JinjaValue, JinjaValue)] { Array(zip(keys, values)) }

    public static func == (a: JinjaDict, b: JinjaDict) -> Bool {
        guard a.count == b.count else { return false }
        for (k, v) in zip(a.keys, a.values) { guard let w = b[k], w == v else { return false } }
        return true
    }
}

/// Python string equality: the same code points. (Swift's `==` also equates canonically
/// equivalent strings, such as "é" and "e\u{301}", which Python keeps apart.)
func sameCodePoints(_ a: String, _ b: String) -> Bool {
    a.utf8.count == b.utf8.count && a.utf8.elementsEqual(b.utf8)
}

/// jinja2's `namespace()`: the one mutable object templates can change (`set ns.x = ...`).
public final class JinjaNamespace: @unchecked Sendable {
    var attributes = JinjaDict()
    init(_ attributes: JinjaDict = JinjaDict()) { self.attributes = attributes }
}

/// A function callable from a template: a builtin, a bound method, or a macro.
public final class JinjaCallable: @unchecked Sendable {
    let name: String
    let body: (Interpreter, [JinjaValue], [(String, JinjaValue)]) throws -> JinjaValue
    init(_ name: String, _ body: @escaping (Interpreter, [JinjaValue], [(String, JinjaValue)]) throws -> JinjaValue) {
        self.name = name
        self.body = body
    }
}
