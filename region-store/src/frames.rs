//! One rack frame applied as one transaction: what the frame writes and the
//! raise of the rack's upward mark to the frame's sequence commit together,
//! so a frame is applied and counted as seen at once, or neither (a frame
//! whose write failed is taken again when the rack resends it).

use sqlx::{Any, Transaction};

use super::{Store, StoreError};

/// The open transaction of one rack frame; [`FrameWrite::commit`] ends it,
/// dropping it rolls everything back.
pub struct FrameWrite {
    pub(crate) tx: Transaction<'static, Any>,
}

impl Store {
    /// Opens the write of the frame `sequence` from `rack_id`, raising the
    /// rack's upward mark to it inside the same transaction.
    pub async fn begin_frame(
        &self,
        rack_id: &str,
        sequence: u64,
    ) -> Result<FrameWrite, StoreError> {
        let mut tx = self.begin_write().await?;
        raise_up_sequence(&mut tx, rack_id, sequence).await?;
        Ok(FrameWrite { tx })
    }

    /// A write of a frame's effects with no mark to raise (the store's own
    /// callers and tests).
    pub(crate) async fn begin_unsequenced(&self) -> Result<FrameWrite, StoreError> {
        Ok(FrameWrite {
            tx: self.begin_write().await?,
        })
    }
}

impl FrameWrite {
    /// Commits the frame's writes and its mark.
    pub async fn commit(self) -> Result<(), StoreError> {
        self.tx.commit().await?;
        Ok(())
    }
}

/// Raises the rack's upward high-water mark to `sequence` if it is higher.
pub(crate) async fn raise_up_sequence(
    tx: &mut Transaction<'static, Any>,
    rack_id: &str,
    sequence: u64,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE rack_identities SET up_sequence = $1 WHERE rack_id = $2 AND up_sequence < $1",
    )
    .bind(sequence as i64)
    .bind(rack_id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
