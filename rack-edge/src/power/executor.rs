//! The async front of power control: [`PowerExecutor`] turns a
//! [`PowerRequest`] into a [`PowerOutcome`].
//!
//! Drivers block on network I/O, so the executor runs them on tokio's
//! blocking pool, never on a runtime worker. Commands to one BMC are
//! serialised: a BMC has few session slots and some answer a second
//! concurrent session with errors or stalls, and two actions racing on one
//! machine (on and off) have no meaningful order anyway. Different BMCs run
//! in parallel. Every request is bounded by [`PowerExecutorOptions::request_timeout`],
//! waiting for the BMC's turn included.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use edgemetal_protocol::{PowerDriverKind, PowerOutcome, PowerParameters, PowerRequest};
use tracing::{info, warn, Instrument};

use super::{BmcEndpoint, IpmiLanDriver, IpmiLanOptions, PowerDriver, PowerError};

/// Options of the [`PowerExecutor`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PowerExecutorOptions {
    /// Timeouts and retries of the IPMI LAN driver.
    pub ipmi: IpmiLanOptions,
    /// The bound on one whole request: waiting for the BMC's turn, the
    /// session, the action and the read-back. It should exceed the driver's
    /// own worst case (attempts × a few answers × response timeout), so that
    /// a dead BMC is reported by the driver's more precise error.
    pub request_timeout: Duration,
}

impl Default for PowerExecutorOptions {
    fn default() -> Self {
        Self {
            ipmi: IpmiLanOptions::default(),
            request_timeout: Duration::from_secs(60),
        }
    }
}

/// Builds the driver for one BMC. The default chooses by
/// [`PowerDriverKind`]; tests and new drivers can supply their own.
pub type DriverFactory =
    dyn Fn(&PowerParameters) -> Result<Box<dyn PowerDriver>, PowerError> + Send + Sync;

/// Runs power requests; cheap to clone (clones share the per-BMC locks).
#[derive(Clone)]
pub struct PowerExecutor {
    factory: Arc<DriverFactory>,
    locks: Arc<BmcLocks>,
    request_timeout: Duration,
}

impl std::fmt::Debug for PowerExecutor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PowerExecutor")
            .field("request_timeout", &self.request_timeout)
            .finish_non_exhaustive()
    }
}

impl PowerExecutor {
    /// An executor with the drivers of this rack: IPMI LAN.
    pub fn new(options: PowerExecutorOptions) -> Self {
        let ipmi = options.ipmi;
        Self::with_factory(
            options.request_timeout,
            Arc::new(move |parameters: &PowerParameters| {
                let driver: Box<dyn PowerDriver> = match parameters.driver {
                    PowerDriverKind::IpmiLan => Box::new(IpmiLanDriver::new(parameters, ipmi)),
                };
                Ok(driver)
            }),
        )
    }

    /// An executor whose drivers come from `factory`, each request bounded
    /// by `request_timeout`.
    pub fn with_factory(request_timeout: Duration, factory: Arc<DriverFactory>) -> Self {
        Self {
            factory,
            locks: Arc::new(BmcLocks::default()),
            request_timeout,
        }
    }

    /// Carries out `request` and reports the power state read back from the
    /// BMC, or why it failed. Never panics and never blocks the runtime.
    ///
    /// When the bound expires while the driver is still waiting on the BMC,
    /// the driver's thread runs on to its own timeout, and the BMC stays
    /// locked until then: the next request to it waits rather than overlap.
    pub async fn execute(&self, request: PowerRequest) -> PowerOutcome {
        let bmc = BmcEndpoint::of(&request.parameters);
        let action = request.action;
        let span = tracing::info_span!(
            "power",
            bmc = %bmc,
            user = %request.parameters.username,
            ?action
        );
        let run = self.run(bmc.clone(), request);
        let result = match tokio::time::timeout(self.request_timeout, run)
            .instrument(span.clone())
            .await
        {
            Ok(result) => result,
            Err(_) => Err(PowerError::Timeout {
                bmc,
                detail: format!(
                    "the request did not finish within {:?}",
                    self.request_timeout
                ),
            }),
        };
        span.in_scope(|| match &result {
            Ok(observation) => info!(state = ?observation.state, "power action done"),
            Err(error) => warn!(kind = ?error.kind(), %error, "power action failed"),
        });
        result.map_err(Into::into)
    }

