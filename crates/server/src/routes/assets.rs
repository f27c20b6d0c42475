//! The page, from files embedded in the binary. `GET /` also hands out an identity;
//! `GET /admin` is the moderators' page.

use crate::app::AppState;
use crate::error::ApiError;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum_extra::extract::cookie::SignedCookieJar;
use rplace_web::Assets;

pub async fn serve(
    State(app): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    jar: SignedCookieJar,
) -> Response {
    if method != Method::GET && method != Method::HEAD {
        return ApiError::NotFound.into_response();
    }
    let path = uri.path().trim_start_matches('/');
    let path = match path {
        "" => "index.html",
        // The moderators' page (it authenticates its API calls itself).
        "admin" => "admin.html",
        p => p,
    };
    let Some(file) = Assets::get(path) else {
        return ApiError::NotFound.into_response();
    };
    // Content hashes make a strong validator; browsers revalidate and get 304s.
    let etag = format!("\"{}\"", hex::encode(&file.metadata.sha256_hash()[..12]));
    let mime = mime_guess::from_path(path).first_or_octet_stream();
    let mut resp = if headers
        .get(header::IF_NONE_MATCH)
        .is_some_and(|v| v.as_bytes() == etag.as_bytes())
    {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        ([(header::CONTENT_TYPE, mime.as_ref())], file.data).into_response()
    };
    let h = resp.headers_mut();
    h.insert(
        header::ETAG,
        HeaderValue::from_str(&etag).expect("hex is a valid header"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    if path == "index.html" {
        let (jar, _) = crate::identity::ensure(jar, app.settings.access.secure_cookies);
        return (jar, resp).into_response();
    }
    resp
}
