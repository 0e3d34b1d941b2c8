//! Listing queries (Swift semantics) over any ordered source, so every engine lists the same way.
//!
//! Rules: `marker` and `end_marker` are exclusive; with `reverse` they bound the other side
//! (results are before `marker` and after `end_marker`). Deleted entries appear only with
//! `include_deleted`, and never as common prefixes. With a
//! delimiter, a name whose remainder after `prefix` contains the delimiter rolls up into one
//! common prefix (up to and including the delimiter); a common prefix counts toward `limit` and
//! is not returned when it equals `marker` (it was the last item of the previous page).

use std::ops::Bound;

use crate::error::Result;
use crate::limits::{LIST_LIMIT_MAX, LIST_SCAN_MAX};
use crate::types::{ListItem, ListPage, ListQuery, ListingEntry};

/// An ordered cursor over one listing's entries (deleted ones included), in the query's direction.
pub trait ListSource {
    /// Repositions. Forward: at the first name at or after the bound (`Unbounded`: the first name).
    /// Reverse: at the last name at or before the bound (`Unbounded`: the last name).
    fn seek(&mut self, bound: Bound<&[u8]>) -> Result<()>;
    /// The entry at the position, advancing in the source's direction.
    fn next_entry(&mut self) -> Result<Option<ListingEntry>>;
}

/// The smallest byte string greater than every string starting with `prefix`, if any.
pub fn prefix_successor(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut out = prefix.to_vec();
    while let Some(last) = out.pop() {
        if last < 0xff {
            out.push(last + 1);
            return Some(out);
        }
    }
    None
}

/// Runs `query` against `source`, which must iterate in the query's direction.
pub fn run_query(source: &mut impl ListSource, query: &ListQuery) -> Result<ListPage> {
    let limit = query.limit.min(LIST_LIMIT_MAX);
    let prefix = query.prefix.as_str();
    let marker = query.marker.as_deref().filter(|m| !m.is_empty());
    let end_marker = query.end_marker.as_deref().filter(|m| !m.is_empty());
    let delimiter = query.delimiter.as_deref().filter(|d| !d.is_empty());
    let prefix_end = prefix_successor(prefix.as_bytes());

    // Position at the first candidate.
    if query.reverse {
        // Last name below both the marker and the end of the prefix range.
        let upper: Option<&[u8]> = match (marker.map(str::as_bytes), prefix_end.as_deref()) {
            (Some(m), Some(p)) => Some(if m < p { m } else { p }),
            (Some(m), None) => Some(m),
            (None, p) => p,
        };
        source.seek(upper.map_or(Bound::Unbounded, Bound::Excluded))?;
    } else {
        match marker {
            Some(m) if m.as_bytes() >= prefix.as_bytes() => {
                source.seek(Bound::Excluded(m.as_bytes()))?
            }
            _ => source.seek(Bound::Included(prefix.as_bytes()))?,
        }
    }

    let mut page = ListPage::default();
    let mut scanned = 0usize;
    let mut last_scanned: Option<String> = None;
    while let Some(entry) = source.next_entry()? {
        let name = entry.name.as_str();
        if !name.starts_with(prefix) {
            // Sorted: once past the prefix range in our direction, nothing later matches.
            if (query.reverse && name < prefix) || (!query.reverse && name > prefix) {
                break;
            }
            continue;
        }
        if let Some(end) = end_marker
            && ((!query.reverse && name >= end) || (query.reverse && name <= end))
        {
            break;
        }
        if let Some(m) = marker {
            // Sources are positioned past the marker; this guards sources that are not exact.
            if (!query.reverse && name <= m) || (query.reverse && name >= m) {
                continue;
            }
        }
        scanned += 1;
        if scanned > LIST_SCAN_MAX {
            page.truncated = true;
            page.next_marker = last_scanned;
            break;
        }
        last_scanned = Some(entry.name.clone());
        let rolled = delimiter.and_then(|d| {
            name[prefix.len()..]
                .find(d)
                .map(|i| name[..prefix.len() + i + d.len()].to_string())
        });
        if entry.deleted && (!query.include_deleted || rolled.is_some()) {
            continue;
        }
        let item = match rolled {
            Some(common) => {
                // Skip everything under this common prefix in one seek.
                if query.reverse {
                    source.seek(Bound::Excluded(common.as_bytes()))?;
                } else {
                    match prefix_successor(common.as_bytes()) {
                        Some(next) => source.seek(Bound::Included(&next))?,
                        None => source.seek(Bound::Excluded(common.as_bytes()))?,
                    }
                }
                if Some(common.as_str()) == marker {
                    continue;
                }
                ListItem::Prefix(common)
            }
            None => ListItem::Entry(entry),
        };
        if page.items.len() >= limit {
            page.truncated = true;
            page.next_marker = page.items.last().map(|i| i.marker().to_string());
            break;
        }
        page.items.push(item);
    }
    Ok(page)
}

/// A [`ListSource`] over an in-memory sorted slice; used by the memory engine and tests.
#[derive(Debug)]
pub struct SliceSource<'a> {
    entries: &'a [ListingEntry],
    reverse: bool,
    /// Forward: index of the next entry. Reverse: one past the index of the next entry.
    pos: usize,
}

