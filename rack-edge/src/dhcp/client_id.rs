//! How a DHCP client names itself, stored without a heap allocation for
//! the usual lengths: the lease table holds one per lease and its index
//! another, and the engine builds one per packet.

use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};

use edgemetal_protocol::MacAddress;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Ids up to this long are kept inline: a MAC-derived id is 7 bytes, an
/// RFC 4361 (IAID + DUID) one about 19.
const INLINE: usize = 22;

/// How a client names itself: option 61 when sent, else its hardware address.
///
/// The hardware fallback is `[htype 1] ++ mac`, the same bytes a client puts
/// in option 61 when it derives its id from the MAC, so a client that sends
/// option 61 only sometimes still finds its lease.
#[derive(Clone)]
pub struct ClientId(Repr);

#[derive(Clone)]
enum Repr {
    /// `len` bytes, the rest zero.
    Inline {
        len: u8,
        bytes: [u8; INLINE],
    },
    Heap(Box<[u8]>),
}

impl ClientId {
    /// The id made of `bytes` (option 61's value).
    pub fn new(bytes: &[u8]) -> Self {
        if bytes.len() <= INLINE {
            let mut inline = [0; INLINE];
            inline[..bytes.len()].copy_from_slice(bytes);
            ClientId(Repr::Inline {
                len: bytes.len() as u8,
                bytes: inline,
            })
        } else {
            ClientId(Repr::Heap(bytes.into()))
        }
    }

    /// The id of a client that sent no option 61.
    pub fn from_mac(mac: MacAddress) -> Self {
        let mut bytes = [0; 7];
        bytes[0] = 1;
        bytes[1..].copy_from_slice(&mac.0);
        ClientId::new(&bytes)
    }

    /// The id's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        match &self.0 {
            Repr::Inline { len, bytes } => &bytes[..usize::from(*len)],
            Repr::Heap(bytes) => bytes,
        }
    }
}

impl PartialEq for ClientId {
    fn eq(&self, other: &Self) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for ClientId {}

impl Hash for ClientId {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_bytes().hash(state);
    }
}

impl PartialOrd for ClientId {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for ClientId {
    fn cmp(&self, other: &Self) -> Ordering {
        self.as_bytes().cmp(other.as_bytes())
    }
}

impl fmt::Display for ClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.as_bytes()))
    }
}

impl fmt::Debug for ClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ClientId({self})")
    }
}

// Hex in the journal keeps records readable with `grep` and `jq`.
impl Serialize for ClientId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ClientId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        hex::decode(text)
            .map(|bytes| ClientId::new(&bytes))
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_ids_round_trip_as_hex() {
        let id = ClientId::new(&[1, 0xab, 0xcd]);
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, "\"01abcd\"");
        assert_eq!(serde_json::from_str::<ClientId>(&json).unwrap(), id);
    }

    #[test]
    fn short_and_long_ids_compare_by_their_bytes() {
        let long: Vec<u8> = (0..40).collect();
        assert_eq!(ClientId::new(&long).as_bytes(), &long[..]);
        assert_ne!(ClientId::new(&long), ClientId::new(&long[..22]));
        assert_eq!(ClientId::new(&long[..22]).as_bytes(), &long[..22]);
        assert_ne!(ClientId::new(&[1]), ClientId::new(&[1, 0]), "length counts");
        assert_eq!(
            ClientId::from_mac(MacAddress([2, 0, 0, 0, 0, 9])).as_bytes(),
            &[1, 2, 0, 0, 0, 0, 9]
        );
        assert_eq!(std::mem::size_of::<ClientId>(), 24);
    }
}
