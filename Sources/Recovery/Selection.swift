import Foundation
import Formats
import Tensor

/// One tensor the recovery may change: its current values and the gradient of the loss
/// with respect to them, both [count] in HF layout.
public struct EligibleTensor {
    public let name: String
    public let current: FloatBuffer
    public let gradient: FloatBuffer
    public init(name: String, current: FloatBuffer, gradient: FloatBuffer) {
        precondition(current.count == gradient.count)
        self.name = name; self.current = current; self.gradient = gradient
    }
}

/// The weights one greedy step sets to their target values (sorted indices, the target values there).
public struct Restore: Equatable {
    public var name: String
    public var indices: [Int]
    public var values: [Float]
}

public struct SelectionResult {
    public var restores: [Restore]
    /// Weights that passed the sign rule (before the top-k cut).
    public var candidates: Int
    public var selected: Int { restores.reduce(0) { $0 + $1.indices.count } }
}

/// The paper's greedy step (§5.2, and its authors' code): a weight w is a candidate when a
/// gradient-descent step moves it toward its target t (sign(−g) = sign(t − w), t ≠ w), i.e.
/// (w > t and g > 0) or (w < t and g < 0); among all candidates of all tensors (one global
/// cut), the `k` with the largest |g| are set to t. Ties in |g| go to the earlier tensor,
/// then the lower index, so the result is deterministic.
///
/// Never sorts the candidates: a first pass builds a histogram of |g| over the top 16 bits
/// of its float encoding (monotonic for non-negative floats), which fixes the bucket the
/// k-th largest falls in; a second pass keeps everything above it and sorts only that bucket.
/// Target values are read per tensor through `readTarget` (e.g. dequantised from the aligned
/// model's file), so no full copy of the target model is held.
///
/// `within`, when given, restricts tensor i to those (sorted) indices (rollback: only the
/// weights restored this round). `apply` sets the chosen weights in `current`.
public func greedySignTopK(_ tensors: [EligibleTensor], k: Int, within: [[Int]]? = nil, apply: Bool = true,
                           readTarget: (String, UnsafeMutablePointer<Float>, Int) throws -> Void) throws -> SelectionResult {
    // Both passes run on contiguous groups of tensors, one per core (dequantising the
    // targets is most of the work); results are merged in tensor order, so the outcome
    // does not depend on the number of workers.
    let groups = contiguousGroups(tensors.map(\.current.count), parts: ProcessInfo.processInfo.activeProcessorCount)
    func eachGroup(_ body: (Range<Int>, UnsafeMutablePointer<Float>) throws -> Void) throws {
        var errors = [Error?](repeating: nil, count: groups.count)
        errors.withUnsafeMutableBufferPointer { errs in
            DispatchQueue.concurrentPerform(iterations: groups.count) { w in
                let maxCount = groups[w].map { tensors[$0].current.count }.max() ?? 0
                let target = FloatBuffer(count: maxCount, zeroed: false)
                do { try body(groups[w], target.ptr) } catch { errs[w] = error }
            }
        }
        if let e = errors.compactMap({ $0 }).first { throw e }
    }

    // The sign rule: d = w − a and g nonzero with the same sign. The product is taken in
    // Double so that it cannot underflow to zero; NaN never passes.
    @inline(__always) func isCandidate(_ w: Float, _ a: Float, _ g: Float) -> Bool { Double(w - a) * Double(g) > 0 }

    // Pass 1: a histogram of candidate |g| per group (plain loops: this visits every weight).
    var groupHist = [[Int]](repeating: [], count: groups.count)
    try groupHist.withUnsafeMutableBufferPointer { hists in
        try eachGroup { range, a in
            var h = [Int](repeating: 0, count: 1 << 16)
            for t in range {
                try readTarget(tensors[t].name, a, tensors[t].current.count)
                let w = tensors[t].current.ptr, g = tensors[t].gradient.ptr
                h.withUnsafeMutableBufferPointer { h in
                    if let within {
                        for i in within[t] where isCandidate(w[i], a[i], g[i]) { h[Int(g[i].magnitude.bitPattern >> 16)] += 1 }
                    } else {
                        for i in 0..<tensors[t].current.count {
                            h[Int(g[i].magnitude.bitPattern >> 16)] += isCandidate(w[i], a[i], g[i]) ? 1 : 0
                        }
                    }
                }
            }
            hists[groups.firstIndex(of: range)!] = h
        }
    }
    var hist = [Int](repeating: 0, count: 1 << 16)
    for h in groupHist { for b in 0..<h.count { hist[b] += h[b] } }
    let candidates = hist.reduce(0, +)
    let want = min(max(k, 0), candidates)
    if want == 0 { return SelectionResult(restores: [], candidates: candidates) }
    // The bucket holding the want-th largest |g|.
    var bucket = hist.count - 1, above = 0
    while above + hist[bucket] < want { above += hist[bucket]; bucket -= 1 }

    // Pass 2: everything above that bucket is chosen; the bucket itself is sorted.
    struct Tie { let t: Int; let i: Int; let bits: UInt32; let value: Float }
    var restores = tensors.map { Restore(name: $0.name, indices: [], values: []) }
    var groupTies = [[Tie]](repeating: [], count: groups.count)
    try restores.withUnsafeMutableBufferPointer { out in
        try groupTies.withUnsafeMutableBufferPointer { tiesOut in
            try eachGroup { range, target in
                var ties: [Tie] = []
                for t in range {
                    try readTarget(tensors[t].name, target, tensors[t].current.count)
                    var r = out[t]
                    let w = tensors[t].current.ptr, g = tensors[t].gradient.ptr
                    // Only weights in or above the cut's bucket matter: test that first (rare).
                    func visit(_ i: Int) {
                        let bits = g[i].magnitude.bitPattern, b = Int(bits >> 16)
                        guard b >= bucket, isCandidate(w[i], target[i], g[i]) else { return }
                        if b > bucket { r.indices.append(i); r.values.append(target[i]) }
                        else { ties.append(Tie(t: t, i: i, bits: bits, value: target[i])) }
                    }
                    if let within { for i in within[t] { visit(i) } } else { for i in 0..<tensors[t].current.count { visit(i) } }
                    out[t] = r
                }
                tiesOut[groups.firstIndex(of: range)!] = ties
            }
        }
    }
    var ties = groupTies.flatMap { $0 }
    ties.sort { $0.bits != $1.bits ? $0.bits > $1.bits : ($0.t != $1.t ? $0.t < $1.t : $0.i < $1.i) }
    for tie in ties.prefix(want - above) {
        restores[tie.t].indices.append(tie.i)
        restores[tie.t].values.append(tie.value)
    }
    for t in restores.indices where restores[t].indices.count > 1 {
        let order = restores[t].indices.indices.sorted { restores[t].indices[$0] < restores[t].indices[$1] }
        restores[t].indices = order.map { restores[t].indices[$0] }
        restores[t].values = order.map { restores[t].values[$0] }
    }
    restores.removeAll { $0.indices.isEmpty }
    if apply {
        let byName = Dictionary(uniqueKeysWithValues: tensors.map { ($0.name, $0.current) })
        for r in restores {
            let w = byName[r.name]!.ptr
            for (i, v) in zip(r.indices, r.values) { w[i] = v }
        }
    }
    return SelectionResult(restores: restores, candidates: candidates)
}

