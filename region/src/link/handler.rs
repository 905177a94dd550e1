//! Applies rack messages to the store and decides when a rack needs its snapshot.

use edgemetal_protocol::{RackStatus, UpMessage};

use super::inbound::Inbound;
use crate::store::{now_ms, FrameWrite, Store, StoreError};

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

/// Applies one message from a rack speaking protocol `version`, in one
/// transaction that also raises the rack's upward mark to the frame's
/// sequence; tells what the link should do next.
///
/// Two kinds keep their own shape: a batch of events raises the mark in the
/// transaction that applies the events (`Store::apply_rack_events`), and a
/// blob request writes nothing (its replay only sends a chunk of
/// content-addressed data again; a row update per 512 KiB chunk would pace a
/// sync to the store). A last will is judged by the presence rule, not the
/// mark.
pub async fn apply(store: &Store, inbound: &Inbound, version: u16) -> Result<FollowUp, StoreError> {
    let body = &inbound.envelope.body;
    if let UpMessage::Events(events) = body {
        let applied = store
            .apply_rack_events(inbound.rack_id.as_str(), events, inbound.sequence)
            .await?;
        tracing::debug!(rack = %inbound.rack_id, events = events.len(), applied = applied.applied, "rack events stored");
        return Ok(FollowUp::AckEvents(applied));
    }
    if let UpMessage::BlobRequest(request) = body {
        return Ok(FollowUp::SendChunk(request.clone()));
    }
    if let UpMessage::Status(RackStatus::Offline) = body {
        return apply_will(store, inbound, version).await;
    }
    let mut frame = store
        .begin_frame(inbound.rack_id.as_str(), inbound.sequence)
        .await?;
    let follow_up = apply_in(&mut frame, inbound).await?;
    frame.commit().await?;
    // Read only for the messages that say which generation a rack serves,
    // after the commit, against the generation the rack should hold.
    Ok(match follow_up {
        Applied::Then(follow_up) => follow_up,
        Applied::CheckHeld(applied) => behind(store, inbound, applied).await?,
    })
}

/// What applying a frame leaves to do once it is committed.
enum Applied {
    /// This follow-up.
    Then(FollowUp),
    /// Compare the generation the rack said it holds with its current one.
    CheckHeld(Option<edgemetal_protocol::Generation>),
}

/// `SendSnapshot` when the rack holds another generation than its current one.
async fn behind(
    store: &Store,
    inbound: &Inbound,
    applied: Option<edgemetal_protocol::Generation>,
) -> Result<FollowUp, StoreError> {
    let current = store.rack_generation(&inbound.rack_id).await?;
    Ok(if applied.map(|g| g.0) != Some(current) {
        FollowUp::SendSnapshot { held: applied }
    } else {
        FollowUp::None
    })
}

/// A rack's offline status.
async fn apply_will(
    store: &Store,
    inbound: &Inbound,
    version: u16,
) -> Result<FollowUp, StoreError> {
    if version >= 2 {
        if !store
            .take_last_will(&inbound.rack_id, inbound.sequence)
            .await?
        {
            return Ok(FollowUp::StaleWill);
        }
    } else {
        // v1 racks seal one will per process: any of theirs is taken, so a
        // replay can mark one offline until its next heartbeat.
        store.mark_rack_offline(&inbound.rack_id).await?;
    }
    tracing::warn!(rack = %inbound.rack_id, "rack went offline");
    Ok(FollowUp::None)
}

/// The writes of every other frame, inside its transaction.
async fn apply_in(frame: &mut FrameWrite, inbound: &Inbound) -> Result<Applied, StoreError> {
    let now = now_ms();
    match &inbound.envelope.body {
        UpMessage::Hello(hello) => {
            // Hellos are retained, so a region that (re)subscribes learns every
            // rack. A retained one says who the rack is, not that it is alive now:
            // presence comes from the retained status and from heartbeats.
            frame.record_hello(hello, now, !inbound.retained).await?;
            tracing::info!(
                rack = %inbound.rack_id,
                version = %hello.software_version,
                protocol = hello.protocol_version,
                applied = ?hello.applied_generation.map(|g| g.0),
                "rack said hello"
            );
            // A live hello always gets a look: the rack may have missed
            // messages while away (the link sends nothing if it is in sync).
            Ok(if inbound.retained {
                Applied::CheckHeld(hello.applied_generation)
            } else {
                Applied::Then(FollowUp::SendSnapshot {
                    held: hello.applied_generation,
                })
            })
        }
        UpMessage::Heartbeat(heartbeat) => {
            if !frame
                .record_heartbeat(&inbound.rack_id, heartbeat, now)
                .await?
            {
                tracing::debug!(rack = %inbound.rack_id, "heartbeat from a rack that has not said hello");
                return Ok(Applied::Then(FollowUp::None));
            }
            Ok(Applied::CheckHeld(heartbeat.applied_generation))
        }
        UpMessage::SnapshotAck(ack) => {
            frame
                .record_snapshot_ack(&inbound.rack_id, ack, now)
                .await?;
            match &ack.outcome {
                edgemetal_protocol::ApplyOutcome::Applied => {
                    tracing::info!(rack = %inbound.rack_id, generation = ack.generation.0, "rack applied snapshot");
                    Ok(Applied::CheckHeld(Some(ack.generation)))
                }
                edgemetal_protocol::ApplyOutcome::Failed { reason } => {
                    tracing::warn!(rack = %inbound.rack_id, generation = ack.generation.0, %reason, "rack refused snapshot");
                    Ok(Applied::Then(FollowUp::None))
                }
                edgemetal_protocol::ApplyOutcome::Resync { reason } => {
                    tracing::info!(rack = %inbound.rack_id, generation = ack.generation.0, %reason, "rack wants the full snapshot");
                    Ok(Applied::Then(FollowUp::Resync))
                }
            }
        }
        UpMessage::RekeyAck(ack) => {
            // Only a frame sealed under the pending key (epoch + 1) proves the switch.
            Ok(Applied::Then(if ack.key_epoch == inbound.key_epoch {
                FollowUp::PromoteKey(ack.key_epoch)
            } else {
                tracing::warn!(rack = %inbound.rack_id, "rekey ack under the wrong key epoch ignored");
                FollowUp::None
            }))
        }
        UpMessage::PowerResult(result) => Ok(Applied::Then(FollowUp::PowerResult(result.clone()))),
        UpMessage::BootQuery(query) => Ok(Applied::Then(FollowUp::AnswerBoot(query.clone()))),
        UpMessage::Logs(batch) => {
            let stored = frame
                .store_log_lines(inbound.rack_id.as_str(), &batch.lines)
                .await?;
            tracing::debug!(rack = %inbound.rack_id, lines = batch.lines.len(), up_to = stored, "rack log lines stored");
            Ok(Applied::Then(FollowUp::AckLogs(stored)))
        }
        UpMessage::Resources(held) => {
            frame.record_resources(&inbound.rack_id, held).await?;
            Ok(Applied::Then(FollowUp::None))
        }
        UpMessage::Status(RackStatus::Online) => {
            frame
                .mark_rack_online(&inbound.rack_id, now, inbound.sequence)
                .await?;
            Ok(Applied::Then(FollowUp::None))
        }
        // Taken by `apply` before a frame transaction opens.
        UpMessage::Events(_)
        | UpMessage::BlobRequest(_)
        | UpMessage::Status(RackStatus::Offline) => Ok(Applied::Then(FollowUp::None)),
    }
}
