//! Limits on the JSON that tenants and clients publish, so that what is stored and delivered
//! can be read back by every client: a JSON parser such as serde_json refuses documents nested
//! deeper than 128 levels, and numbers such as `1e999999` have no finite value.
//!
//! [`check`] runs on text that already parsed as JSON (the caller's parser validated its
//! syntax); it walks it once, without recursion, and allocates nothing.

/// How deeply arrays and objects may nest in a published payload.
pub const MAX_DEPTH: usize = 64;

/// Why a payload is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JsonLimitError {
    #[error("the JSON nests arrays and objects deeper than {MAX_DEPTH} levels")]
    TooDeep,
    #[error("the JSON number {0} has no finite value")]
    NonFinite(String),
}

/// Checks `json` (valid JSON text) against [`MAX_DEPTH`] and for numbers that overflow to
/// infinity.
pub fn check(json: &[u8]) -> Result<(), JsonLimitError> {
    let mut depth = 0usize;
    let mut i = 0;
    while i < json.len() {
        match json[i] {
            b'"' => {
                // Skip the string, escapes included.
                i += 1;
                while i < json.len() {
                    match json[i] {
                        b'\\' => i += 2,
                        b'"' => break,
                        _ => i += 1,
                    }
                }
            }
            b'[' | b'{' => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err(JsonLimitError::TooDeep);
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            b'-' | b'0'..=b'9' => {
                let start = i;
                while i < json.len() && matches!(json[i], b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E') {
                    i += 1;
                }
                let number = std::str::from_utf8(&json[start..i]).unwrap_or_default();
                if !number.parse::<f64>().is_ok_and(f64::is_finite) {
                    let shown: String = number.chars().take(32).collect();
                    return Err(JsonLimitError::NonFinite(shown));
                }
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_json_passes() {
        for ok in [
            r#"{"a":[1,2.5,-3e10,"x\"]]]]"],"b":null}"#,
            "1e308",
            "-0.0",
            "1e-999999",
            "123456789012345678901234567890",
            r#""[[[[{{{{""#,
        ] {
            assert_eq!(check(ok.as_bytes()), Ok(()), "{ok}");
        }
        let deepest = format!("{}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        assert_eq!(check(deepest.as_bytes()), Ok(()));
    }

    #[test]
    fn too_deep_is_refused() {
        let deep = format!("{}{}", "[".repeat(MAX_DEPTH + 1), "]".repeat(MAX_DEPTH + 1));
        assert_eq!(check(deep.as_bytes()), Err(JsonLimitError::TooDeep));
        let objects = format!("{}1{}", r#"{"a":"#.repeat(10_000), "}".repeat(10_000));
        assert_eq!(check(objects.as_bytes()), Err(JsonLimitError::TooDeep));
    }

    #[test]
    fn infinite_numbers_are_refused() {
        for bad in ["1e999999", r#"{"x":[-1E400]}"#, &"9".repeat(400)] {
            assert!(matches!(check(bad.as_bytes()), Err(JsonLimitError::NonFinite(_))), "{bad}");
        }
    }
}
