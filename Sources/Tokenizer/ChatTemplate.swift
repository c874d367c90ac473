import Foundation

/// One turn of a conversation.
public struct ChatMessage: Codable, Equatable, Sendable {
    public var role: String
    public var content: String
    public init(role: String, content: String) {
        self.role = role
        self.content = content
    }

    var jinjaValue: JinjaValue { .dict(JinjaDict([("role", .string(role)), ("content", .string(content))])) }
}

/// A model's chat template (the Jinja text in `tokenizer.chat_template`), rendered the
/// way transformers' `apply_chat_template(..., tokenize=False)` renders it: jinja2's
/// ImmutableSandboxedEnvironment with trim_blocks and lstrip_blocks, loop controls,
/// transformers' `tojson`, `raise_exception` and `strftime_now`, Python value semantics.
///
/// Not supported (they raise `TemplateError`): `include`/`import`/`extends`/`block`,
/// recursive `for` loops, `*args`/`**kwargs` in calls, format specs in `str.format`, the
/// filters batch, slice, groupby, truncate, wordwrap, urlize, urlencode, xmlattr,
/// filesizeformat, pprint, random and striptags, and integers beyond 64 bits.
/// Parity is checked against transformers by scripts/make_template_fixtures.py.
public struct ChatTemplate: Sendable {
    public let source: String
    /// The file the template came from, named in every error (nil: not from a file).
    public let path: String?
    public let bosToken: String?
    public let eosToken: String?
    public var limits: JinjaLimits
    /// The clock behind `strftime_now`; replace it to pin the date in tests.
    public var now: @Sendable () -> Date = { Date() }
    /// The time zone `strftime_now` formats in (Python's naive datetime.now() is local time).
    public var timeZone: TimeZone = .current
    let nodes: [Node]

    /// Parses `source` once; throws `TemplateError` (kind `.syntax`, with line and
    /// column) if it is not valid Jinja, or kind `.limit` if it is longer than
    /// `limits.maxSourceBytes`. `path` is the file it came from, for errors.
    public init(source: String, bosToken: String?, eosToken: String?, limits: JinjaLimits = JinjaLimits(),
                path: String? = nil) throws {
        self.source = source
        self.path = path
        self.bosToken = bosToken
        self.eosToken = eosToken
        self.limits = limits
        try Self.checkSourceSize(source.utf8.count, limits: limits, path: path)
        do {
            self.nodes = try JinjaParser.parse(source, limits: limits)
        } catch var e as TemplateError {
            e.path = path
            throw e
        }
    }

    /// Refuses a template of `bytes` bytes if it is longer than `limits.maxSourceBytes`
    /// (called before a template file is read, too).
    public static func checkSourceSize(_ bytes: Int, limits: JinjaLimits = JinjaLimits(), path: String?) throws {
        guard bytes <= limits.maxSourceBytes else {
            throw TemplateError(.limit, "the template is \(bytes) bytes, more than the limit of \(limits.maxSourceBytes)", path: path)
        }
    }

    /// Renders a conversation of plain role/content messages.
    public func render(messages: [ChatMessage], addGenerationPrompt: Bool = true,
                       extra: [String: JinjaValue] = [:]) throws -> String {
        try render(conversation: messages.map(\.jinjaValue), addGenerationPrompt: addGenerationPrompt, extra: extra)
    }

    /// Renders messages given as template values (for tool calls and other extra keys).
    /// The context is what transformers passes: `messages`, `tools` and `documents`
    /// (none), `add_generation_prompt`, the special tokens that are set, then `extra`.
    public func render(conversation: [JinjaValue], addGenerationPrompt: Bool = true,
                       extra: [String: JinjaValue] = [:]) throws -> String {
        var context: [String: JinjaValue] = [
            "messages": .list(conversation),
            "tools": .none,
            "documents": .none,
            "add_generation_prompt": .bool(addGenerationPrompt),
        ]
        if let bosToken { context["bos_token"] = .string(bosToken) }
        if let eosToken { context["eos_token"] = .string(eosToken) }
        for (k, v) in extra { context[k] = v }
        let interpreter = Interpreter(limits: limits, now: now(), timeZone: timeZone)
        do {
            return try interpreter.render(nodes, context: context)
        } catch var e as TemplateError {
            e.path = path
            throw e
        }
    }
}
