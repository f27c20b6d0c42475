//! OpenID Connect: the authorization code flow with PKCE, nonce and state, against
//! every configured provider (the `openidconnect` crate).
//!
//! Discovery is lazy: a provider's metadata and keys are fetched at its first login and
//! kept for [`METADATA_TTL`], so the canvas starts (and serves) while a provider is down;
//! a failed discovery is not kept, the next login tries again. Every call to a provider
//! goes through one reqwest client with timeouts, without following redirects (the
//! provider's answers are read as they are: a redirect is no place to fetch keys from),
//! and reads at most [`MAX_ANSWER`] bytes.

use crate::config::ProviderSpec;
use openidconnect::core::{
    CoreAuthenticationFlow, CoreClient, CoreIdTokenClaims, CoreProviderMetadata,
};
use openidconnect::{
    AuthorizationCode, ClientId, ClientSecret, CsrfToken, EndpointMaybeSet, EndpointNotSet,
    EndpointSet, IssuerUrl, Nonce, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, Scope,
    TokenResponse,
};
use std::time::{Duration, Instant};

/// How long discovered metadata and keys are used before they are fetched again (a
/// provider that rotates its keys is followed within it).
pub const METADATA_TTL: Duration = Duration::from_secs(3600);
/// Longest one call to a provider may take.
pub const TIMEOUT: Duration = Duration::from_secs(10);
/// Longest a connection to a provider may take to open.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest answer read from a provider (metadata, keys, tokens).
pub const MAX_ANSWER: usize = 1 << 20;

/// Why a login could not be completed; logged in full, answered in general words.
#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    #[error("no provider {0:?} is configured")]
    UnknownProvider(String),
    #[error("discovery of {issuer} failed: {reason}")]
    Discovery { issuer: String, reason: String },
    #[error("invalid redirect URI {0}")]
    Redirect(String),
    #[error("the code exchange failed: {0}")]
    Exchange(String),
    #[error("the provider sent no ID token")]
    NoIdToken,
    #[error("the ID token did not verify: {0}")]
    Claims(String),
}

/// A provider's HTTP failure.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error(transparent)]
    Reqwest(#[from] reqwest::Error),
    #[error("the answer is larger than {MAX_ANSWER} bytes")]
    TooLarge,
    #[error(transparent)]
    Http(#[from] openidconnect::http::Error),
}

type Client = CoreClient<
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

/// A configured provider and what discovery found about it.
struct Provider {
    /// Its configuration.
    spec: ProviderSpec,
    /// Discovered metadata (with the keys) and when; the lock also keeps two logins from
    /// discovering at once.
    metadata: tokio::sync::Mutex<Option<(Instant, CoreProviderMetadata)>>,
}

/// Every configured provider.
pub struct Providers {
    /// In configuration order.
    list: Vec<Provider>,
    /// The one client for all calls to providers.
    http: reqwest::Client,
}

/// What the login must remember until the callback (in a signed cookie).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Pending {
    /// The provider's id.
    pub provider: String,
    /// The `state` sent; the callback must bring it back.
    pub state: String,
    /// The `nonce` sent; the ID token must carry it.
    pub nonce: String,
    /// The PKCE verifier of the challenge sent.
    pub verifier: String,
    /// The redirect URI sent (the exchange must name the same).
    pub redirect: String,
    /// Where to go after the login (a same-origin path).
    pub return_to: String,
    /// When this login attempt expires, unix ms.
    pub expires_ms: i64,
}

/// Who the provider says logged in.
#[derive(Debug, Clone)]
pub struct Identity {
    /// The provider's id.
    pub provider: String,
    /// The `sub` claim.
    pub subject: String,
    /// The `email` claim.
    pub email: Option<String>,
    /// The `email_verified` claim.
    pub email_verified: bool,
}

/// The HTTP function the `openidconnect` crate calls.
async fn send(
    client: reqwest::Client,
    req: openidconnect::HttpRequest,
) -> Result<openidconnect::HttpResponse, HttpError> {
    let (parts, body) = req.into_parts();
    let mut resp = client
        .request(parts.method, parts.uri.to_string())
        .headers(parts.headers)
        .body(body)
        .send()
        .await?;
    let status = resp.status();
    let headers = resp.headers().clone();
    let mut bytes = Vec::new();
    while let Some(chunk) = resp.chunk().await? {
        if bytes.len() + chunk.len() > MAX_ANSWER {
            return Err(HttpError::TooLarge);
        }
        bytes.extend_from_slice(&chunk);
    }
    let mut out = openidconnect::http::Response::builder()
        .status(status)
        .body(bytes)?;
    *out.headers_mut() = headers;
    Ok(out)
}

