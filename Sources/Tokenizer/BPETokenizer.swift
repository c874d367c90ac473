/// A token that is matched in the text before pre-tokenisation and never merged
/// (`added_tokens` in tokenizer.json; control tokens in GGUF).
public struct AddedToken: Sendable, Equatable {
    public var id: Int
    public var content: String
    /// Special tokens are dropped by `decode(_:skipSpecial: true)`.
    public var special: Bool
    /// Matched after normalisation rather than on the raw text.
    public var normalized: Bool

    public init(id: Int, content: String, special: Bool = true, normalized: Bool = false) {
        self.id = id; self.content = content; self.special = special; self.normalized = normalized
    }
}

/// How ids become text again.
public enum TokenDecoderKind: Sendable, Equatable {
    /// `decoders.ByteLevel`: each token's scalars back to bytes (a token with a scalar
    /// outside the byte alphabet contributes its UTF-8 as is), then lossy UTF-8.
    case byteLevel
    /// What transformers builds for Llama-architecture GGUF files: ByteFallback
    /// (`<0xAB>` tokens are bytes), Fuse, Replace("▁", " "), then ByteLevel on the whole
    /// joined text (if any scalar is outside the byte alphabet, the text is kept as is).
    case llamaByteLevel
}

/// Settings beyond vocabulary and merges, named after their `tokenizers` counterparts.
public struct TokenizerOptions: Sendable, Equatable {
    /// NFC normaliser (Qwen2).
    public var normalizeNFC = false
    public var decoder = TokenDecoderKind.byteLevel
    /// transformers' `clean_up_tokenization_spaces`: decode turns " ." into "." etc.
    public var cleanUpTokenizationSpaces = false
    /// BPE `unk_token`: used for a byte whose token is missing (never for valid UTF-8
    /// with a full byte alphabet); without it such bytes are dropped, as `tokenizers` does.
    public var unknownTokenId: Int? = nil
    public var fuseUnknown = false
    /// BPE `byte_fallback`: a missing byte token is replaced by `<0xAB>` tokens if present.
    public var byteFallback = false
    /// BPE `ignore_merges`: a word that is itself a token is not merged (Llama 3).
    public var ignoreMerges = false
    /// Whether the model expects BOS at the start (`encode` never adds it).
    public var addBOS = false

    public init(normalizeNFC: Bool = false, decoder: TokenDecoderKind = .byteLevel, cleanUpTokenizationSpaces: Bool = false,
                unknownTokenId: Int? = nil, fuseUnknown: Bool = false, byteFallback: Bool = false,
                ignoreMerges: Bool = false, addBOS: Bool = false) {
        self.normalizeNFC = normalizeNFC; self.decoder = decoder; self.cleanUpTokenizationSpaces = cleanUpTokenizationSpaces
        self.unknownTokenId = unknownTokenId; self.fuseUnknown = fuseUnknown; self.byteFallback = byteFallback
        self.ignoreMerges = ignoreMerges; self.addBOS = addBOS
    }
}

/// Byte-level BPE (GPT-2 family), giving the same ids as Hugging Face `tokenizers`:
/// added tokens are split out first (leftmost, then longest), the rest is optionally
/// NFC-normalised, cut into words by the pre-tokenizer, and each word's UTF-8 bytes are
/// merged pair by pair, lowest merge rank first (leftmost on ties).
public struct BPETokenizer: Sendable {
    public let preTokenizer: PreTokenizerKind
    public let options: TokenizerOptions
    public let bosId: Int?
    public let eosId: Int?
    public let padId: Int?
    public let addedTokens: [AddedToken]

    /// Token strings by id (byte-level form; added tokens as written). "" for ids that
    /// have no token (holes in a tokenizer.json vocabulary).
    private let tokens: [String]
    private let hasToken: [Bool]
    /// Ids by token string, keyed by UTF-8 (String equality is canonical equivalence,
    /// too loose for tokens): the model vocabulary, and the added tokens.
    private let idByToken: [ByteKey: Int32]
    private let idByAddedToken: [ByteKey: Int32]
    private let byteTokenId: [Int32]              // token of each single byte, -1 if none
    /// (left << 32 | right) → (rank << 32 | merged id)
    private let merges: [UInt64: UInt64]
    /// Words that are whole tokens, by their bytes (only with `ignoreMerges`).
    private let idByBytes: [ByteKey: Int32]
    private let rawMatcher: AddedTokenMatcher         // added tokens matched before normalisation
    private let normalizedMatcher: AddedTokenMatcher  // ... and after
    private let specialIds: Set<Int>
    /// Decoded bytes of each token, flat: token i is decodeBytes[decodeStart[i]..<decodeStart[i+1]].
    private let decodeBytes: [UInt8]
    private let decodeStart: [Int32]
    /// Tokens the fast decode path cannot take for `.llamaByteLevel` (`<0x..>` tokens and
    /// tokens with scalars outside the byte alphabet).
    private let needsSlowDecode: [Bool]

