//! Helpers shared by the fuzz targets: a fixed RSA key so that fuzzed
//! tarballs reach the decryption paths, and a Fernet encoder that signs
//! whatever bytes the fuzzer picks, so that HMAC-valid tokens get through.

use std::sync::OnceLock;

use aes::Aes128;
use arbitrary::{Result, Unstructured};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE;
use cbc::cipher::block_padding::Pkcs7;
use cbc::cipher::{BlockEncryptMut, KeyIvInit};
use hmac::{Hmac, Mac};
use relocate::crypto::PrivateKey;
use sha2::Sha256;

/// The test key pair of `tests/fixtures/crypto` (public on purpose), to which
/// that folder's `fresh-install.tar`, a seed of the `tar` target, is encrypted.
pub const PRIVATE_PEM: &[u8] = include_bytes!("../../tests/fixtures/crypto/private-pkcs8.pem");
/// Another key: tarballs encrypted to it are refused with the one above.
pub const OTHER_PRIVATE_PEM: &[u8] = include_bytes!("../../tests/fixtures/crypto/other-private.pem");

/// [`PRIVATE_PEM`], parsed once.
pub fn key() -> &'static PrivateKey {
    static KEY: OnceLock<PrivateKey> = OnceLock::new();
    KEY.get_or_init(|| PrivateKey::from_pem(PRIVATE_PEM).expect("the fixture key parses"))
}

/// A 1024-bit key made once from a fixed seed, for the targets that build
/// their own tarballs: the decryption code is the same for any key size, and
/// each RSA operation costs a sixth of a 2048-bit one, so the fuzzer gets
/// through more inputs.
pub fn small_key() -> &'static PrivateKey {
    static KEY: OnceLock<PrivateKey> = OnceLock::new();
    KEY.get_or_init(|| {
        use rand::SeedableRng as _;
        use rsa::pkcs8::EncodePrivateKey as _;
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(9);
        let key = rsa::RsaPrivateKey::new(&mut rng, 1024).expect("generate a key");
        let pem = key.to_pkcs8_pem(rsa::pkcs8::LineEnding::LF).expect("encode the key");
        PrivateKey::from_pem(pem.as_bytes()).expect("a generated key parses")
    })
}

/// [`OTHER_PRIVATE_PEM`], parsed once.
pub fn other_key() -> &'static PrivateKey {
    static KEY: OnceLock<PrivateKey> = OnceLock::new();
    KEY.get_or_init(|| PrivateKey::from_pem(OTHER_PRIVATE_PEM).expect("the fixture key parses"))
}

/// A fixed Fernet key: 32 raw bytes, and its text as Python writes it.
pub const FERNET_RAW: [u8; 32] = *b"relocate-fuzz-fernet-key-32bytes";

pub fn fernet_key_text() -> String {
    URL_SAFE.encode(FERNET_RAW)
}

/// `0x80 | timestamp | iv | body`, then the HMAC-SHA256 of all that under the
/// signing half of [`FERNET_RAW`]: a token whose HMAC is valid whatever `body`
/// is (not necessarily whole AES blocks nor correctly padded).
pub fn signed_token(timestamp: u64, iv: [u8; 16], body: &[u8]) -> Vec<u8> {
    let mut token = Vec::with_capacity(25 + body.len() + 32);
    token.push(0x80);
    token.extend_from_slice(&timestamp.to_be_bytes());
    token.extend_from_slice(&iv);
    token.extend_from_slice(body);
    let mut mac = Hmac::<Sha256>::new_from_slice(&FERNET_RAW[..16]).expect("any key length");
    mac.update(&token);
    token.extend_from_slice(&mac.finalize().into_bytes());
    token
}

/// A genuine Fernet token of `plaintext` under [`FERNET_RAW`], decoded.
pub fn encrypted_token(timestamp: u64, iv: [u8; 16], plaintext: &[u8]) -> Vec<u8> {
    let encryption: [u8; 16] = FERNET_RAW[16..].try_into().expect("16 bytes");
    let body = cbc::Encryptor::<Aes128>::new(&encryption.into(), &iv.into()).encrypt_padded_vec_mut::<Pkcs7>(plaintext);
    signed_token(timestamp, iv, &body)
}

/// Token bytes as text: url-safe base64 with padding, as Python writes it.
pub fn token_text(token: &[u8]) -> String {
    URL_SAFE.encode(token)
}

/// Text the host must read like `text`: ASCII whitespace (which Python's
/// decoder skips) inserted where the fuzzer says, and maybe the `=` padding dropped.
pub fn with_whitespace(u: &mut Unstructured<'_>, text: &str) -> Result<String> {
    let mut out: Vec<u8> = text.as_bytes().to_vec();
    if u.arbitrary()? {
        while out.last() == Some(&b'=') {
            out.pop();
        }
    }
    for _ in 0..u.int_in_range(0..=4)? {
        let at = u.int_in_range(0..=out.len())?;
        let ws = *u.choose(b" \n\r\t")?;
        out.insert(at, ws);
    }
    Ok(String::from_utf8(out).expect("base64 and whitespace are ASCII"))
}

/// One of `choices`, or now and then anything the fuzzer makes up.
pub fn pick(u: &mut Unstructured<'_>, choices: &[&str]) -> Result<String> {
    if u.ratio(1, 8)? { u.arbitrary() } else { Ok((*u.choose(choices)?).to_string()) }
}

/// Seconds since the epoch now.
pub fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}
