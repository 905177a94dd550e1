//! Requests the region sends a rack and whose answers it waits for
//! (power commands), correlated by id.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use edgemetal_protocol::{PowerCommand, PowerOutcome, PowerRequest, RackId};
use tokio::sync::{mpsc, oneshot};

/// Why a request got no answer from the rack.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// The rack did not answer in time (offline, link down, BMC slower than the bound).
    #[error("rack {rack} did not answer within {secs} s")]
    Timeout {
        /// The rack asked.
        rack: RackId,
        /// The bound.
        secs: u64,
    },
    /// The link is shutting down.
    #[error("the link to the racks is not running")]
    LinkDown,
}

/// A command on its way to a rack.
#[derive(Debug)]
pub struct OutgoingCommand {
    /// The rack to send it to.
    pub rack_id: RackId,
    /// The command.
    pub command: PowerCommand,
}

/// Requests awaiting their answer.
#[derive(Default)]
pub struct PendingRequests {
    next_id: AtomicU64,
    /// By request id: the rack asked, and the waiter.
    waiting: Mutex<HashMap<u64, (RackId, oneshot::Sender<PowerOutcome>)>>,
}

type Waiting = HashMap<u64, (RackId, oneshot::Sender<PowerOutcome>)>;

impl PendingRequests {
    fn waiting(&self) -> std::sync::MutexGuard<'_, Waiting> {
        // The map stays consistent whatever panicked while holding the lock.
        self.waiting.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Hands `rack`'s answer to whoever waits for it; false when nobody
    /// does (answered after the timeout) or the request went to another
    /// rack (one rack cannot answer for another).
    pub fn complete(&self, rack: &RackId, request_id: u64, outcome: PowerOutcome) -> bool {
        let mut waiting = self.waiting();
        if waiting
            .get(&request_id)
            .is_none_or(|(asked, _)| asked != rack)
        {
            return false;
        }
        match waiting.remove(&request_id) {
            Some((_, waiter)) => waiter.send(outcome).is_ok(),
            None => false,
        }
    }

    /// Sends `request` to `rack` through `outgoing` and waits up to `timeout`.
    pub async fn power(
        &self,
        outgoing: &mpsc::UnboundedSender<OutgoingCommand>,
        rack: RackId,
        request: PowerRequest,
        timeout: Duration,
    ) -> Result<PowerOutcome, RequestError> {
        let request_id = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        let (waiter, answer) = oneshot::channel();
        self.waiting().insert(request_id, (rack.clone(), waiter));
        let deadline_ms = crate::store::now_ms() as u64 + timeout.as_millis() as u64;
        let command = PowerCommand {
            request_id,
            deadline_ms,
            request,
        };
        let sent = outgoing.send(OutgoingCommand {
            rack_id: rack.clone(),
            command,
        });
        let result = match sent {
            Err(_) => Err(RequestError::LinkDown),
            Ok(()) => match tokio::time::timeout(timeout, answer).await {
                Ok(Ok(outcome)) => Ok(outcome),
                Ok(Err(_)) => Err(RequestError::LinkDown),
                Err(_) => Err(RequestError::Timeout {
                    rack,
                    secs: timeout.as_secs(),
                }),
            },
        };
        self.waiting().remove(&request_id);
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use edgemetal_protocol::{
        PowerAction, PowerDriverKind, PowerObservation, PowerParameters, PowerState,
    };

    fn request() -> PowerRequest {
        PowerRequest {
            parameters: PowerParameters {
                driver: PowerDriverKind::IpmiLan,
                address: "10.0.0.9".into(),
                port: 623,
                username: "admin".into(),
                password: "secret".into(),
            },
            action: PowerAction::Query,
        }
    }

    #[tokio::test]
    async fn an_answer_reaches_its_waiter_and_a_late_one_is_ignored() {
        let pending = std::sync::Arc::new(PendingRequests::default());
        let (tx, mut rx) = mpsc::unbounded_channel();
        let rack = RackId::new("r1").unwrap();
        let answerer = pending.clone();
        tokio::spawn(async move {
            let sent: OutgoingCommand = rx.recv().await.unwrap();
            let on = Ok(PowerObservation {
                state: PowerState::On,
            });
            let other = RackId::new("r2").unwrap();
            assert!(!answerer.complete(&other, sent.command.request_id, on.clone()));
            assert!(answerer.complete(&sent.rack_id, sent.command.request_id, on));
            // The second command is never answered in time.
            let late: OutgoingCommand = rx.recv().await.unwrap();
            tokio::time::sleep(Duration::from_millis(100)).await;
            assert!(!answerer.complete(&late.rack_id, late.command.request_id, Err(failure())));
        });
        let answer = pending
            .power(&tx, rack.clone(), request(), Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(answer.unwrap().state, PowerState::On);
        let timed_out = pending
            .power(&tx, rack, request(), Duration::from_millis(20))
            .await;
        assert!(matches!(timed_out, Err(RequestError::Timeout { .. })));
    }

    fn failure() -> edgemetal_protocol::PowerFailure {
        edgemetal_protocol::PowerFailure {
            kind: edgemetal_protocol::PowerFailureKind::Timeout,
            detail: "late".into(),
        }
    }
}