    public var vocabSize: Int { tokens.count }

    /// - Parameters:
    ///   - tokens: token strings by id, in byte-level form.
    ///   - merges: "left right" strings, highest priority first.
    ///   - tokenTypes: GGUF token types; control tokens (3) become special added tokens
    ///     in addition to `addedTokens`.
    ///   - source: names the origin in errors (a file path).
    public init(tokens: [String], merges: [String], tokenTypes: [Int]? = nil, preTokenizer: PreTokenizerKind,
                addedTokens: [AddedToken] = [], options: TokenizerOptions = TokenizerOptions(),
                bosId: Int? = nil, eosId: Int? = nil, padId: Int? = nil, source: String = "tokenizer") throws {
        var pairs: [([UInt8], [UInt8])] = []
        pairs.reserveCapacity(merges.count)
        for (rank, m) in merges.enumerated() {
            let utf8 = Array(m.utf8)
            guard let space = utf8.firstIndex(of: 0x20), space > 0, space + 1 < utf8.count,
                  !utf8[(space + 1)...].contains(0x20) else {
                throw FormatError(source, "merge \(rank) '\(Self.shown(m))' is not two tokens separated by a space")
            }
            pairs.append((Array(utf8[..<space]), Array(utf8[(space + 1)...])))
        }
        var added = addedTokens
        if let types = tokenTypes {
            guard types.count == tokens.count else {
                throw FormatError(source, "\(types.count) token types for \(tokens.count) tokens")
            }
            for (id, t) in types.enumerated() where t == 3 && !added.contains(where: { $0.id == id }) {
                added.append(AddedToken(id: id, content: tokens[id], special: true))
            }
        }
        try self.init(tokens: tokens.map { Optional($0) }, mergeBytes: pairs, preTokenizer: preTokenizer,
                      addedTokens: added, options: options, bosId: bosId, eosId: eosId, padId: padId, source: source)
    }