/// Splits items with the given sizes into at most `parts` contiguous ranges of about equal total size.
func contiguousGroups(_ sizes: [Int], parts: Int) -> [Range<Int>] {
    let total = sizes.reduce(0, +), n = max(1, min(parts, sizes.count))
    var groups: [Range<Int>] = [], start = 0, sum = 0
    for (i, s) in sizes.enumerated() {
        sum += s
        if groups.count < n - 1 && sum * n >= total * (groups.count + 1) && i + 1 < sizes.count {
            groups.append(start..<(i + 1)); start = i + 1
        }
    }
    groups.append(start..<sizes.count)
    return groups
}

/// `greedySignTopK` fed one block at a time (layer-major recovery, where a block's gradients
/// exist only until the next block's are computed): the same sign rule and the same global
/// cut, so the same result, without ever holding every candidate. Candidates are kept in a
/// list that is cut back to the best k whenever it reaches 2k (histogram of the top 16 bits
/// of |g| as in `greedySignTopK`, then a sort of one bucket); a candidate below the k-th best
/// so far, or below its own tensor's k-th best, is never listed. Memory: at most 2k entries
/// of 16 bytes, plus about k per worker while a block's tensors are scanned.
public struct StreamingTopK {
    struct Entry { var bits: UInt32; var t: Int32; var i: UInt32; var value: Float }
    public let k: Int
    /// Weights that passed the sign rule so far.
    public private(set) var candidates = 0
    var entries: [Entry] = []
    var floor: UInt32 = 0       // |g| bits of the k-th best so far (0 until there are k)
    var names: [Int: String] = [:]

    public init(k: Int) { self.k = max(k, 0) }

