import Foundation

/// Variables visible at one point of a render. Loops, macros and `with` blocks open a
/// child scope; `if` does not (assignments inside it land in the enclosing scope), as in
/// jinja2. A loop body gets a fresh scope per iteration, so its assignments neither
/// survive the iteration nor leak out of the loop.
final class Scope {
    var vars: [String: JinjaValue] = [:]
    let parent: Scope?
    init(parent: Scope?) { self.parent = parent }

    func lookup(_ name: String) -> JinjaValue? {
        var s: Scope? = self
        while let current = s {
            if let v = current.vars[name] { return v }
            s = current.parent
        }
        return nil
    }
}

enum Flow { case normal, breakLoop, continueLoop }

/// The scope a macro was defined in, held so the interpreter can let go of it when the
/// render ends (a macro stored in its own scope would otherwise keep both alive).
final class ScopeBox {
    var scope: Scope?
    init(_ scope: Scope) { self.scope = scope }
}

/// Walks the syntax tree and renders it, counting every step against `limits`.
final class Interpreter {
    let limits: JinjaLimits
    let now: Date
    let timeZone: TimeZone
    private(set) var steps = 0
    private var depth = 0
    /// The buffer being written; macros, set blocks and filter blocks swap in their own.
    private var output = ""
    /// Everything created during the render that can form reference chains or cycles
    /// (namespaces can hold each other; macros hold their scope). Emptied when the render
    /// ends so nothing leaks and nothing is freed by deep recursion.
    var namespaces: [JinjaNamespace] = []
    private var macroScopes: [ScopeBox] = []

    init(limits: JinjaLimits, now: Date, timeZone: TimeZone) {
        self.limits = limits
        self.now = now
        self.timeZone = timeZone
    }

    func render(_ nodes: [Node], context: [String: JinjaValue]) throws -> String {
        let globals = Scope(parent: nil)
        globals.vars = Builtins.globals
        let top = Scope(parent: globals)
        top.vars = context
        output = ""
        defer {
            for ns in namespaces { ns.attributes = JinjaDict() }
            for box in macroScopes { box.scope = nil }
            namespaces = []
            macroScopes = []
            top.vars = [:]
        }
        _ = try exec(nodes, top)
        return output
    }

    // MARK: limits

    private func tick() throws {
        steps &+= 1
        if steps > limits.maxSteps { throw stepLimit() }
    }

    private func stepLimit() -> TemplateError {
        TemplateError(.limit, "render took more than the step limit (\(limits.maxSteps) steps)")
    }

    /// Builtin work (bytes read or built, items visited or compared) counts toward the
    /// step limit at this rate, so a call on a large value costs in proportion to its
    /// size. 32 bytes of the slower string work (case mapping, escaping) take about as
    /// long as one interpreter step; a render may then do at most 32 MB of builtin work,
    /// which real templates, touching each message a few times, stay far below.
    static let workPerStep = 32
    /// The work of one list item, dict entry or value compared, in bytes.
    static let workPerItem = 8
    /// Work not yet amounting to a whole step.
    private var work = 0

    /// Charges `bytes` of builtin work.
    func charge(bytes: Int) throws {
        guard bytes > 0 else { return }
        guard bytes / Self.workPerStep <= limits.maxSteps &- steps else { throw stepLimit() }
        steps &+= bytes / Self.workPerStep
        work += bytes % Self.workPerStep
        if work >= Self.workPerStep { steps &+= 1; work -= Self.workPerStep }
        if steps > limits.maxSteps { throw stepLimit() }
    }

    /// Charges the work of visiting `items` values.
    func charge(items: Int) throws {
        let (bytes, o) = items.multipliedReportingOverflow(by: Self.workPerItem)
        if o { throw stepLimit() }
        try charge(bytes: bytes)
    }

    /// Throws the output size error unless a result of `size` bytes (or items) fits: called
    /// with the size of a result before it is built.
    func checkSize(_ size: Int) throws {
        if size > limits.maxOutputBytes { throw sizeLimit(limits.maxOutputBytes) }
    }

    /// `a + b`, sized before it is built and charged.
    func concatenated(_ a: String, _ b: String) throws -> String {
        try checkSize(a.utf8.count + b.utf8.count)
        try charge(bytes: a.utf8.count + b.utf8.count)
        return a + b
    }

    /// `d[key]`, charged by the keys a lookup compares (dicts are scanned, not hashed).
    func lookup(_ d: JinjaDict, _ key: JinjaValue) throws -> JinjaValue? {
        try index(d, key).map { d.values[$0] }
    }

