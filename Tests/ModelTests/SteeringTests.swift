import Foundation
import Testing
@testable import Model
import Tensor
import TestSupport

/// Activation addition: the vector is added at its hidden-state index and nowhere else.
@Suite struct SteeringTests {
    /// Hidden states of every index for one prompt, with or without steering.
    static func states(_ t: Transformer, _ prompt: [Int]) -> (taps: [[Float]], logits: [Float]) {
        let H = t.config.hiddenSize, n = prompt.count
        var taps = [[Float]](repeating: [], count: t.config.numLayers + 1)
        let logits = t.forward(tokens: [prompt], sequences: [0], cache: KVCache(config: t.config, capacities: [n])) { i, x in
            taps[i] = Array(UnsafeBufferPointer(start: x, count: n * H))
        }
        return (taps, logits)
    }

    @Test func theVectorIsAddedAtItsLayerToEveryToken() throws {
        let t = try RunTimeLimitTests.tiny()
        let prompt = [1, 5, 9, 20, 30], H = t.config.hiddenSize, layer = 2
        let plain = Self.states(t, prompt)
        var rng = SplitMix64(seed: 5)
        let v = (0..<H).map { _ in rng.nextUnit() - 0.5 }
        t.steering = (layer, v)
        let steered = Self.states(t, prompt)
        t.steering = nil
        for i in 0..<layer { #expect(steered.taps[i] == plain.taps[i], "index \(i) before the steered one") }
        #expect(steered.taps[layer] == (0..<prompt.count * H).map { plain.taps[layer][$0] + v[$0 % H] })
        #expect(steered.taps[layer + 1] != plain.taps[layer + 1] && steered.logits != plain.logits)
        #expect(Self.states(t, prompt).logits == plain.logits)   // off again: the model is unchanged
        // A zero vector changes nothing.
        t.steering = (layer, [Float](repeating: 0, count: H))
        #expect(Self.states(t, prompt).logits == plain.logits)
    }
}
