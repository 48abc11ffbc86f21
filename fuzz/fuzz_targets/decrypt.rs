//! Decrypting an export with a local RSA key (`crypto::decrypt`, and the
//! streaming `SealedExport` an import uses, on the same members written as a
//! tarball): `key.pub` matching or not, `data.key` fuzzed raw or a real
//! RSA-OAEP ciphertext of fuzzed "key text", and `export.json` a real Fernet
//! token of fuzzed plaintext, mutated or not, or fuzzed bytes. Never a panic;
//! what decrypts is exactly what was encrypted; both paths agree; and
//! `crypto::encrypt` round-trips.

#![no_main]

use std::io::Write as _;

use arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use rand::SeedableRng as _;
use rand_chacha::ChaCha20Rng;
use relocate::crypto::{self, Tarball};
use relocate_fuzz::{encrypted_token, fernet_key_text, other_key, small_key as key, token_text, with_whitespace};
use rsa::Oaep;
use rsa::pkcs8::DecodePublicKey as _;
use sha2::Sha256;

/// What the fuzzer built, and the plaintext it must decrypt to if it is all genuine.
struct Case {
    tarball: Tarball,
    expected: Option<Vec<u8>>,
}

fn case(u: &mut Unstructured<'_>) -> Result<Case> {
    let public_key_pem = match u.int_in_range(0..=7)? {
        0 => other_key().public_key_pem().as_bytes().to_vec(),
        1 => u.arbitrary()?,
        _ => key().public_key_pem().as_bytes().to_vec(),
    };
    let mut rng = ChaCha20Rng::seed_from_u64(u.arbitrary()?);
    let mut genuine_key = u.ratio(3, 4)?;
    let key_text = if genuine_key { fernet_key_text().into_bytes() } else { u.arbitrary()? };
    let data_key = if u.ratio(1, 8)? {
        genuine_key = false;
        u.arbitrary()?
    } else {
        let public = rsa::RsaPublicKey::from_public_key_pem(key().public_key_pem()).expect("the fixture's public key");
        public.encrypt(&mut rng, Oaep::new::<Sha256>(), &key_text).unwrap_or_default()
    };
    let (export, genuine_token, plaintext) = if u.ratio(1, 8)? {
        (u.arbitrary()?, false, Vec::new())
    } else {
        let plaintext: Vec<u8> = u.arbitrary()?;
        let token = encrypted_token(u.arbitrary()?, u.arbitrary()?, &plaintext);
        let mut token = token_text(&token).into_bytes();
        let mut mutated = false;
        for _ in 0..u.int_in_range(0..=2)? {
            if token.is_empty() {
                break;
            }
            let at = u.choose_index(token.len())?;
            let byte = u.arbitrary()?;
            mutated |= token[at] != byte;
            token[at] = byte;
        }
        if u.ratio(1, 8)? {
            let len = u.int_in_range(0..=token.len())?;
            mutated |= len < token.len();
            token.truncate(len);
        }
        let text = String::from_utf8_lossy(&token).into_owned();
        let export = if mutated { token } else { with_whitespace(u, &text)?.into_bytes() };
        (export, !mutated, plaintext)
    };
    let all_genuine = genuine_key && genuine_token && public_key_pem == key().public_key_pem().as_bytes();
    Ok(Case { tarball: Tarball { export, data_key, public_key_pem }, expected: all_genuine.then_some(plaintext) })
}

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let Ok(Case { tarball, expected }) = case(&mut u) else { return };

    let decrypted = crypto::decrypt(&tarball, key());
    if let Some(expected) = &expected {
        assert_eq!(decrypted.as_ref().ok(), Some(expected), "a genuine tarball must decrypt: {decrypted:?}");
    }
    // Nothing here was encrypted to the other key.
    assert!(crypto::decrypt(&tarball, other_key()).is_err(), "decrypted with the wrong key");

    // The same members as a tarball file, the way an import reads them.
    let mut file = tempfile::NamedTempFile::new().expect("a temporary file");
    tarball.write(file.as_file_mut()).expect("write the tarball");
    file.flush().expect("flush");
    let sealed = match crypto::SealedExport::open(file.path()) {
        Ok(sealed) => sealed,
        // A fuzzed `key.pub` or `data.key` over the 16 KiB a key member may have.
        Err(crypto::Error::MemberTooLarge { .. }) => {
            assert!(tarball.public_key_pem.len().max(tarball.data_key.len()) > 16 * 1024);
            return;
        }
        Err(e) => panic!("a written tarball does not open: {e}"),
    };
    let mut streamed = Vec::new();
    let streamed_result = sealed.decrypt_to(key(), &mut streamed);
    match (&decrypted, &streamed_result) {
        (Ok(plain), Ok(())) => assert_eq!(plain, &streamed),
        (Err(_), Err(_)) => {}
        _ => panic!("in memory: {decrypted:?}; streamed: {streamed_result:?}"),
    }

    // Encrypting the fuzzed plaintext to the key decrypts back to it.
    if u.ratio(1, 4).unwrap_or(false)
        && let Ok(plaintext) = u.arbitrary::<Vec<u8>>()
    {
        let mut rng = ChaCha20Rng::seed_from_u64(u.arbitrary().unwrap_or_default());
        let sealed = crypto::encrypt(&plaintext, key().public_key_pem().as_bytes(), &mut rng).expect("encrypt");
        assert_eq!(crypto::decrypt(&sealed, key()).expect("round trip"), plaintext);
    }
});
