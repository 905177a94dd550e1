//! Tests of the inventory parser, with realistic and hostile outputs.

use super::*;

fn outputs(files: &[(&str, &[u8])]) -> BTreeMap<String, Vec<u8>> {
    files
        .iter()
        .map(|(name, bytes)| (name.to_string(), bytes.to_vec()))
        .collect()
}

const QEMU_CPUINFO: &str = "\
processor\t: 0
vendor_id\t: GenuineIntel
cpu family\t: 6
model\t\t: 6
model name\t: QEMU Virtual CPU version 2.5+
stepping\t: 3
microcode\t: 0x1
cpu MHz\t\t: 2394.454
cache size\t: 16384 KB
physical id\t: 0
siblings\t: 1
core id\t\t: 0
cpu cores\t: 1
fpu\t\t: yes
flags\t\t: fpu de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 clflush mmx fxsr sse sse2
bogomips\t: 4788.90
address sizes\t: 40 bits physical, 48 bits virtual
power management:

processor\t: 1
vendor_id\t: GenuineIntel
model name\t: QEMU Virtual CPU version 2.5+
flags\t\t: fpu de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 clflush mmx fxsr sse sse2
bogomips\t: 4788.90
power management:

";

const QEMU_MEMINFO: &str = "\
MemTotal:         483240 kB
MemFree:          401332 kB
MemAvailable:     421876 kB
Buffers:               0 kB
";

// /proc/iomem of `qemu-system-x86_64 -m 512` (i440FX, SeaBIOS), read as root.
const QEMU_IOMEM: &str = "\
00000000-00000fff : Reserved
00001000-0009fbff : System RAM
0009fc00-0009ffff : Reserved
000a0000-000bffff : PCI Bus 0000:00
000c0000-000c95ff : Video ROM
000f0000-000fffff : Reserved
  000f0000-000fffff : System ROM
00100000-1ffdffff : System RAM
  01000000-01c02a36 : Kernel code
  01e00000-0224dfff : Kernel rodata
  02400000-0262d4ff : Kernel data
  0000f000-0000ffff : System RAM
1ffe0000-1fffffff : Reserved
20000000-febfffff : PCI Bus 0000:00
  fd000000-fdffffff : 0000:00:02.0
feffc000-feffffff : Reserved
fffc0000-ffffffff : Reserved
";

const QEMU_DMI: &str = "\
sys_vendor=QEMU
product_name=Standard PC (i440FX + PIIX, 1996)
product_version=pc-i440fx-8.2
product_serial=
product_uuid=6f1c2a3e-8d4b-4e5f-9a0b-1c2d3e4f5a6b
board_vendor=
board_name=
bios_vendor=SeaBIOS
bios_version=1.16.3-debian-1.16.3-2
bios_date=04/01/2014
chassis_type=1
";

fn qemu_x86() -> BTreeMap<String, Vec<u8>> {
    outputs(&[
        ("cpuinfo", QEMU_CPUINFO.as_bytes()),
        ("meminfo", QEMU_MEMINFO.as_bytes()),
        ("iomem", QEMU_IOMEM.as_bytes()),
        ("firmware", b"bios\n"),
        (
            "block",
            b"name=vda\tsize_bytes=2147483648\tserial=EDGEDISK01\tmodel=\trotational=1\tremovable=0\n",
        ),
        (
            "net",
            b"name=lo\tmac=00:00:00:00:00:00\toperstate=unknown\tcarrier=1\tspeed=\tdriver=\n\
              name=eth0\tmac=52:54:00:12:34:56\toperstate=up\tcarrier=1\tspeed=1000\tdriver=e1000\n",
        ),
        ("dmi", QEMU_DMI.as_bytes()),
        ("uname", b"Linux edge 6.6.0 #1 SMP x86_64 GNU/Linux\n"),
    ])
}

