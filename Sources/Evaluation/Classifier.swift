import Foundation
import Formats
import Tensor

/// A multinomial logistic regression over standardised features: p = softmax(W · (x − mean) ⊙
/// scale + b). The judge's heads are these; `fit` trains one, `crossValidate` measures one.
public struct SoftmaxRegression: Codable, Equatable, Sendable {
    public var classes: Int
    public var features: Int
    /// Per-feature mean and 1/std of the training features.
    public var mean: [Float]
    public var scale: [Float]
    /// [classes × features], row-major, and [classes].
    public var weights: [Float]
    public var bias: [Float]

    /// Class probabilities of each row of x [rows × features], [rows × classes].
    public func probabilities(_ x: [Float]) -> [Float] {
        precondition(x.count % features == 0)
        let rows = x.count / features
        var z = standardised(x)
        var p = [Float](repeating: 0, count: rows * classes)
        forward(&p, z: &z, rows: rows)
        return p
    }

    /// The most probable class of each row.
    public func predict(_ x: [Float]) -> [Int] {
        let p = probabilities(x)
        return (0..<(p.count / classes)).map { r in p.withUnsafeBufferPointer { argmax($0.baseAddress! + r * classes, count: classes) } }
    }

    func standardised(_ x: [Float]) -> [Float] {
        var z = x
        for r in 0..<(x.count / features) {
            for j in 0..<features { z[r * features + j] = (x[r * features + j] - mean[j]) * scale[j] }
        }
        return z
    }

    /// p = softmax(z · Wᵀ + b), row by row.
    func forward(_ p: inout [Float], z: inout [Float], rows: Int) {
        p.withUnsafeMutableBufferPointer { pp in
            z.withUnsafeBufferPointer { zp in
                weights.withUnsafeBufferPointer { wp in
                    gemm(transA: false, transB: true, m: rows, n: classes, k: features,
                         a: zp.baseAddress!, lda: features, b: wp.baseAddress!, ldb: features, c: pp.baseAddress!, ldc: classes)
                }
            }
            for r in 0..<rows {
                for c in 0..<classes { pp[r * classes + c] += bias[c] }
                softmaxInPlace(pp.baseAddress! + r * classes, count: classes)
            }
        }
    }

    /// Mean cross-entropy of standardised rows z against `labels` plus (l2 / 2)·‖W‖², and its
    /// gradient into dW [classes × features] and db [classes].
    func loss(z: inout [Float], labels: [Int], l2: Float, dW: inout [Float], db: inout [Float]) -> Double {
        let rows = labels.count
        var p = [Float](repeating: 0, count: rows * classes)
        forward(&p, z: &z, rows: rows)
        var total = 0.0
        for r in 0..<rows {
            total -= log(max(Double(p[r * classes + labels[r]]), 1e-30))
            p[r * classes + labels[r]] -= 1                     // dlogits = p − onehot
        }
        let k = 1 / Float(rows)
        for i in p.indices { p[i] *= k }
        db = [Float](repeating: 0, count: classes)
        for r in 0..<rows { for c in 0..<classes { db[c] += p[r * classes + c] } }
        dW = weights.map { l2 * $0 }
        p.withUnsafeBufferPointer { pp in
            z.withUnsafeBufferPointer { zp in
                dW.withUnsafeMutableBufferPointer { dw in
                    gemm(transA: true, transB: false, m: classes, n: features, k: rows,
                         a: pp.baseAddress!, lda: classes, b: zp.baseAddress!, ldb: features, beta: 1, c: dw.baseAddress!, ldc: features)
                }
            }
        }
        return total / Double(rows) + Double(l2) / 2 * weights.reduce(0) { $0 + Double($1) * Double($1) }
    }

    /// Fits to rows x [rows × features] with labels in 0..<classes: standardises each feature
    /// by the training mean and std, then minimises the regularised cross-entropy by full-batch
    /// Adam from zero weights (a convex problem: the result does not depend on an initial draw).
    public static func fit(_ x: [Float], labels: [Int], classes: Int, l2: Float, steps: Int = 400, rate: Float = 0.05) -> SoftmaxRegression {
        let rows = labels.count, d = x.count / max(rows, 1)
        precondition(rows > 0 && x.count == rows * d && labels.allSatisfy { (0..<classes).contains($0) })
        var mean = [Float](repeating: 0, count: d), scale = [Float](repeating: 1, count: d)
        for j in 0..<d {
            var s = 0.0, s2 = 0.0
            for r in 0..<rows { let v = Double(x[r * d + j]); s += v; s2 += v * v }
            let m = s / Double(rows), variance = max(s2 / Double(rows) - m * m, 0)
            mean[j] = Float(m); scale[j] = variance > 1e-12 ? Float(1 / variance.squareRoot()) : 1
        }
        var model = SoftmaxRegression(classes: classes, features: d, mean: mean, scale: scale,
                                      weights: [Float](repeating: 0, count: classes * d), bias: [Float](repeating: 0, count: classes))
        var z = model.standardised(x)
        var dW: [Float] = [], db: [Float] = []
        var mW = [Float](repeating: 0, count: classes * d), vW = mW, mb = [Float](repeating: 0, count: classes), vb = mb
        let b1: Float = 0.9, b2: Float = 0.999, eps: Float = 1e-8
        for t in 1...steps {
            _ = model.loss(z: &z, labels: labels, l2: l2, dW: &dW, db: &db)
            let c1 = 1 - pow(b1, Float(t)), c2 = 1 - pow(b2, Float(t))
            for i in model.weights.indices {
                mW[i] = b1 * mW[i] + (1 - b1) * dW[i]; vW[i] = b2 * vW[i] + (1 - b2) * dW[i] * dW[i]
                model.weights[i] -= rate * (mW[i] / c1) / ((vW[i] / c2).squareRoot() + eps)
            }
            for c in 0..<classes {
                mb[c] = b1 * mb[c] + (1 - b1) * db[c]; vb[c] = b2 * vb[c] + (1 - b2) * db[c] * db[c]
                model.bias[c] -= rate * (mb[c] / c1) / ((vb[c] / c2).squareRoot() + eps)
            }
        }
        return model
    }
}

/// The fold (0..<folds) of a group, e.g. a prompt: every row of one group lands in one fold.
public func fold(of group: String, folds: Int) -> Int { Int(Array(group.utf8).withUnsafeBytes { xxh64($0) } % UInt64(folds)) }
