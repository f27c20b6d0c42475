//! Anti-bot: the built-in proof-of-work challenge and the optional third-party captcha
//! (Cloudflare Turnstile or hCaptcha), and when a placement must carry one.

pub mod routes;
