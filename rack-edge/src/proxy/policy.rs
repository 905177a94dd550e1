//! What the cache may do with a URL and a response, tuned for APT: package
//! files never change under their name, indexes change under the same name
//! and are revalidated on every request (so a machine never sees a stale
//! index), and anything else follows its own `Cache-Control`/`Expires`.
//!
//! Pure functions of paths, headers and a time: no I/O.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hyper::header::{HeaderMap, CACHE_CONTROL, EXPIRES, VARY};
use serde::{Deserialize, Serialize};

/// How the cache treats a URL, decided from its path alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// Package files and `by-hash/` indexes: a name never gets new content,
    /// so a cached copy is served without asking upstream.
    Immutable,
    /// Repository indexes (`InRelease`, `Packages*`, …): the same name
    /// gets new content at every archive update, so every request asks
    /// upstream whether the cached copy is still current.
    Index,
    /// Anything else: cached only as its response headers allow.
    Other,
}

/// Suffixes of package files in an APT archive's pool.
const PACKAGE_SUFFIXES: &[&str] = &[".deb", ".udeb", ".ddeb"];
/// Index file names (or their prefixes, for compressed and per-architecture
/// variants) that change in place at every archive update.
const INDEX_NAMES: &[&str] = &["InRelease", "Release", "Release.gpg"];
const INDEX_PREFIXES: &[&str] = &[
    "Packages",
    "Sources",
    "Translation-",
    "Contents-",
    "Components-",
    "Commands-",
    "icons-",
    "Index",
];

/// Classifies a request path (the query is ignored).
pub fn classify(path: &str) -> Class {
    let path = path.split(['?', '#']).next().unwrap_or(path);
    // by-hash names are the content's digest: immutable by construction,
    // even though they live next to the mutable indexes.
    if path.contains("/by-hash/") {
        return Class::Immutable;
    }
    let name = path.rsplit('/').next().unwrap_or(path);
    if PACKAGE_SUFFIXES.iter().any(|s| name.ends_with(s)) {
        return Class::Immutable;
    }
    if INDEX_NAMES.contains(&name) || INDEX_PREFIXES.iter().any(|p| name.starts_with(p)) {
        return Class::Index;
    }
    Class::Other
}

/// How long a stored object may be served without asking upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Freshness {
    /// Always (immutable objects).
    Forever,
    /// Never: every request revalidates (indexes, `no-cache`).
    Revalidate,
    /// Until this time, in seconds since the Unix epoch; revalidated after.
    Until(u64),
}

impl Freshness {
    /// Whether a copy with this freshness may be served at `now` without
    /// asking upstream.
    pub fn is_fresh(self, now: SystemTime) -> bool {
        match self {
            Freshness::Forever => true,
            Freshness::Revalidate => false,
            Freshness::Until(until) => unix_secs(now) < until,
        }
    }
}

/// Whether and how a 200 response for a URL of `class` may be stored;
/// `None` when it must not be (`no-store`, `private`, `Vary: *`, no
/// freshness information and no validator).
pub fn storable(
    class: Class,
    headers: &HeaderMap,
    has_validator: bool,
    now: SystemTime,
) -> Option<Freshness> {
    let directives = CacheControl::parse(headers);
    if directives.no_store || directives.private {
        return None;
    }
    if headers
        .get_all(VARY)
        .iter()
        .any(|v| v.to_str().is_ok_and(|v| v.trim() == "*"))
    {
        return None;
    }
    match class {
        Class::Immutable => Some(Freshness::Forever),
        // Stored even without a validator: a conditional request that
        // cannot match then fetches the new copy, and the cached one is
        // still there for when the WAN is down.
        Class::Index => Some(Freshness::Revalidate),
        Class::Other => {
            if directives.no_cache {
                return has_validator.then_some(Freshness::Revalidate);
            }
            let lifetime = directives.max_age.map(Duration::from_secs).or_else(|| {
                let expires = headers.get(EXPIRES)?.to_str().ok()?;
                // An invalid Expires (often "0") means already expired.
                let expires = httpdate::parse_http_date(expires).unwrap_or(UNIX_EPOCH);
                Some(expires.duration_since(now).unwrap_or_default())
            });
            match lifetime {
                Some(lifetime) if !lifetime.is_zero() => {
                    Some(Freshness::Until(unix_secs(now + lifetime)))
                }
                Some(_) | None => has_validator.then_some(Freshness::Revalidate),
            }
        }
    }
}

/// The `Cache-Control` directives the cache acts on.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct CacheControl {
    no_store: bool,
    no_cache: bool,
    private: bool,
    /// `s-maxage` (a shared cache's own) or else `max-age`.
    max_age: Option<u64>,
}

