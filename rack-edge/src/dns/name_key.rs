//! Names as lookup keys: the lowercase wire form (length-prefixed labels,
//! no root byte), built on the stack. hickory's `Name` hashes and compares
//! label by label, lowercasing copies as it goes; on the query path, where
//! every query does two or three lookups, that cost more than the lookups
//! themselves. These bytes hash and compare as plain slices.

use hickory_proto::rr::Name;

/// The longest wire name is 255 bytes including the root byte.
const MAX: usize = 255;

/// A name's lowercase wire form.
#[derive(Clone, Copy)]
pub struct NameKey {
    bytes: [u8; MAX],
    len: usize,
}

impl NameKey {
    /// The key of `name` (case-insensitive, as DNS names compare).
    pub fn new(name: &Name) -> NameKey {
        let mut key = NameKey {
            bytes: [0; MAX],
            len: 0,
        };
        for label in name.iter() {
            // hickory refuses longer names, so this never cuts; should it,
            // the key is merely one that matches nothing stored.
            if key.len + 1 + label.len() > MAX {
                break;
            }
            key.bytes[key.len] = label.len() as u8;
            let start = key.len + 1;
            key.bytes[start..start + label.len()].copy_from_slice(label);
            key.bytes[start..start + label.len()].make_ascii_lowercase();
            key.len = start + label.len();
        }
        key
    }

    /// The key bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }

    /// Whether this name is `apex` or below it (`apex` being another
    /// key's bytes): a suffix that starts on a label boundary.
    pub fn is_at_or_below(&self, apex: &[u8]) -> bool {
        let bytes = self.as_bytes();
        let mut at = 0;
        while bytes.len() - at > apex.len() {
            at += 1 + usize::from(bytes[at]);
        }
        bytes.len() - at == apex.len() && &bytes[at..] == apex
    }

    /// The key of the parent name; `None` at the root.
    pub fn parent(&self) -> Option<NameKey> {
        if self.len == 0 {
            return None;
        }
        let skip = 1 + usize::from(self.bytes[0]);
        let mut parent = NameKey {
            bytes: [0; MAX],
            len: self.len - skip,
        };
        parent.bytes[..parent.len].copy_from_slice(&self.bytes[skip..self.len]);
        Some(parent)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(s: &str) -> NameKey {
        NameKey::new(&Name::from_ascii(s).unwrap())
    }

    #[test]
    fn keys_ignore_case_and_the_trailing_dot() {
        assert_eq!(
            key("Host.Site.Internal.").as_bytes(),
            key("host.site.internal").as_bytes()
        );
        assert_eq!(key("ab.c").as_bytes(), b"\x02ab\x01c");
        assert_eq!(key(".").as_bytes(), b"");
    }

    #[test]
    fn below_means_on_a_label_boundary() {
        let apex = key("site.internal");
        assert!(key("a.site.internal").is_at_or_below(apex.as_bytes()));
        assert!(key("site.internal").is_at_or_below(apex.as_bytes()));
        assert!(!key("xsite.internal").is_at_or_below(apex.as_bytes()));
        assert!(!key("internal").is_at_or_below(apex.as_bytes()));
        assert!(key("anything").is_at_or_below(key(".").as_bytes()));
    }

    #[test]
    fn parents_drop_the_first_label() {
        let parent = key("a.b.c").parent().unwrap();
        assert_eq!(parent.as_bytes(), key("b.c").as_bytes());
        assert!(key(".").parent().is_none());
    }
}