    /// `mergeBytes`: the UTF-8 of each merge's two token strings.
    init(tokens vocab: [String?], mergeBytes: [([UInt8], [UInt8])], preTokenizer: PreTokenizerKind,
         addedTokens: [AddedToken], options: TokenizerOptions, bosId: Int?, eosId: Int?, padId: Int?, source: String) throws {
        // Added tokens may lie beyond the vocabulary (tokenizer.json) or repeat it (GGUF).
        var tokens = vocab.map { $0 ?? "" }
        var hasToken = vocab.map { $0 != nil }
        for t in addedTokens {
            guard t.id >= 0, t.id < max(vocab.count, Self.maxVocabularySize) else {
                throw FormatError(source, "added token '\(Self.shown(t.content))' has id \(t.id), beyond the limit of \(Self.maxVocabularySize) token ids")
            }
            guard !t.content.isEmpty else { throw FormatError(source, "added token \(t.id) is empty") }
            if t.id >= tokens.count {
                tokens += Array(repeating: "", count: t.id + 1 - tokens.count)
                hasToken += Array(repeating: false, count: t.id + 1 - hasToken.count)
            }
            tokens[t.id] = t.content
            hasToken[t.id] = true
        }
        guard tokens.count < 1 << 31 else { throw FormatError(source, "too many tokens (\(tokens.count))") }
        for (name, id) in [("BOS", bosId), ("EOS", eosId), ("padding", padId), ("unknown", options.unknownTokenId)] {
            if let id, !(0..<tokens.count).contains(id) || !hasToken[id] {
                throw FormatError(source, "\(name) token id \(id) is not in the vocabulary of \(tokens.count) tokens")
            }
        }

        // The model vocabulary (merges and byte tokens refer to it); like `tokenizers`, a
        // later duplicate wins. Added tokens come on top.
        var modelIds: [ByteKey: Int32] = [:]
        modelIds.reserveCapacity(vocab.count)
        for (id, t) in vocab.enumerated() { if let t { modelIds[ByteKey(t)] = Int32(id) } }
        var idByAddedToken: [ByteKey: Int32] = [:]
        for t in addedTokens { idByAddedToken[ByteKey(t.content)] = Int32(t.id) }

        var byteTokenId = [Int32](repeating: -1, count: 256)
        for b in 0..<256 {
            var key: [UInt8] = []
            UTF8Bytes.append(ByteLevel.scalarForByte[b], to: &key)
            byteTokenId[b] = modelIds[ByteKey(key)] ?? -1
        }

        var mergeTable: [UInt64: UInt64] = [:]
        mergeTable.reserveCapacity(mergeBytes.count)
        for (rank, (a, b)) in mergeBytes.enumerated() {
            func shown() -> String { Self.shown(String(decoding: a, as: UTF8.self) + " " + String(decoding: b, as: UTF8.self)) }
            guard let left = modelIds[ByteKey(a)], let right = modelIds[ByteKey(b)] else {
                throw FormatError(source, "merge \(rank) '\(shown())' uses a token that is not in the vocabulary")
            }
            guard let merged = modelIds[ByteKey(a + b)] else {
                throw FormatError(source, "merge \(rank) '\(shown())' makes a token that is not in the vocabulary")
            }
            mergeTable[UInt64(UInt32(left)) << 32 | UInt64(UInt32(right))] = UInt64(rank) << 32 | UInt64(UInt32(merged))
        }

        var idByBytes: [ByteKey: Int32] = [:]
        if options.ignoreMerges {
            for (key, id) in modelIds {
                if let bytes = ByteLevel.bytes(ofToken: String(decoding: key.bytes, as: UTF8.self)) { idByBytes[ByteKey(bytes)] = id }
            }
        }

        var decodeBytes: [UInt8] = []
        var decodeStart: [Int32] = [0]
        var needsSlow = [Bool](repeating: false, count: tokens.count)
        decodeStart.reserveCapacity(tokens.count + 1)
        for (id, t) in tokens.enumerated() {
            if let bytes = ByteLevel.bytes(ofToken: t) {
                decodeBytes += bytes
                needsSlow[id] = Self.byteFallbackValue(t) != nil
            } else {
                decodeBytes += Array(t.utf8)
                needsSlow[id] = true
            }
            decodeStart.append(Int32(decodeBytes.count))
        }

        self.preTokenizer = preTokenizer
        self.options = options
        self.bosId = bosId
        self.eosId = eosId
        self.padId = padId
        self.addedTokens = addedTokens
        self.tokens = tokens
        self.hasToken = hasToken
        self.idByToken = modelIds
        self.idByAddedToken = idByAddedToken
        self.byteTokenId = byteTokenId
        self.merges = mergeTable
        self.idByBytes = idByBytes
        self.rawMatcher = AddedTokenMatcher(addedTokens.filter { !$0.normalized || !options.normalizeNFC })
        self.normalizedMatcher = AddedTokenMatcher(addedTokens.filter { $0.normalized && options.normalizeNFC })
        self.specialIds = Set(addedTokens.filter(\.special).map(\.id))
        self.decodeBytes = decodeBytes
        self.decodeStart = decodeStart
        self.needsSlowDecode = needsSlow
    }

    // MARK: - Lookup

    /// The token string of `id` (byte-level form, e.g. "Ġhello"), nil if out of range.
    public func tokenText(_ id: Int) -> String? {
        guard id >= 0, id < tokens.count, hasToken[id] else { return nil }
        return tokens[id]
    }

    /// The id of a token string (byte-level form, or an added token's content).
    public func id(forToken token: String) -> Int? {
        let key = ByteKey(token)
        return (idByAddedToken[key] ?? idByToken[key]).map(Int.init)
    }

    public func isSpecial(_ id: Int) -> Bool { specialIds.contains(id) }

    // MARK: - Encode

    /// Token ids for `text`; no BOS/EOS is added. Added-token text (e.g. "<|im_start|>")
    /// becomes its id, as with transformers' default `split_special_tokens=False`.
    public func encode(_ text: String) -> [Int] {
        var ids: [Int] = []
        var cache: [ByteKey: [Int32]] = [:]
        let scalars = text.unicodeScalars.map(\.value)
        for part in rawMatcher.split(scalars[...]) {
            switch part {
            case .token(let id):
                ids.append(id)
            case .text(let range):
                var segment = Array(scalars[range])
                if options.normalizeNFC { segment = Self.nfc(segment) }
                let classes = segment.map { ScalarClass.of($0) }
                for inner in normalizedMatcher.split(segment[...]) {
                    switch inner {
                    case .token(let id): ids.append(id)
                    case .text(let r): encodeWords(segment, classes, r, into: &ids, cache: &cache)
                    }
                }
            }
        }
        return ids
    }

