//! Web origins (`scheme://host[:port]`): the configured public URL, and which pages may
//! open the websocket (a browser sends `Origin` on every websocket handshake, so checking
//! it keeps other sites from using a visitor's cookie on the live feed).

use axum::http::{HeaderValue, Uri, uri::Authority};

/// A parsed origin, normalized: lowercase scheme and host, the port always explicit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// `http` or `https`.
    scheme: &'static str,
    /// Lowercase host name or address (IPv6 in brackets).
    host: String,
    /// The port, the scheme's default when the text has none.
    port: u16,
}

impl Origin {
    /// Parses `http(s)://host[:port]`, with at most a `/` after it.
    pub fn parse(s: &str) -> Result<Origin, String> {
        let uri: Uri = s
            .trim()
            .parse()
            .map_err(|e| format!("{s:?} is not a URL: {e}"))?;
        let scheme = match uri.scheme_str().map(|s| s.to_ascii_lowercase()).as_deref() {
            Some("http") => "http",
            Some("https") => "https",
            _ => return Err(format!("{s:?} must start with http:// or https://")),
        };
        if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
            return Err(format!(
                "{s:?} must be an origin only (scheme://host[:port]), without a path"
            ));
        }
        let auth = uri
            .authority()
            .ok_or_else(|| format!("{s:?} has no host"))?;
        Self::from_parts(scheme, auth).ok_or_else(|| format!("{s:?} has no valid host"))
    }

    fn from_parts(scheme: &'static str, auth: &Authority) -> Option<Origin> {
        if auth.as_str().contains('@') || auth.host().is_empty() {
            return None;
        }
        let default = if scheme == "https" { 443 } else { 80 };
        Some(Origin {
            scheme,
            host: auth.host().to_ascii_lowercase(),
            port: auth.port_u16().unwrap_or(default),
        })
    }

    pub fn is_https(&self) -> bool {
        self.scheme == "https"
    }

    /// Whether this origin names the host and port of a request's `Host` header.
    fn same_host(&self, host: &HeaderValue) -> bool {
        let Some(auth) = host.to_str().ok().and_then(|h| h.parse::<Authority>().ok()) else {
            return false;
        };
        Self::from_parts(self.scheme, &auth).is_some_and(|o| o == *self)
    }
}

/// Which origins may open the websocket.
#[derive(Debug, Clone)]
pub enum AllowedOrigins {
    /// `*`: any page.
    Any,
    /// An explicit list: only these.
    List(Vec<Origin>),
    /// The default: the origin the request was addressed to (its `Host`), and the public
    /// URL's origin if one is configured.
    SameOrigin(Option<Origin>),
}

impl AllowedOrigins {
    /// Parses the `--allowed-origins` value (`None`: the default).
    pub fn parse(list: Option<&str>, public: Option<&Origin>) -> Result<Self, String> {
        let Some(list) = list.map(str::trim).filter(|l| !l.is_empty()) else {
            return Ok(AllowedOrigins::SameOrigin(public.cloned()));
        };
        if list == "*" {
            return Ok(AllowedOrigins::Any);
        }
        list.split(',')
            .map(Origin::parse)
            .collect::<Result<_, _>>()
            .map(AllowedOrigins::List)
    }

    /// Whether a handshake with this `Origin` header may proceed. `None` (no Origin: not a
    /// browser, so not a cross-site page) always may.
    pub fn allows(&self, origin: Option<&HeaderValue>, host: Option<&HeaderValue>) -> bool {
        let Some(origin) = origin else {
            return true;
        };
        if matches!(self, AllowedOrigins::Any) {
            return true;
        }
        // "null" (sandboxed frames, file: pages) and junk parse to nothing: refused.
        let Some(o) = origin.to_str().ok().and_then(|s| Origin::parse(s).ok()) else {
            return false;
        };
        match self {
            AllowedOrigins::Any => true,
            AllowedOrigins::List(list) => list.contains(&o),
            AllowedOrigins::SameOrigin(public) => {
                public.as_ref() == Some(&o) || host.is_some_and(|h| o.same_host(h))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hv(s: &str) -> HeaderValue {
        HeaderValue::from_str(s).unwrap()
    }

    #[test]
    fn parses_and_normalizes() {
        let o = Origin::parse("HTTPS://Place.Example/").unwrap();
        assert_eq!(o, Origin::parse("https://place.example:443").unwrap());
        assert!(o.is_https());
        assert!(Origin::parse("ftp://x").is_err());
        assert!(Origin::parse("https://x/path").is_err());
        assert!(Origin::parse("https://u@x").is_err());
        assert!(Origin::parse("place.example").is_err());
    }

    #[test]
    fn same_origin_by_default() {
        let a = AllowedOrigins::parse(None, None).unwrap();
        let host = hv("127.0.0.1:8080");
        assert!(a.allows(None, Some(&host)));
        assert!(a.allows(Some(&hv("http://127.0.0.1:8080")), Some(&host)));
        assert!(!a.allows(Some(&hv("http://127.0.0.1:8081")), Some(&host)));
        assert!(!a.allows(Some(&hv("http://evil.example")), Some(&host)));
        assert!(!a.allows(Some(&hv("null")), Some(&host)));
        assert!(a.allows(Some(&hv("https://p.example")), Some(&hv("p.example"))));
        let public = Origin::parse("https://place.example").unwrap();
        let a = AllowedOrigins::parse(None, Some(&public)).unwrap();
        assert!(a.allows(Some(&hv("https://place.example")), Some(&host)));
        assert!(!a.allows(Some(&hv("http://place.example")), Some(&host)));
    }

    #[test]
    fn lists_and_any() {
        let a =
            AllowedOrigins::parse(Some("https://a.example, http://b.example:81"), None).unwrap();
        let host = hv("a.example");
        assert!(a.allows(Some(&hv("https://a.example")), Some(&host)));
        assert!(a.allows(Some(&hv("http://b.example:81")), Some(&host)));
        assert!(!a.allows(Some(&hv("http://a.example")), Some(&host)));
        let any = AllowedOrigins::parse(Some("*"), None).unwrap();
        assert!(any.allows(Some(&hv("null")), None));
        assert!(AllowedOrigins::parse(Some("a.example"), None).is_err());
    }
}
