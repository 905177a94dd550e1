//! What a network-booting client is told to load, as a data table.
//!
//! Boot happens in stages: the firmware (PXE over TFTP, or UEFI HTTP boot)
//! loads iPXE, and iPXE, which announces itself, loads its per-machine script
//! over HTTP. Each row of [`TABLE`] maps (stage, client architecture) to an
//! answer; supporting a new platform is a new row, not a new branch.
//!
//! The operator's [`BootSettings`] (the subnet's, with the machine's over
//! them) replace a row's file with their loader for its firmware slot, and
//! iPXE's script with their URL (a script's contents are served at the
//! usual script URL instead; see `boot::http`).

use std::net::Ipv4Addr;

use edgemetal_protocol::{
    BootSettings, ClientArch, IpxeScript, LoaderSlot, MacAddress, BOOT_FILES_PREFIX,
};

/// The boot stage a client is in, from its vendor and user classes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Firmware PXE: vendor class `PXEClient...`.
    Pxe,
    /// UEFI HTTP boot: vendor class `HTTPClient...`.
    Http,
    /// iPXE: user class `iPXE` or iPXE's encapsulated option 175.
    Ipxe,
}

/// What a row tells the client to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Load {
    /// Fetch this file over TFTP from the rack (next-server).
    Tftp(&'static str),
    /// Fetch this EFI binary over HTTP from the rack.
    HttpBinary(&'static str),
    /// Fetch the machine's iPXE script over HTTP from the rack.
    IpxeScript,
}

/// One row: clients in `stage` with an option 93 architecture in `arches`
/// (any when `None`) are told to `load`.
#[derive(Debug, Clone, Copy)]
pub struct Row {
    /// The stage.
    pub stage: Stage,
    /// Option 93 client architectures (protocol's [`ClientArch`] table);
    /// `None` matches any, including unknown codes.
    pub arches: Option<&'static [ClientArch]>,
    /// The answer.
    pub load: Load,
}

/// The boot table; the first matching row wins.
///
/// iPXE comes first and matches every architecture: it is already the
/// loader, and sending it another iPXE binary would loop forever.
pub const TABLE: &[Row] = &[
    Row {
        stage: Stage::Ipxe,
        arches: None,
        load: Load::IpxeScript,
    },
    Row {
        stage: Stage::Pxe,
        arches: Some(&[ClientArch::X86Bios]),
        load: Load::Tftp("undionly.kpxe"),
    },
    // snponly.efi drives the NIC the firmware booted from through its own
    // SNP driver, which works on NICs iPXE has no native driver for.
    Row {
        stage: Stage::Pxe,
        arches: Some(&[ClientArch::X86Uefi, ClientArch::X64Uefi, ClientArch::Ebc]),
        load: Load::Tftp("snponly.efi"),
    },
    Row {
        stage: Stage::Pxe,
        arches: Some(&[ClientArch::Arm32Uefi, ClientArch::Arm64Uefi]),
        load: Load::Tftp("ipxe-arm64.efi"),
    },
    Row {
        stage: Stage::Http,
        arches: Some(&[ClientArch::X64UefiHttp]),
        load: Load::HttpBinary("snponly.efi"),
    },
    Row {
        stage: Stage::Http,
        arches: Some(&[ClientArch::Arm64UefiHttp]),
        load: Load::HttpBinary("ipxe-arm64.efi"),
    },
];

/// Where the rack serves EFI binaries over HTTP.
pub const HTTP_BINARY_PATH: &str = "/boot/";
/// Where the rack serves the operator's boot files over HTTP.
pub const HTTP_FILES_PATH: &str = "/files/";
/// Where the rack serves per-machine iPXE scripts over HTTP.
pub const IPXE_SCRIPT_PATH: &str = "/boot/ipxe/";

/// What the client said about itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BootRequest<'a> {
    /// Option 93, first entry.
    pub arch: Option<u16>,
    /// Option 60.
    pub vendor_class: Option<&'a [u8]>,
    /// Option 77 says `iPXE`, or option 175 is present.
    pub ipxe: bool,
}

impl BootRequest<'_> {
    /// The boot stage, or `None` for a client that is not network booting.
    pub fn stage(&self) -> Option<Stage> {
        if self.ipxe {
            return Some(Stage::Ipxe);
        }
        let class = self.vendor_class?;
        if class.starts_with(b"PXEClient") {
            Some(Stage::Pxe)
        } else if class.starts_with(b"HTTPClient") {
            Some(Stage::Http)
        } else {
            None
        }
    }

    /// Whether the client is network booting at all (any stage).
    pub fn is_network_boot(&self) -> bool {
        self.stage().is_some()
    }
}

