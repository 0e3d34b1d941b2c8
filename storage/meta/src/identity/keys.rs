//! Where identity records live in the metadata store, and the name rules that keep keys
//! unambiguous. See "Identity records" in `docs/meta.md`.

use super::crypto::is_id;
use super::error::{IdentityError, IdentityResult};
use super::limits::{DESCRIPTION_MAX_BYTES, NAME_MAX_BYTES, NAME_MIN_BYTES};
use super::model::Role;

/// Every identity key starts with this.
pub const IDENTITY_PREFIX: &str = "/cairn/identity/";
/// The only domain so far; present in name-index keys so domains can be added without
/// moving keys (Keystone's names are unique per domain).
pub(crate) const DEFAULT_DOMAIN: &str = "default";

pub(crate) fn project(id: &str) -> String {
    format!("{IDENTITY_PREFIX}projects/{id}")
}
pub(crate) fn projects() -> String {
    format!("{IDENTITY_PREFIX}projects/")
}
pub(crate) fn user(id: &str) -> String {
    format!("{IDENTITY_PREFIX}users/{id}")
}
pub(crate) fn users() -> String {
    format!("{IDENTITY_PREFIX}users/")
}
pub(crate) fn project_name(name: &str) -> String {
    format!("{IDENTITY_PREFIX}names/projects/{DEFAULT_DOMAIN}/{name}")
}
pub(crate) fn user_name(name: &str) -> String {
    format!("{IDENTITY_PREFIX}names/users/{DEFAULT_DOMAIN}/{name}")
}
pub(crate) fn assignment(project: &str, user: &str, role: Role) -> String {
    format!("{IDENTITY_PREFIX}assignments/{project}/{user}/{role}")
}
pub(crate) fn assignments_of(project: &str, user: &str) -> String {
    format!("{IDENTITY_PREFIX}assignments/{project}/{user}/")
}
pub(crate) fn assignments_in_project(project: &str) -> String {
    format!("{IDENTITY_PREFIX}assignments/{project}/")
}
pub(crate) fn assignment_by_user(user: &str, project: &str, role: Role) -> String {
    format!("{IDENTITY_PREFIX}assignments-by-user/{user}/{project}/{role}")
}
pub(crate) fn assignments_by_user(user: &str) -> String {
    format!("{IDENTITY_PREFIX}assignments-by-user/{user}/")
}
pub(crate) fn credential(access_key: &str) -> String {
    format!("{IDENTITY_PREFIX}credentials/{access_key}")
}
pub(crate) fn credential_by_user(user: &str, access_key: &str) -> String {
    format!("{IDENTITY_PREFIX}credentials-by-user/{user}/{access_key}")
}
pub(crate) fn credentials_by_user(user: &str) -> String {
    format!("{IDENTITY_PREFIX}credentials-by-user/{user}/")
}
pub(crate) fn credential_by_project(project: &str, access_key: &str) -> String {
    format!("{IDENTITY_PREFIX}credentials-by-project/{project}/{access_key}")
}
pub(crate) fn credentials_by_project(project: &str) -> String {
    format!("{IDENTITY_PREFIX}credentials-by-project/{project}/")
}
pub(crate) fn token(digest: &str) -> String {
    format!("{IDENTITY_PREFIX}tokens/{digest}")
}
pub(crate) fn token_by_user(user: &str, digest: &str) -> String {
    format!("{IDENTITY_PREFIX}tokens-by-user/{user}/{digest}")
}
pub(crate) fn tokens_by_user(user: &str) -> String {
    format!("{IDENTITY_PREFIX}tokens-by-user/{user}/")
}
pub(crate) fn token_by_project(project: &str, digest: &str) -> String {
    format!("{IDENTITY_PREFIX}tokens-by-project/{project}/{digest}")
}
pub(crate) fn tokens_by_project(project: &str) -> String {
    format!("{IDENTITY_PREFIX}tokens-by-project/{project}/")
}

/// The last `/`-separated component of a key.
pub(crate) fn last_component(key: &[u8]) -> Option<&str> {
    std::str::from_utf8(key).ok()?.rsplit('/').next()
}

/// The last two components of a key, `(…/a/b)` → `(a, b)`.
pub(crate) fn last_two_components(key: &[u8]) -> Option<(&str, &str)> {
    let mut it = std::str::from_utf8(key).ok()?.rsplit('/');
    let b = it.next()?;
    let a = it.next()?;
    Some((a, b))
}

/// Checks a project or user name: 1–64 bytes of ASCII letters, digits and `-_.@`, starting
/// with a letter or digit. No `/` (names are key components) and nothing that needs escaping
/// in a URL or a Swift `X-Auth-User` header (`project:user`, hence no `:`).
pub(crate) fn check_name(what: &'static str, name: &str) -> IdentityResult<()> {
    let invalid = |reason: String| IdentityError::Invalid { what, reason };
    if name.len() < NAME_MIN_BYTES || name.len() > NAME_MAX_BYTES {
        return Err(invalid(format!(
            "length {} not in {NAME_MIN_BYTES}..={NAME_MAX_BYTES} bytes",
            name.len()
        )));
    }
    if !name.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return Err(invalid("must start with a letter or digit".into()));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '@')))
    {
        return Err(invalid(format!(
            "character {c:?} not allowed (letters, digits, '-', '_', '.', '@')"
        )));
    }
    Ok(())
}

/// Checks a description: bounded, no control characters (it is shown in CLIs and logs).
pub(crate) fn check_description(description: &str) -> IdentityResult<()> {
    let invalid = |reason: String| IdentityError::Invalid {
        what: "description",
        reason,
    };
    if description.len() > DESCRIPTION_MAX_BYTES {
        return Err(invalid(format!(
            "{} bytes exceeds {DESCRIPTION_MAX_BYTES}",
            description.len()
        )));
    }
    if description.chars().any(char::is_control) {
        return Err(invalid("control characters not allowed".into()));
    }
    Ok(())
}

/// Checks that `id` is one of ours before it goes into a key.
pub(crate) fn check_id(what: &'static str, id: &str) -> IdentityResult<()> {
    if is_id(id) {
        Ok(())
    } else {
        Err(IdentityError::Invalid {
            what,
            reason: format!("{id:?} is not a 32-hex-digit id"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(check_name("n", "alice").is_ok());
        assert!(check_name("n", "a.b-c_d@e").is_ok());
        assert!(check_name("n", "").is_err());
        assert!(check_name("n", "-x").is_err());
        assert!(check_name("n", "a/b").is_err());
        assert!(check_name("n", "a:b").is_err());
        assert!(check_name("n", &"a".repeat(65)).is_err());
        assert_eq!(last_two_components(b"/x/p/u/admin"), Some(("u", "admin")));
    }
}
