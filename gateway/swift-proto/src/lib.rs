//! OpenStack Swift's API rules as pure functions (no I/O, no async), for
//! the Cairn gateway's Swift front end.
//!
//! Everything here follows what python-swiftclient and Swift's API
//! reference expect from a stock Swift proxy; every failure is a
//! [`SwiftError`] carrying the HTTP status and body Swift would answer.
//!
//! # API
//!
//! * [`error`]: `SwiftError { status, message }` with `bad_request`,
//!   `unauthorized`, `forbidden`, `not_found`, `not_acceptable`, `conflict`,
//!   `length_required`, `precondition_failed`, `entity_too_large`,
//!   `range_not_satisfiable`, `unprocessable`, `new(status, msg)`;
//!   `body()`, `reason()`.
//! * [`constraints`]: `MAX_FILE_SIZE`, `MAX_META_*`, `MAX_*_NAME_LENGTH`,
//!   `*_LISTING_LIMIT`; `validate_container_name(&str)`,
//!   `validate_object_name(&str)`, `check_object_size(u64)`;
//!   `collect_meta(&[(String, String)], MetaKind) -> Result<MetaUpdate>`,
//!   `MetaUpdate { set, remove }` with `apply(kind, &mut BTreeMap)`
//!   (objects replace all metadata, accounts/containers update per key);
//!   `meta_headers(MetaKind, &BTreeMap) -> Vec<(String, String)>`.
//! * [`listing`]: `ListingParams::parse(raw_query, accept)`,
//!   `ListingParams::select(&[(String, T)]) -> Vec<ListingEntry<T>>`,
//!   `render_container_listing(container, &[ContainerItem], Format)`,
//!   `render_account_listing(account, &[AccountItem], Format)` →
//!   `(content_type, body)`; `account_headers(..)`, `container_headers(..)`;
//!   `negotiate_format(accept)`.
//! * [`slo`]: `parse_manifest_put(&[u8]) -> Vec<SloSegmentSpec>`,
//!   `validate_segments(&[SloSegmentSpec], &[Option<SegmentFacts>]) ->
//!   SloManifest`, `check_client_etag`, `SloManifest::{total_size, etag,
//!   to_stored_json, from_stored_json, plan_read}`.
//! * [`dlo`]: `parse_object_manifest(&str) -> (container, prefix)`,
//!   `plan_dlo_read(container, &[(String, u64)], range)`, `dlo_total_size`,
//!   `dlo_etag`.
//! * [`segments`]: `SegmentRead { container, object, start, end }` (end
//!   exclusive, offsets within the segment object).
//! * [`tempurl`]: `parse_tempurl_query(raw) -> Option<Result<TempUrlParams>>`,
//!   `verify_tempurl(&params, method, path, keys, now, allowed)`,
//!   `sign_tempurl(method, expires, path, key, digest) -> hex`,
//!   `content_disposition(&params, object)`.
//! * [`acl`]: `ContainerAcl::{parse(header, write), clean, to_header,
//!   allows(who, referrer, listing)}`, `AclSubject`.
//! * [`expiry`]: `resolve_delete_at(delete_at, delete_after, now) ->
//!   Option<u64>` (`X-Delete-After` wins when both are sent).
//! * [`range`]: `parse_ranges(header, size) -> Vec<(first, last)>` (empty =
//!   ignore header; 416 when unsatisfiable), `content_range`.
//! * [`timestamp`]: `x_timestamp`, `parse_x_timestamp`,
//!   `listing_last_modified`, `last_modified_header`, `http_date`,
//!   `parse_http_date`, `parse_iso8601_utc`.
//! * [`query`]: `parse_query(raw) -> Vec<(String, String)>`, `first`,
//!   `decode_component` (query: `+` is space), `decode_path` (`+` literal).
//!
//! Byte ranges handed *to* this crate (`plan_read`, `plan_dlo_read`) and
//! returned by [`range::parse_ranges`] are inclusive `(first, last)` pairs,
//! matching HTTP; [`SegmentRead`] uses an exclusive `end` because that is
//! what a storage read wants.
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

pub mod acl;
pub mod constraints;
pub mod dlo;
pub mod error;
pub mod expiry;
pub mod listing;
pub mod query;
pub mod range;
pub mod segments;
pub mod slo;
pub mod tempurl;
pub mod timestamp;

pub use acl::{AclSubject, ContainerAcl};
pub use constraints::{MetaKind, MetaUpdate, collect_meta, meta_headers};
pub use error::SwiftError;
pub use listing::{AccountItem, ContainerItem, Format, ListingParams};
pub use segments::SegmentRead;
pub use slo::{SegmentFacts, SloManifest, SloSegment, SloSegmentSpec};
pub use tempurl::{TempUrlDigest, TempUrlParams};
