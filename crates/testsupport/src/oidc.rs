//! A real OpenID Connect provider for tests: the npm package `oidc-provider` run by
//! `tests/oidc/provider.mjs` under node, on a given port of 127.0.0.1, with one static
//! client and development interactions (a login form that takes any username, then a
//! consent form). Stopped on drop, and by its watchdog when the test process is gone.
//!
//! `npm ci` runs in `tests/oidc` first when its `node_modules` is missing.
//!
//! The app's redirect URI contains the app's port and the app's configuration contains
//! the provider's issuer, so a test picks the provider's port first
//! ([`crate::free_port`]), starts the app with the issuer ([`OidcProvider::issuer_on`]),
//! then starts the provider with the app's redirect URI.

use super::*;

/// The folder of the provider script.
fn script_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/oidc")
}

/// Runs `npm ci` in the provider's folder once per test process, if needed.
fn install() {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        let dir = script_dir();
        if dir.join("node_modules/oidc-provider").is_dir() {
            return;
        }
        run(Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(&dir));
    });
}

/// A running `oidc-provider`.
pub struct OidcProvider {
    /// Where it listens.
    port: u16,
    /// Holds its log.
    dir: tempfile::TempDir,
    /// The node process, under the watchdog.
    process: Watched,
}

impl OidcProvider {
    /// The issuer URL a provider on `port` has.
    pub fn issuer_on(port: u16) -> String {
        format!("http://127.0.0.1:{port}")
    }

    /// Starts the provider on `port` with one client and waits until discovery answers.
    pub fn start(port: u16, client_id: &str, client_secret: &str, redirects: &[String]) -> Self {
        install();
        let dir = tempfile::Builder::new()
            .prefix("rplace-oidc-")
            .tempdir()
            .expect("temp dir");
        let log = dir.path().join("provider.log");
        let script = script_dir().join("provider.mjs");
        let cmd: Vec<String> = vec![
            "node".into(),
            script.display().to_string(),
            port.to_string(),
            client_id.into(),
            client_secret.into(),
            redirects.join(","),
        ];
        let mut process = Watched::spawn(&cmd, &log);
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let logged = std::fs::read_to_string(&log).unwrap_or_default();
            if logged.contains("listening http://") {
                break;
            }
            if !process.is_running() || Instant::now() > deadline {
                process.stop("-KILL");
                panic!("oidc-provider did not start on port {port}:\n{logged}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        OidcProvider { port, dir, process }
    }

    /// Its issuer URL.
    pub fn issuer(&self) -> String {
        Self::issuer_on(self.port)
    }

    /// Its log so far, to print when a test fails.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("provider.log")).unwrap_or_default()
    }
}

impl Drop for OidcProvider {
    fn drop(&mut self) {
        self.process.stop("-TERM");
    }
}
