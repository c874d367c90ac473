import Foundation

/// Out-of-fold predictions of a softmax regression: rows are split into `folds` by their group
/// (every row of one prompt in one fold), and each fold is predicted by a model fitted on the
/// others. Rows x [rows × width].
public func outOfFoldPredictions(_ x: [Float], width: Int, labels: [Int], classes: Int, groups: [String],
                                 folds: Int, l2: Float) -> [Int] {
    let fold = groups.map { Evaluation.fold(of: $0, folds: folds) }
    var predicted = [Int](repeating: 0, count: labels.count)
    for f in 0..<folds {
        let train = labels.indices.filter { fold[$0] != f }, test = labels.indices.filter { fold[$0] == f }
        guard !test.isEmpty, !train.isEmpty else { continue }
        let model = SoftmaxRegression.fit(rows(x, width: width, train), labels: train.map { labels[$0] }, classes: classes, l2: l2)
        for (i, p) in zip(test, model.predict(rows(x, width: width, test))) { predicted[i] = p }
    }
    return predicted
}

func rows(_ x: [Float], width: Int, _ indices: [Int]) -> [Float] {
    var out = [Float](); out.reserveCapacity(indices.count * width)
    for i in indices { out.append(contentsOf: x[(i * width)..<((i + 1) * width)]) }
    return out
}

/// One setting tried in the judge's cross-validation, and how it did.
public struct JudgeSetting: Encodable, Equatable {
    public var layer: Int
    public var pooling: Pooling
    /// The L2 strength chosen for each head (by its own out-of-fold accuracy).
    public var l2: [String: Float]
    /// Out-of-fold agreement per head, and over both.
    public var agree: [String: Int]
    public var n: [String: Int]
    public var accuracy: Double
}

/// The learned judge's training: cross-validates every (layer, pooling, L2) on the training
/// answers, picks the setting, and fits the final heads on all of them.
public struct JudgeTraining {
    public var answers: [LabelledAnswer]
    /// Pooled states (`Pooling.meanAndLast`) of every answer at each candidate layer.
    public var states: [Int: [Float]]
    public var hidden: Int
    public var folds: Int
    public var l2s: [Float]
    /// A cheaper layer is preferred while its accuracy is within this many points of the best.
    public var tolerance: Double

    public init(answers: [LabelledAnswer], states: [Int: [Float]], hidden: Int, folds: Int = 5,
                l2s: [Float] = [1e-3, 1e-2, 1e-1], tolerance: Double = 0.5) {
        self.answers = answers; self.states = states; self.hidden = hidden; self.folds = folds; self.l2s = l2s; self.tolerance = tolerance
    }

    /// Features of the answers at `indices` for one layer and pooling.
    func features(layer: Int, pooling: Pooling, _ indices: [Int]) -> [Float] {
        let all = states[layer]!, width = pooling.width(hidden: hidden)
        var out = [Float](); out.reserveCapacity(indices.count * width)
        let offset = pooling.offset(hidden: hidden)
        for i in indices { out.append(contentsOf: all[(i * 2 * hidden + offset)..<(i * 2 * hidden + offset + width)]) }
        return out
    }

    func head(_ request: Request) -> (indices: [Int], labels: [Int]) {
        let idx = answers.indices.filter { answers[$0].request == request }
        return (idx, idx.map { request.labels.firstIndex(of: answers[$0].label)! })
    }

    /// Out-of-fold predictions (as labels) of one head at one setting.
    public func outOfFold(_ request: Request, layer: Int, pooling: Pooling, l2: Float) -> [AnswerLabel] {
        let (idx, labels) = head(request)
        let p = outOfFoldPredictions(features(layer: layer, pooling: pooling, idx), width: pooling.width(hidden: hidden), labels: labels,
                                     classes: request.labels.count, groups: idx.map { answers[$0].prompt }, folds: folds, l2: l2)
        return p.map { request.labels[$0] }
    }

    /// Every setting, cross-validated, in the order tried (layers ascending).
    public func settings(progress: ((String) -> Void)? = nil) -> [JudgeSetting] {
        var out: [JudgeSetting] = []
        for layer in states.keys.sorted() {
            for pooling in Pooling.allCases {
                var l2: [String: Float] = [:], agree: [String: Int] = [:], n: [String: Int] = [:]
                for request in Request.allCases {
                    let (idx, _) = head(request)
                    guard !idx.isEmpty else { continue }
                    let read = idx.map { answers[$0].label }
                    let best = l2s.map { s in (s, zip(read, outOfFold(request, layer: layer, pooling: pooling, l2: s)).filter { $0 == $1 }.count) }
                        .max { $0.1 < $1.1 }!
                    l2[request.rawValue] = best.0; agree[request.rawValue] = best.1; n[request.rawValue] = idx.count
                }
                let s = JudgeSetting(layer: layer, pooling: pooling, l2: l2, agree: agree, n: n,
                                     accuracy: Double(agree.values.reduce(0, +)) / Double(max(n.values.reduce(0, +), 1)))
                progress?("layer \(layer) \(pooling.rawValue): \(String(format: "%.1f %%", 100 * s.accuracy)) out of fold")
                out.append(s)
            }
        }
        return out
    }

    /// The cheapest setting (lowest layer, then the order of `Pooling.allCases`) within `tolerance` points of the best.
    public func choose(_ settings: [JudgeSetting]) -> JudgeSetting {
        let best = settings.map(\.accuracy).max()!
        return settings.first { $0.accuracy >= best - tolerance / 100 }!
    }

    /// The final heads of a setting, fitted on every training answer.
    public func fit(_ s: JudgeSetting) -> [LearnedJudgeWeights.Head] {
        Request.allCases.map { request in
            let (idx, labels) = head(request)
            let model = SoftmaxRegression.fit(features(layer: s.layer, pooling: s.pooling, idx), labels: labels,
                                              classes: request.labels.count, l2: s.l2[request.rawValue] ?? l2s[0])
            return LearnedJudgeWeights.Head(request: request, labels: request.labels, classifier: model)
        }
    }
}