#[test]
fn qemu_x86_machine() {
    let inv = parse(&qemu_x86());
    assert_eq!(inv.problems, Vec::<String>::new());
    assert_eq!(
        inv.cpu_model.as_deref(),
        Some("QEMU Virtual CPU version 2.5+")
    );
    assert_eq!(inv.cpu_count, 2);
    // -m 512: iomem, not MemTotal (471 MiB), and the indented ranges are not counted.
    assert!((511..=513).contains(&inv.memory_mib), "{}", inv.memory_mib);
    assert_eq!(inv.firmware.as_deref(), Some("bios"));
    assert_eq!(inv.storage_bytes, 2 << 30);
    assert_eq!(
        inv.disks,
        vec![Disk {
            name: "vda".into(),
            size_bytes: 2 << 30,
            serial: Some("EDGEDISK01".into()),
            model: None,
            rotational: Some(true),
            removable: Some(false),
        }]
    );
    let names: Vec<&str> = inv.nics.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(names, ["eth0", "lo"]);
    assert_eq!(
        inv.nics[0],
        Nic {
            name: "eth0".into(),
            mac: Some("52:54:00:12:34:56".into()),
            link_up: true,
            speed_mbps: Some(1000),
            driver: Some("e1000".into()),
        }
    );
    assert_eq!(inv.nics[1].speed_mbps, None);
    assert_eq!(inv.nics[1].driver, None);
    assert_eq!(
        inv.system,
        SystemInfo {
            vendor: Some("QEMU".into()),
            product: Some("Standard PC (i440FX + PIIX, 1996)".into()),
            serial: None,
            uuid: Some("6f1c2a3e-8d4b-4e5f-9a0b-1c2d3e4f5a6b".into()),
            bios_vendor: Some("SeaBIOS".into()),
            bios_version: Some("1.16.3-debian-1.16.3-2".into()),
        }
    );
}

#[test]
fn iomem_counts_only_top_level_system_ram() {
    let bytes = iomem_ram_bytes(QEMU_IOMEM);
    assert_eq!(bytes, (0x9fbff - 0x1000 + 1) + (0x1ffdffff - 0x100000 + 1));
}