    /// Pre-tokenises `s[range]` and appends the BPE ids of each word.
    private func encodeWords(_ s: [UInt32], _ classes: [UInt8], _ range: Range<Int>,
                             into ids: inout [Int], cache: inout [ByteKey: [Int32]]) {
        var word: [UInt8] = []
        s.withUnsafeBufferPointer { sp in
            classes.withUnsafeBufferPointer { cp in
                preTokenizer.split(sp, cp, range) { start, end in
                    word.removeAll(keepingCapacity: true)
                    for k in start..<end { UTF8Bytes.append(sp[k], to: &word) }
                    if word.count == 1, byteTokenId[Int(word[0])] >= 0 {
                        ids.append(Int(byteTokenId[Int(word[0])]))
                        return
                    }
                    let key = ByteKey(word)
                    if let hit = cache[key] {
                        for id in hit { ids.append(Int(id)) }
                        return
                    }
                    let result = bpe(word)
                    cache[key] = result
                    for id in result { ids.append(Int(id)) }
                }
            }
        }
    }

    /// BPE over one word's bytes. Mirrors `tokenizers`' `Word::merge_all`: a heap of
    /// candidate merges ordered by (rank, position); an entry is stale when the pair at
    /// its position no longer merges into the same token.
    func bpe(_ word: [UInt8]) -> [Int32] {
        if options.ignoreMerges, let id = idByBytes[ByteKey(word)] { return [id] }

        // Symbols as a doubly linked list over an array; removed ones have id -1.
        var ids: [Int32] = []
        ids.reserveCapacity(word.count)
        for b in word {
            let id = byteTokenId[Int(b)]
            if id >= 0 { ids.append(id); continue }
            // A byte without a token (only bytes that never occur in UTF-8 can lack one).
            let ch = ByteLevel.scalarForByte[Int(b)]
            if options.byteFallback {
                var utf8: [UInt8] = []
                UTF8Bytes.append(ch, to: &utf8)
                let fallback = utf8.map { idByToken[ByteKey(Self.byteFallbackToken($0))] }
                if fallback.allSatisfy({ $0 != nil }) { ids += fallback.map { $0! }; continue }
            }
            if let unk = options.unknownTokenId {
                if options.fuseUnknown, ids.last == Int32(unk) { continue }
                ids.append(Int32(unk))
            }
        }
        let n = ids.count
        if n < 2 { return ids }
        var prev = [Int32](repeating: -1, count: n)
        var next = [Int32](repeating: -1, count: n)
        for i in 0..<n { prev[i] = Int32(i - 1); next[i] = i + 1 < n ? Int32(i + 1) : -1 }

        var heap = MergeHeap()
        heap.reserve(n)
        for i in 0..<(n - 1) {
            if let m = merges[Self.pairKey(ids[i], ids[i + 1])] { heap.push(rank: UInt32(m >> 32), pos: UInt32(i), newId: Int32(truncatingIfNeeded: m)) }
        }
        while let top = heap.pop() {
            let pos = Int(top.pos)
            guard ids[pos] >= 0 else { continue }
            let right = Int(next[pos])
            guard right >= 0 else { continue }
            guard let m = merges[Self.pairKey(ids[pos], ids[right])], Int32(truncatingIfNeeded: m) == top.newId else { continue }
            ids[pos] = top.newId
            ids[right] = -1
            let after = next[right]
            next[pos] = after
            if after >= 0 { prev[Int(after)] = Int32(pos) }
            let before = prev[pos]
            if before >= 0, let m = merges[Self.pairKey(ids[Int(before)], ids[pos])] {
                heap.push(rank: UInt32(m >> 32), pos: UInt32(before), newId: Int32(truncatingIfNeeded: m))
            }
            if after >= 0, let m = merges[Self.pairKey(ids[pos], ids[Int(after)])] {
                heap.push(rank: UInt32(m >> 32), pos: UInt32(pos), newId: Int32(truncatingIfNeeded: m))
            }
        }
        return ids.filter { $0 >= 0 }
    }

    @inline(__always) static func pairKey(_ a: Int32, _ b: Int32) -> UInt64 {
        UInt64(UInt32(bitPattern: a)) << 32 | UInt64(UInt32(bitPattern: b))
    }

