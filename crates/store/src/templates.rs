//! Templates: images communities draw from, uploaded by anyone with an identity, kept by
//! the server and served from its own origin.
//!
//! The trait and the types that cross it; the backends' implementations are in
//! `embedded/templates.rs` and `shared/templates.rs`. The store keeps each template's
//! metadata and its palette-mapped image, already encoded as the PNG the server serves
//! (immutable: a template is never edited, only deleted).
//!
//! A deleted template keeps its row without its image, so the per-user upload rate counts
//! it (deleting does not buy new uploads) and its id is never reused.

use crate::{Backend, StoreError};
use rplace_domain::UserId;
use std::future::Future;

/// Most templates [`Templates::templates_of`] lists.
pub const LIST_LIMIT: usize = 100;
/// How far back the per-user upload rate looks.
pub const RATE_WINDOW_MS: i64 = 60 * 60 * 1000;

/// A template as stored, without its image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateMeta {
    /// Its short public id (`rplace_domain::template::is_id`).
    pub id: String,
    /// What its uploader called it.
    pub name: String,
    /// Its left column on the canvas.
    pub x: u32,
    /// Its top row on the canvas.
    pub y: u32,
    /// Its width in pixels; `x + width` is within the canvas.
    pub width: u32,
    /// Its height in pixels; `y + height` is within the canvas.
    pub height: u32,
    /// Who uploaded it (and may delete it).
    pub owner: UserId,
    /// When, unix ms.
    pub created_ms: i64,
}

/// A template to store: its metadata and its image.
#[derive(Debug, Clone)]
pub struct NewTemplate {
    /// What `GET /api/templates/{id}` shows.
    pub meta: TemplateMeta,
    /// The palette-mapped image as the PNG `GET /api/templates/{id}.png` serves.
    pub png: Vec<u8>,
}

/// The limits an upload is checked against, in the same transaction as the insert, so
/// concurrent uploads cannot pass them together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TemplateLimits {
    /// Templates one identity may have at once.
    pub per_user: u32,
    /// Uploads one identity may make in [`RATE_WINDOW_MS`] (deleted ones count).
    pub per_hour: u32,
    /// Templates the whole canvas keeps at once.
    pub total: u32,
}

/// What [`Templates::add_template`] came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Added {
    /// Stored.
    Added,
    /// The owner has [`TemplateLimits::per_user`] templates already.
    TooManyOfUser,
    /// The owner uploaded [`TemplateLimits::per_hour`] in the window; the oldest of them
    /// leaves the window in this many ms.
    RateLimited { retry_after_ms: i64 },
    /// The canvas holds [`TemplateLimits::total`] templates.
    Full,
    /// The id is taken (a collision of random ids: the caller draws another).
    IdTaken,
}

/// Templates, in both backends.
pub trait Templates: Send + Sync {
    /// Stores `t` unless a limit says no (see [`Added`]); `t.meta.created_ms` is now.
    fn add_template(
        &self,
        t: NewTemplate,
        limits: TemplateLimits,
    ) -> impl Future<Output = Result<Added, StoreError>> + Send;

    /// Template `id`'s metadata, unless it does not exist or was deleted.
    fn template(
        &self,
        id: &str,
    ) -> impl Future<Output = Result<Option<TemplateMeta>, StoreError>> + Send;

    /// Template `id`'s PNG, unless it does not exist or was deleted.
    fn template_png(
        &self,
        id: &str,
    ) -> impl Future<Output = Result<Option<Vec<u8>>, StoreError>> + Send;

    /// Deletes template `id` (its image; the row stays, see the module docs); `false` if
    /// there was none.
    fn delete_template(
        &self,
        id: &str,
        now_ms: i64,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// The templates of `owner` that are not deleted, newest first, at most
    /// [`LIST_LIMIT`].
    fn templates_of(
        &self,
        owner: UserId,
    ) -> impl Future<Output = Result<Vec<TemplateMeta>, StoreError>> + Send;
}

/// When the oldest of the `times` (newest first, as many as the limit) leaves the window,
/// if the window holds `max` uploads already.
pub fn retry_after(times: &[i64], max: u32, now_ms: i64) -> Option<i64> {
    if max == 0 || times.len() < max as usize {
        return None;
    }
    let oldest = times[max as usize - 1];
    Some((oldest + RATE_WINDOW_MS - now_ms).max(1))
}

macro_rules! delegate {
    ($self:ident, $s:ident => $e:expr) => {
        match $self {
            Backend::Embedded($s) => $e,
            Backend::Shared($s) => $e,
        }
    };
}

impl Templates for Backend {
    async fn add_template(&self, t: NewTemplate, l: TemplateLimits) -> Result<Added, StoreError> {
        delegate!(self, s => s.add_template(t, l).await)
    }
    async fn template(&self, id: &str) -> Result<Option<TemplateMeta>, StoreError> {
        delegate!(self, s => s.template(id).await)
    }
    async fn template_png(&self, id: &str) -> Result<Option<Vec<u8>>, StoreError> {
        delegate!(self, s => s.template_png(id).await)
    }
    async fn delete_template(&self, id: &str, now_ms: i64) -> Result<bool, StoreError> {
        delegate!(self, s => s.delete_template(id, now_ms).await)
    }
    async fn templates_of(&self, owner: UserId) -> Result<Vec<TemplateMeta>, StoreError> {
        delegate!(self, s => s.templates_of(owner).await)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rate_waits_for_the_oldest_upload_in_the_window() {
        let now = 10 * RATE_WINDOW_MS;
        assert_eq!(retry_after(&[now - 5, now - 10], 3, now), None);
        assert_eq!(
            retry_after(&[now - 5, now - 10, now - 1000], 3, now),
            Some(RATE_WINDOW_MS - 1000)
        );
        assert_eq!(retry_after(&[now], 0, now), None);
    }
}
