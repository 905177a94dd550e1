//! The rack's own clock: the host's clock plus a correction the NTP
//! discipline steers. The rack usually shares its host (and in tests, the
//! test machine) with other software, so it never steps or slews the real
//! system clock: it serves this corrected clock instead.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use ntp_proto::{NtpClock, NtpDuration, NtpLeapIndicator, NtpTimestamp};

/// Seconds from the NTP era (1900) to the Unix epoch (1970).
const UNIX_TO_NTP: u64 = 2_208_988_800;

/// Where the uncorrected time comes from: the host's clock, or a fake one in tests.
pub type TimeSource = Arc<dyn Fn() -> NtpTimestamp + Send + Sync>;

/// The host's real-time clock as an NTP timestamp.
pub fn host_now() -> NtpTimestamp {
    let since_unix = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    // NTP timestamps wrap every 136 years (era 1 starts in 2036): truncating is the encoding.
    let seconds = (since_unix.as_secs() + UNIX_TO_NTP) as u32;
    NtpTimestamp::from_seconds_nanos_since_ntp_era(seconds, since_unix.subsec_nanos())
}

/// A clock the discipline may step and re-rate freely: `host + offset +
/// frequency × (host − anchor)`. Clones share one state.
#[derive(Clone)]
pub struct RackClock {
    source: TimeSource,
    state: Arc<Mutex<Correction>>,
}

#[derive(Debug, Clone, Copy)]
struct Correction {
    /// Seconds added to the host's time, as of `anchor`.
    offset: f64,
    /// Rate error corrected since `anchor` (1e-6 is one ppm fast).
    frequency: f64,
    /// Host time at which `offset` was last brought up to date.
    anchor: NtpTimestamp,
}

impl RackClock {
    /// A clock over the host's real-time clock, uncorrected at first.
    pub fn system() -> RackClock {
        RackClock::with_source(Arc::new(host_now))
    }

    /// A clock over `source`.
    pub fn with_source(source: TimeSource) -> RackClock {
        let anchor = source();
        RackClock {
            source,
            state: Arc::new(Mutex::new(Correction {
                offset: 0.0,
                frequency: 0.0,
                anchor,
            })),
        }
    }

    /// The correction applied to the host's clock now, in seconds.
    pub fn correction(&self) -> f64 {
        self.correction_at((self.source)())
    }

    fn correction_at(&self, host: NtpTimestamp) -> f64 {
        let state = *self.lock();
        state.offset + (host - state.anchor).to_seconds() * state.frequency
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Correction> {
        // The state is two floats and a timestamp, consistent after any panic.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Folds the frequency correction accumulated since the anchor into the
    /// offset, so the frequency can change from `host` on.
    fn rebase(state: &mut Correction, host: NtpTimestamp) {
        state.offset += (host - state.anchor).to_seconds() * state.frequency;
        state.anchor = host;
    }
}

impl std::fmt::Debug for RackClock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RackClock")
            .field("correction", &*self.lock())
            .finish()
    }
}

impl NtpClock for RackClock {
    type Error = std::convert::Infallible;

    fn now(&self) -> Result<NtpTimestamp, Self::Error> {
        let host = (self.source)();
        Ok(host + NtpDuration::from_seconds(self.correction_at(host)))
    }

    fn set_frequency(&self, freq: f64) -> Result<NtpTimestamp, Self::Error> {
        let host = (self.source)();
        let mut state = self.lock();
        RackClock::rebase(&mut state, host);
        state.frequency = freq;
        Ok(host + NtpDuration::from_seconds(state.offset))
    }

    fn get_frequency(&self) -> Result<f64, Self::Error> {
        Ok(self.lock().frequency)
    }

    fn step_clock(&self, offset: NtpDuration) -> Result<NtpTimestamp, Self::Error> {
        let host = (self.source)();
        let mut state = self.lock();
        RackClock::rebase(&mut state, host);
        state.offset += offset.to_seconds();
        Ok(host + NtpDuration::from_seconds(state.offset))
    }

    fn disable_ntp_algorithm(&self) -> Result<(), Self::Error> {
        // No kernel discipline runs on this clock.
        Ok(())
    }

    fn error_estimate_update(
        &self,
        _est_error: NtpDuration,
        _max_error: NtpDuration,
    ) -> Result<(), Self::Error> {
        // The server reads error bounds from the system snapshot instead.
        Ok(())
    }

    fn status_update(&self, _leap_status: NtpLeapIndicator) -> Result<(), Self::Error> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    /// A host clock that reads whole seconds from a shared counter.
    fn fake() -> (RackClock, Arc<AtomicU32>) {
        let seconds = Arc::new(AtomicU32::new(1_000));
        let read = seconds.clone();
        let clock = RackClock::with_source(Arc::new(move || {
            NtpTimestamp::from_seconds_nanos_since_ntp_era(read.load(Ordering::SeqCst), 0)
        }));
        (clock, seconds)
    }

    fn at(seconds: u32) -> NtpTimestamp {
        NtpTimestamp::from_seconds_nanos_since_ntp_era(seconds, 0)
    }

    fn close(a: NtpTimestamp, b: NtpTimestamp) -> bool {
        (a - b).abs().to_seconds() < 1e-6
    }

    #[test]
    fn uncorrected_it_reads_the_host_clock() {
        let (clock, _) = fake();
        assert!(close(clock.now().unwrap(), at(1_000)));
    }

    #[test]
    fn a_step_moves_only_the_rack_clock() {
        let (clock, host) = fake();
        clock.step_clock(NtpDuration::from_seconds(2.5)).unwrap();
        host.store(1_010, Ordering::SeqCst);
        let now = clock.now().unwrap();
        assert!(close(now, at(1_012) + NtpDuration::from_seconds(0.5)));
        assert!((clock.correction() - 2.5).abs() < 1e-6);
    }

    #[test]
    fn a_frequency_correction_accumulates_from_the_moment_it_is_set() {
        let (clock, host) = fake();
        host.store(1_100, Ordering::SeqCst);
        clock.set_frequency(1e-3).unwrap();
        assert_eq!(clock.get_frequency().unwrap(), 1e-3);
        host.store(1_200, Ordering::SeqCst);
        // 100 s at 1000 ppm: 0.1 s ahead; nothing for the 100 s before.
        assert!((clock.correction() - 0.1).abs() < 1e-6);
        clock.set_frequency(0.0).unwrap();
        host.store(1_300, Ordering::SeqCst);
        assert!((clock.correction() - 0.1).abs() < 1e-6);
    }
}
