//! The IPMI LAN power driver and the power executor against a real BMC:
//! OpenIPMI's `ipmi_sim`, checked with `ipmitool` (the reference client).
//!
//! Each test starts its own `ipmi_sim` on a free loopback UDP port, in a
//! temporary directory, with a `chassis_control` script that keeps the power
//! and the boot device in files, so both are real state that `ipmitool`
//! reads back. The simulator is killed when the test ends, however it ends.

use std::net::UdpSocket;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use edgemetal_protocol::{
    BootDevice, PowerAction, PowerDriverKind, PowerFailureKind, PowerParameters, PowerRequest,
    PowerState,
};
use edgemetal_rack::power::ipmi::chassis::BootDeviceSelector;
use edgemetal_rack::power::{
    IpmiLanDriver, IpmiLanOptions, PowerDriver, PowerError, PowerExecutor, PowerExecutorOptions,
};
use edgemetal_tests::bmc::{Bmc, PASSWORD, USER};

const WRONG_PASSWORD: &str = "Wrong-pw-5e21d0-c4";

/// How our driver reaches `bmc`.
fn parameters(bmc: &Bmc, password: &str) -> PowerParameters {
    PowerParameters {
        driver: PowerDriverKind::IpmiLan,
        address: "127.0.0.1".into(),
        port: bmc.port,
        username: USER.into(),
        password: password.into(),
    }
}

fn driver(bmc: &Bmc) -> IpmiLanDriver {
    IpmiLanDriver::new(&parameters(bmc, PASSWORD), options())
}

fn options() -> IpmiLanOptions {
    IpmiLanOptions {
        response_timeout: Duration::from_secs(1),
        attempts: 2,
    }
}

fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn power_on_off_soft_off_and_query_change_the_bmc_state() {
    let bmc = Bmc::start();
    let driver = driver(&bmc);
    assert_eq!(bmc.power_status(), "Chassis Power is off");

    let on = driver.execute(PowerAction::On).expect("power on");
    assert_eq!(on.state, PowerState::On);
    assert_eq!(bmc.power_status(), "Chassis Power is on");
    assert_eq!(
        driver.execute(PowerAction::Query).expect("query").state,
        PowerState::On
    );

    let off = driver.execute(PowerAction::Off).expect("power off");
    assert_eq!(off.state, PowerState::Off);
    assert_eq!(bmc.power_status(), "Chassis Power is off");
    assert_eq!(
        driver.execute(PowerAction::Query).expect("query").state,
        PowerState::Off
    );

    driver.execute(PowerAction::On).expect("power on");
    let soft_off = driver.execute(PowerAction::SoftOff).expect("soft off");
    // The simulated operating system shuts down at once.
    assert_eq!(soft_off.state, PowerState::Off);
    assert_eq!(bmc.power_status(), "Chassis Power is off");
    assert_eq!(
        bmc.chassis_log(),
        ["power 1", "power 0", "power 1", "shutdown 1"]
    );
}