#[test]
fn serde_round_trip() {
    let inv = parse(&qemu_x86());
    let json = serde_json::to_string(&inv).unwrap();
    assert_eq!(serde_json::from_str::<Inventory>(&json).unwrap(), inv);
    // Missing fields default, so older stored inventories still load.
    let sparse: Inventory = serde_json::from_str(r#"{"cpu_count":4}"#).unwrap();
    assert_eq!(sparse.cpu_count, 4);
    assert_eq!(sparse.memory_mib, 0);
}

#[test]
fn arm64_cpuinfo() {
    let core = "processor\t: {n}\nBogoMIPS\t: 125.00\nFeatures\t: fp asimd evtstrm crc32 cpuid\n\
                CPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x0\n\
                CPU part\t: 0xd08\nCPU revision\t: 3\n\n";
    let text: String = (0..4)
        .map(|n| core.replace("{n}", &n.to_string()))
        .collect();
    let inv = parse(&outputs(&[("cpuinfo", text.as_bytes())]));
    assert_eq!(inv.cpu_model.as_deref(), Some("ARM Cortex-A72"));
    assert_eq!(inv.cpu_count, 4);

    let other = "processor\t: 0\nCPU implementer\t: 0xc0\nCPU part\t: 0xac3\n";
    let inv = parse(&outputs(&[("cpuinfo", other.as_bytes())]));
    assert_eq!(inv.cpu_model.as_deref(), Some("Ampere-1"));

    let unknown = "processor\t: 0\nCPU implementer\t: 0x00\nCPU part\t: 0x051\n";
    let inv = parse(&outputs(&[("cpuinfo", unknown.as_bytes())]));
    assert_eq!(
        inv.cpu_model.as_deref(),
        Some("implementer 0x00 part 0x051")
    );

    let hardware = "processor\t: 0\nHardware\t: BCM2835\n";
    let inv = parse(&outputs(&[("cpuinfo", hardware.as_bytes())]));
    assert_eq!(inv.cpu_model.as_deref(), Some("BCM2835"));
    assert_eq!(inv.cpu_count, 1);
}

#[test]
fn cpu_model_whitespace_is_collapsed() {
    let text = "processor\t: 0\nmodel name\t: Intel(R) Xeon(R) CPU           E5-2620 0 @ 2.00GHz\n";
    let inv = parse(&outputs(&[("cpuinfo", text.as_bytes())]));
    assert_eq!(
        inv.cpu_model.as_deref(),
        Some("Intel(R) Xeon(R) CPU E5-2620 0 @ 2.00GHz")
    );
}

#[test]
fn missing_files() {
    let inv = parse(&BTreeMap::new());
    assert_eq!(inv.cpu_model, None);
    assert_eq!(inv.cpu_count, 0);
    assert_eq!(inv.memory_mib, 0);
    assert_eq!(inv.firmware, None);
    assert_eq!(inv.storage_bytes, 0);
    assert!(inv.disks.is_empty() && inv.nics.is_empty());
    assert_eq!(inv.system, SystemInfo::default());
    for expected in [
        "no cpuinfo output",
        "no firmware output",
        "no block output",
        "no net output",
        "no dmi output",
    ] {
        assert!(
            inv.problems.iter().any(|p| p == expected),
            "{expected}: {:?}",
            inv.problems
        );
    }
    assert!(inv
        .problems
        .iter()
        .any(|p| p.contains("memory size unknown")));

    // Only cpuinfo missing: the rest is still read.
    let mut files = qemu_x86();
    files.remove("cpuinfo");
    let inv = parse(&files);
    assert_eq!(inv.problems, ["no cpuinfo output"]);
    assert_eq!(inv.disks.len(), 1);
}

#[test]
fn iomem_zeroed_for_non_root_falls_back_to_meminfo() {
    let zeros = "00000000-00000000 : Reserved\n00000000-00000000 : System RAM\n\
                 00000000-00000000 : System RAM\n  00000000-00000000 : Kernel code\n";
    let files = outputs(&[
        ("iomem", zeros.as_bytes()),
        ("meminfo", b"MemTotal:        1014512 kB\nMemFree: 1 kB\n"),
    ]);
    let inv = parse(&files);
    assert_eq!(inv.memory_mib, 991); // 1014512 kB / 1024, rounded
    assert!(inv.problems.iter().any(|p| p.contains("iomem")));

    // No iomem at all: meminfo.
    let inv = parse(&outputs(&[("meminfo", QEMU_MEMINFO.as_bytes())]));
    assert_eq!(inv.memory_mib, 472);
    assert!(inv.problems.iter().any(|p| p == "no iomem output"));
    assert!(!inv
        .problems
        .iter()
        .any(|p| p.contains("memory size unknown")));

    let inv = parse(&outputs(&[("meminfo", b"MemTotal: lots\n")]));
    assert_eq!(inv.memory_mib, 0);
    assert!(inv
        .problems
        .iter()
        .any(|p| p.contains("memory size unknown")));
}

#[test]
fn firmware_values() {
    let fw = |text: &[u8]| parse(&outputs(&[("firmware", text)]));
    assert_eq!(fw(b"uefi\n").firmware.as_deref(), Some("uefi"));
    assert_eq!(fw(b" UEFI ").firmware.as_deref(), Some("uefi"));
    let odd = fw(b"coreboot\n");
    assert_eq!(odd.firmware, None);
    assert!(odd.problems.iter().any(|p| p.contains("coreboot")));
}

#[test]
fn block_with_empty_values_and_bad_lines() {
    let block = "name=vdb\tsize_bytes=1073741824\tserial=\tmodel=\trotational=\tremovable=\n\
                 name=sda\tsize_bytes=500107862016\tserial=WD-WCC4N1234567\tmodel=WDC WD5000AAKX-00ERMA0\trotational=1\tremovable=0\tvendor=ATA\n\
                 \n\
                 name=\tsize_bytes=1\n\
                 size_bytes=2\n\
                 name=sr0\tsize_bytes=\n\
                 name=vdc\tsize_bytes=12x\n\
                 name=nvme0n1\tsize_bytes=-5\n\
                 name=vdb\tsize_bytes=99\n";
    let inv = parse(&outputs(&[("block", block.as_bytes())]));
    let names: Vec<&str> = inv.disks.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(names, ["sda", "vdb"]);
    let sda = &inv.disks[0];
    assert_eq!(sda.model.as_deref(), Some("WDC WD5000AAKX-00ERMA0"));
    assert_eq!(sda.serial.as_deref(), Some("WD-WCC4N1234567"));
    assert_eq!((sda.rotational, sda.removable), (Some(true), Some(false)));
    let vdb = &inv.disks[1];
    assert_eq!(vdb.size_bytes, 1 << 30);
    assert_eq!((&vdb.serial, &vdb.model), (&None, &None));
    assert_eq!((vdb.rotational, vdb.removable), (None, None));
    assert_eq!(inv.storage_bytes, 500107862016 + (1 << 30));
    let block_notes = inv.problems.iter().filter(|p| {
        p.contains("block line without a name")
            || p.contains("unparsable size")
            || p.contains("twice")
    });
    assert_eq!(block_notes.count(), 6, "{:?}", inv.problems);
}

#[test]
fn net_with_empty_values() {
    let net =
        "name=eth1\tmac=52:54:00:AB:CD:EF\toperstate=down\tcarrier=\tspeed=-1\tdriver=virtio_net\n\
               name=eth0\tmac=\toperstate=up\tcarrier=\tspeed=\tdriver=\n\
               name=eth2\tmac=not-a-mac\toperstate=up\tcarrier=0\tspeed=10000\tdriver=ixgbe\n\
               name=eth3\tmac=0-1b-21-a-b-c\n\
               mac=52:54:00:00:00:01\n";
    let inv = parse(&outputs(&[("net", net.as_bytes())]));
    let [eth0, eth1, eth2, eth3] = inv.nics.as_slice() else {
        panic!("{:?}", inv.nics);
    };
    assert_eq!(eth0.name, "eth0");
    assert_eq!(eth0.mac, None);
    assert!(eth0.link_up, "operstate up counts when carrier is empty");
    assert_eq!((eth0.speed_mbps, &eth0.driver), (None, &None));
    assert_eq!(eth1.mac.as_deref(), Some("52:54:00:ab:cd:ef"));
    assert!(!eth1.link_up);
    assert_eq!(eth1.speed_mbps, None);
    assert_eq!(eth1.driver.as_deref(), Some("virtio_net"));
    assert_eq!(eth2.mac, None);
    assert!(!eth2.link_up, "carrier 0 wins over operstate");
    assert_eq!(eth2.speed_mbps, Some(10000));
    assert_eq!(eth3.mac.as_deref(), Some("00:1b:21:0a:0b:0c"));
    assert!(!eth3.link_up);
    assert!(inv.problems.iter().any(|p| p.contains("eth2: invalid MAC")));
    assert!(inv
        .problems
        .iter()
        .any(|p| p.contains("net line without a name")));
}

#[test]
fn mac_normalisation() {
    assert_eq!(
        normalise_mac("AA-BB-CC-DD-EE-FF").as_deref(),
        Some("aa:bb:cc:dd:ee:ff")
    );
    for bad in [
        "",
        "52:54:00:12:34",
        "52:54:00:12:34:56:78",
        "52:54:00:12:34:5g",
        "+2:54:00:12:34:56",
        "52::00:12:34:56",
    ] {
        assert_eq!(normalise_mac(bad), None, "{bad}");
    }
}

/// A small deterministic generator: tests must not depend on a rand crate.
fn garbage(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed;
    (0..len)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 33) as u8
        })
        .collect()
}

