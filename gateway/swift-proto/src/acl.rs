//! Container ACLs (`X-Container-Read`, `X-Container-Write`).
//!
//! An ACL is a comma-separated list of elements:
//! * `.r:<host>` (also `.ref:`, `.referer:`, `.referrer:`): allow requests
//!   whose `Referer` host matches — `*` for any, `.example.com` (or
//!   `*.example.com`) for a domain, otherwise an exact host; a leading `-`
//!   denies instead. Rules apply in order, later ones override earlier.
//!   Only valid in read ACLs; without `.rlistings` they never allow listing.
//! * `.rlistings`: referrer-granted access may also list the container.
//! * `<project>:<user>`, `<project>:*`, `*:<user>`, `*:*`: Keystone-style
//!   grants; each side matches either the id or the name, but id with id and
//!   name with name (as Swift's keystoneauth does).
//! * a bare `<name>`: matches the subject's project id/name (tempauth's
//!   account group) or one of its roles (keystoneauth).
//!
//! Malformed ACLs are rejected with 400 and Swift's messages.

use crate::error::SwiftError;

/// Most elements in one ACL header (guards pathological headers; Swift's
/// header size limit bounds it similarly).
pub const MAX_ACL_ELEMENTS: usize = 1024;

/// The authenticated identity a request acts as.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AclSubject {
    /// Keystone project id (tempauth: account).
    pub project_id: String,
    /// Keystone project name.
    pub project_name: String,
    /// User id.
    pub user_id: String,
    /// User name.
    pub user_name: String,
    /// Role names (for bare ACL elements, keystoneauth style).
    pub roles: Vec<String>,
}

/// One referrer rule (`.r:[-]host`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReferrerRule {
    /// `-` prefix: matching referrers are denied.
    pub deny: bool,
    /// `*`, `.domain.tld` or `exact.host`.
    pub host: String,
}

/// A user/project grant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AclGrant {
    /// `project:user`; `None` stands for `*`.
    Pair {
        /// Project id or name, `None` = any.
        project: Option<String>,
        /// User id or name, `None` = any.
        user: Option<String>,
    },
    /// A bare name (project or role).
    Bare(String),
}

/// Parsed, validated container ACL.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContainerAcl {
    /// Referrer rules in order (read ACLs only).
    pub referrers: Vec<ReferrerRule>,
    /// Identity grants in order.
    pub grants: Vec<AclGrant>,
    /// `.rlistings` present.
    pub rlistings: bool,
}

const REFERRER_DESIGNATORS: [&str; 4] = [".r", ".ref", ".referer", ".referrer"];

impl ContainerAcl {
    /// Parses `X-Container-Read` (`write = false`) or `X-Container-Write`
    /// (`write = true`). Whitespace and empty elements are ignored.
    pub fn parse(header: &str, write: bool) -> Result<Self, SwiftError> {
        let mut acl = ContainerAcl::default();
        let mut count = 0usize;
        for raw in header.split(',') {
            let raw = raw.trim();
            if raw.is_empty() {
                continue;
            }
            count += 1;
            if count > MAX_ACL_ELEMENTS {
                return Err(SwiftError::bad_request(format!(
                    "Too many ACL elements; max {MAX_ACL_ELEMENTS}"
                )));
            }
            if raw == ".rlistings" {
                acl.rlistings = true;
                continue;
            }
            let Some((first, second)) = raw.split_once(':') else {
                acl.grants.push(AclGrant::Bare(raw.to_string()));
                continue;
            };
            let (first, second) = (first.trim(), second.trim());
            if !first.starts_with('.') {
                let side = |s: &str| (s != "*").then(|| s.to_string());
                acl.grants.push(AclGrant::Pair {
                    project: side(first),
                    user: side(second),
                });
                continue;
            }
            if !REFERRER_DESIGNATORS.contains(&first) {
                return Err(SwiftError::bad_request(format!(
                    "Unknown designator '{first}' in ACL: '{raw}'"
                )));
            }
            if write {
                return Err(SwiftError::bad_request(format!(
                    "Referrers not allowed in write ACL: '{raw}'"
                )));
            }
            let (deny, host) = match second.strip_prefix('-') {
                Some(h) => (true, h.trim()),
                None => (false, second),
            };
            let host = if host != "*" {
                host.strip_prefix('*').map(str::trim).unwrap_or(host)
            } else {
                host
            };
            if host.is_empty() || host == "." {
                return Err(SwiftError::bad_request(format!(
                    "No host/domain value after referrer designation in ACL: '{raw}'"
                )));
            }
            acl.referrers.push(ReferrerRule {
                deny,
                host: host.to_ascii_lowercase(),
            });
        }
        Ok(acl)
    }