    /// `d[key] = value`, charged like `lookup`.
    func store(_ d: inout JinjaDict, _ key: JinjaValue, _ value: JinjaValue) throws {
        d.set(value, for: key, at: try index(d, key))
    }

    private func index(_ d: JinjaDict, _ key: JinjaValue) throws -> Int? {
        if case .string(let s) = key.unmarked {
            // Comparing with each key reads at most the key's bytes.
            let (w, o) = d.count.multipliedReportingOverflow(by: Self.workPerItem + s.utf8.count)
            if o { throw stepLimit() }
            try charge(bytes: w)
            return d.index(of: key)
        }
        return try d.index(of: key) { a, b in
            try charge(items: 1)
            return try pyEqual(a, b, self)
        }
    }

    private func enter() throws {
        depth += 1
        if depth > limits.maxDepth {
            depth -= 1
            throw TemplateError(.limit, "render nested deeper than the depth limit (\(limits.maxDepth)); runaway macro recursion?")
        }
    }

    private func write(_ s: String) throws {
        if output.utf8.count + s.utf8.count > limits.maxOutputBytes {
            throw TemplateError(.limit, "output exceeds the output size limit (\(limits.maxOutputBytes) bytes)")
        }
        try charge(bytes: s.utf8.count)
        output += s
    }

    /// Python `str(v)` within the output size limit.
    func str(_ v: JinjaValue) throws -> String { try v.pyStr(maxBytes: limits.maxOutputBytes) }

    /// Runs `body` writing into a fresh buffer and returns what it wrote.
    private func capture(_ body: () throws -> Void) throws -> String {
        let saved = output
        output = ""
        do {
            try body()
        } catch {
            output = saved
            throw error
        }
        let captured = output
        output = saved
        return captured
    }

    // MARK: statements

    private func exec(_ nodes: [Node], _ scope: Scope) throws -> Flow {
        for node in nodes {
            let flow = try exec(node, scope)
            if case .normal = flow { continue }
            return flow
        }
        return .normal
    }

    private func exec(_ node: Node, _ scope: Scope) throws -> Flow {
        try tick()
        try enter()
        defer { depth -= 1 }
        do {
            return try execKind(node.kind, scope)
        } catch let e as TemplateError {
            throw e.at(line: node.line)
        }
    }

    private func execKind(_ kind: NodeKind, _ scope: Scope) throws -> Flow {
        switch kind {
        case .text(let s):
            try write(s)
        case .output(let e):
            try write(try str(try eval(e, scope)))
        case .ifChain(let branches, let otherwise):
            for (test, body) in branches where try eval(test, scope).truthy {
                return try exec(body, scope)
            }
            return try exec(otherwise, scope)
        case .forLoop(let target, let iterable, let condition, let body, let otherwise, let recursive):
            if recursive { throw runtimeError("recursive for loops are not supported") }
            return try execFor(target, iterable, condition, body, otherwise, scope)
        case .set(let target, let e):
            try assign(target, try eval(e, scope), scope)
        case .setBlock(let target, let filter, let body):
            // The block body has its own frame in jinja2: its assignments stay inside.
            var value = JinjaValue.string(try capture { _ = try exec(body, Scope(parent: scope)) })
            if let filter { value = try applyFilterChain(filter, to: value, scope) }
            try assign(target, value, scope)
        case .macro(let name, let parameters, let body):
            scope.vars[name] = .callable(makeMacro(name, parameters, body, scope))
        case .callBlock(let parameters, let call, let body):
            guard case .call(let callee, let args, let kwargs) = call else { throw runtimeError("expected call") }
            let caller = makeMacro("caller", parameters, body, scope)
            let f = try eval(callee, scope)
            let a = try args.map { try eval($0, scope) }
            var kw = try kwargs.map { ($0.0, try eval($0.1, scope)) }
            kw.append(("caller", .callable(caller)))
            try write(try str(try callValue(f, a, kw)))
        case .filterBlock(let filter, let body):
            let text = try capture { _ = try exec(body, Scope(parent: scope)) }
            try write(try str(try applyFilterChain(filter, to: .string(text), scope)))
        case .with(let bindings, let body):
            let inner = Scope(parent: scope)
            for (target, e) in bindings { try assign(target, try eval(e, scope), inner) }
            return try exec(body, inner)
        case .generation(let body):
            return try exec(body, scope)
        case .breakLoop:
            return .breakLoop
        case .continueLoop:
            return .continueLoop
        }
        return .normal
    }

