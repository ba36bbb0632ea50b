//! Link options of the shipped library (the cdylib only: nothing else is affected, no dependency
//! is rebuilt). See the README's "Footprint" section.
//!
//! On Linux with glibc (the Python, Kotlin/JVM and Node desktop builds): `-z pack-relative-relocs`
//! stores the ~17,000 relative relocations of a position-independent library as a compact bitmap
//! (`DT_RELR`, 4 KiB) instead of 24-byte `Elf64_Rela` entries (410 KiB). Needs lld (Rust's
//! default linker on x86_64 Linux) or binutils ≥ 2.38 (older ones ignore the option with a
//! warning), and glibc ≥ 2.36 to load (Debian 12, Ubuntu 22.10). Android and Apple builds are left as they are (Android supports
//! RELR only from API level 28/30; Mach-O already uses chained fixups).

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let env = std::env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    if os == "linux" && env == "gnu" {
        println!("cargo:rustc-cdylib-link-arg=-Wl,-z,pack-relative-relocs");
    }
}