/// The boot fields of a reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootAnswer {
    /// `siaddr` and option 66: the TFTP server, and iPXE's `${next-server}`
    /// (which operators' scripts use to reach the rack).
    pub next_server: Option<Ipv4Addr>,
    /// Option 67 and the `file` header field: a TFTP path or an HTTP URL.
    pub filename: String,
    /// Option 60 to send back; UEFI HTTP boot ignores offers without it.
    pub vendor_class: Option<&'static str>,
}

/// The HTTP path of a loader: a shipped binary under [`HTTP_BINARY_PATH`],
/// a boot file (`files/…`) under [`HTTP_FILES_PATH`].
fn http_path(file: &str) -> String {
    match file.strip_prefix(BOOT_FILES_PREFIX) {
        Some(path) => format!("{HTTP_FILES_PATH}{path}"),
        None => format!("{HTTP_BINARY_PATH}{file}"),
    }
}

/// The answer for `request` from client `mac`, served by the rack at
/// `rack_ip` (its address on the client's subnet) with HTTP on `http_port`,
/// under the operator's `settings` for the machine. `None` when the client
/// is not network booting or no row fits it.
pub fn decide(
    request: &BootRequest<'_>,
    mac: MacAddress,
    rack_ip: Ipv4Addr,
    http_port: u16,
    settings: &BootSettings,
) -> Option<BootAnswer> {
    let stage = request.stage()?;
    let row = TABLE.iter().find(|row| {
        row.stage == stage
            && match row.arches {
                None => true,
                Some(arches) => request
                    .arch
                    .and_then(ClientArch::from_code)
                    .is_some_and(|arch| arches.contains(&arch)),
            }
    })?;
    let http = |path: String| format!("http://{rack_ip}:{http_port}{path}");
    // Rows with architectures are firmware rows: the operator may name
    // another loader for the slot.
    let loader = |file: &'static str| {
        request
            .arch
            .and_then(ClientArch::from_code)
            .and_then(|arch| settings.loader(LoaderSlot::of(arch)))
            .unwrap_or(file)
    };
    Some(match row.load {
        Load::Tftp(file) => BootAnswer {
            next_server: Some(rack_ip),
            filename: loader(file).to_string(),
            vendor_class: None,
        },
        Load::HttpBinary(file) => BootAnswer {
            next_server: None,
            filename: http(http_path(loader(file))),
            vendor_class: Some("HTTPClient"),
        },
        Load::IpxeScript => BootAnswer {
            next_server: Some(rack_ip),
            filename: match &settings.ipxe {
                Some(IpxeScript::Url(url)) => url.clone(),
                _ => http(format!("{IPXE_SCRIPT_PATH}{mac}.ipxe")),
            },
            vendor_class: None,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAC: MacAddress = MacAddress([0x52, 0x54, 0, 0x12, 0x34, 0x56]);
    const RACK: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);

    fn answer(arch: Option<u16>, class: Option<&str>, ipxe: bool) -> Option<BootAnswer> {
        let request = BootRequest {
            arch,
            vendor_class: class.map(str::as_bytes),
            ipxe,
        };
        decide(&request, MAC, RACK, 8080, &BootSettings::default())
    }

    fn tftp(file: &str) -> Option<BootAnswer> {
        Some(BootAnswer {
            next_server: Some(RACK),
            filename: file.into(),
            vendor_class: None,
        })
    }

    const PXE: Option<&str> = Some("PXEClient:Arch:00000:UNDI:002001");

    #[test]
    fn bios_pxe_chainloads_undionly_over_tftp() {
        assert_eq!(answer(Some(0), PXE, false), tftp("undionly.kpxe"));
    }

    #[test]
    fn x64_uefi_pxe_chainloads_snponly_over_tftp() {
        for arch in [6, 7, 9] {
            assert_eq!(
                answer(Some(arch), PXE, false),
                tftp("snponly.efi"),
                "{arch}"
            );
        }
    }

    #[test]
    fn arm_uefi_pxe_chainloads_the_arm64_build_over_tftp() {
        for arch in [10, 11] {
            assert_eq!(
                answer(Some(arch), PXE, false),
                tftp("ipxe-arm64.efi"),
                "{arch}"
            );
        }
    }

    #[test]
    fn x64_uefi_http_gets_the_binary_url_and_the_class_echoed() {
        let expected = BootAnswer {
            next_server: None,
            filename: "http://10.0.0.2:8080/boot/snponly.efi".into(),
            vendor_class: Some("HTTPClient"),
        };
        assert_eq!(
            answer(Some(16), Some("HTTPClient:Arch:00016"), false),
            Some(expected)
        );
    }

    #[test]
    fn arm64_uefi_http_gets_the_arm64_binary_url() {
        let got = answer(Some(19), Some("HTTPClient"), false).unwrap();
        assert_eq!(got.filename, "http://10.0.0.2:8080/boot/ipxe-arm64.efi");
        assert_eq!(got.vendor_class, Some("HTTPClient"));
    }

    #[test]
    fn ipxe_gets_its_script_whatever_the_architecture() {
        let script = "http://10.0.0.2:8080/boot/ipxe/52:54:00:12:34:56.ipxe";
        for arch in [None, Some(0), Some(7), Some(11), Some(16)] {
            let got = answer(arch, PXE, true).unwrap();
            assert_eq!(got.filename, script);
            assert_eq!(got.next_server, Some(RACK), "the script's ${{next-server}}");
        }
    }

    #[test]
    fn non_booting_and_unmatched_clients_get_nothing() {
        assert_eq!(answer(None, None, false), None, "a plain DHCP client");
        assert_eq!(answer(Some(7), Some("MSFT 5.0"), false), None);
        assert_eq!(answer(None, PXE, false), None, "PXE without option 93");
        assert_eq!(answer(Some(16), PXE, false), None, "HTTP arch over PXE");
        assert_eq!(answer(Some(7), Some("HTTPClient"), false), None);
        assert_eq!(answer(Some(42), PXE, false), None);
    }

    #[test]
    fn every_row_is_reachable() {
        for (index, row) in TABLE.iter().enumerate() {
            let arch = row.arches.map(|arches| arches[0].code());
            let request = BootRequest {
                arch,
                vendor_class: Some(match row.stage {
                    Stage::Http => b"HTTPClient".as_slice(),
                    _ => b"PXEClient".as_slice(),
                }),
                ipxe: row.stage == Stage::Ipxe,
            };
            let first = TABLE.iter().position(|r| {
                r.stage == row.stage
                    && (r.arches.is_none()
                        || arch.is_some_and(|a| {
                            r.arches.unwrap().iter().any(|known| known.code() == a)
                        }))
            });
            assert_eq!(first, Some(index), "row {index} is shadowed");
            assert!(decide(&request, MAC, RACK, 80, &BootSettings::default()).is_some());
        }
    }

    #[test]
    fn tftp_rows_take_pxe_codes_and_http_rows_take_http_boot_codes() {
        for row in TABLE {
            for arch in row.arches.unwrap_or_default() {
                match row.stage {
                    Stage::Pxe => assert!(!arch.over_http(), "{arch:?} in a PXE row"),
                    Stage::Http => assert!(arch.over_http(), "{arch:?} in an HTTP row"),
                    Stage::Ipxe => {}
                }
            }
        }
    }

    fn with(settings: &BootSettings, arch: u16, class: &str, ipxe: bool) -> BootAnswer {
        let request = BootRequest {
            arch: Some(arch),
            vendor_class: Some(class.as_bytes()),
            ipxe,
        };
        decide(&request, MAC, RACK, 8080, settings).unwrap()
    }

    #[test]
    fn the_operators_loaders_replace_the_built_in_ones_slot_by_slot() {
        let settings = BootSettings {
            ipxe: None,
            loaders: vec![
                edgemetal_protocol::Loader {
                    slot: LoaderSlot::UefiX64,
                    file: "ipxe.efi".into(),
                },
                edgemetal_protocol::Loader {
                    slot: LoaderSlot::UefiX64Http,
                    file: "files/site/shim.efi".into(),
                },
            ],
        };
        assert_eq!(with(&settings, 7, "PXEClient", false).filename, "ipxe.efi");
        assert_eq!(with(&settings, 9, "PXEClient", false).filename, "ipxe.efi");
        assert_eq!(
            with(&settings, 16, "HTTPClient", false).filename,
            "http://10.0.0.2:8080/files/site/shim.efi"
        );
        // Slots the operator left alone keep the table's answer.
        assert_eq!(
            with(&settings, 0, "PXEClient", false).filename,
            "undionly.kpxe"
        );
        // iPXE itself is never sent a loader again.
        assert!(with(&settings, 7, "PXEClient", true)
            .filename
            .ends_with(".ipxe"));
    }

    #[test]
    fn an_operators_script_url_is_where_ipxe_goes_and_contents_keep_the_rack_url() {
        let url = BootSettings {
            ipxe: Some(IpxeScript::Url("https://boot.example/site.ipxe".into())),
            loaders: vec![],
        };
        assert_eq!(
            with(&url, 0, "PXEClient", true).filename,
            "https://boot.example/site.ipxe"
        );
        // Firmware still loads iPXE first.
        assert_eq!(with(&url, 0, "PXEClient", false).filename, "undionly.kpxe");
        let contents = BootSettings {
            ipxe: Some(IpxeScript::Contents("#!ipxe\nshell\n".into())),
            loaders: vec![],
        };
        assert_eq!(
            with(&contents, 0, "PXEClient", true).filename,
            "http://10.0.0.2:8080/boot/ipxe/52:54:00:12:34:56.ipxe"
        );
    }
}
