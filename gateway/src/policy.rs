//! Storage policies as the gateway shows them: choosing one when a container (bucket) is
//! created, naming a container's policy in answers, and Swift's `/info` listing. The policies
//! themselves (and everything erasure-coded) live in `cairn_node::policy`; a container's choice
//! is its record's [`CONTAINER_POLICY_KEY`], written once when it is created.

use std::collections::BTreeMap;

use cairn_node::policy::{CONTAINER_POLICY_KEY, Policies, StoragePolicy};
use cairn_s3_proto::S3ErrorCode;

/// The S3 request header naming a new bucket's policy (Cairn's own; S3 has none).
pub const S3_POLICY_HEADER: &str = "x-cairn-storage-policy";
/// Swift's container header naming (and reporting) a container's policy.
pub const SWIFT_POLICY_HEADER: &str = "X-Storage-Policy";

/// A policy's name for answers; an index the configuration does not know shows as its number.
pub fn policy_name(policies: &Policies, index: u16) -> String {
    policies
        .get(index)
        .map(|p| p.name.clone())
        .unwrap_or_else(|| index.to_string())
}

/// The metadata recording `index` as a new container's policy.
pub fn record_policy(meta: &mut BTreeMap<String, String>, index: u16) {
    meta.insert(CONTAINER_POLICY_KEY.to_string(), index.to_string());
}

/// The policy a new bucket gets from CreateBucket's `x-cairn-storage-policy` header and its
/// `<LocationConstraint>`. A constraint equal to the gateway's region (or none) leaves the
/// choice to the header or the default; any other constraint must name a policy.
pub fn choose_s3(
    policies: &Policies,
    region: &str,
    header: Option<&str>,
    location: Option<&str>,
) -> Result<u16, (S3ErrorCode, String)> {
    let by_header = match header.map(str::trim).filter(|h| !h.is_empty()) {
        None => None,
        Some(h) => Some(policies.by_name(h).ok_or_else(|| {
            (
                S3ErrorCode::InvalidArgument,
                format!(
                    "Invalid {S3_POLICY_HEADER} '{h}': the storage policies are {}",
                    policies.names().join(", ")
                ),
            )
        })?),
    };
    let by_location = match location.map(str::trim).filter(|l| !l.is_empty()) {
        None => None,
        Some(l) if l == region => None,
        Some(l) => Some(policies.by_name(l).ok_or_else(|| {
            (
                S3ErrorCode::InvalidLocationConstraint,
                format!(
                    "The specified location-constraint is not valid: '{l}' is neither this gateway's region ({region}) nor a storage policy ({})",
                    policies.names().join(", ")
                ),
            )
        })?),
    };
    match (by_header, by_location) {
        (Some(h), Some(l)) if h.index != l.index => Err((
            S3ErrorCode::InvalidArgument,
            format!(
                "{S3_POLICY_HEADER} '{}' and LocationConstraint '{}' name different storage policies",
                h.name, l.name
            ),
        )),
        (Some(p), _) | (None, Some(p)) => Ok(p.index),
        (None, None) => Ok(policies.default_policy().index),
    }
}

/// The policy a Swift container PUT names in `X-Storage-Policy` (`None`: none named, an empty
/// value included, as in Swift). An unknown name is refused with Swift's wording.
pub fn swift_named<'a>(
    policies: &'a Policies,
    header: Option<&str>,
) -> Result<Option<&'a StoragePolicy>, String> {
    match header.map(str::trim).filter(|h| !h.is_empty()) {
        None => Ok(None),
        Some(name) => policies
            .by_name(name)
            .map(Some)
            .ok_or_else(|| format!("Invalid {SWIFT_POLICY_HEADER} '{name}'")),
    }
}