    /// Scans `tensors` (model-order numbers `firstIndex`, `firstIndex + 1`, …: ties go to the
    /// lower number, as in `greedySignTopK`) against their targets from `readTarget`.
    public mutating func add(_ tensors: [EligibleTensor], firstIndex: Int,
                             readTarget: (String, UnsafeMutablePointer<Float>, Int) throws -> Void) throws {
        for (j, t) in tensors.enumerated() { names[firstIndex + j] = t.name }
        guard !tensors.isEmpty else { return }
        let k = self.k
        // One tensor per worker at a time, each with its own list, merged into the main list as
        // soon as it is done (any order gives the same best k).
        var merged = entries, mergedFloor = floor, mergedCount = candidates
        entries = []
        var errors = [Error?](repeating: nil, count: tensors.count)
        let lock = NSLock()
        var next = 0
        errors.withUnsafeMutableBufferPointer { errs in
            DispatchQueue.concurrentPerform(iterations: min(ProcessInfo.processInfo.activeProcessorCount, tensors.count)) { _ in
                let target = FloatBuffer(count: tensors.map(\.current.count).max()!, zeroed: false)
                while true {
                    lock.lock(); let j = next; next += 1; lock.unlock()
                    if j >= tensors.count { return }
                    let t = tensors[j], n = t.current.count, a = target.ptr, w = t.current.ptr, g = t.gradient.ptr
                    do { try readTarget(t.name, a, n) } catch { errs[j] = error; continue }
                    // Pass 1: a histogram of candidate |g| gives the bucket of this tensor's k-th
                    // best; pass 2 keeps what is in or above it and not below the best k so far.
                    var hist = [Int](repeating: 0, count: 1 << 16)
                    let count = hist.withUnsafeMutableBufferPointer { h -> Int in
                        var count = 0
                        for i in 0..<n {   // the sign rule of greedySignTopK
                            let pass = Double(w[i] - a[i]) * Double(g[i]) > 0
                            count += pass ? 1 : 0
                            h[Int(g[i].magnitude.bitPattern >> 16)] += pass ? 1 : 0
                        }
                        return count
                    }
                    var bucket = hist.count - 1, above = 0
                    while bucket > 0 && above + hist[bucket] < k { above += hist[bucket]; bucket -= 1 }
                    lock.lock(); let best = mergedFloor; lock.unlock()
                    let cut = max(best, UInt32(bucket) << 16)
                    var list: [Entry] = []
                    if k > 0 {
                        list.reserveCapacity(min(count, above + hist[bucket]))
                        let number = Int32(firstIndex + j)
                        for i in 0..<n {
                            let bits = g[i].magnitude.bitPattern
                            if bits >= cut && Double(w[i] - a[i]) * Double(g[i]) > 0 {
                                list.append(Entry(bits: bits, t: number, i: UInt32(i), value: a[i]))
                            }
                        }
                    }
                    lock.lock()
                    mergedCount += count
                    for e in list where e.bits >= mergedFloor {
                        merged.append(e)
                        if merged.count >= 2 * k { mergedFloor = max(mergedFloor, StreamingTopK.cut(&merged, to: k)) }
                    }
                    lock.unlock()
                }
            }
        }
        entries = merged; floor = mergedFloor; candidates = mergedCount
        if let e = errors.compactMap({ $0 }).first { throw e }
    }

    /// The chosen weights, as `greedySignTopK` returns them (tensors in model order, sorted indices).
    public func result() -> SelectionResult {
        var best = entries
        if best.count > k { _ = StreamingTopK.cut(&best, to: k) }
        var byTensor: [Int32: [Entry]] = [:]
        for e in best { byTensor[e.t, default: []].append(e) }
        let restores = byTensor.keys.sorted().map { t in
            let list = byTensor[t]!.sorted { $0.i < $1.i }
            return Restore(name: names[Int(t)]!, indices: list.map { Int($0.i) }, values: list.map(\.value))
        }
        return SelectionResult(restores: restores, candidates: candidates)
    }

    /// Keeps the best `k` of `list` (|g| bits descending, then tensor number, then index);
    /// returns the bits of the worst kept one.
    static func cut(_ list: inout [Entry], to k: Int) -> UInt32 {
        guard list.count > k else { return 0 }
        guard k > 0 else { list = []; return UInt32.max }
        var hist = [Int](repeating: 0, count: 1 << 16)
        for e in list { hist[Int(e.bits >> 16)] += 1 }
        var bucket = hist.count - 1, above = 0
        while above + hist[bucket] < k { above += hist[bucket]; bucket -= 1 }
        var kept: [Entry] = [], ties: [Entry] = []
        kept.reserveCapacity(k)
        for e in list {
            let b = Int(e.bits >> 16)
            if b > bucket { kept.append(e) } else if b == bucket { ties.append(e) }
        }
        ties.sort { $0.bits != $1.bits ? $0.bits > $1.bits : ($0.t != $1.t ? $0.t < $1.t : $0.i < $1.i) }
        kept += ties.prefix(k - above)
        list = kept
        return ties[k - above - 1].bits
    }
}