    /// NFC as the reference computes it. Scalars below U+0300 are always NFC and never
    /// combine with what precedes them, so most text skips the normaliser.
    static func nfc(_ s: [UInt32]) -> [UInt32] {
        guard s.contains(where: { $0 >= 0x300 }) else { return s }
        var view = String.UnicodeScalarView()
        for v in s { if let u = Unicode.Scalar(v) { view.append(u) } }
        // The standard library's normaliser (Unicode 17 here; the reference uses 16:
        // the few scalars whose composition or combining class changed differ).
        let utf8 = String(view)._nfcCodeUnits
        return String(decoding: utf8, as: UTF8.self).unicodeScalars.map(\.value)
    }

    // MARK: - Decode

    /// Text for `ids`, as transformers' `tokenizer.decode(ids, skip_special_tokens:)`.
    /// Ids outside the vocabulary are skipped (as `tokenizers` does); bytes that are not
    /// valid UTF-8 become U+FFFD.
    public func decode(_ ids: [Int], skipSpecial: Bool = false) -> String {
        let kept = ids.filter { id in
            id >= 0 && id < tokens.count && hasToken[id] && !(skipSpecial && specialIds.contains(id))
        }
        let text: String
        if options.decoder == .llamaByteLevel && kept.contains(where: { needsSlowDecode[$0] }) {
            text = llamaDecodeSlow(kept)
        } else {
            text = UTF8Bytes.lossyString(bytes(kept))
        }
        return options.cleanUpTokenizationSpaces ? Self.cleanUpTokenization(text) : text
    }

    /// The bytes the ids stand for, concatenated (byte-level decoding without the
    /// `.llamaByteLevel` special cases). Ids outside the vocabulary are skipped.
    public func bytes(_ ids: [Int]) -> [UInt8] {
        var out: [UInt8] = []
        for id in ids where id >= 0 && id < tokens.count {
            out += decodeBytes[Int(decodeStart[id])..<Int(decodeStart[id + 1])]
        }
        return out
    }

    /// `<0xAB>` → 0xAB, as `decoders.ByteFallback` parses it (Rust `u8::from_str_radix`,
    /// which also takes a leading '+').
    static func byteFallbackValue(_ token: String) -> UInt8? {
        let u = Array(token.utf8)
        guard u.count == 6, u[0] == 0x3C, u[1] == 0x30, u[2] == 0x78, u[5] == 0x3E else { return nil }
        return UInt8(String(decoding: u[3...4], as: UTF8.self), radix: 16)
    }

    static func byteFallbackToken(_ b: UInt8) -> String {
        let hex = String(b, radix: 16, uppercase: true)
        return "<0x" + (hex.count < 2 ? "0" + hex : hex) + ">"
    }

    /// ByteFallback, Fuse, Replace("▁", " "), ByteLevel — step by step, for the rare
    /// sequences with byte-fallback tokens or scalars outside the byte alphabet.
    private func llamaDecodeSlow(_ ids: [Int]) -> String {
        var pieces: [String] = []
        var pendingBytes: [UInt8] = []
        func flush() {
            guard !pendingBytes.isEmpty else { return }
            if let s = String(validating: pendingBytes, as: UTF8.self) {
                pieces.append(s)
            } else {
                pieces += Array(repeating: "\u{FFFD}", count: pendingBytes.count)
            }
            pendingBytes.removeAll()
        }
        for id in ids {
            if let b = Self.byteFallbackValue(tokens[id]) { pendingBytes.append(b); continue }
            flush()
            pieces.append(tokens[id])
        }
        flush()
        var joined = String.UnicodeScalarView()
        for s in pieces.joined().unicodeScalars { joined.append(s == "\u{2581}" ? " " : s) }
        let text = String(joined)
        let bytes = ByteLevel.bytes(ofToken: text) ?? Array(text.utf8)
        return UTF8Bytes.lossyString(bytes)
    }

    /// transformers' `clean_up_tokenization`: Python `str.replace` in this order, on
    /// scalars (Swift's own replacing would compare grapheme clusters).
    static func cleanUpTokenization(_ text: String) -> String {
        var s = Array(text.unicodeScalars)
        for (from, to) in [(" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"), (" n't", "n't"),
                           (" 'm", "'m"), (" 's", "'s"), (" 've", "'ve"), (" 're", "'re")] {
            s = replaceAll(s, Array(from.unicodeScalars), Array(to.unicodeScalars))
        }
        var view = String.UnicodeScalarView()
        view.append(contentsOf: s)
        return String(view)
    }

