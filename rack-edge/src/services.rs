//! One way to run the rack's services.
//!
//! Every service is started the same way: its adapter binds what it needs
//! (a failure there is the caller's to handle: fatal for most, reported
//! health for the ones the rack serves without), then its serving future,
//! which returns `anyhow::Result<()>` when it stops, goes into one
//! [`Services`] task set. [`Services::run`] waits on the set: the rack ends
//! when an essential task (the region link) ends, with the failure as
//! context; when any other service stops, the rack keeps serving the rest,
//! logs why and marks the service down in the [`Hub`] (as the region sees
//! it), as it always did.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use anyhow::Context;
use edgemetal_protocol::{HealthState, ServiceKind};
use tokio::task::{Id, JoinSet};

use crate::hub::Hub;

/// What the rack does when a task stops.
#[derive(Debug, Clone, Copy)]
enum Role {
    /// The rack ends with it.
    Essential,
    /// The rack serves on without it; its health goes down if it has one.
    Degradable(Option<ServiceKind>),
}

/// The rack's running services: one task set.
pub struct Services {
    hub: Arc<Hub>,
    tasks: JoinSet<anyhow::Result<()>>,
    names: HashMap<Id, (&'static str, Role)>,
}

impl Services {
    /// An empty set whose services report to `hub`.
    pub fn new(hub: Arc<Hub>) -> Services {
        Services {
            hub,
            tasks: JoinSet::new(),
            names: HashMap::new(),
        }
    }

    /// Starts a service the rack can serve without: when it stops, its
    /// error is logged and `kind` (when the region knows the service) is
    /// marked down; the other services keep running.
    pub fn spawn(
        &mut self,
        name: &'static str,
        kind: Option<ServiceKind>,
        service: impl Future<Output = anyhow::Result<()>> + Send + 'static,
    ) {
        let id = self.tasks.spawn(service).id();
        self.names.insert(id, (name, Role::Degradable(kind)));
    }

    /// Starts a task the rack cannot run without: when it ends, so does
    /// [`Services::run`], with its error (if any) as the rack's.
    pub fn spawn_essential(
        &mut self,
        name: &'static str,
        task: impl Future<Output = anyhow::Result<()>> + Send + 'static,
    ) {
        let id = self.tasks.spawn(task).id();
        self.names.insert(id, (name, Role::Essential));
    }

    /// Runs until an essential task ends or `shutdown` completes; dropping
    /// the set on return stops every service.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                Some(joined) = self.tasks.join_next_with_id() => {
                    let (id, outcome) = match joined {
                        Ok((id, result)) => (id, result),
                        Err(error) => (error.id(), Err(anyhow::anyhow!("{error}"))),
                    };
                    let (name, role) = self.names.remove(&id).unwrap_or(("a service", Role::Degradable(None)));
                    if let Some(end) = self.stopped(name, role, outcome) {
                        return end;
                    }
                }
                () = &mut shutdown => {
                    tracing::info!("shutting down");
                    return Ok(());
                }
            }
        }
    }

    /// Handles one stopped task; `Some` ends the rack with it.
    fn stopped(
        &self,
        name: &'static str,
        role: Role,
        outcome: anyhow::Result<()>,
    ) -> Option<anyhow::Result<()>> {
        match (role, outcome) {
            (Role::Essential, outcome) => Some(outcome.with_context(|| format!("{name} stopped"))),
            (Role::Degradable(_), Ok(())) => {
                tracing::info!(service = name, "{name} stopped");
                None
            }
            (Role::Degradable(kind), Err(error)) => {
                let detail = format!("{error:#}");
                tracing::error!(error = %detail, "{name} stopped");
                if let Some(kind) = kind {
                    self.hub.set_health(kind, HealthState::Down, detail);
                }
                None
            }
        }
    }
}

/// A TCP listener for one of the rack's HTTP servers (boot, metadata,
/// status) that turns Nagle's algorithm off on every accepted connection.
/// With it on, a small keep-alive response waits for the client's delayed
/// ACK (≈ 40 ms): every iPXE script, GRUB file and metadata read paid that.
pub type HttpListener = axum::serve::TapIo<tokio::net::TcpListener, fn(&mut tokio::net::TcpStream)>;

/// Binds an [`HttpListener`] on `address`.
pub async fn http_listener(address: std::net::SocketAddr) -> std::io::Result<HttpListener> {
    use axum::serve::ListenerExt;
    let listener = tokio::net::TcpListener::bind(address).await?;
    Ok(listener.tap_io(no_delay as fn(&mut tokio::net::TcpStream)))
}

fn no_delay(stream: &mut tokio::net::TcpStream) {
    if let Err(error) = stream.set_nodelay(true) {
        tracing::debug!(%error, "cannot set TCP_NODELAY");
    }
}
