//! Records moderators read: reports from users and the audit log of every admin action.
//!
//! The trait and the types that cross it; the backends' implementations are in
//! `embedded/records.rs` and `shared/records.rs`.
