//! Reading `POST /api/timelapse`'s body: every field checked, every refusal saying what
//! is allowed.

use crate::error::ApiError;
use crate::routes::body::{int_field, opt_int};
use rplace_domain::Dimensions;
use serde_json::{Map, Value};

/// Most frames in one animation.
pub const MAX_FRAMES: i64 = 3600;
/// Most frames per second.
pub const MAX_FPS: i64 = 60;
/// Largest scale (output pixels per canvas pixel on each axis).
pub const MAX_SCALE: i64 = 8;
/// Most output pixels per frame (w × h × scale²): 2048², about 4 MiB of indices in memory
/// per job and a frame any viewer can show.
pub const MAX_FRAME_PIXELS: u64 = 2048 * 2048;
/// Frames when `frames` is absent.
pub const DEFAULT_FRAMES: i64 = 120;
/// Frames per second when `fps` is absent.
pub const DEFAULT_FPS: i64 = 30;
/// The shape of a request, for error messages.
pub const EXAMPLE: &str = r#"{"x":0,"y":0,"w":100,"h":100,"from":null,"to":null,"frames":120,"fps":30,"scale":1,"format":"apng"}"#;
/// Formats written.
pub const FORMATS: &[&str] = &["apng"];

/// A request, checked against the canvas and the limits; `from`/`to` may still be open
/// (the history's first and last placement).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request {
    pub x: u32,
    pub y: u32,
    pub w: u32,
    pub h: u32,
    /// Unix ms; `None`: the first placement's time.
    pub from_ms: Option<i64>,
    /// Unix ms; `None`: the last placement's time.
    pub to_ms: Option<i64>,
    pub frames: u32,
    pub fps: u32,
    pub scale: u32,
}

fn invalid(field: &'static str, message: String, allowed: String) -> ApiError {
    ApiError::InvalidField {
        field,
        message,
        allowed,
    }
}

/// An integer field within `lo..=hi`, `default` if absent (`None`: required).
fn ranged(
    obj: &Map<String, Value>,
    field: &'static str,
    lo: i64,
    hi: i64,
    default: Option<i64>,
) -> Result<i64, ApiError> {
    let allowed = format!("integer {lo}..={hi}");
    let v = match default {
        None => int_field(obj, field, allowed.clone())?,
        Some(d) => opt_int(obj, field, &allowed)?.unwrap_or(d),
    };
    if !(lo..=hi).contains(&v) {
        return Err(invalid(
            field,
            format!("{field} must be from {lo} to {hi}, got {v}"),
            allowed,
        ));
    }
    Ok(v)
}