    /// Validates and normalises a header value (what Swift stores).
    pub fn clean(header: &str, write: bool) -> Result<String, SwiftError> {
        Ok(Self::parse(header, write)?.to_header())
    }

    /// Canonical header form: referrers as `.r:[-]host`, then grants, then
    /// `.rlistings`, comma-separated without spaces.
    pub fn to_header(&self) -> String {
        let mut parts: Vec<String> = self
            .referrers
            .iter()
            .map(|r| format!(".r:{}{}", if r.deny { "-" } else { "" }, r.host))
            .collect();
        for g in &self.grants {
            parts.push(match g {
                AclGrant::Pair { project, user } => format!(
                    "{}:{}",
                    project.as_deref().unwrap_or("*"),
                    user.as_deref().unwrap_or("*")
                ),
                AclGrant::Bare(n) => n.clone(),
            });
        }
        if self.rlistings {
            parts.push(".rlistings".to_string());
        }
        parts.join(",")
    }

    /// True when the ACL grants the request. `who` is the authenticated
    /// subject (`None` = anonymous); `referrer` the `Referer` header;
    /// `listing` whether the request lists the container. Referrer rules
    /// only exist in read ACLs, so a write ACL never allows by referrer.
    pub fn allows(&self, who: Option<&AclSubject>, referrer: Option<&str>, listing: bool) -> bool {
        if let Some(s) = who
            && self.grants.iter().any(|g| grant_matches(g, s))
        {
            return true;
        }
        (!listing || self.rlistings) && referrer_allowed(&self.referrers, referrer)
    }
}

fn grant_matches(g: &AclGrant, s: &AclSubject) -> bool {
    let eq = |a: &str, b: &str| !b.is_empty() && a == b;
    match g {
        AclGrant::Pair { project, user } => {
            let by_id = project.as_deref().is_none_or(|p| eq(p, &s.project_id))
                && user.as_deref().is_none_or(|u| eq(u, &s.user_id));
            let by_name = project.as_deref().is_none_or(|p| eq(p, &s.project_name))
                && user.as_deref().is_none_or(|u| eq(u, &s.user_name));
            by_id || by_name
        }
        AclGrant::Bare(n) => {
            eq(n, &s.project_id) || eq(n, &s.project_name) || s.roles.iter().any(|r| eq(n, r))
        }
    }
}

