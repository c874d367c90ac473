import Foundation
import Testing
@testable import Recovery
import Model
import Formats
import Tensor
import TestSupport

/// The gradient-free baselines on SmolLM2 with 3 % of the eligible weights of blocks 0..<6
/// shifted (`RecoverTests.makeFinetuned`): which weights each restores, against brute force.
@Suite(.serialized) struct BaselineTests {
    static let layer = RecoverTests.layer

    /// F, its perturbed weights, and both models opened.
    static func pair(_ dir: String) throws -> (finetuned: String, perturbed: [String: Set<Int>], a: ParameterSource, f: ParameterSource, c: ModelConfig) {
        let (finetuned, perturbed) = try RecoverTests.makeFinetuned(dir)
        let (a, f, c) = try openAlignedAndFinetuned(aligned: RealModels.smol, finetuned: finetuned, adapter: nil)
        return (finetuned, perturbed, a, f, c)
    }

    static func values(_ src: ParameterSource, _ name: String) throws -> [Float] {
        var x = [Float](repeating: 0, count: try src.shape(name).reduce(1, *))
        try src.read(name, into: &x, count: x.count)
        return x
    }

    static func tempDir(_ name: String) throws -> String {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("realign-\(name)-\(getpid())").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        return dir
    }

    @Test func magnitudeRestoresTheLargestChangesExactly() throws {
        let dir = try Self.tempDir("baseline-magnitude")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let (_, perturbed, a, f, c) = try Self.pair(dir)
        let count = 20_000
        let (patch, weights, differing) = try baselinePatch(.magnitude, aligned: a, finetuned: f, config: c, layer: Self.layer, count: count, model: nil)
        #expect(weights == Self.layer * eligibleSpecs(c, block: 0).reduce(0) { $0 + $1.shape.reduce(1, *) })
        #expect(differing == perturbed.values.reduce(0) { $0 + $1.count })
        // Brute force: every differing weight by |F − A|, then model order, then index.
        struct Change { var size: Float; var tensor: Int; var index: Int; var aligned: Float }
        var all: [Change] = [], names: [String] = []
        for i in 0..<Self.layer {
            for spec in eligibleSpecs(c, block: i) {
                let fv = try Self.values(f, spec.hfName), av = try Self.values(a, spec.hfName)
                for j in fv.indices where fv[j] != av[j] { all.append(Change(size: abs(fv[j] - av[j]), tensor: names.count, index: j, aligned: av[j])) }
                names.append(spec.hfName)
            }
        }
        all.sort { $0.size != $1.size ? $0.size > $1.size : ($0.tensor != $1.tensor ? $0.tensor < $1.tensor : $0.index < $1.index) }
        var want = SparsePatch()
        for (t, group) in Dictionary(grouping: all.prefix(count), by: \.tensor) {
            let g = group.sorted { $0.index < $1.index }
            try want.add(names[t], shape: try a.shape(names[t]), indices: g.map(\.index), values: g.map(\.aligned))
        }
        #expect(patch.count == count)
        #expect(patch == want)
    }

    @Test func randomRestoresASeededUniformSample() throws {
        let dir = try Self.tempDir("baseline-random")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let (_, perturbed, a, f, c) = try Self.pair(dir)
        let count = 30_000
        let p1 = try baselinePatch(.random, aligned: a, finetuned: f, config: c, layer: Self.layer, count: count, seed: 1, model: nil).patch
        let again = try baselinePatch(.random, aligned: a, finetuned: f, config: c, layer: Self.layer, count: count, seed: 1, model: nil).patch
        let p2 = try baselinePatch(.random, aligned: a, finetuned: f, config: c, layer: Self.layer, count: count, seed: 2, model: nil).patch
        #expect(p1.count == count && p1 == again && p2.count == count)
        let differing = perturbed.values.reduce(0) { $0 + $1.count }
        var shared = 0
        for name in p1.tensorNames {
            let e = p1.entries[name]!, av = try Self.values(a, name)
            #expect(Set(e.indices.map(Int.init)).isSubset(of: perturbed[name]!), "\(name): restores a weight fine-tuning did not change")
            #expect(e.values == e.indices.map { av[Int($0)] })
            shared += Set(e.indices).intersection(p2.entries[name]?.indices ?? []).count
            // Uniform: each tensor gets its share of the draw, within 5 standard deviations.
            let share = Double(perturbed[name]!.count) / Double(differing), expected = Double(count) * share
            #expect(abs(Double(e.indices.count) - expected) <= 5 * (expected * (1 - share)).squareRoot() + 1, "\(name): \(e.indices.count) vs \(expected)")
        }
        // Two seeds share about count²/differing weights, not all of them.
        let chance = Double(count * count) / Double(differing)
        #expect(abs(Double(shared) - chance) < 6 * chance.squareRoot() + 1, "\(shared) shared, \(chance) expected")
    }

    @Test func resetBlocksMakesTheBlocksTheAlignedModels() throws {
        let dir = try Self.tempDir("baseline-reset")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let (_, perturbed, a, f, c) = try Self.pair(dir)
        let (patch, weights, differing) = try baselinePatch(.resetBlocks, aligned: a, finetuned: f, config: c, layer: Self.layer - 2, count: 0, model: nil)
        #expect(weights == (Self.layer - 2) * c.layerSpecs(0).reduce(0) { $0 + $1.shape.reduce(1, *) })   // norms included
        #expect(differing == patch.count)
        #expect(patch.count == perturbed.filter { $0.key.hasPrefix("model.layers.") && Int($0.key.split(separator: ".")[2])! < Self.layer - 2 }
            .values.reduce(0) { $0 + $1.count })
        for i in 0..<Self.layer {
            for spec in c.layerSpecs(i) {
                var fv = try Self.values(f, spec.hfName)
                try fv.withUnsafeMutableBufferPointer { try patch.apply(to: $0.baseAddress!, tensor: spec.hfName, count: $0.count) }
                let want = i < Self.layer - 2 ? try Self.values(a, spec.hfName) : try Self.values(f, spec.hfName)
                #expect(fv == want, "\(spec.hfName)")
            }
        }
    }
}
