import Foundation

/// Where the real models live (fetched by `scripts/fetch-models.sh` / `realign fetch`).
public enum RealModels {
    public static var cacheDir: String {
        if let d = ProcessInfo.processInfo.environment["REALIGN_CACHE"], !d.isEmpty { return d + "/models" }
        return NSHomeDirectory() + "/.cache/realign/models"
    }
    public static var qwen: String { cacheDir + "/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf" }
    public static var smol: String { cacheDir + "/smollm2-135m-instruct-q4_1.gguf" }
}

/// The folder `Fixtures` beside the calling test file.
public func fixturesDir(_ file: String = #filePath) -> String {
    URL(fileURLWithPath: file).deletingLastPathComponent().appendingPathComponent("Fixtures").path
}

/// Largest |a-b| / max(|b|, floor) over two equal-length arrays.
public func maxRelativeError(_ a: [Float], _ b: [Float], floor: Float = 1e-6) -> Float {
    precondition(a.count == b.count)
    var worst: Float = 0
    for i in 0..<a.count { worst = max(worst, abs(a[i] - b[i]) / max(abs(b[i]), floor)) }
    return worst
}

private final class Outcome<T>: @unchecked Sendable {
    var result: Result<T, Error>?
    let done = DispatchSemaphore(value: 0)
}

private struct UncheckedSendable<T>: @unchecked Sendable { let value: T }

/// Runs `body` on a thread of its own and returns its result, or nil when it has not
/// returned within `seconds` (the thread is then left running: a hang must fail a test, not
/// stall the whole run).
public func within<T>(seconds: Double, _ body: @escaping () throws -> T) -> Result<T, Error>? {
    let box = Outcome<T>()
    let work = UncheckedSendable(value: body)
    let thread = Thread {
        box.result = Result { try work.value() }
        box.done.signal()
    }
    thread.stackSize = 8 << 20
    thread.start()
    guard box.done.wait(timeout: .now() + seconds) == .success else { return nil }
    return box.result
}

/// The bytes of a committed fixture file. A missing or empty fixture stops the run, naming
/// it: the parameterised tests it feeds would otherwise run no case and pass.
public func fixtureBytes(_ path: String) -> Data {
    guard let data = FileManager.default.contents(atPath: path), !data.isEmpty else { badFixture(path, "missing or empty") }
    return data
}

/// Stops the run on a fixture that does not hold what its loader expects.
public func badFixture(_ path: String, _ problem: String) -> Never {
    fatalError("fixture \(path): \(problem)")
}
