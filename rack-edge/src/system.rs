//! What the rack can see of its host: interfaces, addresses, host name.

use edgemetal_protocol::{InterfaceAddress, InterfaceInfo, MacAddress};

/// The host's interfaces with their addresses and hardware addresses.
pub fn interfaces() -> Vec<InterfaceInfo> {
    let mut result: Vec<InterfaceInfo> = Vec::new();
    let Ok(addresses) = if_addrs::get_if_addrs() else {
        return result;
    };
    for interface in addresses {
        let (address, prefix_len) = match &interface.addr {
            if_addrs::IfAddr::V4(v4) => (v4.ip.into(), u32::from(v4.netmask).count_ones() as u8),
            if_addrs::IfAddr::V6(v6) => (v6.ip.into(), u128::from(v6.netmask).count_ones() as u8),
        };
        let entry = match result.iter_mut().find(|i| i.name == interface.name) {
            Some(entry) => entry,
            None => {
                result.push(InterfaceInfo {
                    mac: hardware_address(&interface.name),
                    name: interface.name.clone(),
                    addresses: Vec::new(),
                });
                result.last_mut().expect("just pushed")
            }
        };
        entry.addresses.push(InterfaceAddress {
            address,
            prefix_len,
        });
    }
    result
}

fn hardware_address(name: &str) -> Option<MacAddress> {
    let text = std::fs::read_to_string(format!("/sys/class/net/{name}/address")).ok()?;
    let mac: MacAddress = text.trim().parse().ok()?;
    (mac.0 != [0; 6]).then_some(mac)
}

/// The host name, or `rack` when it cannot be read.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_string())
        .ok()
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "rack".to_string())
}
