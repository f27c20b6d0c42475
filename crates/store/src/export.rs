//! Reading the whole log of placements in order, for the dataset export
//! (`GET /api/export/placements.csv.gz`).
//!
//! The trait and its delegation; the backends' implementations are in
//! `embedded/export.rs` (SQLite, by the `placements` primary key) and
//! `shared/history/export.rs` (PostgreSQL's binary `COPY`, the fastest way out of it).
//! An export first takes [`Export::export_head`], then reads pages after it up to that
//! head, so it is one consistent prefix of the log however long it takes to stream, and
//! memory stays one page however long the log is.

use crate::StoreError;
use rplace_domain::{Placement, Seq};
use std::future::Future;

/// Rows read per page: about 4 MiB of placements in memory, and few enough round trips
/// that the store is not what bounds the export's rate.
pub const EXPORT_PAGE: usize = 100_000;

/// Everything the dataset export needs from storage.
pub trait Export: Send + Sync {
    /// The newest seq up to which every placement is durable and readable by
    /// [`Export::export_page`] (the embedded store's committed seq; the shared history's
    /// watermark).
    fn export_head(&self) -> impl Future<Output = Result<Seq, StoreError>> + Send;

    /// Up to `limit` placements with `after < seq <= through`, in seq order. A seq the
    /// log does not hold (none is missing below the head) is skipped, not an error.
    fn export_page(
        &self,
        after: Seq,
        through: Seq,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<Placement>, StoreError>> + Send;
}

impl Export for crate::Backend {
    async fn export_head(&self) -> Result<Seq, StoreError> {
        match self {
            crate::Backend::Embedded(s) => s.export_head().await,
            crate::Backend::Shared(s) => s.export_head().await,
        }
    }

    async fn export_page(
        &self,
        after: Seq,
        through: Seq,
        limit: usize,
    ) -> Result<Vec<Placement>, StoreError> {
        match self {
            crate::Backend::Embedded(s) => s.export_page(after, through, limit).await,
            crate::Backend::Shared(s) => s.export_page(after, through, limit).await,
        }
    }
}
