//! Periodic power checks: every machine with BMC settings is queried once
//! per interval, each at its own offset within it (derived from its id), so
//! that a site's BMCs are not all asked in the same second.

use std::collections::HashMap;
use std::time::Duration;

use super::PowerService;

/// Where in each interval a machine's check falls: a stable offset from its id.
fn offset(machine_id: &str, interval: Duration) -> Duration {
    let hash = machine_id
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325u64, |hash, byte| {
            (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
        });
    let millis = interval.as_millis().max(1) as u64;
    Duration::from_millis(hash % millis)
}

/// Checks every machine's power once per `interval`, forever.
pub async fn run(service: PowerService, interval: Duration) {
    let mut ticker = tokio::time::interval(Duration::from_secs(1).min(interval));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let started = tokio::time::Instant::now();
    let mut next_due: HashMap<String, tokio::time::Instant> = HashMap::new();
    loop {
        let now = ticker.tick().await;
        let machines = match service.store.machines_with_power().await {
            Ok(machines) => machines,
            Err(error) => {
                tracing::warn!(%error, "cannot list machines to poll");
                continue;
            }
        };
        next_due.retain(|machine, _| machines.contains(machine));
        for machine in machines {
            let due = next_due
                .entry(machine.clone())
                .or_insert_with(|| started + offset(&machine, interval));
            if *due > now {
                continue;
            }
            *due += interval;
            let service = service.clone();
            tokio::spawn(async move {
                if let Err(error) = service.check(&machine).await {
                    tracing::debug!(%machine, %error, "power check failed");
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_spread_machines_over_the_interval() {
        let interval = Duration::from_secs(60);
        let offsets: std::collections::BTreeSet<u64> = (0..100)
            .map(|n| offset(&format!("machine-{n}"), interval).as_secs())
            .collect();
        assert!(offsets.iter().all(|s| *s < 60));
        assert!(offsets.len() > 30, "{}", offsets.len());
    }
}
