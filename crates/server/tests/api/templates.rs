//! Templates (`/api/templates`): upload, metadata, the mapped PNG, limits with their JSON
//! errors, and who may delete, on both backends.

use crate::accounts::{logged_in, spawn_with_provider};
use crate::helpers::*;
use crate::strict::ADMIN_TOKEN;
use serde_json::{Value, json};

/// The 2017 palette's red (index 5) and blue (13), white (0).
const RED: [u8; 3] = [0xE5, 0x00, 0x00];
const BLUE: [u8; 3] = [0x00, 0x00, 0xEA];

/// An RGBA PNG of `w` x `h` pixels.
fn rgba_png(w: u32, h: u32, rgba: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut enc = png::Encoder::new(&mut out, w, h);
    enc.set_color(png::ColorType::Rgba);
    enc.set_depth(png::BitDepth::Eight);
    let mut wr = enc.write_header().unwrap();
    wr.write_image_data(rgba).unwrap();
    wr.finish().unwrap();
    out
}

/// A blank (transparent) PNG of `w` x `h`.
fn blank_png(w: u32, h: u32) -> Vec<u8> {
    rgba_png(w, h, &vec![0; (w * h * 4) as usize])
}

/// The pixels of a PNG as RGBA, decoded the way any client would.
fn decode_rgba(bytes: &[u8]) -> (u32, u32, Vec<u8>) {
    let mut dec = png::Decoder::new(std::io::Cursor::new(bytes));
    dec.set_transformations(png::Transformations::normalize_to_color8());
    let mut r = dec.read_info().unwrap();
    let mut buf = vec![0; r.output_buffer_size().unwrap()];
    let info = r.next_frame(&mut buf).unwrap();
    assert_eq!(
        info.color_type,
        png::ColorType::Rgba,
        "indexed with tRNS expands to RGBA"
    );
    buf.truncate(info.buffer_size());
    (info.width, info.height, buf)
}

/// CRC-32 (ISO-HDLC) of a PNG chunk's type and data.
fn crc32(bytes: &[u8]) -> u32 {
    let mut c = 0xFFFF_FFFFu32;
    for b in bytes {
        c ^= u32::from(*b);
        for _ in 0..8 {
            c = if c & 1 != 0 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
        }
    }
    !c
}

/// A small valid PNG whose header claims `w` x `h` (a decompression bomb's header: the
/// image data would never match, so only a decoder that trusts the header would allocate).
fn lying_png(w: u32, h: u32) -> Vec<u8> {
    let mut png = blank_png(1, 1);
    png[16..20].copy_from_slice(&w.to_be_bytes());
    png[20..24].copy_from_slice(&h.to_be_bytes());
    let crc = crc32(&png[12..29]);
    png[29..33].copy_from_slice(&crc.to_be_bytes());
    png
}

async fn upload(
    app: &TestApp,
    client: &reqwest::Client,
    query: &str,
    body: Vec<u8>,
) -> (u16, Value) {
    let r = client
        .post(app.url(&format!("/api/templates?{query}")))
        .header("content-type", "image/png")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or_default())
}

/// Sends `req`; its status and JSON body.
async fn send(req: reqwest::RequestBuilder) -> (u16, Value) {
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or_default())
}

