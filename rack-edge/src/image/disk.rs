//! The rack image's disk layout, read from an image file or a disk: an MBR
//! partition table whose FAT partitions are told apart by their volume
//! labels (`EMSYS_A`, `EMSYS_B`, `EMCONFIG`), and the config partition's
//! files, changed in memory with `fatfs` and written back in one piece.

use std::fs::File;
use std::io::{Cursor, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::ImageError;

/// The volume label of the config partition.
pub const CONFIG_LABEL: &str = "EMCONFIG";

/// The volume label of the first system partition.
pub const SYSTEM_A_LABEL: &str = "EMSYS_A";

const SECTOR: u64 = 512;

/// A larger "config partition" is not ours; it also bounds what is read into memory.
const MAX_CONFIG_BYTES: u64 = 64 * 1024 * 1024;

/// One primary partition of the MBR.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition {
    /// 1 to 4.
    pub number: u8,
    /// The MBR type byte.
    pub kind: u8,
    /// Whether the bootable ("active") flag is set.
    pub bootable: bool,
    /// Offset from the start of the disk, in bytes.
    pub start: u64,
    /// Length in bytes.
    pub len: u64,
    /// The FAT volume label, when the partition holds a FAT file system.
    pub fat_label: Option<String>,
}

/// An edgemetal rack image (or a disk it was written to), open for reading
/// and writing its config partition.
pub struct RackDisk {
    path: PathBuf,
    file: File,
    partitions: Vec<Partition>,
}

/// Stamps files with the FAT epoch (1980-01-01 00:00): fatfs without
/// chrono would write an invalid date (month 0), and a fixed time keeps
/// configured images comparable byte for byte.
#[derive(Debug)]
struct FatEpoch;

impl fatfs::TimeProvider for FatEpoch {
    fn get_current_date(&self) -> fatfs::Date {
        fatfs::Date {
            year: 1980,
            month: 1,
            day: 1,
        }
    }

    fn get_current_date_time(&self) -> fatfs::DateTime {
        fatfs::DateTime {
            date: self.get_current_date(),
            time: fatfs::Time {
                hour: 0,
                min: 0,
                sec: 0,
                millis: 0,
            },
        }
    }
}

fn fs_options() -> fatfs::FsOptions {
    fatfs::FsOptions::new().time_provider(&FatEpoch)
}