    async fn run(
        &self,
        bmc: BmcEndpoint,
        request: PowerRequest,
    ) -> Result<edgemetal_protocol::PowerObservation, PowerError> {
        let turn = self.locks.lock_for(&bmc).lock_owned().await;
        let factory = Arc::clone(&self.factory);
        let span = tracing::Span::current();
        let job = tokio::task::spawn_blocking(move || {
            let _entered = span.enter();
            // Held until the driver returns, even if the caller gave up.
            let _turn = turn;
            let driver = factory(&request.parameters)?;
            driver.execute(request.action)
        });
        match job.await {
            Ok(result) => result,
            Err(join) => Err(PowerError::Other {
                bmc,
                detail: if join.is_panic() {
                    "the power driver failed unexpectedly (panic)".to_owned()
                } else {
                    "the power driver was cancelled".to_owned()
                },
            }),
        }
    }
}

/// One async mutex per BMC, created on first use and dropped when no
/// request holds or waits for it, so the map does not grow with every BMC
/// the rack has ever seen.
#[derive(Default)]
struct BmcLocks {
    locks: Mutex<HashMap<BmcEndpoint, Weak<tokio::sync::Mutex<()>>>>,
}

impl BmcLocks {
    fn lock_for(&self, bmc: &BmcEndpoint) -> Arc<tokio::sync::Mutex<()>> {
        // A poisoned map only means another thread panicked between two
        // lines below; the map itself is still consistent.
        let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(lock) = locks.get(bmc).and_then(Weak::upgrade) {
            return lock;
        }
        locks.retain(|_, lock| lock.strong_count() > 0);
        let lock = Arc::new(tokio::sync::Mutex::new(()));
        locks.insert(bmc.clone(), Arc::downgrade(&lock));
        lock
    }

