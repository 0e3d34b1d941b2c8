//! Object expiry headers.
//!
//! Swift processes `X-Delete-After` first and turns it into an
//! `X-Delete-At` (overwriting any `X-Delete-At` sent alongside), then
//! validates `X-Delete-At`. So when both are present **`X-Delete-After`
//! wins**. Both must be integers (`Non-integer X-Delete-At` /
//! `Non-integer X-Delete-After`) and the resulting time must be strictly in
//! the future (`X-Delete-At in past` / `X-Delete-After in past`, so
//! `X-Delete-After: 0` is rejected). All errors are 400.

use crate::error::SwiftError;

fn parse_int(value: &str, name: &str) -> Result<i128, SwiftError> {
    let v = value.trim();
    let digits = v.strip_prefix(['-', '+']).unwrap_or(v);
    if digits.is_empty() || digits.len() > 30 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(SwiftError::bad_request(format!("Non-integer {name}")));
    }
    v.parse::<i128>()
        .map_err(|_| SwiftError::bad_request(format!("Non-integer {name}")))
}

/// Resolves the expiry of an object PUT/POST to unix seconds, `None` when
/// neither header is present. `now_unix` is the request time in seconds.
pub fn resolve_delete_at(
    delete_at: Option<&str>,
    delete_after: Option<&str>,
    now_unix: u64,
) -> Result<Option<u64>, SwiftError> {
    let now = i128::from(now_unix);
    let at = if let Some(after) = delete_after {
        let secs = parse_int(after, "X-Delete-After")?;
        let at = now + secs;
        if at <= now {
            return Err(SwiftError::bad_request("X-Delete-After in past"));
        }
        at
    } else if let Some(at) = delete_at {
        let at = parse_int(at, "X-Delete-At")?;
        if at <= now {
            return Err(SwiftError::bad_request("X-Delete-At in past"));
        }
        at
    } else {
        return Ok(None);
    };
    u64::try_from(at)
        .map(Some)
        .map_err(|_| SwiftError::bad_request("X-Delete-At too far in the future"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn rules() {
        assert_eq!(resolve_delete_at(None, None, 100).unwrap(), None);
        assert_eq!(
            resolve_delete_at(Some("200"), None, 100).unwrap(),
            Some(200)
        );
        assert_eq!(resolve_delete_at(None, Some("60"), 100).unwrap(), Some(160));
        assert_eq!(
            resolve_delete_at(Some("500"), Some("60"), 100).unwrap(),
            Some(160)
        );
        assert_eq!(
            resolve_delete_at(Some("100"), None, 100)
                .unwrap_err()
                .message,
            "X-Delete-At in past"
        );
        assert_eq!(
            resolve_delete_at(None, Some("0"), 100).unwrap_err().message,
            "X-Delete-After in past"
        );
        assert_eq!(
            resolve_delete_at(None, Some("-5"), 100)
                .unwrap_err()
                .message,
            "X-Delete-After in past"
        );
        assert_eq!(
            resolve_delete_at(Some("1.5"), None, 100)
                .unwrap_err()
                .message,
            "Non-integer X-Delete-At"
        );
        assert_eq!(
            resolve_delete_at(None, Some("x"), 100).unwrap_err().message,
            "Non-integer X-Delete-After"
        );
        assert_eq!(
            resolve_delete_at(Some("99999999999999999999999"), None, 1)
                .unwrap_err()
                .status,
            400
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        #[test]
        fn never_panics(a in proptest::option::of(".{0,30}"), b in proptest::option::of(".{0,30}"), now: u64) {
            let _ = resolve_delete_at(a.as_deref(), b.as_deref(), now);
        }
    }
}