impl Providers {
    pub fn new(specs: &[ProviderSpec]) -> Providers {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(TIMEOUT)
            .connect_timeout(CONNECT_TIMEOUT)
            .build()
            .expect("a reqwest client with its TLS backend");
        Providers {
            list: specs
                .iter()
                .map(|spec| Provider {
                    spec: spec.clone(),
                    metadata: tokio::sync::Mutex::new(None),
                })
                .collect(),
            http,
        }
    }

    /// The providers' configurations, in order.
    pub fn specs(&self) -> impl Iterator<Item = &ProviderSpec> {
        self.list.iter().map(|p| &p.spec)
    }

    fn get(&self, id: &str) -> Result<&Provider, OidcError> {
        self.list
            .iter()
            .find(|p| p.spec.id == id)
            .ok_or_else(|| OidcError::UnknownProvider(id.to_string()))
    }

    /// The provider's metadata, discovered now if not known or too old.
    async fn metadata(&self, p: &Provider) -> Result<CoreProviderMetadata, OidcError> {
        let mut slot = p.metadata.lock().await;
        if let Some((at, meta)) = &*slot
            && at.elapsed() < METADATA_TTL
        {
            return Ok(meta.clone());
        }
        let failed = |reason: String| OidcError::Discovery {
            issuer: p.spec.issuer.clone(),
            reason,
        };
        let issuer = IssuerUrl::new(p.spec.issuer.clone()).map_err(|e| failed(e.to_string()))?;
        let http = |req| send(self.http.clone(), req);
        let meta = tokio::time::timeout(
            TIMEOUT * 2,
            CoreProviderMetadata::discover_async(issuer, &http),
        )
        .await
        .map_err(|_| failed("timed out".into()))?
        .map_err(|e| failed(crate::auth::chain(&e)))?;
        *slot = Some((Instant::now(), meta.clone()));
        Ok(meta)
    }

    async fn client(&self, p: &Provider, redirect: &str) -> Result<Client, OidcError> {
        let meta = self.metadata(p).await?;
        let redirect = RedirectUrl::new(redirect.to_string())
            .map_err(|_| OidcError::Redirect(redirect.to_string()))?;
        Ok(CoreClient::from_provider_metadata(
            meta,
            ClientId::new(p.spec.client_id.clone()),
            Some(ClientSecret::new(p.spec.client_secret.clone())),
        )
        .set_redirect_uri(redirect))
    }

    /// Starts a login at provider `id`: the URL to send the visitor to, and what the
    /// callback must check.
    pub async fn start(
        &self,
        id: &str,
        redirect: &str,
        return_to: String,
        expires_ms: i64,
    ) -> Result<(String, Pending), OidcError> {
        let p = self.get(id)?;
        let client = self.client(p, redirect).await?;
        let supported = p
            .metadata
            .lock()
            .await
            .as_ref()
            .and_then(|(_, m)| m.scopes_supported().cloned());
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let mut req = client
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                CsrfToken::new_random,
                Nonce::new_random,
            )
            .set_pkce_challenge(challenge);
        for scope in ["email", "profile"] {
            // Ask only for what the provider offers (when it says).
            let offered = supported
                .as_ref()
                .is_none_or(|s| s.iter().any(|x| x.as_str() == scope));
            if offered {
                req = req.add_scope(Scope::new(scope.to_string()));
            }
        }
        let (url, state, nonce) = req.url();
        Ok((
            url.to_string(),
            Pending {
                provider: id.to_string(),
                state: state.secret().clone(),
                nonce: nonce.secret().clone(),
                verifier: verifier.secret().clone(),
                redirect: redirect.to_string(),
                return_to,
                expires_ms,
            },
        ))
    }

    /// Completes a login: exchanges the code (with the PKCE verifier) and verifies the
    /// ID token (signature, issuer, audience, expiry, nonce). The caller has checked
    /// `state`.
    pub async fn finish(&self, pending: &Pending, code: String) -> Result<Identity, OidcError> {
        let p = self.get(&pending.provider)?;
        let client = self.client(p, &pending.redirect).await?;
        let http = |req| send(self.http.clone(), req);
        let token = client
            .exchange_code(AuthorizationCode::new(code))
            .map_err(|e| OidcError::Exchange(e.to_string()))?
            .set_pkce_verifier(PkceCodeVerifier::new(pending.verifier.clone()))
            .request_async(&http)
            .await
            .map_err(|e| OidcError::Exchange(crate::auth::chain(&e)))?;
        let id_token = token.id_token().ok_or(OidcError::NoIdToken)?;
        let claims: &CoreIdTokenClaims = id_token
            .claims(
                &client.id_token_verifier(),
                &Nonce::new(pending.nonce.clone()),
            )
            .map_err(|e| OidcError::Claims(e.to_string()))?;
        Ok(Identity {
            provider: pending.provider.clone(),
            subject: claims.subject().as_str().to_string(),
            email: claims.email().map(|e| e.as_str().to_string()),
            email_verified: claims.email_verified().unwrap_or(false),
        })
    }
}
