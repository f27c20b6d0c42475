//! The format and the checks, against the vectors shared with the page's worker
//! (crates/domain/tests/fixtures/pow.json, computed independently with Python's hashlib).

use super::*;
use serde_json::Value;

fn fixtures() -> Value {
    serde_json::from_str(include_str!("../../tests/fixtures/pow.json")).unwrap()
}

fn key() -> PowKey {
    let mut k = [0u8; 32];
    hex::decode_to_slice(fixtures()["key"].as_str().unwrap(), &mut k).unwrap();
    PowKey::from_bytes(k)
}

fn challenge_of(v: &Value) -> Challenge {
    let mut id = [0u8; 16];
    hex::decode_to_slice(v["id"].as_str().unwrap(), &mut id).unwrap();
    Challenge::new(
        id,
        UserId::parse(v["user"].as_str().unwrap()).unwrap(),
        v["issued_ms"].as_i64().unwrap(),
        v["ttl_ms"].as_i64().unwrap(),
        v["difficulty"].as_u64().unwrap() as u8,
    )
    .unwrap()
}

#[test]
fn encoding_hash_and_zero_bits_match_the_vectors() {
    let key = key();
    for v in fixtures()["vectors"].as_array().unwrap() {
        let c = challenge_of(v);
        let text = c.encode(&key);
        assert_eq!(text, v["challenge"].as_str().unwrap());
        assert_eq!(Challenge::decode(&text, &key).unwrap(), c);
        for h in v["hashes"].as_array().unwrap() {
            let d = work(&text, h["nonce"].as_str().unwrap());
            assert_eq!(hex::encode(d), h["sha256"].as_str().unwrap());
            assert_eq!(
                u64::from(leading_zero_bits(&d)),
                h["leading_zero_bits"].as_u64().unwrap()
            );
        }
        let n = v["smallest_solution"].as_u64().unwrap();
        assert_eq!(solve(&text, c.difficulty(), 0), n);
    }
}

#[test]
fn the_key_is_derived_from_the_secret() {
    let f = fixtures();
    let secret = hex::decode(f["derive"]["secret"].as_str().unwrap()).unwrap();
    let mut want = [0u8; 32];
    hex::decode_to_slice(f["derive"]["key"].as_str().unwrap(), &mut want).unwrap();
    assert_eq!(PowKey::derive(&secret).0, want);
}

#[test]
fn leading_zero_bits_counts_from_the_first_byte() {
    assert_eq!(leading_zero_bits(&[0x80, 0]), 0);
    assert_eq!(leading_zero_bits(&[0x01, 0xff]), 7);
    assert_eq!(leading_zero_bits(&[0, 0x10]), 11);
    assert_eq!(leading_zero_bits(&[0, 0]), 16);
}

/// A vector challenge with its smallest solution, and a time at which it is valid.
fn solved() -> (PowKey, Challenge, String, i64) {
    let v = &fixtures()["vectors"][0];
    let c = challenge_of(v);
    let s = format!(
        "{}.{}",
        v["challenge"].as_str().unwrap(),
        v["smallest_solution"]
    );
    let now = c.issued_ms() + 1000;
    (key(), c, s, now)
}

#[test]
fn a_solution_verifies_for_its_user_within_its_lifetime() {
    let (key, c, s, now) = solved();
    assert_eq!(verify(&key, &s, c.user(), now, 8), Ok(c.clone()));
    assert_eq!(verify(&key, &s, c.user(), now, 4), Ok(c));
}

#[test]
fn every_refusal_says_why() {
    let (key, c, s, now) = solved();
    let u = c.user();
    let other = UserId(u.0 + 1);
    assert_eq!(verify(&key, &s, other, now, 8), Err(PowError::WrongUser));
    assert_eq!(
        verify(&key, &s, u, c.expires_ms(), 8),
        Err(PowError::Expired)
    );
    assert_eq!(
        verify(&key, &s, u, c.issued_ms() - CLOCK_SKEW_MS - 1, 8),
        Err(PowError::NotYetValid)
    );
    assert_eq!(
        verify(&key, &s, u, now, 9),
        Err(PowError::TooEasy { got: 8, needed: 9 })
    );
    let wrong_key = PowKey::from_bytes([7; 32]);
    assert_eq!(verify(&wrong_key, &s, u, now, 8), Err(PowError::Forged));
    // A field changed after signing: the MAC no longer matches.
    let easier = s.replacen("-8-", "-1-", 1);
    assert_eq!(verify(&key, &easier, u, now, 1), Err(PowError::Forged));
    // Nonce 0 of vector 0 has no leading zero bit.
    let (text, _) = s.rsplit_once('.').unwrap();
    assert_eq!(
        verify(&key, &format!("{text}.0"), u, now, 8),
        Err(PowError::InsufficientWork { got: 0, needed: 8 })
    );
    for bad in [
        "",
        text,
        &format!("{text}."),
        &format!("{text}.12a"),
        &format!("{text}.{}", "1".repeat(21)),
        &format!("{}.1", "p".repeat(300)),
        "p1-zz.1",
    ] {
        assert_eq!(
            verify(&key, bad, u, now, 8),
            Err(PowError::Malformed),
            "{bad}"
        );
    }
}

#[test]
fn a_signed_challenge_with_another_spelling_is_refused() {
    let key = key();
    // Leading zeros in the difficulty: signed, but not the one spelling of a challenge.
    let body = "p1-00112233445566778899aabbccddeeff-0123456789abcdef-1-2-08";
    let mut mac = key.mac();
    mac.update(body.as_bytes());
    let text = format!("{body}-{}", hex::encode(mac.finalize().into_bytes()));
    assert_eq!(Challenge::decode(&text, &key), Err(PowError::Malformed));
}

#[test]
fn challenges_have_bounded_difficulty_and_lifetime() {
    let u = UserId(1);
    assert!(Challenge::new([0; 16], u, 0, MAX_TTL_MS, MAX_DIFFICULTY).is_ok());
    assert_eq!(
        Challenge::new([0; 16], u, 0, 1000, 0),
        Err(ChallengeError::Difficulty(0))
    );
    assert_eq!(
        Challenge::new([0; 16], u, 0, 1000, MAX_DIFFICULTY + 1),
        Err(ChallengeError::Difficulty(MAX_DIFFICULTY + 1))
    );
    assert_eq!(
        Challenge::new([0; 16], u, 0, MAX_TTL_MS + 1, 8),
        Err(ChallengeError::Lifetime(MAX_TTL_MS + 1))
    );
}