/// Swift's `GET /info` document: constraints, middleware capabilities and the policies (only
/// the default one marked `"default": true`).
pub fn swift_info(policies: &Policies) -> serde_json::Value {
    use cairn_swift_proto::{constraints as c, slo, tempurl};
    let default = policies.default_policy().index;
    let list: Vec<serde_json::Value> = policies
        .iter()
        .map(|p| {
            let mut v = serde_json::json!({ "name": p.name, "aliases": p.name });
            if p.index == default {
                v["default"] = serde_json::Value::Bool(true);
            }
            v
        })
        .collect();
    serde_json::json!({
        "swift": {
            "version": concat!("cairn-", env!("CARGO_PKG_VERSION")),
            "max_file_size": c::MAX_FILE_SIZE,
            "max_meta_name_length": c::MAX_META_NAME_LENGTH,
            "max_meta_value_length": c::MAX_META_VALUE_LENGTH,
            "max_meta_count": c::MAX_META_COUNT,
            "max_meta_overall_size": c::MAX_META_OVERALL_SIZE,
            "max_object_name_length": c::MAX_OBJECT_NAME_LENGTH,
            "max_container_name_length": c::MAX_CONTAINER_NAME_LENGTH,
            "max_account_name_length": c::MAX_ACCOUNT_NAME_LENGTH,
            "container_listing_limit": c::CONTAINER_LISTING_LIMIT,
            "account_listing_limit": c::ACCOUNT_LISTING_LIMIT,
            "policies": list,
        },
        "slo": {
            "max_manifest_segments": slo::MAX_MANIFEST_SEGMENTS,
            "max_manifest_size": slo::MAX_MANIFEST_SIZE,
            "min_segment_size": slo::MIN_SEGMENT_SIZE,
        },
        "tempurl": {
            "methods": tempurl::TEMPURL_METHODS,
        },
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use cairn_node::policy::{PolicySection, PolicyType};

    fn policies() -> Policies {
        Policies::from_sections(
            &[
                PolicySection {
                    index: 0,
                    name: "replicated".into(),
                    kind: PolicyType::Replicated,
                    ring: None,
                    ec_data: None,
                    ec_parity: None,
                    ec_codec: None,
                    segment_bytes: None,
                    write_quorum: None,
                },
                PolicySection {
                    index: 1,
                    name: "ec42".into(),
                    kind: PolicyType::Ec,
                    ring: Some("object-1.ring".into()),
                    ec_data: Some(4),
                    ec_parity: Some(2),
                    ec_codec: None,
                    segment_bytes: None,
                    write_quorum: None,
                },
            ],
            None,
        )
        .unwrap()
    }

    #[test]
    fn s3_choice_from_header_and_location_constraint() {
        let p = policies();
        let r = "eu-west-1";
        assert_eq!(choose_s3(&p, r, None, None), Ok(0));
        assert_eq!(choose_s3(&p, r, None, Some(r)), Ok(0));
        assert_eq!(choose_s3(&p, r, Some(""), Some("  ")), Ok(0));
        assert_eq!(choose_s3(&p, r, Some("EC42"), None), Ok(1));
        assert_eq!(choose_s3(&p, r, None, Some("ec42")), Ok(1));
        assert_eq!(choose_s3(&p, r, Some("ec42"), Some("ec42")), Ok(1));
        // The region leaves the choice to the header.
        assert_eq!(choose_s3(&p, r, Some("ec42"), Some(r)), Ok(1));
        assert_eq!(choose_s3(&p, r, Some("replicated"), Some(r)), Ok(0));
        let code = |h, l| choose_s3(&p, r, h, l).unwrap_err().0;
        assert_eq!(code(Some("gold"), None), S3ErrorCode::InvalidArgument);
        assert_eq!(
            code(None, Some("us-west-2")),
            S3ErrorCode::InvalidLocationConstraint
        );
        assert_eq!(
            code(Some("replicated"), Some("ec42")),
            S3ErrorCode::InvalidArgument
        );
        assert_eq!(
            code(Some("ec42"), Some("mars-1")),
            S3ErrorCode::InvalidLocationConstraint
        );
    }

    #[test]
    fn s3_default_follows_the_configuration() {
        let mut sections = vec![PolicySection {
            index: 1,
            name: "ec42".into(),
            kind: PolicyType::Ec,
            ring: Some("r".into()),
            ec_data: Some(4),
            ec_parity: Some(2),
            ec_codec: None,
            segment_bytes: None,
            write_quorum: None,
        }];
        let p = Policies::from_sections(&sections, Some("ec42")).unwrap();
        assert_eq!(choose_s3(&p, "us-east-1", None, None), Ok(1));
        assert_eq!(choose_s3(&p, "us-east-1", None, Some("us-east-1")), Ok(1));
        assert_eq!(choose_s3(&p, "us-east-1", Some("replicated"), None), Ok(0));
        sections.clear();
        let p = Policies::from_sections(&sections, None).unwrap();
        assert_eq!(choose_s3(&p, "us-east-1", None, None), Ok(0));
    }

    #[test]
    fn swift_names_are_case_insensitive_and_unknown_ones_refused() {
        let p = policies();
        assert_eq!(swift_named(&p, None).unwrap(), None);
        assert_eq!(swift_named(&p, Some(" ")).unwrap(), None);
        assert_eq!(swift_named(&p, Some("Ec42")).unwrap().unwrap().index, 1);
        assert_eq!(
            swift_named(&p, Some("gold")).unwrap_err(),
            "Invalid X-Storage-Policy 'gold'"
        );
    }

    #[test]
    fn names_records_and_info() {
        let p = policies();
        assert_eq!(policy_name(&p, 1), "ec42");
        assert_eq!(policy_name(&p, 7), "7");
        let mut m = BTreeMap::new();
        record_policy(&mut m, 1);
        assert_eq!(m.get(CONTAINER_POLICY_KEY).map(String::as_str), Some("1"));
        let info = swift_info(&p);
        let list = info["swift"]["policies"].as_array().unwrap();
        assert_eq!(list.len(), 2);
        assert_eq!(list[0]["name"], "replicated");
        assert_eq!(list[0]["default"], true);
        assert_eq!(list[1]["name"], "ec42");
        assert!(list[1].get("default").is_none());
        assert_eq!(info["slo"]["min_segment_size"], 1);
    }
}
