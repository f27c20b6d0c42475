//! Moderation state the placement policy reads: bans (of users and of networks) and protected areas.
//!
//! The trait and the types that cross it; the backends' implementations are in
//! `embedded/moderation.rs` and `shared/moderation.rs`.
