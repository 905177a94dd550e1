//! The commissioning agent's results as it posts them: a tar archive (what
//! busybox can make) of one file per output. Decoding is bounded and strict:
//! regular files with plain names only, so nothing odd reaches the region.

use std::io::Read;

use edgemetal_protocol::ScriptOutput;

/// Largest upload the rack accepts.
pub const MAX_UPLOAD_BYTES: usize = 16 * 1024 * 1024;
/// Most outputs in one upload.
pub const MAX_OUTPUTS: usize = 128;
/// Largest single output.
pub const MAX_OUTPUT_BYTES: u64 = 4 * 1024 * 1024;

/// Why an upload was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ResultsError {
    /// Not a readable tar archive.
    #[error("the body is not a tar archive: {0}")]
    NotTar(String),
    /// An entry's name is not a plain file name.
    #[error("output name {0:?} is not a plain file name")]
    BadName(String),
    /// Too many outputs, or one too large.
    #[error("{0}")]
    TooLarge(String),
    /// No outputs at all.
    #[error("the archive holds no outputs")]
    Empty,
}

/// The outputs in a tar archive, by name (directories are skipped).
pub fn decode(archive: &[u8]) -> Result<Vec<ScriptOutput>, ResultsError> {
    let mut outputs = Vec::new();
    let mut reader = tar::Archive::new(archive);
    let entries = reader
        .entries()
        .map_err(|e| ResultsError::NotTar(e.to_string()))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| ResultsError::NotTar(e.to_string()))?;
        match entry.header().entry_type() {
            tar::EntryType::Regular => {}
            tar::EntryType::Directory => continue,
            other => {
                return Err(ResultsError::BadName(format!(
                    "{} ({other:?})",
                    String::from_utf8_lossy(&entry.path_bytes())
                )))
            }
        }
        let raw = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let name = raw.trim_start_matches("./");
        let plain = !name.is_empty()
            && name.len() <= 64
            && !name.starts_with('.')
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
        if !plain {
            return Err(ResultsError::BadName(raw));
        }
        if entry.size() > MAX_OUTPUT_BYTES {
            return Err(ResultsError::TooLarge(format!(
                "output {name} is {} bytes; the limit is {MAX_OUTPUT_BYTES}",
                entry.size()
            )));
        }
        if outputs.len() == MAX_OUTPUTS {
            return Err(ResultsError::TooLarge(format!(
                "more than {MAX_OUTPUTS} outputs"
            )));
        }
        let mut data = Vec::with_capacity(entry.size() as usize);
        entry
            .read_to_end(&mut data)
            .map_err(|e| ResultsError::NotTar(e.to_string()))?;
        outputs.push(ScriptOutput {
            name: name.to_string(),
            data,
        });
    }
    if outputs.is_empty() {
        return Err(ResultsError::Empty);
    }
    Ok(outputs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn archive(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (name, data) in files {
            let mut header = tar::Header::new_ustar();
            header.set_size(data.len() as u64);
            header.set_mode(0o644);
            header.set_entry_type(tar::EntryType::Regular);
            header.set_cksum();
            builder.append_data(&mut header, name, *data).unwrap();
        }
        builder.into_inner().unwrap()
    }

    #[test]
    fn outputs_come_out_by_plain_name() {
        let bytes = archive(&[("./cpuinfo", b"processor\t: 0\n"), ("block", b"name=vda\n")]);
        let outputs = decode(&bytes).unwrap();
        let names: Vec<&str> = outputs.iter().map(|o| o.name.as_str()).collect();
        assert_eq!(names, ["cpuinfo", "block"]);
        assert_eq!(outputs[0].data, b"processor\t: 0\n");
    }

    #[test]
    fn odd_names_garbage_and_empty_archives_are_refused() {
        assert!(matches!(
            decode(&archive(&[("sub/dir", b"x")])),
            Err(ResultsError::BadName(_))
        ));
        assert!(matches!(
            decode(&archive(&[(".hidden", b"x")])),
            Err(ResultsError::BadName(_))
        ));
        assert!(decode(b"definitely not a tar archive, but long enough to look at").is_err());
        assert_eq!(decode(&[0u8; 1024]), Err(ResultsError::Empty));
    }
}
