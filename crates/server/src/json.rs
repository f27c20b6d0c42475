//! JSON that refuses duplicate object keys.
//!
//! `serde_json` lets the last of two equal keys win, so `{"x":1,"x":2}` means different
//! things to different parsers (a proxy or log that reads the first one sees another
//! placement than the server makes). [`parse`] builds the same [`Value`] but fails on the
//! first key that repeats in any object, naming it.

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};
use std::fmt;

/// Parses `body` as JSON, refusing any object with a repeated key. The error text is for
/// the client: it says what is wrong and where (serde_json adds line and column).
pub fn parse(body: &[u8]) -> Result<Value, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let v = Strict.deserialize(&mut de)?;
    de.end()?;
    Ok(v)
}

/// The visitor (and seed) that builds a [`Value`] strictly.
struct Strict;

impl<'de> DeserializeSeed<'de> for Strict {
    type Value = Value;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Strict {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        // JSON has no NaN or infinity, so this is always a number.
        Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        while let Some(v) = seq.next_element_seed(Strict)? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if out.contains_key(&key) {
                return Err(de::Error::custom(format_args!(
                    "the key {key:?} appears more than once"
                )));
            }
            let v = map.next_value_seed(Strict)?;
            out.insert(key, v);
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn builds_the_same_value() {
        let s = r#"{"x": 1, "y": -2, "f": 1.5, "s": "a", "n": null, "a": [true, {"k": 0}]}"#;
        assert_eq!(
            parse(s.as_bytes()).unwrap(),
            serde_json::from_str::<Value>(s).unwrap()
        );
        assert_eq!(parse(b"[1,2]").unwrap(), json!([1, 2]));
    }

    #[test]
    fn refuses_repeated_keys_at_any_depth() {
        let e = parse(br#"{"x":1,"y":2,"x":3}"#).unwrap_err().to_string();
        assert!(e.contains("\"x\" appears more than once"), "{e}");
        let e = parse(br#"{"a":[{"k":1,"k":1}]}"#).unwrap_err().to_string();
        assert!(e.contains("\"k\""), "{e}");
        // Escapes decode before the comparison.
        assert!(parse(br#"{"x":1,"\u0078":2}"#).is_err());
        assert!(parse(br#"{"x":1} trailing"#).is_err());
    }
}