    private func execFor(_ target: Target, _ iterable: Expr, _ condition: Expr?, _ body: [Node], _ otherwise: [Node],
                         _ scope: Scope) throws -> Flow {
        var items = try pyIterate(try eval(iterable, scope), self)
        if let condition {
            // The inline `if` filters before loop.index/length are computed.
            var kept: [JinjaValue] = []
            for item in items {
                try tick()
                let s = Scope(parent: scope)
                try assign(target, item, s)
                if try eval(condition, s).truthy { kept.append(item) }
            }
            items = kept
        }
        let n = items.count
        // jinja2 runs the else branch unless some iteration reached the end of the body,
        // so a loop left by `break` (or `continue`) in every iteration runs it too.
        var completedAnIteration = false
        for (i, item) in items.enumerated() {
            try tick()
            let s = Scope(parent: scope)
            let loop = JinjaDict(distinctKeys: [
                ("index", .int(i + 1)),
                ("index0", .int(i)),
                ("revindex", .int(n - i)),
                ("revindex0", .int(n - i - 1)),
                ("first", .bool(i == 0)),
                ("last", .bool(i == n - 1)),
                ("length", .int(n)),
                ("depth", .int(1)),
                ("depth0", .int(0)),
                ("previtem", i > 0 ? items[i - 1] : .undefined("there is no previous item")),
                ("nextitem", i < n - 1 ? items[i + 1] : .undefined("there is no next item")),
                ("cycle", .callable(JinjaCallable("cycle") { _, args, _ in
                    guard !args.isEmpty else { throw runtimeError("no items for cycling given") }
                    return args[i % args.count]
                })),
            ])
            s.vars["loop"] = .dict(loop)
            try assign(target, item, s)
            switch try exec(body, s) {
            case .breakLoop: return completedAnIteration ? .normal : try exec(otherwise, Scope(parent: scope))
            case .continueLoop: continue
            case .normal: completedAnIteration = true
            }
        }
        return completedAnIteration ? .normal : try exec(otherwise, Scope(parent: scope))
    }

    private func assign(_ target: Target, _ value: JinjaValue, _ scope: Scope) throws {
        switch target {
        case .name(let n):
            scope.vars[n] = value
        case .tuple(let targets):
            let items = try pyIterate(value, self)
            if items.count < targets.count {
                throw runtimeError("not enough values to unpack (expected \(targets.count), got \(items.count))")
            }
            if items.count > targets.count { throw runtimeError("too many values to unpack (expected \(targets.count))") }
            for (t, v) in zip(targets, items) { try assign(t, v, scope) }
        case .namespaceAttribute(let name, let attribute):
            guard case .namespace(let ns)? = scope.lookup(name) else {
                throw runtimeError("cannot assign attribute on non-namespace object")
            }
            try store(&ns.attributes, .string(attribute), value)
        }
    }

    // MARK: macros and calls

    private func makeMacro(_ name: String, _ parameters: [MacroParameter], _ body: [Node], _ definedIn: Scope) -> JinjaCallable {
        let box = ScopeBox(definedIn)
        macroScopes.append(box)
        return JinjaCallable(name) { [box] interp, args, kwargs in
            try interp.enter()
            defer { interp.depth -= 1 }
            guard let definedIn = box.scope else { throw runtimeError("macro '\(name)' called after its render ended") }
            let s = Scope(parent: definedIn)
            if args.count > parameters.count {
                throw runtimeError("macro '\(name)' takes not more than \(parameters.count) argument(s)")
            }
            var bound = Set<String>()
            for (p, v) in zip(parameters, args) { s.vars[p.name] = v; bound.insert(p.name) }
            for (k, v) in kwargs {
                if k == "caller" { s.vars["caller"] = v; continue }
                guard parameters.contains(where: { $0.name == k }) else {
                    throw runtimeError("macro '\(name)' takes no keyword argument '\(k)'")
                }
                guard !bound.contains(k) else { throw runtimeError("macro '\(name)' got multiple values for argument '\(k)'") }
                s.vars[k] = v
                bound.insert(k)
            }
            for p in parameters where !bound.contains(p.name) {
                if let d = p.defaultValue { s.vars[p.name] = try interp.eval(d, s) }
                else { s.vars[p.name] = .undefined("parameter '\(p.name)' was not provided") }
            }
            return .string(try interp.capture { _ = try interp.exec(body, s) })
        }
    }

