//! Moderation changes made of many placements: rollback by user, restore of an area to a moment, fill and stamp, and the history queries they need.
//!
//! The trait and the types that cross it; the backends' implementations are in
//! `embedded/rewrite.rs` and `shared/rewrite.rs`.
