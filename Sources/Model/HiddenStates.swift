import Foundation
import Tensor

extension Transformer {
    /// Runs `sequences` through the blocks needed for the largest of `layers` (hidden-state
    /// indices, transformers' convention: 0 is the embedding output), packed `batchSize`
    /// sequences a pass, and calls `visit(sequence, layer, rows, count)` with each sequence's
    /// hidden-state rows [count × hidden] at each requested layer. Packing adds no padding, so
    /// a sequence's states do not depend on its batch.
    public func visitHiddenStates(_ sequences: [[Int]], layers: [Int], batchSize: Int,
                                  progress: ((Int) -> Void)? = nil,
                                  visit: (_ sequence: Int, _ layer: Int, _ rows: UnsafePointer<Float>, _ count: Int) -> Void) {
        precondition(batchSize > 0 && !layers.isEmpty)
        let H = config.hiddenSize, wanted = Set(layers)
        let blocks = min(layers.max()!, config.numLayers)
        for start in stride(from: 0, to: sequences.count, by: batchSize) {
            let batch = Array(sequences[start..<min(start + batchSize, sequences.count)])
            var firstRow: [Int] = [], r = 0
            for s in batch { firstRow.append(r); r += s.count }
            let cache = KVCache(config: config, capacities: batch.map(\.count))
            withoutActuallyEscaping(visit) { visit in
                forward(tokens: batch, sequences: Array(batch.indices), cache: cache, blocks: blocks, logits: false) { index, states in
                    guard wanted.contains(index) else { return }
                    for (i, row) in firstRow.enumerated() { visit(start + i, index, states + row * H, batch[i].count) }
                }
            }
            progress?(start + batch.count)
        }
    }
}
