//! Checks a snapshot before the rack serves from it: a region bug or a
//! version mismatch must not make the rack hand out addresses off its subnets.

use edgemetal_protocol::ConfigSnapshot;

/// `Ok` when every range and reservation lies inside its subnet.
pub fn snapshot(snapshot: &ConfigSnapshot) -> Result<(), String> {
    for subnet in &snapshot.subnets {
        for range in &subnet.ranges {
            if !subnet.cidr.contains(range.start)
                || !subnet.cidr.contains(range.end)
                || u32::from(range.start) > u32::from(range.end)
            {
                return Err(format!(
                    "range {}-{} is not inside subnet {} ({})",
                    range.start, range.end, subnet.name, subnet.cidr
                ));
            }
        }
        for reservation in &subnet.reservations {
            if !subnet.cidr.contains(reservation.address) {
                return Err(format!(
                    "reservation {} for {} is not inside subnet {} ({})",
                    reservation.address, reservation.mac, subnet.name, subnet.cidr
                ));
            }
        }
    }
    Ok(())
}
