// swift-tools-version:6.0
//
// SwiftPM package for the robust-api Swift bindings (module `RobustApi`).
//
// The Rust core is reached through the C module `RobustApiFFI`, which comes from one of two places:
//
// * "system" (Linux, and `swift test` on a Mac): a system-library target (Sources/RobustApiFFI)
//   whose modulemap links `librobust_api` from the cargo target directory
//   (default `<repo>/target/debug`, override with ROBUST_API_LIB_DIR). Run prepare.sh first: it
//   builds the library and copies the generated RobustApi.swift / RobustApiFFI.h into Sources/.
// * "xcframework" (iOS apps): a binary target, RobustApiFFI.xcframework next to this file, made by
//   build-xcframework.sh on a Mac (static libraries for device, simulator and optionally macOS).
//
// The xcframework route is chosen when RobustApiFFI.xcframework exists; ROBUST_API_FFI=system or
// ROBUST_API_FFI=xcframework forces either.
import Foundation
import PackageDescription

let packageDir = Context.packageDirectory
let env = Context.environment
let xcframework = "RobustApiFFI.xcframework"
let hasXCFramework = FileManager.default.fileExists(atPath: "\(packageDir)/\(xcframework)")
let useXCFramework: Bool = {
    switch env["ROBUST_API_FFI"] {
    case "xcframework": return true
    case "system": return false
    default: return hasXCFramework
    }
}()

// The cargo output directory holding librobust_api.{so,dylib} (system route only).
let libDir = env["ROBUST_API_LIB_DIR"]
    ?? URL(fileURLWithPath: "\(packageDir)/../../target/debug").standardizedFileURL.path

let ffiTarget: Target = useXCFramework
    ? .binaryTarget(name: "RobustApiFFI", path: xcframework)
    : .systemLibrary(name: "RobustApiFFI", path: "Sources/RobustApiFFI")

var linker: [LinkerSetting] = [
    // The Rust static library needs these on Apple platforms (rustls-platform-verifier uses the
    // Security framework); they are ignored elsewhere.
    .linkedFramework("Security", .when(platforms: [.macOS, .iOS])),
    .linkedFramework("CoreFoundation", .when(platforms: [.macOS, .iOS])),
]
if !useXCFramework {
    // Allowed because this is a root (or local) package; the xcframework route needs no unsafe flags.
    linker.append(.unsafeFlags(["-L", libDir, "-Xlinker", "-rpath", "-Xlinker", libDir]))
}

let package = Package(
    name: "RobustApi",
    platforms: [.iOS(.v13), .macOS(.v10_15)],
    products: [
        .library(name: "RobustApi", targets: ["RobustApi"]),
    ],
    targets: [
        ffiTarget,
        .target(
            name: "RobustApi",
            dependencies: ["RobustApiFFI"],
            path: "Sources/RobustApi",
            // Swift 5 language mode for the generated file: Swift 6.0's region-based isolation
            // checker (TransferNonSendable) crashes the compiler on UniFFI's generated helper for
            // async throwing foreign-trait methods (`uniffiTraitInterfaceCallAsyncWithError`, used by
            // the `Authenticator`). The tests (and apps) stay in Swift 6 mode.
            swiftSettings: [.swiftLanguageMode(.v5)],
            linkerSettings: linker
        ),
        .testTarget(
            name: "RobustApiTests",
            dependencies: ["RobustApi"],
            path: "Tests/RobustApiTests"
        ),
    ]
)
