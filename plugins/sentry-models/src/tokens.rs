//! Sentry's secrets as an import mints them: API tokens
//! (`sentry.models.apitoken.generate_token`), organization auth tokens
//! (`sentry.utils.security.orgauthtoken_token.generate_token`), and the
//! SHA-256 hex digests Sentry stores for both.
//!
//! Randomness comes only from the session, so that `--seed` reproduces every
//! token. Sentry keeps just the digest of an org auth token and never shows the
//! plaintext again, so what matters is its shape and its randomness.

use relocate_plugin_sdk::Session;
use sha2::{Digest, Sha256};

/// The prefix of an organization auth token (`SENTRY_ORG_AUTH_TOKEN_PREFIX`).
pub const ORG_AUTH_TOKEN_PREFIX: &str = "sntrys_";

/// `hashlib.sha256(text.encode()).hexdigest()`.
pub fn sha256_hex(text: &str) -> String {
    hex(&Sha256::digest(text.as_bytes()))
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

/// Standard base64 (`base64.b64encode`), with or without its `=` padding.
pub fn base64(bytes: &[u8], pad: bool) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        let sextets = chunk.len() + 1;
        for i in 0..4 {
            if i < sextets {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 0x3f) as usize]));
            } else if pad {
                out.push('=');
            }
        }
    }
    out
}

/// The last `n` characters of `s` (Python's `s[-n:]`).
pub fn last_characters(s: &str, n: usize) -> String {
    let count = s.chars().count();
    s.chars().skip(count.saturating_sub(n)).collect()
}

/// A new API token: `token_type` (`sntryu_`, ...) when it has one, then 64
/// random hex digits (`secrets.token_hex(nbytes=32)`).
pub fn api_token(session: &Session, token_type: Option<&str>) -> String {
    let mut bytes = session.random_bytes(32);
    bytes.resize(32, 0);
    format!("{}{}", token_type.unwrap_or_default(), hex(&bytes))
}

/// A new organization auth token for the organization `org_slug`:
/// `sntrys_<base64 of the JSON payload>_<base64 of 32 random bytes>`.
///
/// Sentry's payload names the instance's `system.url-prefix` and region URL,
/// which a plugin cannot know; they are left empty. `iat` is the import's
/// start (`started_at`), the only clock a plugin has.
pub fn org_auth_token(session: &Session, org_slug: &str) -> String {
    let iat = python_float_seconds(crate::datetime::unix_millis(session.started_at()).unwrap_or_default());
    let payload = format!(r#"{{"iat": {iat}, "url": "", "region_url": "", "org": {}}}"#, json_string(org_slug));
    let mut secret = session.random_bytes(32);
    secret.resize(32, 0);
    format!("{ORG_AUTH_TOKEN_PREFIX}{}_{}", base64(payload.as_bytes(), true), base64(&secret, false))
}

/// Milliseconds as Python prints a float of seconds: `1704067200.0`,
/// `1704067200.25`.
fn python_float_seconds(millis: i64) -> String {
    let (secs, ms) = (millis.div_euclid(1000), millis.rem_euclid(1000));
    let fraction = format!("{ms:03}");
    let fraction = fraction.trim_end_matches('0');
    format!("{secs}.{}", if fraction.is_empty() { "0" } else { fraction })
}

/// `s` as a JSON string literal, escaped as Python's `json.dumps` does.
fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 || u32::from(c) > 0x7e => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use relocate_plugin_sdk::testing::TestHost;
    use relocate_plugin_sdk::{ImportFlags, Scope};

    use super::*;

    fn session() -> Session {
        Session::new("sentry.apitoken", Scope::Global, ImportFlags::default(), "2024-01-01T00:00:00.000Z")
    }

    #[test]
    fn sha256_matches_known_digests() {
        assert_eq!(sha256_hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
        assert_eq!(sha256_hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }

    #[test]
    fn base64_matches_python() {
        assert_eq!(base64(b"", true), "");
        assert_eq!(base64(b"f", true), "Zg==");
        assert_eq!(base64(b"fo", true), "Zm8=");
        assert_eq!(base64(b"foo", true), "Zm9v");
        assert_eq!(base64(b"foob", false), "Zm9vYg");
        assert_eq!(base64(&[0xff, 0xfe], true), "//4=");
    }

    #[test]
    fn api_tokens_carry_their_type_and_64_hex_digits() {
        let _host = TestHost::new(1);
        let typed = api_token(&session(), Some("sntryu_"));
        let hex_part = typed.strip_prefix("sntryu_").expect("prefixed");
        assert!(hex_part.len() == 64 && hex_part.bytes().all(|b| b.is_ascii_hexdigit()), "{typed}");
        let plain = api_token(&session(), None);
        assert!(plain.len() == 64 && plain != hex_part);
    }

    #[test]
    fn org_auth_tokens_have_sentrys_shape() {
        let _host = TestHost::new(1);
        let token = org_auth_token(&session(), "test-org");
        let rest = token.strip_prefix(ORG_AUTH_TOKEN_PREFIX).expect("sntrys_ prefix");
        let (payload, secret) = rest.rsplit_once('_').expect("two parts");
        assert_eq!(token.matches('_').count(), 2, "{token}");
        assert_eq!(payload, base64(br#"{"iat": 1704067200.0, "url": "", "region_url": "", "org": "test-org"}"#, true));
        assert_eq!(secret.len(), 43, "32 bytes of base64 without padding");
        assert_eq!(last_characters(&token, 4), secret[39..]);
    }

    #[test]
    fn seconds_print_like_python_floats() {
        assert_eq!(python_float_seconds(1_704_067_200_000), "1704067200.0");
        assert_eq!(python_float_seconds(1_704_067_200_250), "1704067200.25");
        assert_eq!(python_float_seconds(5), "0.005");
    }

    #[test]
    fn json_strings_are_escaped() {
        assert_eq!(json_string(r#"a"b\c"#), r#""a\"b\\c""#);
        assert_eq!(json_string("é"), r#""\u00e9""#);
    }
}