fn assert_bounded(inv: &Inventory) {
    let strings = inv
        .disks
        .iter()
        .flat_map(|d| [Some(&d.name), d.serial.as_ref(), d.model.as_ref()]);
    let strings = strings.chain(
        inv.nics
            .iter()
            .flat_map(|n| [Some(&n.name), n.mac.as_ref(), n.driver.as_ref()]),
    );
    let s = &inv.system;
    let strings = strings.chain(
        [
            &s.vendor,
            &s.product,
            &s.serial,
            &s.uuid,
            &s.bios_vendor,
            &s.bios_version,
        ]
        .map(Option::as_ref),
    );
    for value in strings
        .chain([inv.cpu_model.as_ref(), inv.firmware.as_ref()])
        .flatten()
    {
        assert!(value.chars().count() <= MAX_STRING_CHARS);
    }
    assert!(inv.problems.len() <= MAX_PROBLEMS + 1);
    assert!(
        inv.problems.iter().all(|p| p.chars().count() < 400),
        "{:?}",
        inv.problems
    );
    assert!(inv.disks.len() <= MAX_DEVICES && inv.nics.len() <= MAX_DEVICES);
}

#[test]
fn garbage_bytes_do_not_panic() {
    let names = [
        "cpuinfo", "meminfo", "iomem", "firmware", "block", "net", "dmi",
    ];
    for seed in 0..20 {
        let files: BTreeMap<String, Vec<u8>> = names
            .iter()
            .enumerate()
            .map(|(i, name)| (name.to_string(), garbage(seed * 7 + i as u64, 5000)))
            .collect();
        assert_bounded(&parse(&files));
    }
    // Garbage mixed into the real formats: the separators are there, the values are not.
    let mut mixed = b"name=".to_vec();
    mixed.extend(garbage(1, 300));
    mixed.extend(b"\tsize_bytes=1\tmodel=\xff\xfe\x00Q\n");
    mixed.extend(b"name=\xc3\x28\tsize_bytes=18446744073709551615\n");
    mixed.extend(b"name=x\tsize_bytes=18446744073709551615\n");
    let iomem = b"0-ffffffffffffffff : System RAM\nffffffffffffffff-0 : System RAM\nzz-1 : System RAM\n-: \n";
    let inv = parse(&outputs(&[
        ("block", &mixed),
        ("iomem", iomem),
        ("dmi", b"sys_vendor=\xff\xff\x07ACME\n"),
    ]));
    assert_bounded(&inv);
    assert_eq!(inv.storage_bytes, u64::MAX, "sizes saturate");
    assert_eq!(
        inv.disks.iter().find(|d| d.name == "x").unwrap().size_bytes,
        u64::MAX
    );
    assert!(inv.memory_mib > 0);
    assert_eq!(inv.system.vendor.as_deref(), Some("\u{fffd}\u{fffd}ACME"));
}

