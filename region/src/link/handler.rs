//! Applies rack messages to the store and decides when a rack needs its snapshot.

use edgemetal_protocol::{RackStatus, UpMessage};

use super::inbound::Inbound;
use crate::store::{now_ms, Store, StoreError};

/// What the link should do after a message was applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FollowUp {
    /// Nothing.
    None,
    /// The rack serves `held`, not the region's generation: send it the
    /// current configuration (a delta when the region knows `held`).
    SendSnapshot {
        /// The generation the rack said it holds.
        held: Option<edgemetal_protocol::Generation>,
    },
    /// A delta did not fit what the rack holds: send the full snapshot now.
    Resync,
    /// The rack proved it holds the new key: make it current, re-seal the snapshot.
    PromoteKey(u32),
    /// Tell the rack its queued events up to the applied id are stored;
    /// pass on what they changed (configuration, enlistments, results).
    AckEvents(crate::store::AppliedEvents),
    /// A rack answered a power command.
    PowerResult(edgemetal_protocol::PowerResult),
    /// Send the rack the part of a blob it asked for.
    SendChunk(edgemetal_protocol::BlobRequest),
    /// Tell the rack what a machine boots.
    AnswerBoot(edgemetal_protocol::BootQuery),
    /// Tell the rack its log lines up to this id are stored.
    AckLogs(u64),
    /// An offline status that is not the will of the rack's current
    /// connection (a replay, or a will that lost the race): dropped.
    StaleWill,
}

/// Applies one message from a rack speaking protocol `version`; tells what
/// the link should do next.
pub async fn apply(store: &Store, inbound: &Inbound, version: u16) -> Result<FollowUp, StoreError> {
    let now = now_ms();
    // Read only for the messages that say which generation a rack serves,
    // not for each blob request of a sync.
    let behind = |applied: Option<edgemetal_protocol::Generation>| async move {
        let current = store.rack_generation(&inbound.rack_id).await?;
        Ok::<_, StoreError>(if applied.map(|g| g.0) != Some(current) {
            FollowUp::SendSnapshot { held: applied }
        } else {
            FollowUp::None
        })
    };
    match &inbound.envelope.body {
        UpMessage::Hello(hello) => {
            // Hellos are retained, so a region that (re)subscribes learns every
            // rack. A retained one says who the rack is, not that it is alive now:
            // presence comes from the retained status and from heartbeats.
            store.record_hello(hello, now, !inbound.retained).await?;
            tracing::info!(
                rack = %inbound.rack_id,
                version = %hello.software_version,
                protocol = hello.protocol_version,
                applied = ?hello.applied_generation.map(|g| g.0),
                "rack said hello"
            );
            // A live hello always gets a look: the rack may have missed
            // messages while away (the link sends nothing if it is in sync).
            if inbound.retained {
                behind(hello.applied_generation).await
            } else {
                Ok(FollowUp::SendSnapshot {
                    held: hello.applied_generation,
                })
            }
        }
        UpMessage::Heartbeat(heartbeat) => {
            if !store
                .record_heartbeat(&inbound.rack_id, heartbeat, now)
                .await?
            {
                tracing::debug!(rack = %inbound.rack_id, "heartbeat from a rack that has not said hello");
                return Ok(FollowUp::None);
            }
            behind(heartbeat.applied_generation).await
        }
        UpMessage::SnapshotAck(ack) => {
            store
                .record_snapshot_ack(&inbound.rack_id, ack, now)
                .await?;
            match &ack.outcome {
                edgemetal_protocol::ApplyOutcome::Applied => {
                    tracing::info!(rack = %inbound.rack_id, generation = ack.generation.0, "rack applied snapshot");
                    behind(Some(ack.generation)).await
                }
                edgemetal_protocol::ApplyOutcome::Failed { reason } => {
                    tracing::warn!(rack = %inbound.rack_id, generation = ack.generation.0, %reason, "rack refused snapshot");
                    Ok(FollowUp::None)
                }
                edgemetal_protocol::ApplyOutcome::Resync { reason } => {
                    tracing::info!(rack = %inbound.rack_id, generation = ack.generation.0, %reason, "rack wants the full snapshot");
                    Ok(FollowUp::Resync)
                }
            }
        }
        UpMessage::Status(RackStatus::Offline) if version >= 2 => {
            if !store
                .take_last_will(&inbound.rack_id, inbound.sequence)
                .await?
            {
                return Ok(FollowUp::StaleWill);
            }
            tracing::warn!(rack = %inbound.rack_id, "rack went offline");
            Ok(FollowUp::None)
        }
        UpMessage::Status(RackStatus::Offline) => {
            // v1 racks seal one will per process: any of theirs is taken, so a
            // replay can mark one offline until its next heartbeat.
            store.mark_rack_offline(&inbound.rack_id).await?;
            tracing::warn!(rack = %inbound.rack_id, "rack went offline");
            Ok(FollowUp::None)
        }
        UpMessage::Events(events) => {
            let applied = store
                .apply_rack_events(inbound.rack_id.as_str(), events, inbound.sequence)
                .await?;
            tracing::debug!(rack = %inbound.rack_id, events = events.len(), applied = applied.applied, "rack events stored");
            Ok(FollowUp::AckEvents(applied))
        }
        UpMessage::RekeyAck(ack) => {
            // Only a frame sealed under the pending key (epoch + 1) proves the switch.
            if ack.key_epoch == inbound.key_epoch {
                Ok(FollowUp::PromoteKey(ack.key_epoch))
            } else {
                tracing::warn!(rack = %inbound.rack_id, "rekey ack under the wrong key epoch ignored");
                Ok(FollowUp::None)
            }
        }
        UpMessage::PowerResult(result) => Ok(FollowUp::PowerResult(result.clone())),
        UpMessage::BlobRequest(request) => Ok(FollowUp::SendChunk(request.clone())),
        UpMessage::BootQuery(query) => Ok(FollowUp::AnswerBoot(query.clone())),
        UpMessage::Logs(batch) => {
            let stored = store
                .store_log_lines(inbound.rack_id.as_str(), &batch.lines)
                .await?;
            tracing::debug!(rack = %inbound.rack_id, lines = batch.lines.len(), up_to = stored, "rack log lines stored");
            Ok(FollowUp::AckLogs(stored))
        }
        UpMessage::Status(RackStatus::Online) => {
            store
                .mark_rack_online(&inbound.rack_id, now, inbound.sequence)
                .await?;
            Ok(FollowUp::None)
        }
    }
}