    func callValue(_ f: JinjaValue, _ args: [JinjaValue], _ kwargs: [(String, JinjaValue)]) throws -> JinjaValue {
        switch f {
        case .callable(let c): return try c.body(self, args, kwargs)
        case .undefined(let message): throw runtimeError(message)
        default: throw runtimeError("'\(f.typeName)' object is not callable")
        }
    }

    // MARK: expressions

    func eval(_ e: Expr, _ scope: Scope) throws -> JinjaValue {
        try tick()
        try enter()
        defer { depth -= 1 }
        switch e {
        case .literal(let v):
            return v
        case .name(let n):
            return scope.lookup(n) ?? .undefined("'\(n)' is undefined")
        case .list(let items):
            return try checkedDepth(.list(try items.map { try eval($0, scope) }))
        case .tuple(let items):
            return try checkedDepth(.tuple(try items.map { try eval($0, scope) }))
        case .dict(let pairs):
            var d = JinjaDict()
            for (k, v) in pairs {
                let key = try eval(k, scope)
                switch key {
                case .list, .dict, .generator: throw runtimeError("unhashable type: '\(key.typeName)'")
                default: break
                }
                try store(&d, key, try eval(v, scope))
            }
            return try checkedDepth(.dict(d))
        case .getattr(let obj, let name):
            return try Builtins.getAttribute(try eval(obj, scope), name, self)
        case .getitem(let obj, .slice(let start, let stop, let step)):
            let v = try eval(obj, scope)
            return try slice(v, try start.map { try eval($0, scope) }, try stop.map { try eval($0, scope) },
                             try step.map { try eval($0, scope) })
        case .getitem(let obj, let index):
            return try Builtins.getItem(try eval(obj, scope), try eval(index, scope), self)
        case .slice:
            throw runtimeError("slice outside of a subscript")
        case .call(let callee, let args, let kwargs):
            let f = try eval(callee, scope)
            let a = try args.map { try eval($0, scope) }
            let kw = try kwargs.map { ($0.0, try eval($0.1, scope)) }
            return try callValue(f, a, kw)
        case .filter(let value, let name, let args, let kwargs):
            guard let value else { throw runtimeError("filter '\(name)' has no value") }
            let v = try eval(value, scope)
            return try Builtins.filter(name, v, try args.map { try eval($0, scope) },
                                       try kwargs.map { ($0.0, try eval($0.1, scope)) }, self)
        case .test(let value, let name, let args, let kwargs):
            let v = try eval(value, scope)
            return .bool(try Builtins.test(name, v, try args.map { try eval($0, scope) },
                                           try kwargs.map { ($0.0, try eval($0.1, scope)) }, self))
        case .unary(let op, let operand):
            let v = try eval(operand, scope)
            switch op {
            case "not": return .bool(!v.truthy)
            case "-":
                try v.failIfUndefined()
                switch v.numeric {
                case .int(let i)?:
                    let (r, o) = Int(0).subtractingReportingOverflow(i)
                    if o { throw runtimeError("integer result of '-' is too large") }
                    return .int(r)
                case .float(let d)?: return .float(-d)
                default: throw runtimeError("bad operand type for unary -: '\(v.typeName)'")
                }
            default:
                try v.failIfUndefined()
                guard let n = v.numeric else { throw runtimeError("bad operand type for unary +: '\(v.typeName)'") }
                return n
            }
        case .binary("and", let a, let b):
            let l = try eval(a, scope)
            return l.truthy ? try eval(b, scope) : l
        case .binary("or", let a, let b):
            let l = try eval(a, scope)
            return l.truthy ? l : try eval(b, scope)
        case .binary(let op, let a, let b):
            return try pyArithmetic(op, try eval(a, scope), try eval(b, scope), self)
        case .concat(let parts):
            var s = ""
            for p in parts {
                let piece = try str(try eval(p, scope))
                try checkSize(s.utf8.count + piece.utf8.count)
                try charge(bytes: piece.utf8.count)
                s += piece
            }
            return .string(s)
        case .compare(let first, let ops):
            var left = try eval(first, scope)
            for (op, e) in ops {
                let right = try eval(e, scope)
                if try !pyCompare(op, left, right, self) { return .bool(false) }
                left = right
            }
            return .bool(true)
        case .conditional(let test, let then, let otherwise):
            if try eval(test, scope).truthy { return try eval(then, scope) }
            if let otherwise { return try eval(otherwise, scope) }
            return .undefined("the inline if-expression evaluated to false and no else section was defined.")
        }
    }

