/// Any failure to parse or render a template. Never a crash: untrusted templates
/// (they come from model files) can only ever produce one of these.
public struct TemplateError: Error, CustomStringConvertible, Equatable, Sendable {
    public enum Kind: String, Sendable {
        /// The template text is not valid Jinja.
        case syntax
        /// An operation failed while rendering (type error, undefined value, ...).
        case runtime
        /// The template itself called `raise_exception(message)`.
        case raised
        /// A sandbox limit (steps, depth, output size, range length) was exceeded.
        case limit
    }

    public let kind: Kind
    public let message: String
    /// 1-based position in the template source, when known.
    public let line: Int?
    public let column: Int?
    /// The file the template came from (a GGUF file, tokenizer_config.json or
    /// chat_template.jinja), when known.
    public internal(set) var path: String?

    public init(_ kind: Kind, _ message: String, line: Int? = nil, column: Int? = nil, path: String? = nil) {
        self.kind = kind
        self.message = message
        self.line = line
        self.column = column
        self.path = path
    }

    /// One line: the file, the kind of error, where in the template, and the message.
    public var description: String {
        var s = path.map { "\($0): " } ?? ""
        switch kind {
        case .syntax: s += "chat template syntax error"
        case .runtime: s += "chat template error"
        case .raised: s += "chat template raised an exception"
        case .limit: s += "chat template exceeded a sandbox limit"
        }
        if let line {
            s += " at line \(line)"
            if let column { s += ", column \(column)" }
        }
        // The message can come from the template (raise_exception): control characters
        // are shown escaped, so it stays one line and cannot drive the terminal.
        var shown = ""
        for c in message.unicodeScalars {
            switch c.properties.generalCategory {
            case .control, .lineSeparator, .paragraphSeparator:
                shown += c == "\n" ? "\\n" : c == "\t" ? "\\t" : "\\u{" + String(c.value, radix: 16) + "}"
            default: shown.unicodeScalars.append(c)
            }
        }
        return s + ": " + shown
    }

    func at(line: Int) -> TemplateError {
        self.line == nil ? TemplateError(kind, message, line: line, column: column, path: path) : self
    }
}

/// Bounds on what one render may cost. Every exceeded bound throws `TemplateError`
/// of kind `.limit` naming the bound.
public struct JinjaLimits: Sendable, Equatable {
    /// Expression evaluations plus statement executions plus loop iterations, plus the
    /// work of builtins (a step per `Interpreter.workPerStep` bytes read or built).
    public var maxSteps = 1_000_000
    /// Nesting of macro calls, and of blocks and expressions at run time.
    public var maxDepth = 200
    /// Bytes of rendered output, and of any one string or list built while rendering.
    public var maxOutputBytes = 1 << 20
    /// Length of a `range()`; the same bound as jinja2's sandbox (MAX_RANGE).
    public var maxRange = 100_000
    /// Nesting of brackets, expressions and blocks in the template source.
    public var maxParseDepth = 100
    /// Bytes of template source. Real chat templates are under 20 KB (the largest in the
    /// test fixtures, Llama 3.1's, is 4.6 KB); 256 KB leaves room for any of them while a
    /// file cannot make the parser and renderer chew on megabytes.
    public var maxSourceBytes = 256 << 10

    public init() {}
}
