//! Turning a requested file name into a path that cannot leave the served
//! root, before any file system is consulted.
//!
//! The rules, and why:
//! - A leading `/` is stripped: every name is relative to the root, as with
//!   tftpd-hpa's `--secure`, so an absolute name such as `/etc/passwd` means
//!   `<root>/etc/passwd` and can never name a file outside the root.
//! - `\` is a separator, like `/`: Windows-style boot clients ask for
//!   `boot\x64\wdsnbp.com`, and treating it as a separator means a
//!   `..\..\etc` trick meets the same `..` check as `../../etc`.
//! - Empty and `.` components are dropped; `..` removes the previous
//!   component and is refused when there is none to remove (an escape).
//!   The result has no `..` left, so the OS never resolves one for us.
//! - NUL and other control bytes, non-UTF-8 names and absurd lengths are
//!   refused: no boot client sends them, and they only serve tricks.
//!
//! Symlinks are the file source's concern ([`super::source::DirSource`]
//! canonicalises and checks the prefix), since only it sees the disk.

use std::path::PathBuf;

/// Longest accepted name, in bytes (the longest Linux path is 4096; boot
/// file names are far shorter).
pub const MAX_PATH_LEN: usize = 1024;

/// A requested name, normalised: relative, `/`-separated, no empty, `.` or
/// `..` components, at least one component, printable UTF-8 only.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NormalisedPath(String);

/// Why a requested name was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// Nothing left after normalisation (e.g. `""` or `/./`).
    #[error("empty file name")]
    Empty,
    /// A NUL byte in the name.
    #[error("NUL byte in file name")]
    Nul,
    /// A control byte other than NUL.
    #[error("control character in file name")]
    ControlCharacter,
    /// Not valid UTF-8.
    #[error("file name is not UTF-8")]
    NotUtf8,
    /// Longer than [`MAX_PATH_LEN`].
    #[error("file name too long")]
    TooLong,
    /// A `..` that would climb above the root.
    #[error("file name escapes the root")]
    Escape,
}

impl NormalisedPath {
    /// Normalises a name as sent by a client (see the module docs).
    pub fn parse(raw: &[u8]) -> Result<Self, PathError> {
        if raw.len() > MAX_PATH_LEN {
            return Err(PathError::TooLong);
        }
        if raw.contains(&0) {
            return Err(PathError::Nul);
        }
        if raw.iter().any(|b| b.is_ascii_control()) {
            return Err(PathError::ControlCharacter);
        }
        let text = std::str::from_utf8(raw).map_err(|_| PathError::NotUtf8)?;
        let mut components: Vec<&str> = Vec::new();
        for component in text.split(['/', '\\']) {
            match component {
                "" | "." => {}
                ".." => {
                    components.pop().ok_or(PathError::Escape)?;
                }
                name => components.push(name),
            }
        }
        if components.is_empty() {
            return Err(PathError::Empty);
        }
        Ok(NormalisedPath(components.join("/")))
    }

    /// The normalised name, e.g. `pxelinux.cfg/01-52-54-00-12-34-56`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The components, outermost first.
    pub fn components(&self) -> impl Iterator<Item = &str> {
        self.0.split('/')
    }

    /// As a relative file system path, to join onto a root.
    pub fn to_relative_path(&self) -> PathBuf {
        self.components().collect()
    }
}

impl std::fmt::Display for NormalisedPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(raw: &str) -> Result<String, PathError> {
        NormalisedPath::parse(raw.as_bytes()).map(|p| p.as_str().to_string())
    }

    #[test]
    fn ordinary_names_are_kept() {
        assert_eq!(norm("pxelinux.0").unwrap(), "pxelinux.0");
        assert_eq!(
            norm("pxelinux.cfg/01-52-54-00-12-34-56").unwrap(),
            "pxelinux.cfg/01-52-54-00-12-34-56"
        );
        assert_eq!(
            norm("grub/grub.cfg-52:54:00:12:34:56").unwrap(),
            "grub/grub.cfg-52:54:00:12:34:56"
        );
    }

    #[test]
    fn leading_slashes_dots_and_doubled_separators_are_dropped() {
        assert_eq!(norm("/pxelinux.0").unwrap(), "pxelinux.0");
        assert_eq!(norm("//a/./b//c").unwrap(), "a/b/c");
        assert_eq!(norm("/etc/passwd").unwrap(), "etc/passwd");
    }

    #[test]
    fn backslashes_are_separators() {
        assert_eq!(
            norm("\\boot\\x64\\wdsnbp.com").unwrap(),
            "boot/x64/wdsnbp.com"
        );
    }

    #[test]
    fn dot_dot_inside_the_root_resolves_lexically() {
        assert_eq!(norm("a/b/../c").unwrap(), "a/c");
    }

    #[test]
    fn escapes_are_refused() {
        for raw in [
            "..",
            "../etc/passwd",
            "../../etc/passwd",
            "/../etc/passwd",
            "a/../../etc/passwd",
            "..\\..\\etc\\passwd",
            "a\\..\\..\\x",
            "./..",
        ] {
            assert_eq!(norm(raw), Err(PathError::Escape), "{raw}");
        }
    }

    #[test]
    fn hostile_bytes_are_refused() {
        assert_eq!(NormalisedPath::parse(b"a\0b"), Err(PathError::Nul));
        assert_eq!(
            NormalisedPath::parse(b"a\nb"),
            Err(PathError::ControlCharacter)
        );
        assert_eq!(NormalisedPath::parse(b"a\xffb"), Err(PathError::NotUtf8));
        assert_eq!(
            NormalisedPath::parse(&[b'a'; MAX_PATH_LEN + 1]),
            Err(PathError::TooLong)
        );
        assert_eq!(norm(""), Err(PathError::Empty));
        assert_eq!(norm("/./"), Err(PathError::Empty));
    }

    #[test]
    fn the_relative_path_has_no_root_or_parent() {
        let path = NormalisedPath::parse(b"/a/../b/c").unwrap();
        let relative = path.to_relative_path();
        assert!(relative.is_relative());
        assert_eq!(relative, PathBuf::from("b/c"));
    }
}