fn io_error(path: &Path, source: std::io::Error) -> ImageError {
    ImageError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The label a FAT boot sector names (FAT12/16 or FAT32 layout), if any.
fn fat_label(boot: &[u8; 512]) -> Option<String> {
    if boot[510..512] != [0x55, 0xAA] {
        return None;
    }
    let bytes_per_sector = u16::from_le_bytes([boot[11], boot[12]]);
    if !matches!(bytes_per_sector, 512 | 1024 | 2048 | 4096) {
        return None;
    }
    let root_entries = u16::from_le_bytes([boot[17], boot[18]]);
    let fat16_size = u16::from_le_bytes([boot[22], boot[23]]);
    // FAT32 has neither a fixed root directory nor a 16-bit FAT size.
    let (signature, label) = if root_entries == 0 && fat16_size == 0 {
        (boot[66], &boot[71..82])
    } else {
        (boot[38], &boot[43..54])
    };
    (signature == 0x29).then(|| String::from_utf8_lossy(label).trim_end().to_string())
}

impl RackDisk {
    /// Opens `path` and reads its partition table; fails unless it has the
    /// rack image's config partition.
    pub fn open(path: &Path, write: bool) -> Result<RackDisk, ImageError> {
        let mut file = File::options()
            .read(true)
            .write(write)
            .open(path)
            .map_err(|e| io_error(path, e))?;
        let not_image = |why: &str| ImageError::NotAnImage {
            path: path.to_path_buf(),
            why: why.to_string(),
        };
        let mut mbr = [0u8; 512];
        file.read_exact(&mut mbr)
            .map_err(|_| not_image("it is smaller than one sector"))?;
        if mbr[510..512] != [0x55, 0xAA] {
            return Err(not_image("it has no MBR partition table"));
        }
        let mut partitions = Vec::new();
        for number in 1..=4u8 {
            let entry = &mbr[446 + 16 * usize::from(number - 1)..][..16];
            let kind = entry[4];
            let first = u32::from_le_bytes([entry[8], entry[9], entry[10], entry[11]]);
            let sectors = u32::from_le_bytes([entry[12], entry[13], entry[14], entry[15]]);
            if kind == 0xEE {
                return Err(not_image(
                    "it is a GPT disk (the rack image uses an MBR partition table)",
                ));
            }
            if kind == 0 || sectors == 0 {
                continue;
            }
            let start = u64::from(first) * SECTOR;
            let mut boot = [0u8; 512];
            let label = file
                .seek(SeekFrom::Start(start))
                .and_then(|_| file.read_exact(&mut boot))
                .ok()
                .and_then(|_| fat_label(&boot));
            partitions.push(Partition {
                number,
                kind,
                bootable: entry[0] == 0x80,
                start,
                len: u64::from(sectors) * SECTOR,
                fat_label: label,
            });
        }
        let disk = RackDisk {
            path: path.to_path_buf(),
            file,
            partitions,
        };
        if disk.partition(CONFIG_LABEL).is_none() {
            return Err(not_image(&format!("no partition labelled {CONFIG_LABEL}")));
        }
        Ok(disk)
    }

    /// The primary partitions, in table order.
    pub fn partitions(&self) -> &[Partition] {
        &self.partitions
    }

    /// The FAT partition labelled `label`.
    pub fn partition(&self, label: &str) -> Option<&Partition> {
        self.partitions
            .iter()
            .find(|p| p.fat_label.as_deref() == Some(label))
    }

    fn config_partition(&self) -> Result<Partition, ImageError> {
        let partition = self
            .partition(CONFIG_LABEL)
            .cloned()
            .expect("checked when opened");
        if partition.len > MAX_CONFIG_BYTES {
            return Err(ImageError::NotAnImage {
                path: self.path.clone(),
                why: format!("its {CONFIG_LABEL} partition is larger than 64 MiB"),
            });
        }
        Ok(partition)
    }

    fn read_config_bytes(&mut self) -> Result<(Partition, Vec<u8>), ImageError> {
        let partition = self.config_partition()?;
        let mut bytes = vec![0u8; partition.len as usize];
        self.file
            .seek(SeekFrom::Start(partition.start))
            .and_then(|_| self.file.read_exact(&mut bytes))
            .map_err(|e| io_error(&self.path, e))?;
        Ok((partition, bytes))
    }

    /// The contents of `name` in the config partition's root, if present.
    pub fn read_config_file(&mut self, name: &str) -> Result<Option<Vec<u8>>, ImageError> {
        let (_, bytes) = self.read_config_bytes()?;
        let fs = fatfs::FileSystem::new(Cursor::new(bytes), fs_options())
            .map_err(|e| self.fat_error(e))?;
        let root = fs.root_dir();
        let exists = root
            .iter()
            .filter_map(Result::ok)
            .any(|entry| entry.is_file() && entry.file_name().eq_ignore_ascii_case(name));
        if !exists {
            return Ok(None);
        }
        let mut contents = Vec::new();
        root.open_file(name)
            .and_then(|mut file| file.read_to_end(&mut contents))
            .map_err(|e| self.fat_error(e))?;
        Ok(Some(contents))
    }

    /// Replaces files in the config partition's root: `Some(bytes)` writes
    /// the file, `None` removes it. The partition is changed in memory and
    /// written back in one write, then synced.
    pub fn write_config_files(
        &mut self,
        files: &[(&str, Option<&[u8]>)],
    ) -> Result<(), ImageError> {
        let (partition, bytes) = self.read_config_bytes()?;
        let mut cursor = Cursor::new(bytes);
        {
            let fs =
                fatfs::FileSystem::new(&mut cursor, fs_options()).map_err(|e| self.fat_error(e))?;
            let root = fs.root_dir();
            for (name, contents) in files {
                let exists = root
                    .iter()
                    .filter_map(Result::ok)
                    .any(|entry| entry.is_file() && entry.file_name().eq_ignore_ascii_case(name));
                let result = match contents {
                    Some(contents) => root.create_file(name).and_then(|mut file| {
                        file.truncate()?;
                        file.write_all(contents)?;
                        file.flush()
                    }),
                    None if exists => root.remove(name),
                    None => Ok(()),
                };
                result.map_err(|e| self.fat_error(e))?;
            }
            drop(root);
            fs.unmount().map_err(|e| self.fat_error(e))?;
        }
        let bytes = cursor.into_inner();
        self.file
            .seek(SeekFrom::Start(partition.start))
            .and_then(|_| self.file.write_all(&bytes))
            .and_then(|_| self.file.sync_all())
            .map_err(|e| io_error(&self.path, e))
    }

    fn fat_error(&self, source: std::io::Error) -> ImageError {
        ImageError::ConfigPartition {
            path: self.path.clone(),
            source,
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A small disk image laid out like the rack image: an MBR with a
    /// system partition and a config partition, both FAT.
    pub(crate) fn fake_image(dir: &Path) -> PathBuf {
        let path = dir.join("rack.img");
        let mib = 1024 * 1024;
        let mut disk = vec![0u8; 6 * mib];
        let parts = [
            (2048u32, 4096u32, *b"EMSYS_A    "),
            (6144, 4096, *b"EMCONFIG   "),
        ];
        for (index, (start, sectors, label)) in parts.iter().enumerate() {
            let entry = &mut disk[446 + 16 * index..][..16];
            entry[0] = if index == 0 { 0x80 } else { 0 };
            entry[4] = 0x0e;
            entry[8..12].copy_from_slice(&start.to_le_bytes());
            entry[12..16].copy_from_slice(&sectors.to_le_bytes());
            let begin = *start as usize * 512;
            let end = begin + *sectors as usize * 512;
            fatfs::format_volume(
                Cursor::new(&mut disk[begin..end]),
                fatfs::FormatVolumeOptions::new().volume_label(*label),
            )
            .unwrap();
        }
        disk[510] = 0x55;
        disk[511] = 0xAA;
        std::fs::write(&path, disk).unwrap();
        path
    }

    #[test]
    fn finds_the_partitions_by_label() {
        let dir = tempfile::tempdir().unwrap();
        let path = fake_image(dir.path());
        let disk = RackDisk::open(&path, false).unwrap();
        let labels: Vec<_> = disk
            .partitions()
            .iter()
            .map(|p| (p.number, p.fat_label.clone().unwrap(), p.bootable))
            .collect();
        assert_eq!(
            labels,
            vec![(1, "EMSYS_A".into(), true), (2, "EMCONFIG".into(), false)]
        );
        assert_eq!(disk.partition(CONFIG_LABEL).unwrap().start, 6144 * 512);
    }

    #[test]
    fn writes_replaces_and_removes_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = fake_image(dir.path());
        let mut disk = RackDisk::open(&path, true).unwrap();
        assert_eq!(disk.read_config_file("site.conf").unwrap(), None);
        disk.write_config_files(&[("site.conf", Some(b"a=1\n")), ("region-ca.pem", Some(b"x"))])
            .unwrap();
        disk.write_config_files(&[("site.conf", Some(b"b=2\n")), ("region-ca.pem", None)])
            .unwrap();
        let mut disk = RackDisk::open(&path, false).unwrap();
        assert_eq!(
            disk.read_config_file("site.conf").unwrap().unwrap(),
            b"b=2\n"
        );
        assert_eq!(disk.read_config_file("region-ca.pem").unwrap(), None);
        // The system partition is untouched.
        let image = std::fs::read(&path).unwrap();
        let system = &image[2048 * 512..6144 * 512];
        let mut fresh = vec![0u8; system.len()];
        fatfs::format_volume(
            Cursor::new(&mut fresh[..]),
            fatfs::FormatVolumeOptions::new().volume_label(*b"EMSYS_A    "),
        )
        .unwrap();
        assert!(system == &fresh[..]);
    }

    #[test]
    fn refuses_what_is_not_a_rack_image() {
        let dir = tempfile::tempdir().unwrap();
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (vec![0u8; 100], "smaller than one sector"),
            (vec![0u8; 4096], "no MBR partition table"),
            (
                {
                    let mut disk = vec![0u8; 4096];
                    disk[446 + 4] = 0xEE;
                    disk[446 + 12] = 1;
                    disk[510] = 0x55;
                    disk[511] = 0xAA;
                    disk
                },
                "GPT",
            ),
            (
                {
                    let mut disk = vec![0u8; 4096];
                    disk[510] = 0x55;
                    disk[511] = 0xAA;
                    disk
                },
                "no partition labelled EMCONFIG",
            ),
        ];
        for (bytes, expected) in cases {
            let path = dir.path().join("other.img");
            std::fs::write(&path, bytes).unwrap();
            let error = RackDisk::open(&path, false).err().unwrap().to_string();
            assert!(error.contains(expected), "{error}");
            assert!(error.contains("not an edgemetal rack image"), "{error}");
        }
        let error = RackDisk::open(&dir.path().join("missing.img"), false)
            .err()
            .unwrap()
            .to_string();
        assert!(error.contains("missing.img"), "{error}");
    }
}
