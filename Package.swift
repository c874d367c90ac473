// swift-tools-version:6.0
import PackageDescription

// Release builds are what users and the test suite run (numeric loops are many times
// slower in debug). Modules depend one way: Formats → Tokenizer/Model → CLI.
// The machines this runs on have AVX2 and FMA (x86-64-v3): without a CPU target Swift emits
// SSE2 code and the SIMD kernels run ~3× slower. QUANTDOT_FMA must go with the CPU flag
// (without hardware FMA each fused multiply-add would be a libm call).
#if arch(x86_64)
let cpu: [SwiftSetting] = [.unsafeFlags(["-target-cpu", "haswell"]), .define("QUANTDOT_FMA")]
#else
let cpu: [SwiftSetting] = []
#endif
// Hot numeric kernels (Tensor, with the quantised matrix–vector products, and Model) are
// built without overflow and precondition checks; everything that parses untrusted input
// (Formats, Tokenizer, the CLI, …) keeps them, so a bad size traps instead of writing out of
// bounds. docs/benchmarks.md has the cost measured (with the kernels checked too, batch-1
// decoding was 27 % slower).
let fast: [SwiftSetting] = [.unsafeFlags(["-Ounchecked", "-wmo"], .when(configuration: .release))] + cpu
let checked: [SwiftSetting] = [.unsafeFlags(["-O", "-wmo"], .when(configuration: .release))] + cpu

let package = Package(
    name: "Realign",
    platforms: [.macOS(.v13)],
    products: [.executable(name: "realign", targets: ["realign"])],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
    ],
    targets: [
        .systemLibrary(name: "CBLAS", pkgConfig: "openblas", providers: [.apt(["libopenblas-dev"])]),
        // Our AVX-512 sgemm (the system OpenBLAS runs AVX2 kernels); chosen at run time.
        .target(name: "CGemm", cSettings: [.unsafeFlags(["-O3"], .when(configuration: .release))]),
        .target(name: "Tensor", dependencies: ["CBLAS", "CGemm"], swiftSettings: fast),
        .target(name: "Formats", dependencies: ["Tensor"], swiftSettings: checked),
        .target(name: "Tokenizer", dependencies: ["Formats"], swiftSettings: checked),
        .target(name: "Model", dependencies: ["Tensor", "Formats", "Tokenizer"], swiftSettings: fast),
        .target(name: "Evaluation", dependencies: ["Formats", "Tensor", "Tokenizer", "Model"], swiftSettings: checked),
        .target(name: "Recovery", dependencies: ["Model", "Tensor", "Formats"], swiftSettings: checked),
        .target(name: "Report", dependencies: ["Evaluation", "Recovery", "Formats"], swiftSettings: checked),
        .executableTarget(
            name: "realign",
            dependencies: ["Report", "Recovery", "Evaluation", "Model", "Formats", "Tensor", "Tokenizer", .product(name: "ArgumentParser", package: "swift-argument-parser")],
            swiftSettings: checked),
        .target(name: "TestSupport", dependencies: ["Formats"], path: "Tests/TestSupport"),
        .testTarget(name: "TensorTests", dependencies: ["Tensor", "CGemm"]),
        .testTarget(name: "FormatsTests", dependencies: ["Formats", "Tensor", "TestSupport"], exclude: ["Fixtures"]),
        .testTarget(name: "TokenizerTests", dependencies: ["Tokenizer", "TestSupport"], exclude: ["Fixtures"]),
        .testTarget(name: "ModelTests", dependencies: ["Model", "TestSupport"], exclude: ["Fixtures"]),
        .testTarget(name: "EvaluationTests", dependencies: ["Evaluation", "Recovery", "TestSupport"], exclude: ["Fixtures"]),
        .testTarget(name: "ReportTests", dependencies: ["Report", "Recovery"]),
        .testTarget(name: "RecoveryTests", dependencies: ["Recovery", "TestSupport"], exclude: ["Fixtures"]),
        // Runs the built `realign` binary as a user would.
        .testTarget(name: "CLITests", dependencies: ["TestSupport", "realign", "Recovery"]),
    ],
    swiftLanguageModes: [.v5]
)