/// Host of a `Referer` URL, lowercased; `unknown` when absent or not a URL
/// with an authority (as Swift does).
pub fn referrer_host(referrer: Option<&str>) -> String {
    let unknown = || "unknown".to_string();
    let Some(r) = referrer.map(str::trim) else {
        return unknown();
    };
    let rest = match r.find("://") {
        Some(i) => &r[i + 3..],
        None => match r.strip_prefix("//") {
            Some(rest) => rest,
            None => return unknown(),
        },
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let hostport = authority.rsplit('@').next().unwrap_or("");
    let host = if let Some(v6) = hostport.strip_prefix('[') {
        v6.split(']').next().unwrap_or("")
    } else {
        hostport.split(':').next().unwrap_or("")
    };
    if host.is_empty() {
        unknown()
    } else {
        host.to_ascii_lowercase()
    }
}

fn referrer_allowed(rules: &[ReferrerRule], referrer: Option<&str>) -> bool {
    if rules.is_empty() {
        return false;
    }
    let host = referrer_host(referrer);
    let matches = |m: &str| m == host || (m.starts_with('.') && host.ends_with(m));
    let mut allow = false;
    for r in rules {
        if r.deny {
            if matches(&r.host) {
                allow = false;
            }
        } else if r.host == "*" || matches(&r.host) {
            allow = true;
        }
    }
    allow
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn subj(pid: &str, pname: &str, uid: &str, uname: &str) -> AclSubject {
        AclSubject {
            project_id: pid.into(),
            project_name: pname.into(),
            user_id: uid.into(),
            user_name: uname.into(),
            roles: vec!["reader".into()],
        }
    }

    #[test]
    fn cleaning_like_swift() {
        let c = |h: &str| ContainerAcl::clean(h, false).unwrap();
        assert_eq!(c("bob, sue"), "bob,sue");
        assert_eq!(c("bob , sue"), "bob,sue");
        assert_eq!(c("bob,,,sue"), "bob,sue");
        assert_eq!(c(".referrer : *"), ".r:*");
        assert_eq!(c(".ref:*.example.com"), ".r:.example.com");
        assert_eq!(c(".r:*, .rlistings"), ".r:*,.rlistings");
        assert_eq!(c(".r:- thief.com"), ".r:-thief.com");
        assert_eq!(c("p:*, *:u"), "p:*,*:u");
    }

    #[test]
    fn rejects_malformed() {
        for h in [".r:", ".r:-", ".r:.", ".x:y"] {
            assert_eq!(
                ContainerAcl::parse(h, false).unwrap_err().status,
                400,
                "{h}"
            );
        }
        let e = ContainerAcl::parse(".r:*", true).unwrap_err();
        assert_eq!(e.message, "Referrers not allowed in write ACL: '.r:*'");
        let e = ContainerAcl::parse(".x:y", false).unwrap_err();
        assert_eq!(e.message, "Unknown designator '.x' in ACL: '.x:y'");
    }

    #[test]
    fn referrer_rules() {
        let acl = ContainerAcl::parse(".r:.example.com,.r:-thief.example.com", false).unwrap();
        assert!(acl.allows(None, Some("http://www.example.com/page"), false));
        assert!(!acl.allows(None, Some("https://thief.example.com/"), false));
        assert!(!acl.allows(None, Some("http://other.org/"), false));
        assert!(
            !acl.allows(None, Some("http://www.example.com/"), true),
            "no .rlistings"
        );
        let any = ContainerAcl::parse(".r:*", false).unwrap();
        assert!(any.allows(None, None, false));
        assert!(!any.allows(None, None, true));
        let listed = ContainerAcl::parse(".r:*,.rlistings", false).unwrap();
        assert!(listed.allows(None, None, true));
        assert_eq!(
            referrer_host(Some("https://u:p@Host.COM:8080/x")),
            "host.com"
        );
        assert_eq!(referrer_host(Some("http://[::1]:80/")), "::1");
        assert_eq!(referrer_host(Some("nonsense")), "unknown");
    }

    #[test]
    fn identity_rules() {
        let s = subj("pid", "proj", "uid", "alice");
        let ok = |h: &str| {
            ContainerAcl::parse(h, true)
                .unwrap()
                .allows(Some(&s), None, true)
        };
        assert!(ok("pid:uid"));
        assert!(ok("proj:alice"));
        assert!(ok("proj:*"));
        assert!(ok("*:alice"));
        assert!(ok("*:*"));
        assert!(ok("proj"));
        assert!(ok("reader"));
        assert!(!ok("pid:alice"), "id and name are not mixed");
        assert!(!ok("other:*"));
        assert!(!ok("alice"));
        assert!(!ok(""));
        assert!(
            !ContainerAcl::parse("*:*", false)
                .unwrap()
                .allows(None, None, false)
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        #[test]
        fn never_panics(h in ".{0,60}", r in proptest::option::of(".{0,40}"), write: bool, listing: bool) {
            if let Ok(acl) = ContainerAcl::parse(&h, write) {
                let s = subj("a", "b", "c", "d");
                let _ = acl.allows(Some(&s), r.as_deref(), listing);
                let _ = acl.allows(None, r.as_deref(), listing);
                // Clean form is a fixed point.
                let clean = acl.to_header();
                let again = ContainerAcl::parse(&clean, write);
                prop_assert!(again.is_ok());
                prop_assert_eq!(again.map(|a| a.to_header()).unwrap_or_default(), clean);
            }
        }
    }
}
