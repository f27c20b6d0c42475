//! The accounts' settings: OpenID Connect providers, the login mode, display names and the admins named by configuration.

use clap::Args;

#[derive(Debug, Clone, Default, Args)]
pub struct AuthArgs {}
