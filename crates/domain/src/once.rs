//! A one-time proof's id: what an anti-bot challenge's solution is remembered by, so
//! that it is accepted for one placement only.

/// 16 bytes naming one solved challenge. The store records it with the placement that
/// spends it; a second placement with the same token is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OnceToken([u8; 16]);

impl OnceToken {
    pub fn from_bytes(bytes: [u8; 16]) -> Self {
        Self(bytes)
    }

    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }

    /// Lowercase hex, 32 digits: how it is keyed in Redis and SQLite.
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }
}
