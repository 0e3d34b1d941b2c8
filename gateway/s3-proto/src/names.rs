//! Bucket name, object key and user metadata limits, as AWS enforces them.

use crate::error::{S3Error, S3ErrorCode};

pub const MIN_BUCKET_NAME_LEN: usize = 3;
pub const MAX_BUCKET_NAME_LEN: usize = 63;
/// Object keys are at most 1024 bytes of UTF-8.
pub const MAX_OBJECT_KEY_LEN: usize = 1024;
/// User metadata (`x-amz-meta-*` names without the prefix, plus values).
pub const MAX_USER_METADATA_BYTES: usize = 2 * 1024;
pub const USER_METADATA_PREFIX: &str = "x-amz-meta-";

/// Prefixes and suffixes AWS reserves for its own bucket kinds.
const RESERVED_PREFIXES: &[&str] = &["xn--", "sthree-", "amzn-s3-demo-"];
const RESERVED_SUFFIXES: &[&str] = &["-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3"];

fn bad_bucket(name: &str, why: &str) -> S3Error {
    S3Error::new(
        S3ErrorCode::InvalidBucketName,
        format!("The specified bucket is not valid: {why}"),
    )
    .with_resource(name.chars().take(80).collect::<String>())
}

/// Check a bucket name against the current AWS rules (DNS compatible, so
/// virtual-hosted addressing always works).
pub fn validate_bucket_name(name: &str) -> Result<(), S3Error> {
    let len = name.len();
    if !(MIN_BUCKET_NAME_LEN..=MAX_BUCKET_NAME_LEN).contains(&len) {
        return Err(bad_bucket(name, "length must be between 3 and 63"));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
    {
        return Err(bad_bucket(
            name,
            "only lowercase letters, digits, '.' and '-' are allowed",
        ));
    }
    let bytes = name.as_bytes();
    let alnum = |b: Option<&u8>| b.is_some_and(|b| b.is_ascii_alphanumeric());
    if !alnum(bytes.first()) || !alnum(bytes.last()) {
        return Err(bad_bucket(
            name,
            "must begin and end with a letter or digit",
        ));
    }
    if name.contains("..") || name.contains(".-") || name.contains("-.") {
        return Err(bad_bucket(
            name,
            "labels must not be empty or begin/end with '-'",
        ));
    }
    if looks_like_ipv4(name) {
        return Err(bad_bucket(name, "must not be formatted as an IP address"));
    }
    if RESERVED_PREFIXES.iter().any(|p| name.starts_with(p))
        || RESERVED_SUFFIXES.iter().any(|s| name.ends_with(s))
    {
        return Err(bad_bucket(name, "uses a reserved prefix or suffix"));
    }
    Ok(())
}

fn looks_like_ipv4(name: &str) -> bool {
    let parts: Vec<&str> = name.split('.').collect();
    parts.len() == 4
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()))
}

/// Object keys: non-empty, at most 1024 bytes.
pub fn validate_object_key(key: &str) -> Result<(), S3Error> {
    if key.is_empty() {
        return Err(S3Error::new(
            S3ErrorCode::InvalidArgument,
            "Object key must not be empty",
        ));
    }
    if key.len() > MAX_OBJECT_KEY_LEN {
        return Err(S3Error::new(
            S3ErrorCode::KeyTooLongError,
            "Your key is too long",
        ));
    }
    Ok(())
}

/// Bytes counted against [`MAX_USER_METADATA_BYTES`]: for each
/// `x-amz-meta-*` header, its name without the prefix plus its value.
pub fn user_metadata_size(headers: &[(String, String)]) -> usize {
    headers
        .iter()
        .filter_map(|(n, v)| {
            let prefix = n.get(..USER_METADATA_PREFIX.len())?;
            prefix
                .eq_ignore_ascii_case(USER_METADATA_PREFIX)
                .then(|| n.len() - USER_METADATA_PREFIX.len() + v.len())
        })
        .sum()
}

/// True when user metadata fits AWS's 2 KiB limit.
pub fn user_metadata_size_ok(headers: &[(String, String)]) -> bool {
    user_metadata_size(headers) <= MAX_USER_METADATA_BYTES
}

/// [`user_metadata_size_ok`] as an error (`MetadataTooLarge`).
pub fn check_user_metadata(headers: &[(String, String)]) -> Result<(), S3Error> {
    if user_metadata_size_ok(headers) {
        Ok(())
    } else {
        Err(S3Error::new(
            S3ErrorCode::MetadataTooLarge,
            "Your metadata headers exceed the maximum allowed metadata size.",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_names() {
        for ok in [
            "abc",
            "my-bucket.data",
            "a1b",
            "123",
            &"a".repeat(63),
            "1.2.3",
        ] {
            assert!(validate_bucket_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "ab",
            &"a".repeat(64),
            "Abc",
            "a_b",
            "-ab",
            "ab-",
            ".ab",
            "ab.",
            "a..b",
            "a.-b",
            "a-.b",
            "192.168.1.1",
            "xn--abc",
            "abc-s3alias",
            "abc--ol-s3",
            "ab c",
            "ünï",
        ] {
            let err = validate_bucket_name(bad).unwrap_err();
            assert_eq!(err.code, S3ErrorCode::InvalidBucketName, "{bad}");
        }
    }

    #[test]
    fn object_keys() {
        assert!(validate_object_key("a").is_ok());
        assert!(validate_object_key(&"é".repeat(512)).is_ok());
        assert_eq!(
            validate_object_key("").unwrap_err().code,
            S3ErrorCode::InvalidArgument
        );
        assert_eq!(
            validate_object_key(&"é".repeat(513)).unwrap_err().code,
            S3ErrorCode::KeyTooLongError
        );
    }

    #[test]
    fn metadata() {
        let h = |n: &str, v: &str| (n.to_owned(), v.to_owned());
        let small = vec![h("x-amz-meta-a", "b"), h("content-type", &"x".repeat(5000))];
        assert_eq!(user_metadata_size(&small), 2);
        assert!(user_metadata_size_ok(&small));
        let big = vec![h("x-amz-meta-k", &"v".repeat(2047))];
        assert!(user_metadata_size_ok(&big));
        let too_big = vec![h("X-Amz-Meta-kk", &"v".repeat(2047))];
        assert_eq!(
            check_user_metadata(&too_big).unwrap_err().code,
            S3ErrorCode::MetadataTooLarge
        );
    }
}