#[test]
fn power_cycle_turns_the_machine_off_then_on_again() {
    let bmc = Bmc::start();
    let driver = driver(&bmc);
    // A machine that is off is powered on, not cycled (BMCs may refuse to
    // cycle a machine that is off).
    let on = driver
        .execute(PowerAction::Cycle)
        .expect("power cycle when off");
    assert_eq!(on.state, PowerState::On);
    assert_eq!(bmc.chassis_log(), ["power 1"]);

    // ipmi_sim powers off at once and on again a second later, so the
    // state read right after the cycle may be either.
    driver.execute(PowerAction::Cycle).expect("power cycle");
    let mut tries = 0;
    while bmc.power_status() != "Chassis Power is on" {
        tries += 1;
        assert!(
            tries < 200,
            "the machine did not come back on after the cycle"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(bmc.chassis_log(), ["power 1", "power 0", "power 1"]);
    assert_eq!(
        driver.execute(PowerAction::Query).expect("query").state,
        PowerState::On
    );
}

#[test]
fn boot_device_is_set_to_pxe_then_disk() {
    let bmc = Bmc::start();
    let driver = driver(&bmc);

    driver
        .execute(PowerAction::SetBootDevice(BootDevice::Pxe))
        .expect("boot from PXE");
    let bootparam = bmc.ipmitool(&["chassis", "bootparam", "get", "5"]);
    assert!(
        bootparam.contains("Boot Device Selector : Force PXE"),
        "{bootparam}"
    );
    assert_eq!(
        driver.boot_flags().expect("read boot flags").device,
        BootDeviceSelector::Pxe
    );

    driver
        .execute(PowerAction::SetBootDevice(BootDevice::Disk))
        .expect("boot from disk");
    let bootparam = bmc.ipmitool(&["chassis", "bootparam", "get", "5"]);
    assert!(
        bootparam.contains("Boot Device Selector : Force Boot from default Hard-Drive"),
        "{bootparam}"
    );
    assert_eq!(
        driver.boot_flags().expect("read boot flags").device,
        BootDeviceSelector::Disk
    );
    assert_eq!(bmc.chassis_log(), ["boot pxe", "boot default"]);
}

#[test]
fn sessions_are_closed_after_each_call() {
    let bmc = Bmc::start();
    let driver = driver(&bmc);
    for _ in 0..5 {
        driver.execute(PowerAction::Query).expect("query");
    }
    driver
        .execute(PowerAction::SetBootDevice(BootDevice::Pxe))
        .expect("boot from PXE");
    // ipmitool's own session is the only one left open.
    let info = bmc.ipmitool(&["session", "info", "active"]);
    let active: Vec<&str> = info
        .lines()
        .filter(|l| l.starts_with("active sessions"))
        .collect();
    assert!(!active.is_empty(), "{info}");
    for line in active {
        assert!(line.trim_end().ends_with(": 1"), "{info}");
    }
}

/// Collects everything logged through `tracing` while it is the default.
#[derive(Clone, Default)]
struct CapturedLogs(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for CapturedLogs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl CapturedLogs {
    fn subscriber(&self) -> impl tracing::Subscriber + Send + Sync {
        let logs = self.clone();
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || logs.clone())
            .finish()
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

#[test]
fn a_wrong_password_is_an_authentication_error_that_never_shows_a_password() {
    let bmc = Bmc::start();
    let logs = CapturedLogs::default();
    let driver = IpmiLanDriver::new(&parameters(&bmc, WRONG_PASSWORD), options());

    let error = tracing::subscriber::with_default(logs.subscriber(), || {
        driver.execute(PowerAction::On).unwrap_err()
    });
    assert!(
        matches!(error, PowerError::Authentication { .. }),
        "{error:?}"
    );

    // The same through the executor, as the link will see it.
    let executor = PowerExecutor::new(PowerExecutorOptions {
        ipmi: options(),
        ..PowerExecutorOptions::default()
    });
    let request = PowerRequest {
        parameters: parameters(&bmc, WRONG_PASSWORD),
        action: PowerAction::On,
    };
    let failure = tracing::subscriber::with_default(logs.subscriber(), || {
        runtime().block_on(executor.execute(request)).unwrap_err()
    });
    assert_eq!(failure.kind, PowerFailureKind::Authentication);

    let logged = logs.text();
    assert!(logged.contains("power action failed"), "{logged}");
    for text in [
        error.to_string(),
        format!("{error:?}"),
        failure.detail.clone(),
        format!("{failure:?}"),
        logged,
    ] {
        assert!(!text.contains(WRONG_PASSWORD), "password in {text}");
        assert!(!text.contains(PASSWORD), "password in {text}");
    }
    // The machine was not touched.
    assert_eq!(bmc.power_status(), "Chassis Power is off");
}

#[test]
fn a_bmc_that_never_answers_is_a_timeout() {
    // A bound socket that never reads: packets arrive and are ignored, as
    // with a hung BMC or a firewall that drops them.
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let driver = IpmiLanDriver::new(
        &PowerParameters {
            driver: PowerDriverKind::IpmiLan,
            address: "127.0.0.1".into(),
            port,
            username: USER.into(),
            password: PASSWORD.into(),
        },
        IpmiLanOptions {
            response_timeout: Duration::from_millis(200),
            attempts: 2,
        },
    );
    let error = driver.execute(PowerAction::Query).unwrap_err();
    assert!(matches!(error, PowerError::Timeout { .. }), "{error:?}");
    assert!(error.to_string().contains("2 attempts"), "{error}");
    drop(silent);
}

#[test]
fn a_port_nobody_listens_on_is_unreachable() {
    // Bound and released: nothing listens there, and the kernel answers with
    // ICMP port unreachable.
    let port = free_udp_port();
    let driver = IpmiLanDriver::new(
        &PowerParameters {
            driver: PowerDriverKind::IpmiLan,
            address: "127.0.0.1".into(),
            port,
            username: USER.into(),
            password: PASSWORD.into(),
        },
        IpmiLanOptions {
            response_timeout: Duration::from_millis(200),
            attempts: 2,
        },
    );
    let error = driver.execute(PowerAction::On).unwrap_err();
    assert!(matches!(error, PowerError::Unreachable { .. }), "{error:?}");
}

#[test]
fn an_unknown_host_name_is_unreachable() {
    let driver = IpmiLanDriver::new(
        &PowerParameters {
            driver: PowerDriverKind::IpmiLan,
            address: "bmc.invalid".into(),
            port: 623,
            username: USER.into(),
            password: PASSWORD.into(),
        },
        options(),
    );
    let error = driver.execute(PowerAction::Query).unwrap_err();
    assert!(matches!(error, PowerError::Unreachable { .. }), "{error:?}");
}

#[test]
fn two_bmcs_are_driven_at_once_through_the_executor() {
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(Bmc::start);
        let b = s.spawn(Bmc::start);
        (a.join().unwrap(), b.join().unwrap())
    });
    let executor = PowerExecutor::new(PowerExecutorOptions {
        ipmi: options(),
        ..PowerExecutorOptions::default()
    });
    let request = |bmc: &Bmc, action| PowerRequest {
        parameters: parameters(bmc, PASSWORD),
        action,
    };

    runtime().block_on(async {
        let (on_a, on_b) = tokio::join!(
            executor.execute(request(&a, PowerAction::On)),
            executor.execute(request(&b, PowerAction::On)),
        );
        assert_eq!(on_a.expect("power on A").state, PowerState::On);
        assert_eq!(on_b.expect("power on B").state, PowerState::On);

        // Several requests to one BMC at once are serialised, and all succeed.
        let (boot, query, off) = tokio::join!(
            executor.execute(request(&a, PowerAction::SetBootDevice(BootDevice::Pxe))),
            executor.execute(request(&a, PowerAction::Query)),
            executor.execute(request(&b, PowerAction::Off)),
        );
        assert_eq!(boot.expect("boot A").state, PowerState::On);
        assert_eq!(query.expect("query A").state, PowerState::On);
        assert_eq!(off.expect("power off B").state, PowerState::Off);
    });

    assert_eq!(a.power_status(), "Chassis Power is on");
    assert_eq!(b.power_status(), "Chassis Power is off");
    let bootparam = a.ipmitool(&["chassis", "bootparam", "get", "5"]);
    assert!(bootparam.contains("Force PXE"), "{bootparam}");
}
