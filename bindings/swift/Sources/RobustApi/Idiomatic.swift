// The hand-written Swift layer over the generated RobustApi.swift (a build product, copied in by
// prepare.sh). Kept thin: nothing here re-implements Rust.

// `ApiError.description` is generated from the Rust `Display` (#[uniffi::export(Display)]), but
// UniFFI 0.31 does not declare the conformance for error enums. Declaring it makes
// `String(describing:)`, string interpolation and `localizedDescription` (the generated
// `errorDescription` is `String(reflecting: self)`) the crate's own text.
extension ApiError: CustomStringConvertible {}
