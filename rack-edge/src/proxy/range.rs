//! Byte ranges and client conditionals answered from a cached object: APT
//! resumes partial downloads with `Range` + `If-Range`, and asks for
//! indexes with `If-Modified-Since`.

use hyper::header::{HeaderMap, IF_MODIFIED_SINCE, IF_NONE_MATCH, IF_RANGE, RANGE};

/// What to send of an object of known length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Selection {
    /// All of it (no range, several ranges, or an `If-Range` that does not
    /// match: all are allowed answers to a range request).
    Full,
    /// Bytes `start..=end` (206).
    Partial {
        /// First byte.
        start: u64,
        /// Last byte, inclusive.
        end: u64,
    },
    /// No byte of the range exists (416).
    Unsatisfiable,
}

/// The part of an object of `length` bytes with validators `etag` and
/// `last_modified` that a request with `headers` asks for.
pub fn select(
    headers: &HeaderMap,
    length: u64,
    etag: Option<&str>,
    last_modified: Option<&str>,
) -> Selection {
    let Some(range) = headers.get(RANGE).and_then(|v| v.to_str().ok()) else {
        return Selection::Full;
    };
    if let Some(condition) = headers.get(IF_RANGE).and_then(|v| v.to_str().ok()) {
        let condition = condition.trim();
        // A strong comparison: a weak ETag never matches If-Range.
        let matches = Some(condition) == etag && !condition.starts_with("W/")
            || Some(condition) == last_modified;
        if !matches {
            return Selection::Full;
        }
    }
    parse(range, length)
}

/// Parses a `Range` header value against an object of `length` bytes.
pub fn parse(range: &str, length: u64) -> Selection {
    let Some(spec) = range.trim().strip_prefix("bytes=") else {
        return Selection::Full;
    };
    if spec.contains(',') {
        // Multipart answers are not worth their code: APT never asks.
        return Selection::Full;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return Selection::Full;
    };
    let (first, last) = (first.trim(), last.trim());
    let parsed = match (first.is_empty(), last.is_empty()) {
        // bytes=-N: the last N bytes.
        (true, false) => match last.parse::<u64>() {
            Ok(0) => return Selection::Unsatisfiable,
            Ok(n) => Some((length.saturating_sub(n), length.saturating_sub(1))),
            Err(_) => None,
        },
        (false, true) => first.parse::<u64>().ok().map(|start| (start, u64::MAX)),
        (false, false) => match (first.parse::<u64>(), last.parse::<u64>()) {
            (Ok(start), Ok(end)) if start <= end => Some((start, end)),
            _ => None,
        },
        (true, true) => None,
    };
    match parsed {
        // A range that does not parse is ignored (RFC 9110 §14.2).
        None => Selection::Full,
        Some((start, _)) if start >= length => Selection::Unsatisfiable,
        Some((start, end)) => Selection::Partial {
            start,
            end: end.min(length - 1),
        },
    }
}

/// Whether a client's conditional GET is satisfied by a cached object
/// with these validators (a 304 answers it).
pub fn not_modified(headers: &HeaderMap, etag: Option<&str>, last_modified: Option<&str>) -> bool {
    if let Some(tags) = headers.get(IF_NONE_MATCH).and_then(|v| v.to_str().ok()) {
        // If-None-Match wins over If-Modified-Since; weak comparison.
        let Some(etag) = etag else { return false };
        let bare = |tag: &str| tag.trim().trim_start_matches("W/").to_string();
        return tags
            .split(',')
            .any(|tag| tag.trim() == "*" || bare(tag) == bare(etag));
    }
    let since = headers
        .get(IF_MODIFIED_SINCE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| httpdate::parse_http_date(v).ok());
    let modified = last_modified.and_then(|v| httpdate::parse_http_date(v).ok());
    matches!((since, modified), (Some(since), Some(modified)) if modified <= since)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    #[test]
    fn single_ranges_select_bytes_within_the_object() {
        assert_eq!(
            parse("bytes=0-99", 1000),
            Selection::Partial { start: 0, end: 99 }
        );
        assert_eq!(
            parse("bytes=500-", 1000),
            Selection::Partial {
                start: 500,
                end: 999
            }
        );
        assert_eq!(
            parse("bytes=-100", 1000),
            Selection::Partial {
                start: 900,
                end: 999
            }
        );
        assert_eq!(
            parse("bytes=-5000", 1000),
            Selection::Partial { start: 0, end: 999 }
        );
        assert_eq!(
            parse("bytes=990-5000", 1000),
            Selection::Partial {
                start: 990,
                end: 999
            }
        );
    }

    #[test]
    fn ranges_past_the_end_are_unsatisfiable_and_bad_ones_ignored() {
        assert_eq!(parse("bytes=1000-", 1000), Selection::Unsatisfiable);
        assert_eq!(parse("bytes=-0", 1000), Selection::Unsatisfiable);
        assert_eq!(parse("bytes=0-", 0), Selection::Unsatisfiable);
        for ignored in [
            "bytes=9-3",
            "bytes=x-3",
            "items=0-3",
            "bytes=-",
            "bytes=0-1,5-6",
        ] {
            assert_eq!(parse(ignored, 1000), Selection::Full, "{ignored}");
        }
    }

    #[test]
    fn if_range_mismatch_sends_the_whole_object() {
        let mut headers = HeaderMap::new();
        headers.insert(RANGE, HeaderValue::from_static("bytes=10-"));
        headers.insert(IF_RANGE, HeaderValue::from_static("\"v1\""));
        assert_eq!(
            select(&headers, 100, Some("\"v1\""), None),
            Selection::Partial { start: 10, end: 99 }
        );
        assert_eq!(select(&headers, 100, Some("\"v2\""), None), Selection::Full);
        let date = "Wed, 21 Oct 2015 07:28:00 GMT";
        headers.insert(IF_RANGE, HeaderValue::from_static(date));
        assert_eq!(
            select(&headers, 100, None, Some(date)),
            Selection::Partial { start: 10, end: 99 }
        );
    }

    #[test]
    fn conditionals_match_etag_or_modification_date() {
        let mut headers = HeaderMap::new();
        assert!(!not_modified(&headers, Some("\"a\""), None));
        headers.insert(IF_NONE_MATCH, HeaderValue::from_static("\"b\", W/\"a\""));
        assert!(not_modified(&headers, Some("\"a\""), None));
        assert!(!not_modified(&headers, Some("\"c\""), None));
        let mut headers = HeaderMap::new();
        headers.insert(
            IF_MODIFIED_SINCE,
            HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
        );
        assert!(not_modified(
            &headers,
            None,
            Some("Wed, 21 Oct 2015 07:28:00 GMT")
        ));
        assert!(not_modified(
            &headers,
            None,
            Some("Tue, 20 Oct 2015 07:28:00 GMT")
        ));
        assert!(!not_modified(
            &headers,
            None,
            Some("Thu, 22 Oct 2015 07:28:00 GMT")
        ));
        assert!(!not_modified(&headers, None, None));
    }
}