contract_test!(an_upload_is_mapped_to_the_palette_and_served_back);
/// An upload answers a short id; its JSON names where it is and who uploaded it; its PNG
/// is the mapped pixels (near colors snapped to the palette, faint ones transparent), with
/// immutable caching and an ETag that revalidates.
async fn an_upload_is_mapped_to_the_palette_and_served_back(backend: Backend) {
    let app = spawn_app_on(backend, &[]).await;
    let c = client();
    let me = app.login(&c).await["user"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    #[rustfmt::skip]
    let rgba = [
        230, 10, 5, 255,   0, 0, 0, 0,        10, 0, 230, 200,
        255, 255, 255, 255, 90, 90, 90, 100,   0, 0, 0, 255,
    ];
    let (status, body) = upload(&app, &c, "x=4&y=5&name=Our%20flag", rgba_png(3, 2, &rgba)).await;
    assert_eq!(status, 201, "{body}");
    let id = body["id"].as_str().unwrap().to_string();
    assert_eq!(id.len(), 10, "{id}");
    assert!(id.bytes().all(|b| b.is_ascii_alphanumeric()), "{id}");

    let meta = app.get_json(&format!("/api/templates/{id}")).await;
    assert_eq!(meta["id"], id.as_str());
    assert_eq!(meta["name"], "Our flag");
    assert_eq!(
        (&meta["x"], &meta["y"], &meta["width"], &meta["height"]),
        (&json!(4), &json!(5), &json!(3), &json!(2))
    );
    assert_eq!(meta["owner"], me.as_str());
    assert!(meta["created_at"].as_i64().unwrap() > 1_600_000_000_000);

    let r = app
        .client
        .get(app.url(&format!("/api/templates/{id}.png")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "image/png");
    assert!(
        r.headers()["cache-control"]
            .to_str()
            .unwrap()
            .contains("immutable")
    );
    let etag = r.headers()["etag"].to_str().unwrap().to_string();
    let (w, h, px) = decode_rgba(&r.bytes().await.unwrap());
    assert_eq!((w, h), (3, 2));
    let [r5, g5, b5] = RED;
    let [r13, g13, b13] = BLUE;
    #[rustfmt::skip]
    let expected = vec![
        r5, g5, b5, 255,      0, 0, 0, 0,   r13, g13, b13, 255,
        255, 255, 255, 255,   0, 0, 0, 0,   0x22, 0x22, 0x22, 255,
    ];
    assert_eq!(px, expected);

    let r = app
        .client
        .get(app.url(&format!("/api/templates/{id}.png")))
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 304);

    let mine = app.get_json_as(&c, "/api/templates").await;
    assert_eq!(mine["templates"][0]["id"], id.as_str(), "{mine}");
    let stranger = client();
    app.login(&stranger).await;
    let theirs = app.get_json_as(&stranger, "/api/templates").await;
    assert_eq!(theirs, json!({"templates": []}), "a stranger lists nothing");
    let nobody = app.get_json_as(&client(), "/api/templates").await;
    assert_eq!(nobody["error"], "unauthorized");

    for missing in ["ZZZZZZZZZZ", "ZZZZZZZZZZ.png", "nope", "..%2F"] {
        let r = app
            .client
            .get(app.url(&format!("/api/templates/{missing}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404, "{missing}");
        assert_eq!(r.json::<Value>().await.unwrap()["error"], "not_found");
    }
}

contract_test!(uploads_past_a_limit_get_the_documented_json_error);
/// Every limit answers its JSON error and says what is allowed.
async fn uploads_past_a_limit_get_the_documented_json_error(backend: Backend) {
    let app = spawn_app_on(backend, &[]).await;
    let c = client();
    app.login(&c).await;
    let ok = "x=0&y=0&name=t";
    let long_name = format!("x=0&y=0&name={}", "a".repeat(65));
    let cases: Vec<(&str, &str, Vec<u8>, u16, &str)> = vec![
        (
            "not a png",
            ok,
            b"GIF89a....".to_vec(),
            422,
            "invalid_image",
        ),
        (
            "truncated",
            ok,
            blank_png(2, 2)[..40].to_vec(),
            422,
            "invalid_image",
        ),
        ("too wide", ok, blank_png(2049, 1), 422, "image_too_large"),
        (
            "bomb header",
            ok,
            lying_png(100_000, 100_000),
            422,
            "image_too_large",
        ),
        (
            "past the right edge",
            "x=10&y=0&name=t",
            blank_png(7, 1),
            422,
            "off_canvas",
        ),
        (
            "past the bottom",
            "x=0&y=7&name=t",
            blank_png(1, 2),
            422,
            "off_canvas",
        ),
        (
            "x off the canvas",
            "x=16&y=0&name=t",
            blank_png(1, 1),
            400,
            "invalid_query",
        ),
        ("no name", "x=0&y=0", blank_png(1, 1), 400, "invalid_query"),
        (
            "control in name",
            "x=0&y=0&name=a%0Ab",
            blank_png(1, 1),
            400,
            "invalid_query",
        ),
        (
            "long name",
            &long_name,
            blank_png(1, 1),
            400,
            "invalid_query",
        ),
        (
            "too many bytes",
            ok,
            vec![0x89; 1024 * 1024 + 1],
            413,
            "payload_too_large",
        ),
    ];
    for (what, query, body, status, code) in cases {
        let (got, answer) = upload(&app, &c, query, body).await;
        assert_eq!(
            (got, answer["error"].as_str().unwrap_or("")),
            (status, code),
            "{what}: {answer}"
        );
        assert!(
            answer["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{what}"
        );
    }
    let (_, answer) = upload(&app, &c, ok, lying_png(100_000, 100_000)).await;
    assert_eq!(answer["allowed"], "1 to 2048 pixels on each side");
    let (_, answer) = upload(&app, &c, "x=10&y=0&name=t", blank_png(7, 1)).await;
    assert_eq!(answer["allowed"], "x + width <= 16 and y + height <= 8");

    let r = c
        .post(app.url("/api/templates?x=0&y=0&name=t"))
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415);

    // Without an identity cookie there is no owner.
    let (status, answer) = upload(&app, &client(), ok, blank_png(1, 1)).await;
    assert_eq!(
        (status, answer["error"].as_str().unwrap()),
        (401, "unauthorized")
    );

    // Ten uploads an hour per identity; the eleventh says when to retry.
    for i in 0..10 {
        let (status, answer) = upload(&app, &c, ok, blank_png(1, 1)).await;
        assert_eq!(status, 201, "upload {i}: {answer}");
    }
    let r = c
        .post(app.url("/api/templates?x=0&y=0&name=t"))
        .header("content-type", "image/png")
        .body(blank_png(1, 1))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    assert!(r.headers().contains_key("retry-after"));
    let answer: Value = r.json().await.unwrap();
    assert_eq!(answer["error"], "rate_limited", "{answer}");
    assert!(answer["retry_after_ms"].as_i64().unwrap() > 0);
    // Another identity is not limited by the first one's uploads.
    let other = client();
    app.login(&other).await;
    assert_eq!(upload(&app, &other, ok, blank_png(1, 1)).await.0, 201);
}

contract_test!(a_banned_user_may_not_upload);
async fn a_banned_user_may_not_upload(backend: Backend) {
    let app = spawn_app_on(backend, &["--admin-token", ADMIN_TOKEN]).await;
    let c = client();
    let me = app.login(&c).await["user"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let r = reqwest::Client::new()
        .post(app.url("/api/admin/bans"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"user": me, "reason": "spam templates"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let (status, answer) = upload(&app, &c, "x=0&y=0&name=t", blank_png(1, 1)).await;
    assert_eq!(
        (status, answer["error"].as_str().unwrap()),
        (403, "banned"),
        "{answer}"
    );
    assert_eq!(answer["reason"], "spam templates");
}

contract_test!(the_owner_or_a_moderator_deletes_a_template);
/// The owner deletes their template; another visitor gets 403; a moderator (the admin
/// token, or an admin's session from the canvas's page) deletes anyone's, and the audit
/// log records it. A deleted template is gone from both its URLs.
async fn the_owner_or_a_moderator_deletes_a_template(backend: Backend) {
    let login = spawn_with_provider(
        backend,
        &["--admin-token", ADMIN_TOKEN, "--admins", "local:boss"],
    )
    .await;
    let app = &login.app;
    let owner = client();
    app.login(&owner).await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        let (status, body) = upload(app, &owner, "x=1&y=1&name=mine", blank_png(2, 2)).await;
        assert_eq!(status, 201, "{body}");
        ids.push(body["id"].as_str().unwrap().to_string());
    }
    let url = |id: &str| app.url(&format!("/api/templates/{id}"));

    let stranger = client();
    app.login(&stranger).await;
    let (status, answer) = send(stranger.delete(url(&ids[0]))).await;
    assert_eq!(
        (status, answer["error"].as_str().unwrap()),
        (403, "forbidden"),
        "{answer}"
    );
    let (status, _) = send(client().delete(url(&ids[0]))).await;
    assert_eq!(status, 401, "no identity at all");

    let (status, answer) = send(owner.delete(url(&ids[0]))).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["deleted"]["id"], ids[0].as_str());
    for path in [
        format!("/api/templates/{}", ids[0]),
        format!("/api/templates/{}.png", ids[0]),
    ] {
        let r = app.client.get(app.url(&path)).send().await.unwrap();
        assert_eq!(r.status(), 404, "{path}");
    }
    let (status, _) = send(owner.delete(url(&ids[0]))).await;
    assert_eq!(status, 404, "deleted once");

    let token = reqwest::Client::new()
        .delete(url(&ids[1]))
        .bearer_auth(ADMIN_TOKEN);
    assert_eq!(send(token).await.0, 200);

    let boss = logged_in(app, "boss").await;
    // Cross-site: no Origin of this canvas and no CSRF token.
    let (status, answer) = send(boss.client.delete(url(&ids[2]))).await;
    assert_eq!(
        (status, answer["error"].as_str().unwrap()),
        (403, "csrf"),
        "{answer}"
    );
    let same_site = boss
        .client
        .delete(url(&ids[2]))
        .header("origin", app.url(""));
    assert_eq!(send(same_site).await.0, 200);

    let audit: Value = reqwest::Client::new()
        .get(app.url("/api/admin/audit?kind=delete_template"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let entries = audit["entries"].as_array().unwrap();
    let deleted: Vec<&str> = entries
        .iter()
        .filter(|e| e["kind"] == "delete_template")
        .map(|e| e["detail"]["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        deleted.len(),
        2,
        "the owner's own deletion is not a moderation: {audit}"
    );
    assert!(deleted.contains(&ids[1].as_str()) && deleted.contains(&ids[2].as_str()));
}