#[test]
fn huge_inputs_are_bounded() {
    // One enormous line with no newline in every output.
    let line = vec![b'a'; 3 << 20];
    let mut huge_value = b"name=".to_vec();
    huge_value.extend(&line);
    let files = outputs(&[
        ("cpuinfo", &[b"model name: ".as_slice(), &line].concat()),
        ("meminfo", &line),
        ("iomem", &line),
        ("firmware", &line),
        (
            "block",
            &[huge_value.as_slice(), b"\tsize_bytes=1"].concat(),
        ),
        ("net", &huge_value),
        ("dmi", &[b"product_name=".as_slice(), &line].concat()),
    ]);
    let inv = parse(&files);
    assert_bounded(&inv);
    assert_eq!(inv.disks[0].name.len(), MAX_STRING_CHARS);
    assert_eq!(
        inv.system.product.as_ref().map(String::len),
        Some(MAX_STRING_CHARS)
    );

    // Too many devices, each with a long model.
    let model = "M".repeat(1000);
    let block: String = (0..2000)
        .map(|i| format!("name=d{i:04}\tsize_bytes=1\tmodel={model}\n"))
        .collect();
    let net: String = (0..1500).map(|i| format!("name=n{i}\n")).collect();
    let inv = parse(&outputs(&[
        ("block", block.as_bytes()),
        ("net", net.as_bytes()),
    ]));
    assert_bounded(&inv);
    assert_eq!(inv.disks.len(), MAX_DEVICES);
    assert_eq!(inv.nics.len(), MAX_DEVICES);
    assert_eq!(inv.storage_bytes, MAX_DEVICES as u64);
    assert_eq!(
        inv.disks[0].model.as_ref().map(String::len),
        Some(MAX_STRING_CHARS)
    );
    assert!(inv.problems.iter().any(|p| p.contains("over 1024")));

    // Millions of bad lines: problems are capped, with a count of the rest.
    let bad = "no name here\n".repeat(100_000);
    let inv = parse(&outputs(&[("block", bad.as_bytes())]));
    assert_eq!(inv.problems.len(), MAX_PROBLEMS + 1);
    assert!(inv
        .problems
        .last()
        .unwrap()
        .contains("more problems not listed"));

    // Oversized output: only the head is read, and that is noted.
    let big = "processor\t: 0\n".repeat(400_000);
    let inv = parse(&outputs(&[("cpuinfo", big.as_bytes())]));
    assert_eq!(
        inv.cpu_count as usize,
        MAX_OUTPUT_BYTES / "processor\t: 0\n".len()
    );
    assert!(inv.problems.iter().any(|p| p.contains("only the first")));
}
