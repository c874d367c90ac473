import Foundation
import Formats
import Model
import Tensor

/// A direction in hidden-state space: the mean last-prompt-token hidden state at one
/// hidden-state index over a set of prompts (paper §5.1).
public struct Direction: Equatable {
    public var values: [Float]          // [hidden]
    public var layer: Int               // hidden-state index, transformers' convention
    public var prompts: Int
    public var model: String

    public init(values: [Float], layer: Int, prompts: Int, model: String) {
        self.values = values; self.layer = layer; self.prompts = prompts; self.model = model
    }

    /// The default direction layer: ⌊2L/3⌋, as the paper and its code (Llama-2-7B: 21 of 32,
    /// Qwen2.5-0.5B: 16 of 24).
    public static func defaultLayer(layers: Int) -> Int { 2 * layers / 3 }

    public func cosine(_ other: Direction) -> Double { cosineSimilarity(values, other.values) }

    /// Saves as a safetensors file: tensor "direction" [hidden] F32 plus metadata.
    public func write(to path: String) throws {
        try SafetensorsWriter.write([.floats("direction", shape: [values.count], as: .f32, values)],
                                    metadata: ["layer": String(layer), "prompts": String(prompts), "model": model,
                                               "format": "realign-direction"], to: path)
    }

    public static func read(_ path: String) throws -> Direction {
        let f = try SafetensorsFile(path: path)
        guard f.metadata["format"] == "realign-direction", let layer = f.metadata["layer"].flatMap(Int.init),
              let info = f.info("direction"), info.shape.count == 1 else {
            throw FormatError(path, "not a direction file written by `realign direction`")
        }
        return Direction(values: try f.floats("direction"), layer: layer,
                         prompts: f.metadata["prompts"].flatMap(Int.init) ?? 0, model: f.metadata["model"] ?? "")
    }
}

public func cosineSimilarity(_ a: [Float], _ b: [Float]) -> Double {
    precondition(a.count == b.count)
    var dot = 0.0, na = 0.0, nb = 0.0
    for i in 0..<a.count {
        dot += Double(a[i]) * Double(b[i]); na += Double(a[i]) * Double(a[i]); nb += Double(b[i]) * Double(b[i])
    }
    return dot / max((na * nb).squareRoot(), 1e-300)
}

extension Transformer {
    /// Last-token hidden states at hidden-state index `layer` for each prompt, [prompts × hidden],
    /// running only the blocks needed. Prompts are packed in batches of `batchSize`: packing
    /// adds no padding, so a prompt's state does not depend on its batch.
    public func lastTokenStates(_ prompts: [[Int]], layer: Int, batchSize: Int = 16,
                                progress: ((Int) -> Void)? = nil) -> [Float] {
        precondition(batchSize > 0, "a batch of 0 prompts would leave every state 0")
        let H = config.hiddenSize
        var out = [Float](repeating: 0, count: prompts.count * H)
        out.withUnsafeMutableBufferPointer { o in
            visitHiddenStates(prompts, layers: [layer], batchSize: batchSize, progress: progress) { i, _, rows, count in
                (o.baseAddress! + i * H).update(from: rows + (count - 1) * H, count: H)
            }
        }
        return out
    }

    /// The mean of `lastTokenStates` over prompts (accumulated in Double).
    public func meanLastTokenState(_ prompts: [[Int]], layer: Int, batchSize: Int = 16,
                                   progress: ((Int) -> Void)? = nil) -> [Float] {
        meanOfRows(lastTokenStates(prompts, layer: layer, batchSize: batchSize, progress: progress), width: config.hiddenSize)
    }
}