    /// How many BMCs have a request running or waiting.
    #[cfg(test)]
    fn busy(&self) -> usize {
        let locks = self.locks.lock().unwrap();
        locks
            .values()
            .filter(|lock| lock.strong_count() > 0)
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use edgemetal_protocol::{PowerAction, PowerFailureKind, PowerObservation, PowerState};
    use std::sync::mpsc;

    fn request(address: &str, action: PowerAction) -> PowerRequest {
        PowerRequest {
            parameters: PowerParameters {
                driver: PowerDriverKind::IpmiLan,
                address: address.into(),
                port: 623,
                username: "admin".into(),
                password: "pw".into(),
            },
            action,
        }
    }

    /// A driver that reports when it starts and then waits for a go-ahead
    /// on a channel, so tests can see which calls overlap without timing.
    struct GatedDriver {
        name: String,
        started: mpsc::Sender<String>,
        go: Arc<Mutex<mpsc::Receiver<()>>>,
    }

    impl PowerDriver for GatedDriver {
        fn execute(&self, _: PowerAction) -> Result<PowerObservation, PowerError> {
            self.started.send(self.name.clone()).unwrap();
            self.go.lock().unwrap().recv().unwrap();
            Ok(PowerObservation {
                state: PowerState::On,
            })
        }
    }

    fn gated_executor() -> (PowerExecutor, mpsc::Receiver<String>, mpsc::Sender<()>) {
        let (started_tx, started_rx) = mpsc::channel();
        let (go_tx, go_rx) = mpsc::channel();
        let go = Arc::new(Mutex::new(go_rx));
        let started_tx = Mutex::new(started_tx);
        let executor = PowerExecutor::with_factory(
            Duration::from_secs(300),
            Arc::new(move |p: &PowerParameters| {
                Ok(Box::new(GatedDriver {
                    name: p.address.clone(),
                    started: started_tx.lock().unwrap().clone(),
                    go: Arc::clone(&go),
                }) as Box<dyn PowerDriver>)
            }),
        );
        (executor, started_rx, go_tx)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn different_bmcs_run_at_once() {
        let (executor, started, go) = gated_executor();
        let a = tokio::spawn({
            let e = executor.clone();
            async move { e.execute(request("bmc-a", PowerAction::On)).await }
        });
        let b = tokio::spawn({
            let e = executor.clone();
            async move { e.execute(request("bmc-b", PowerAction::On)).await }
        });
        // Both drivers start before either is let go: they overlap.
        let mut names = tokio::task::spawn_blocking(move || {
            vec![started.recv().unwrap(), started.recv().unwrap()]
        })
        .await
        .unwrap();
        names.sort();
        assert_eq!(names, ["bmc-a", "bmc-b"]);
        go.send(()).unwrap();
        go.send(()).unwrap();
        assert!(a.await.unwrap().is_ok());
        assert!(b.await.unwrap().is_ok());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_bmc_runs_one_request_at_a_time() {
        let (executor, started, go) = gated_executor();
        let first = tokio::spawn({
            let e = executor.clone();
            async move { e.execute(request("bmc-a", PowerAction::On)).await }
        });
        let (started, first_name) = tokio::task::spawn_blocking(move || {
            let name = started.recv().unwrap();
            (started, name)
        })
        .await
        .unwrap();
        assert_eq!(first_name, "bmc-a");

        let second = tokio::spawn({
            let e = executor.clone();
            async move { e.execute(request("BMC-A ", PowerAction::Off)).await }
        });
        // Until the first is let go, the second must not start. Yield to
        // let it run as far as it can, then check it has not started.
        for _ in 0..100 {
            tokio::task::yield_now().await;
        }
        assert!(
            started.try_recv().is_err(),
            "second request overlapped the first"
        );

        go.send(()).unwrap();
        assert!(first.await.unwrap().is_ok());
        let started = tokio::task::spawn_blocking(move || started.recv().unwrap())
            .await
            .unwrap();
        assert_eq!(started, "BMC-A ");
        go.send(()).unwrap();
        assert!(second.await.unwrap().is_ok());
        assert_eq!(executor.locks.busy(), 0, "idle BMC locks are released");
    }

    #[tokio::test]
    async fn the_request_bound_yields_a_timeout() {
        let (_release, hold) = mpsc::channel::<()>();
        let hold = Arc::new(Mutex::new(hold));
        struct Stuck(Arc<Mutex<mpsc::Receiver<()>>>);
        impl PowerDriver for Stuck {
            fn execute(&self, _: PowerAction) -> Result<PowerObservation, PowerError> {
                // Returns when the test ends and the sender is dropped.
                let _ = self.0.lock().unwrap().recv();
                Ok(PowerObservation {
                    state: PowerState::Off,
                })
            }
        }
        let executor = PowerExecutor::with_factory(
            Duration::from_millis(50),
            Arc::new(move |_: &PowerParameters| {
                Ok(Box::new(Stuck(Arc::clone(&hold))) as Box<dyn PowerDriver>)
            }),
        );
        let failure = executor
            .execute(request("bmc-a", PowerAction::Query))
            .await
            .unwrap_err();
        assert_eq!(failure.kind, PowerFailureKind::Timeout);
        assert!(failure.detail.contains("bmc-a:623"), "{}", failure.detail);
    }

    #[tokio::test]
    async fn a_panicking_driver_is_an_other_failure() {
        struct Panics;
        impl PowerDriver for Panics {
            fn execute(&self, _: PowerAction) -> Result<PowerObservation, PowerError> {
                panic!("driver bug")
            }
        }
        let executor = PowerExecutor::with_factory(
            Duration::from_secs(10),
            Arc::new(|_: &PowerParameters| Ok(Box::new(Panics) as Box<dyn PowerDriver>)),
        );
        let failure = executor
            .execute(request("bmc-a", PowerAction::On))
            .await
            .unwrap_err();
        assert_eq!(failure.kind, PowerFailureKind::Other);
    }
}