    static func replaceAll(_ s: [Unicode.Scalar], _ from: [Unicode.Scalar], _ to: [Unicode.Scalar]) -> [Unicode.Scalar] {
        var out: [Unicode.Scalar] = []
        out.reserveCapacity(s.count)
        var i = 0
        while i < s.count {
            if i + from.count <= s.count && s[i] == from[0] && Array(s[i..<(i + from.count)]) == from {
                out += to
                i += from.count
            } else {
                out.append(s[i])
                i += 1
            }
        }
        return out
    }
}

/// Min-heap of merge candidates ordered by rank, then position.
struct MergeHeap {
    struct Entry { var key: UInt64; var newId: Int32 }   // key = rank << 32 | pos
    private var items: [Entry] = []

    mutating func reserve(_ n: Int) { items.reserveCapacity(n) }

    mutating func push(rank: UInt32, pos: UInt32, newId: Int32) {
        items.append(Entry(key: UInt64(rank) << 32 | UInt64(pos), newId: newId))
        var i = items.count - 1
        while i > 0 {
            let parent = (i - 1) / 2
            guard items[i].key < items[parent].key else { break }
            items.swapAt(i, parent)
            i = parent
        }
    }

    mutating func pop() -> (pos: UInt32, newId: Int32)? {
        guard let first = items.first else { return nil }
        let last = items.removeLast()
        if !items.isEmpty {
            items[0] = last
            var i = 0
            while true {
                let l = 2 * i + 1, r = l + 1
                var m = i
                if l < items.count && items[l].key < items[m].key { m = l }
                if r < items.count && items[r].key < items[m].key { m = r }
                if m == i { break }
                items.swapAt(i, m)
                i = m
            }
        }
        return (UInt32(truncatingIfNeeded: first.key), first.newId)
    }
}

/// Finds added tokens in text: at the leftmost position where any matches, the longest
/// (aho-corasick `LeftmostLongest`, as `tokenizers` uses).
struct AddedTokenMatcher: Sendable {
    enum Part { case text(Range<Int>), token(Int) }
    /// First scalar → (scalars, id), longest first.
    private let candidates: [UInt32: [([UInt32], Int)]]

    init(_ tokens: [AddedToken]) {
        var c: [UInt32: [([UInt32], Int)]] = [:]
        for t in tokens {
            let s = t.content.unicodeScalars.map(\.value)
            guard let first = s.first else { continue }
            c[first, default: []].append((s, t.id))
        }
        candidates = c.mapValues { $0.sorted { $0.0.count > $1.0.count } }
    }

    func split(_ s: ArraySlice<UInt32>) -> [Part] {
        guard !candidates.isEmpty else { return s.isEmpty ? [] : [.text(s.indices)] }
        var parts: [Part] = []
        var textStart = s.startIndex
        var i = s.startIndex
        scan: while i < s.endIndex {
            if let list = candidates[s[i]] {
                for (pattern, id) in list where i + pattern.count <= s.endIndex && s[i..<(i + pattern.count)].elementsEqual(pattern) {
                    if textStart < i { parts.append(.text(textStart..<i)) }
                    parts.append(.token(id))
                    i += pattern.count
                    textStart = i
                    continue scan
                }
            }
            i += 1
        }
        if textStart < s.endIndex { parts.append(.text(textStart..<s.endIndex)) }
        return parts
    }
}

/// Decodes a growing list of ids piece by piece without ever emitting part of a UTF-8
/// sequence: bytes of an unfinished character wait for the next token. Gives the text
/// of `decode` for `.byteLevel` tokenizers (no `cleanUpTokenizationSpaces`, which needs
/// the whole text).
public struct StreamingDecoder: Sendable {
    public let tokenizer: BPETokenizer
    public let skipSpecial: Bool
    private var pending: [UInt8] = []

    public init(_ tokenizer: BPETokenizer, skipSpecial: Bool = false) {
        self.tokenizer = tokenizer
        self.skipSpecial = skipSpecial
    }

    /// The text completed by `id` (possibly empty).
    public mutating func append(_ id: Int) -> String {
        if skipSpecial && tokenizer.isSpecial(id) { return "" }
        pending += tokenizer.bytes([id])
        let keep = UTF8Bytes.incompleteTail(pending)
        let ready = Array(pending[..<(pending.count - keep)])
        pending.removeFirst(pending.count - keep)
        return UTF8Bytes.lossyString(ready)
    }

    /// Whatever is left (an unfinished character becomes U+FFFD).
    public mutating func finish() -> String {
        defer { pending.removeAll() }
        return UTF8Bytes.lossyString(pending)
    }
}
