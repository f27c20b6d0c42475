//! Accounts: OpenID Connect identities, display names, sessions, roles and the anonymous identities linked to an account.
//!
//! The trait and the types that cross it; the backends' implementations are in
//! `embedded/accounts.rs` and `shared/accounts.rs`.