/// Parses and checks a request for a canvas of `dims`.
pub fn parse(obj: &Map<String, Value>, dims: Dimensions) -> Result<Request, ApiError> {
    const FIELDS: &[&str] = &[
        "x", "y", "w", "h", "from", "to", "frames", "fps", "scale", "format",
    ];
    if let Some(k) = obj.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        return Err(invalid(
            "body",
            format!("unknown field {k:?}"),
            format!("the fields {}", FIELDS.join(", ")),
        ));
    }
    let (cw, ch) = (dims.width() as i64, dims.height() as i64);
    let x = ranged(obj, "x", 0, cw - 1, None)?;
    let y = ranged(obj, "y", 0, ch - 1, None)?;
    let w = ranged(obj, "w", 1, cw - x, None)?;
    let h = ranged(obj, "h", 1, ch - y, None)?;
    let frames = ranged(obj, "frames", 1, MAX_FRAMES, Some(DEFAULT_FRAMES))?;
    let fps = ranged(obj, "fps", 1, MAX_FPS, Some(DEFAULT_FPS))?;
    let scale = ranged(obj, "scale", 1, MAX_SCALE, Some(1))?;
    let out = (w * h * scale * scale) as u64;
    if out > MAX_FRAME_PIXELS {
        return Err(invalid(
            "scale",
            format!(
                "a frame of {w} x {h} at scale {scale} has {out} pixels, more than {MAX_FRAME_PIXELS}"
            ),
            format!("w * h * scale^2 at most {MAX_FRAME_PIXELS} (2048 x 2048)"),
        ));
    }
    let time_allowed = "unix milliseconds (integer >= 0), or null for the whole history";
    let time = |field: &'static str| -> Result<Option<i64>, ApiError> {
        let v = opt_int(obj, field, time_allowed)?;
        if v.is_some_and(|v| v < 0) {
            return Err(invalid(
                field,
                format!("{field} must not be negative"),
                time_allowed.into(),
            ));
        }
        Ok(v)
    };
    let (from_ms, to_ms) = (time("from")?, time("to")?);
    if let (Some(f), Some(t)) = (from_ms, to_ms)
        && f > t
    {
        return Err(invalid(
            "to",
            format!("to ({t}) is before from ({f})"),
            "to at least from".into(),
        ));
    }
    let allowed_formats = format!("one of {}", FORMATS.join(", "));
    match obj.get("format") {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) if FORMATS.contains(&s.as_str()) => {}
        Some(v) => {
            return Err(invalid(
                "format",
                format!("format {v} is not supported"),
                allowed_formats,
            ));
        }
    }
    Ok(Request {
        x: x as u32,
        y: y as u32,
        w: w as u32,
        h: h as u32,
        from_ms,
        to_ms,
        frames: frames as u32,
        fps: fps as u32,
        scale: scale as u32,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(v: Value) -> Result<Request, ApiError> {
        parse(
            v.as_object().unwrap(),
            Dimensions::parse(1000, 500).unwrap(),
        )
    }

    fn field_of(e: ApiError) -> &'static str {
        match e {
            ApiError::InvalidField { field, .. } | ApiError::MissingField { field, .. } => field,
            e => panic!("{e:?}"),
        }
    }

    #[test]
    fn defaults_and_limits() {
        let r = req(serde_json::json!({"x": 10, "y": 20, "w": 990, "h": 480})).unwrap();
        assert_eq!((r.frames, r.fps, r.scale), (120, 30, 1));
        assert_eq!((r.from_ms, r.to_ms), (None, None));
        let bad = [
            (serde_json::json!({"x": 10, "y": 20, "w": 991, "h": 1}), "w"),
            (serde_json::json!({"x": 1000, "y": 0, "w": 1, "h": 1}), "x"),
            (serde_json::json!({"y": 0, "w": 1, "h": 1}), "x"),
            (
                serde_json::json!({"x": 0, "y": 0, "w": 1, "h": 1, "frames": 0}),
                "frames",
            ),
            (
                serde_json::json!({"x": 0, "y": 0, "w": 1, "h": 1, "frames": 3601}),
                "frames",
            ),
            (
                serde_json::json!({"x": 0, "y": 0, "w": 1, "h": 1, "fps": 61}),
                "fps",
            ),
            (
                serde_json::json!({"x": 0, "y": 0, "w": 1, "h": 1, "scale": 9}),
                "scale",
            ),
            (
                serde_json::json!({"x": 0, "y": 0, "w": 600, "h": 500, "scale": 4}),
                "scale",
            ),
            (
                serde_json::json!({"x": 0, "y": 0, "w": 1, "h": 1, "from": 5, "to": 4}),
                "to",
            ),
            (
                serde_json::json!({"x": 0, "y": 0, "w": 1, "h": 1, "from": -1}),
                "from",
            ),
            (
                serde_json::json!({"x": 0, "y": 0, "w": 1, "h": 1, "format": "gif"}),
                "format",
            ),
            (
                serde_json::json!({"x": 0, "y": 0, "w": 1, "h": 1, "wat": 1}),
                "body",
            ),
        ];
        for (v, field) in bad {
            assert_eq!(field_of(req(v.clone()).unwrap_err()), field, "{v}");
        }
    }
}
