//! Link options of the shipped library (the cdylib only: nothing else is affected, no dependency
//! is rebuilt). See the README's "Footprint" section.
//!
//! On Linux with glibc (the Python, Kotlin/JVM and Node desktop builds): `-z pack-relative-relocs`
//! stores the ~17,000 relative relocations of a position-independent library as a compact bitmap
//! (`DT_RELR`, 4 KiB) instead of 24-byte `Elf64_Rela` entries (410 KiB). Needs lld (Rust's
//! default linker on x86_64 Linux) or binutils ≥ 2.38 (older ones ignore the option with a
//! warning), and glibc ≥ 2.36 to load (Debian 12, Ubuntu 22.10). Android and Apple builds are left as they are (Android supports
//! RELR only from API level 28/30; Mach-O already uses chained fixups).
//!
//! On x86_64 Linux with glibc, where Rust links with its own lld by default (Rust ≥ 1.90):
//! `--icf=all` folds functions whose machine code and relocations are identical (monomorphised
//! drop glue, futures' poll functions, uniffi's per-export scaffolding): −96 KiB. Rust code does
//! not rely on distinct function addresses (rustc merges identical functions itself); of the C
//! code linked in, only pairs that are one function under two names were folded (SQLite's
//! `sqlite3ExprDelete`/`sqlite3ExprDeleteGeneric` and the like, ring's assembly aliases: checked
//! with `nm` on the linked library). Other linkers (GNU ld has no `--icf`) are left alone: set
//! `ROBUST_API_NO_ICF=1` when linking x86_64 with something other than lld.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=ROBUST_API_NO_ICF");
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let env = std::env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    if os == "linux" && env == "gnu" {
        println!("cargo:rustc-cdylib-link-arg=-Wl,-z,pack-relative-relocs");
        if arch == "x86_64" && std::env::var_os("ROBUST_API_NO_ICF").is_none() {
            println!("cargo:rustc-cdylib-link-arg=-Wl,--icf=all");
        }
    }
}