    /// Refuses values nested deeper than the depth limit. Literals are the only way to
    /// add nesting to lists and dicts, so checking them bounds every value's depth, which
    /// keeps printing, comparing and freeing values from recursing without end. The
    /// elements visited are charged as steps.
    func checkedDepth(_ v: JinjaValue) throws -> JinjaValue {
        var visited = 0
        func depth(_ v: JinjaValue, _ level: Int) -> Int {
            visited &+= 1
            if level > limits.maxDepth { return level }
            switch v {
            case .list(let items), .tuple(let items), .generator(let items):
                var deepest = level
                for item in items { deepest = max(deepest, depth(item, level + 1)); if deepest > limits.maxDepth { break } }
                return deepest
            case .dict(let d):
                var deepest = level
                for item in d.values { deepest = max(deepest, depth(item, level + 1)); if deepest > limits.maxDepth { break } }
                return deepest
            default:
                return level
            }
        }
        let d = depth(v, 0)
        steps &+= visited
        if d > limits.maxDepth {
            throw TemplateError(.limit, "a list or dict nested deeper than the depth limit (\(limits.maxDepth))")
        }
        try tick()
        return v
    }

    /// Applies `{% filter f | g %}` / `{% set x | f %}` chains, whose innermost value is nil.
    private func applyFilterChain(_ chain: Expr, to value: JinjaValue, _ scope: Scope) throws -> JinjaValue {
        guard case .filter(let inner, let name, let args, let kwargs) = chain else { return value }
        let v = try inner.map { try applyFilterChain($0, to: value, scope) } ?? value
        return try Builtins.filter(name, v, try args.map { try eval($0, scope) },
                                   try kwargs.map { ($0.0, try eval($0.1, scope)) }, self)
    }

    /// Python slicing `v[start:stop:step]`. jinja2 compiles slices to a plain Python
    /// subscript (not the sandbox's forgiving getitem), so bad operands raise.
    private func slice(_ v: JinjaValue, _ start: JinjaValue?, _ stop: JinjaValue?, _ step: JinjaValue?) throws -> JinjaValue {
        try v.failIfUndefined()
        if case .markup(let s) = v {
            let r = try slice(.string(s), start, stop, step)
            if case .string(let t) = r { return .markup(t) }
            return r
        }
        func bound(_ b: JinjaValue?) -> Int?? {
            guard let b else { return .some(nil) }
            switch b {
            case .none: return .some(nil)
            case .int(let i): return .some(i)
            case .bool(let x): return .some(x ? 1 : 0)
            default: return nil
            }
        }
        guard let lo = bound(start), let hi = bound(stop), let st = bound(step) else {
            throw runtimeError("slice indices must be integers or None or have an __index__ method")
        }
        let stepValue = st ?? 1
        if stepValue == 0 { throw runtimeError("slice step cannot be zero") }
        switch v {
        case .list, .tuple, .string: break
        case .dict: throw runtimeError("unhashable type: 'slice'")
        default: throw runtimeError("'\(v.typeName)' object is not subscriptable")
        }
        try charge(bytes: v.workSize)
        func pick<T>(_ items: [T]) -> [T] {
            let n = items.count
            func clamp(_ x: Int?, _ def: Int, _ lower: Int, _ upper: Int) -> Int {
                guard var x else { return def }
                if x < 0 { x = x < -n ? lower : x + n }  // x < -n avoids overflow on x + n
                return min(max(x, lower), upper)
            }
            var out: [T] = []
            if stepValue > 0 {
                var i = clamp(lo, 0, 0, n)
                let end = clamp(hi, n, 0, n)
                while i < end { out.append(items[i]); let (r, o) = i.addingReportingOverflow(stepValue); if o { break }; i = r }
            } else {
                var i = clamp(lo, n - 1, -1, n - 1)
                let end = clamp(hi, -1, -1, n - 1)
                while i > end { out.append(items[i]); let (r, o) = i.addingReportingOverflow(stepValue); if o { break }; i = r }
            }
            return out
        }
        switch v {
        case .list(let items): return .list(pick(items))
        case .tuple(let items): return .tuple(pick(items))
        case .string(let s): return .string(String(scalars: pick(s.scalars)))
        default: throw runtimeError("'\(v.typeName)' object is not subscriptable")
        }
    }
}
