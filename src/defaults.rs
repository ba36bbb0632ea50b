//! How configuration records are written: each default once, and the range checks every module's
//! validation shares.
//!
//! [`config_record!`] declares an exported UniFFI record whose every field has a default: the one
//! literal becomes both the binding's default (`#[uniffi(default = …)]`, so Kotlin, Swift, Python
//! and TypeScript constructors may omit the field) and the Rust `Default`. Numbers are `i32` (a
//! plain `Int`/`Int32`/`number` in every binding); a negative or zero value where it cannot work
//! is `InvalidConfig`, checked once at construction by the owning module.

use std::time::Duration;

use crate::error::ApiError;

/// Turns a default literal into the field's type (`"x"` → `String`, `[]` → `Vec`, others as is).
pub(crate) trait Lit<T> {
    fn lit(self) -> T;
}

impl<T> Lit<T> for T {
    fn lit(self) -> T {
        self
    }
}

impl Lit<String> for &'static str {
    fn lit(self) -> String {
        self.to_string()
    }
}

impl<T> Lit<Vec<T>> for [T; 0] {
    fn lit(self) -> Vec<T> {
        Vec::new()
    }
}

/// Declares a config record whose fields all have defaults, each written once (see the module docs).
macro_rules! config_record {
    (
        $(#[$meta:meta])*
        pub struct $name:ident {
            $( $(#[$fmeta:meta])* pub $field:ident : $ty:ty = $default:tt ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, uniffi::Record)]
        pub struct $name {
            $( $(#[$fmeta])* #[uniffi(default = $default)] pub $field: $ty, )*
        }

        impl Default for $name {
            fn default() -> Self {
                $name { $( $field: $crate::defaults::Lit::lit($default), )* }
            }
        }
    };
}
pub(crate) use config_record;

/// A duration that must be positive: `name` must be greater than 0 ms.
pub(crate) fn positive_ms(name: &str, ms: i32) -> Result<Duration, ApiError> {
    if ms <= 0 {
        return Err(ApiError::invalid_config(format!(
            "{name} must be greater than 0 ms (got {ms})"
        )));
    }
    Ok(Duration::from_millis(ms as u64))
}

/// A duration that may be 0.
pub(crate) fn non_negative_ms(name: &str, ms: i32) -> Result<Duration, ApiError> {
    Ok(Duration::from_millis(non_negative(name, ms)? as u64))
}

/// A count or size that must be at least `min`.
pub(crate) fn at_least(name: &str, value: i32, min: i32) -> Result<u32, ApiError> {
    if value < min {
        return Err(ApiError::invalid_config(format!(
            "{name} must be at least {min} (got {value})"
        )));
    }
    Ok(value as u32)
}

/// A count or size that must not be negative.
pub(crate) fn non_negative(name: &str, value: i32) -> Result<u32, ApiError> {
    at_least(name, value, 0)
}

/// Saturating conversion of a count or size to an exported `i32`.
pub(crate) fn saturating_i32(v: u64) -> i32 {
    v.min(i32::MAX as u64) as i32
}

/// A stored or computed `i64` as an exported `i32`: negatives are 0, large values saturate.
pub(crate) fn clamped_i32(v: i64) -> i32 {
    v.clamp(0, i32::MAX as i64) as i32
}

/// Saturating conversion of a duration to exported milliseconds.
pub(crate) fn ms_i32(d: Duration) -> i32 {
    d.as_millis().min(i32::MAX as u128) as i32
}

#[cfg(test)]
#[allow(unreachable_pub)] // the record the macro declares is `pub`, as exported records are
mod tests {
    use super::*;

    config_record! {
        /// A test record.
        pub struct Sample {
            /// A number.
            pub n: i32 = 7,
            /// Text.
            pub s: String = "x",
            /// Optional.
            pub o: Option<i32> = None,
            /// A list.
            pub v: Vec<String> = [],
            /// A flag.
            pub b: bool = true,
            /// A ratio.
            pub r: f64 = 0.5,
        }
    }

    #[test]
    fn defaults_come_from_the_one_literal() {
        let s = Sample::default();
        assert_eq!(
            (s.n, s.s.as_str(), s.o, s.v.len(), s.b, s.r),
            (7, "x", None, 0, true, 0.5)
        );
    }

    #[test]
    fn ranges_are_checked() {
        assert!(positive_ms("t", 0).is_err());
        assert!(positive_ms("t", -5).is_err());
        assert_eq!(positive_ms("t", 5).unwrap(), Duration::from_millis(5));
        assert!(non_negative_ms("t", -1).is_err());
        assert_eq!(at_least("n", 1, 1).unwrap(), 1);
        assert!(at_least("n", 0, 1).is_err());
        assert_eq!(ms_i32(Duration::MAX), i32::MAX);
    }
}
