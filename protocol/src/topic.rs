//! The MQTT topic scheme: `edgemetal/v1/rack/{rack_id}/{up|down}/{channel}`.
//!
//! Every topic is rooted under one rack, so that a broker ACL can confine a
//! rack to its own subtree: it publishes under `up/` and subscribes to `down/`.

use alloc::format;
use alloc::string::{String, ToString};
use core::fmt;

use crate::types::{InvalidRackId, RackId};

/// The fixed prefix of every edgemetal topic.
pub const TOPIC_ROOT: &str = "edgemetal/v1/rack";

/// Which way a message travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Direction {
    /// Rack to region.
    Up,
    /// Region to rack.
    Down,
}

/// The kind of traffic on a topic; each has a fixed direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Channel {
    /// Rack hello after every (re)connect. Up.
    Hello,
    /// Periodic rack heartbeat with service health. Up.
    Heartbeat,
    /// Rack's result of applying a snapshot. Up.
    SnapshotAck,
    /// Rack presence; the MQTT last will is published here. Up.
    Status,
    /// Retained configuration snapshot for the rack. Down.
    Snapshot,
    /// A new link key for the rack. Down.
    Rekey,
    /// The rack's proof that it switched to the new key. Up.
    RekeyAck,
    /// Queued rack events (leases, discoveries), in order. Up.
    Events,
    /// The region's acknowledgement of queued events. Down.
    EventsAck,
    /// A power command for one BMC. Down.
    Power,
    /// The outcome of a power command. Up.
    PowerResult,
    /// A rack asks for part of a boot resource. Up.
    BlobRequest,
    /// Part of a boot resource. Down.
    BlobChunk,
    /// A rack asks what a machine boots. Up.
    BootQuery,
    /// What a machine boots. Down.
    BootAnswer,
    /// Machine log lines from the rack's syslog relay, in order. Up.
    Logs,
    /// The region's acknowledgement of stored log lines. Down.
    LogsAck,
    /// Machines' boot intents, pushed ahead of their boots. Down.
    Intents,
    /// Changes to the rack's configuration since the generation it holds. Down.
    ConfigDelta,
    /// How far the rack's cache holds each boot resource. Up.
    Resources,
}

impl Channel {
    /// The direction messages on this channel travel.
    pub fn direction(self) -> Direction {
        match self {
            Channel::Snapshot
            | Channel::Rekey
            | Channel::EventsAck
            | Channel::Power
            | Channel::BlobChunk
            | Channel::BootAnswer
            | Channel::LogsAck
            | Channel::Intents
            | Channel::ConfigDelta => Direction::Down,
            _ => Direction::Up,
        }
    }

    /// The topic level naming the channel.
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Hello => "hello",
            Channel::Heartbeat => "heartbeat",
            Channel::SnapshotAck => "snapshot-ack",
            Channel::Status => "status",
            Channel::Snapshot => "snapshot",
            Channel::Rekey => "rekey",
            Channel::RekeyAck => "rekey-ack",
            Channel::Events => "events",
            Channel::EventsAck => "events-ack",
            Channel::Power => "power",
            Channel::PowerResult => "power-result",
            Channel::BlobRequest => "blob-request",
            Channel::BlobChunk => "blob-chunk",
            Channel::BootQuery => "boot-query",
            Channel::BootAnswer => "boot-answer",
            Channel::Logs => "logs",
            Channel::LogsAck => "logs-ack",
            Channel::Intents => "intents",
            Channel::ConfigDelta => "config-delta",
            Channel::Resources => "resources",
        }
    }

    fn parse(direction: Direction, level: &str) -> Option<Channel> {
        let channel = match level {
            "hello" => Channel::Hello,
            "heartbeat" => Channel::Heartbeat,
            "snapshot-ack" => Channel::SnapshotAck,
            "status" => Channel::Status,
            "snapshot" => Channel::Snapshot,
            "rekey" => Channel::Rekey,
            "rekey-ack" => Channel::RekeyAck,
            "events" => Channel::Events,
            "events-ack" => Channel::EventsAck,
            "power" => Channel::Power,
            "power-result" => Channel::PowerResult,
            "blob-request" => Channel::BlobRequest,
            "blob-chunk" => Channel::BlobChunk,
            "boot-query" => Channel::BootQuery,
            "boot-answer" => Channel::BootAnswer,
            "logs" => Channel::Logs,
            "logs-ack" => Channel::LogsAck,
            "intents" => Channel::Intents,
            "config-delta" => Channel::ConfigDelta,
            "resources" => Channel::Resources,
            _ => return None,
        };
        (channel.direction() == direction).then_some(channel)
    }
}

/// A fully qualified topic of one rack.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Topic {
    /// The rack whose subtree the topic is in.
    pub rack_id: RackId,
    /// The channel, which also fixes the direction.
    pub channel: Channel,
}

/// Why a topic string is not an edgemetal topic.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopicError {
    /// The topic does not start with [`TOPIC_ROOT`].
    #[error("topic {0:?} is not under {TOPIC_ROOT}")]
    ForeignRoot(String),
    /// The rack id level is not a valid rack id.
    #[error(transparent)]
    RackId(#[from] InvalidRackId),
    /// Direction or channel are unknown, or do not belong together.
    #[error("unknown channel in topic {0:?}")]
    UnknownChannel(String),
}

impl Topic {
    /// A topic in `rack_id`'s subtree.
    pub fn new(rack_id: RackId, channel: Channel) -> Self {
        Topic { rack_id, channel }
    }

    /// The direction of the topic's channel.
    pub fn direction(&self) -> Direction {
        self.channel.direction()
    }

    /// Parses a topic string received from the broker.
    pub fn parse(topic: &str) -> Result<Topic, TopicError> {
        let rest = topic
            .strip_prefix(TOPIC_ROOT)
            .and_then(|rest| rest.strip_prefix('/'))
            .ok_or_else(|| TopicError::ForeignRoot(topic.to_string()))?;
        let mut levels = rest.split('/');
        let unknown = || TopicError::UnknownChannel(topic.to_string());
        let rack_id = RackId::new(levels.next().unwrap_or_default())?;
        let direction = match levels.next() {
            Some("up") => Direction::Up,
            Some("down") => Direction::Down,
            _ => return Err(unknown()),
        };
        let channel = levels
            .next()
            .and_then(|level| Channel::parse(direction, level))
            .ok_or_else(unknown)?;
        if levels.next().is_some() {
            return Err(unknown());
        }
        Ok(Topic { rack_id, channel })
    }

    /// The filter the region subscribes to: every rack's upward traffic.
    pub fn all_racks_up_filter() -> String {
        format!("{TOPIC_ROOT}/+/up/#")
    }

    /// The filter a rack subscribes to: its own downward traffic.
    pub fn rack_down_filter(rack_id: &RackId) -> String {
        format!("{TOPIC_ROOT}/{rack_id}/down/#")
    }
}

impl fmt::Display for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let direction = match self.direction() {
            Direction::Up => "up",
            Direction::Down => "down",
        };
        write!(
            f,
            "{TOPIC_ROOT}/{}/{direction}/{}",
            self.rack_id,
            self.channel.as_str()
        )
    }
}