impl CacheControl {
    fn parse(headers: &HeaderMap) -> CacheControl {
        let mut parsed = CacheControl::default();
        let mut max_age = None;
        let mut s_maxage = None;
        for value in headers.get_all(CACHE_CONTROL) {
            let Ok(value) = value.to_str() else { continue };
            for directive in value.split(',') {
                let (name, argument) = match directive.split_once('=') {
                    Some((name, argument)) => {
                        (name.trim(), Some(argument.trim().trim_matches('"')))
                    }
                    None => (directive.trim(), None),
                };
                let seconds = || argument.and_then(|a| a.parse::<u64>().ok());
                match name.to_ascii_lowercase().as_str() {
                    "no-store" => parsed.no_store = true,
                    "no-cache" => parsed.no_cache = true,
                    "private" => parsed.private = true,
                    // A max-age that does not parse makes the response stale.
                    "max-age" => max_age = Some(seconds().unwrap_or(0)),
                    "s-maxage" => s_maxage = Some(seconds().unwrap_or(0)),
                    _ => {}
                }
            }
        }
        parsed.max_age = s_maxage.or(max_age);
        parsed
    }
}

/// Seconds since the Unix epoch (0 before it).
pub fn unix_secs(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_static(value));
        }
        map
    }

    #[test]
    fn package_files_and_by_hash_paths_are_immutable() {
        for path in [
            "/debian/pool/main/h/hello/hello_2.10-3_amd64.deb",
            "/debian/pool/main/d/debian-installer/foo_1_amd64.udeb",
            "/debian/pool/main/h/hello/hello-dbgsym_1_amd64.ddeb",
            "/debian/dists/bookworm/main/binary-amd64/by-hash/SHA256/0123abcd",
            "/pool/x.deb?token=1",
        ] {
            assert_eq!(classify(path), Class::Immutable, "{path}");
        }
    }

    #[test]
    fn indexes_are_revalidated() {
        for path in [
            "/debian/dists/bookworm/InRelease",
            "/debian/dists/bookworm/Release",
            "/debian/dists/bookworm/Release.gpg",
            "/debian/dists/bookworm/main/binary-amd64/Packages",
            "/debian/dists/bookworm/main/binary-amd64/Packages.xz",
            "/debian/dists/bookworm/main/source/Sources.gz",
            "/debian/dists/bookworm/main/i18n/Translation-en.bz2",
            "/debian/dists/bookworm/main/Contents-amd64.gz",
            "/repo/./Packages",
        ] {
            assert_eq!(classify(path), Class::Index, "{path}");
        }
    }

    #[test]
    fn other_paths_follow_their_headers() {
        for path in ["/", "/index.html", "/debian/README", "/release-notes.txt"] {
            assert_eq!(classify(path), Class::Other, "{path}");
        }
    }

    #[test]
    fn immutable_and_index_objects_are_stored_without_cache_headers() {
        let now = SystemTime::now();
        let none = HeaderMap::new();
        assert_eq!(
            storable(Class::Immutable, &none, false, now),
            Some(Freshness::Forever)
        );
        assert_eq!(
            storable(Class::Index, &none, false, now),
            Some(Freshness::Revalidate)
        );
        assert!(Freshness::Forever.is_fresh(now));
        assert!(!Freshness::Revalidate.is_fresh(now));
    }

    #[test]
    fn no_store_and_private_are_never_stored() {
        let now = SystemTime::now();
        for value in ["no-store", "private, max-age=600"] {
            let map = headers(&[("cache-control", value)]);
            assert_eq!(storable(Class::Immutable, &map, true, now), None, "{value}");
            assert_eq!(storable(Class::Other, &map, true, now), None, "{value}");
        }
        let vary = headers(&[("vary", "*")]);
        assert_eq!(storable(Class::Other, &vary, true, now), None);
    }

    #[test]
    fn other_objects_are_fresh_for_their_max_age_or_until_expires() {
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let map = headers(&[("cache-control", "public, max-age=60")]);
        let freshness = storable(Class::Other, &map, false, now).unwrap();
        assert_eq!(freshness, Freshness::Until(1_700_000_060));
        assert!(freshness.is_fresh(now + Duration::from_secs(59)));
        assert!(!freshness.is_fresh(now + Duration::from_secs(60)));
        let shared = headers(&[("cache-control", "max-age=60, s-maxage=5")]);
        assert_eq!(
            storable(Class::Other, &shared, false, now),
            Some(Freshness::Until(1_700_000_005))
        );
        let expires = httpdate::fmt_http_date(now + Duration::from_secs(120));
        let mut map = HeaderMap::new();
        map.insert(EXPIRES, expires.parse().unwrap());
        assert_eq!(
            storable(Class::Other, &map, false, now),
            Some(Freshness::Until(1_700_000_120))
        );
    }

    #[test]
    fn other_objects_without_freshness_are_stored_only_with_a_validator() {
        let now = SystemTime::now();
        let none = HeaderMap::new();
        assert_eq!(storable(Class::Other, &none, false, now), None);
        assert_eq!(
            storable(Class::Other, &none, true, now),
            Some(Freshness::Revalidate)
        );
        let expired = headers(&[("expires", "0")]);
        assert_eq!(storable(Class::Other, &expired, false, now), None);
        let no_cache = headers(&[("cache-control", "no-cache, max-age=600")]);
        assert_eq!(storable(Class::Other, &no_cache, false, now), None);
        assert_eq!(
            storable(Class::Other, &no_cache, true, now),
            Some(Freshness::Revalidate)
        );
    }
}