impl<'a> SliceSource<'a> {
    /// `entries` must be sorted by name (bytewise) with unique names.
    pub fn new(entries: &'a [ListingEntry], reverse: bool) -> SliceSource<'a> {
        SliceSource {
            entries,
            reverse,
            pos: if reverse { entries.len() } else { 0 },
        }
    }
}

impl ListSource for SliceSource<'_> {
    fn seek(&mut self, bound: Bound<&[u8]>) -> Result<()> {
        let key = |e: &ListingEntry| e.name.as_bytes().to_vec();
        self.pos = match (self.reverse, bound) {
            (false, Bound::Unbounded) => 0,
            (false, Bound::Included(b)) => self.entries.partition_point(|e| key(e).as_slice() < b),
            (false, Bound::Excluded(b)) => self.entries.partition_point(|e| key(e).as_slice() <= b),
            (true, Bound::Unbounded) => self.entries.len(),
            (true, Bound::Included(b)) => self.entries.partition_point(|e| key(e).as_slice() <= b),
            (true, Bound::Excluded(b)) => self.entries.partition_point(|e| key(e).as_slice() < b),
        };
        Ok(())
    }

    fn next_entry(&mut self) -> Result<Option<ListingEntry>> {
        if self.reverse {
            if self.pos == 0 {
                return Ok(None);
            }
            self.pos -= 1;
            Ok(self.entries.get(self.pos).cloned())
        } else {
            let e = self.entries.get(self.pos).cloned();
            if e.is_some() {
                self.pos += 1;
            }
            Ok(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Timestamp;

    fn entries(names: &[&str]) -> Vec<ListingEntry> {
        let mut v: Vec<ListingEntry> = names
            .iter()
            .map(|n| ListingEntry {
                name: n.to_string(),
                timestamp: Timestamp::ZERO,
                deleted: n.ends_with("!deleted"),
                size_bytes: 1,
                etag: String::new(),
                content_type: String::new(),
            })
            .collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    fn names(page: &ListPage) -> Vec<String> {
        page.items
            .iter()
            .map(|i| match i {
                ListItem::Entry(e) => e.name.clone(),
                ListItem::Prefix(p) => format!("{p}*"),
            })
            .collect()
    }

    fn q(f: impl FnOnce(&mut ListQuery)) -> ListQuery {
        let mut query = ListQuery {
            limit: 100,
            ..ListQuery::default()
        };
        f(&mut query);
        query
    }

    #[test]
    fn deleted_entries_appear_only_when_asked_and_never_as_prefixes() {
        let es = entries(&["a", "b!deleted", "c/1!deleted"]);
        assert_eq!(names(&run(&es, &q(|_| {}))), ["a"]);
        let with = q(|q| {
            q.include_deleted = true;
            q.delimiter = Some("/".into());
        });
        assert_eq!(names(&run(&es, &with)), ["a", "b!deleted"]);
    }

    fn run(es: &[ListingEntry], query: &ListQuery) -> ListPage {
        run_query(&mut SliceSource::new(es, query.reverse), query).unwrap()
    }

    const NAMES: &[&str] = &[
        "a",
        "a/1",
        "a/2",
        "a/b/1",
        "b",
        "b/1",
        "c!deleted",
        "d/x/y",
        "e",
    ];

    #[test]
    fn plain_listing_skips_deleted() {
        let es = entries(NAMES);
        assert_eq!(
            names(&run(&es, &q(|_| {}))),
            ["a", "a/1", "a/2", "a/b/1", "b", "b/1", "d/x/y", "e"]
        );
    }

    #[test]
    fn markers_are_exclusive() {
        let es = entries(NAMES);
        let p = run(
            &es,
            &q(|q| {
                q.marker = Some("a/2".into());
                q.end_marker = Some("d/x/y".into());
            }),
        );
        assert_eq!(names(&p), ["a/b/1", "b", "b/1"]);
    }

    #[test]
    fn delimiter_rolls_up_and_counts_toward_limit() {
        let es = entries(NAMES);
        let p = run(&es, &q(|q| q.delimiter = Some("/".into())));
        assert_eq!(names(&p), ["a", "a/*", "b", "b/*", "d/*", "e"]);
        let p = run(
            &es,
            &q(|q| {
                q.delimiter = Some("/".into());
                q.limit = 2;
            }),
        );
        assert_eq!(names(&p), ["a", "a/*"]);
        assert!(p.truncated);
        assert_eq!(p.next_marker.as_deref(), Some("a/"));
        // The next page starts after the common prefix and does not repeat it.
        let p = run(
            &es,
            &q(|q| {
                q.delimiter = Some("/".into());
                q.limit = 2;
                q.marker = Some("a/".into());
            }),
        );
        assert_eq!(names(&p), ["b", "b/*"]);
        assert!(p.truncated);
    }

    #[test]
    fn prefix_with_delimiter() {
        let es = entries(NAMES);
        let p = run(
            &es,
            &q(|q| {
                q.prefix = "a/".into();
                q.delimiter = Some("/".into());
            }),
        );
        assert_eq!(names(&p), ["a/1", "a/2", "a/b/*"]);
        assert!(!p.truncated);
    }

    #[test]
    fn reverse_swaps_marker_sides() {
        let es = entries(NAMES);
        let p = run(
            &es,
            &q(|q| {
                q.reverse = true;
                q.marker = Some("b/1".into());
                q.end_marker = Some("a/1".into());
            }),
        );
        assert_eq!(names(&p), ["b", "a/b/1", "a/2"]);
        let p = run(
            &es,
            &q(|q| {
                q.reverse = true;
                q.delimiter = Some("/".into());
            }),
        );
        assert_eq!(names(&p), ["e", "d/*", "b/*", "b", "a/*", "a"]);
        let p = run(
            &es,
            &q(|q| {
                q.reverse = true;
                q.prefix = "a/".into();
            }),
        );
        assert_eq!(names(&p), ["a/b/1", "a/2", "a/1"]);
    }

    #[test]
    fn exact_limit_is_not_truncated() {
        let es = entries(&["x", "y"]);
        let p = run(&es, &q(|q| q.limit = 2));
        assert_eq!(names(&p), ["x", "y"]);
        assert!(!p.truncated);
        let p = run(&es, &q(|q| q.limit = 1));
        assert!(p.truncated);
    }
}
