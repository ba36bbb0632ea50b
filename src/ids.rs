//! Client-generated identifiers.

/// A random (version 4) UUID, e.g. `3b2c9f4e-8a1d-4c6b-9e0f-1a2b3c4d5e6f`: idempotency keys and
/// queue ids. 122 random bits from `fastrand` (seeded per thread from the OS-randomised std hasher):
/// collisions are negligible; the value is not a secret.
pub(crate) fn new_uuid_v4() -> String {
    let hi = fastrand::u64(..);
    let lo = fastrand::u64(..);
    let b = ((hi as u128) << 64) | lo as u128;
    // Version 4 and RFC 4122 variant bits.
    let b = (b & !(0xF << 76) | (0x4 << 76)) & !(0x3 << 62) | (0x2 << 62);
    let h = format!("{b:032x}");
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuids_are_v4_shaped_and_distinct() {
        let a = new_uuid_v4();
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "4", "{a}");
        assert!(matches!(&a[19..20], "8" | "9" | "a" | "b"), "{a}");
        let all: std::collections::HashSet<_> = (0..10_000).map(|_| new_uuid_v4()).collect();
        assert_eq!(all.len(), 10_000);
    }
}
