//! The Fernet token decryptor (`crypto::decrypt_export`, the code an import's
//! decryption streams through) with a known key, so that HMAC-valid tokens
//! get past the first pass:
//! - a genuine token of fuzzed plaintext (up to a few chunks of the streaming
//!   buffer), with whitespace and padding variations, must decrypt to it;
//! - a token signed over fuzzed bytes (any version, timestamp, length or
//!   padding) must decrypt exactly when the reference `fernet` crate does, to
//!   the same bytes;
//! - a genuine token with a byte changed, and arbitrary text, must be refused;
//! - an arbitrary key text must not panic.

#![no_main]

use arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use relocate::crypto::decrypt_export;
use relocate_fuzz::{encrypted_token, fernet_key_text, now, signed_token, token_text, with_whitespace};

fn run(u: &mut Unstructured<'_>) -> Result<()> {
    let key = fernet_key_text();
    let reference = fernet::Fernet::new(&key).expect("a valid key");
    match u.int_in_range(0..=4)? {
        0 => {
            // Genuine: decrypts to the plaintext, with or without whitespace and padding.
            let piece: Vec<u8> = u.arbitrary()?;
            let repeat = if u.ratio(1, 16)? { u.int_in_range(1..=200_000usize / piece.len().max(1))? } else { 1 };
            let plaintext = piece.repeat(repeat);
            let token = encrypted_token(u.int_in_range(0..=now())?, u.arbitrary()?, &plaintext);
            let text = token_text(&token);
            assert_eq!(reference.decrypt(&text).expect("the reference decrypts our token"), plaintext);
            let text = with_whitespace(u, &text)?;
            assert_eq!(decrypt_export(text.as_bytes(), key.as_bytes()).expect("a genuine token decrypts"), plaintext);
        }
        1 => {
            // Signed over arbitrary bytes: agree with the reference.
            let version: u8 = if u.ratio(7, 8)? { 0x80 } else { u.arbitrary()? };
            let timestamp = u.int_in_range(0..=now())?;
            let mut token = signed_token(timestamp, u.arbitrary()?, &u.arbitrary::<Vec<u8>>()?);
            token[0] = version;
            let text = token_text(&token);
            let ours = decrypt_export(text.as_bytes(), key.as_bytes());
            let theirs = reference.decrypt(&text);
            match (&ours, &theirs) {
                (Ok(a), Ok(b)) => assert_eq!(a, b),
                (Err(_), Err(_)) => {}
                _ => panic!("ours: {ours:?}; the reference: {theirs:?}"),
            }
        }
        2 => {
            // A genuine token with one byte of the decoded token changed: refused.
            let plaintext: Vec<u8> = u.arbitrary()?;
            let mut token = encrypted_token(u.int_in_range(0..=now())?, u.arbitrary()?, &plaintext);
            let at = u.choose_index(token.len())?;
            let flip = u.int_in_range(1..=255u8)?;
            token[at] ^= flip;
            let text = token_text(&token);
            assert!(decrypt_export(text.as_bytes(), key.as_bytes()).is_err(), "a tampered token decrypted");
        }
        3 => {
            // Arbitrary text: nothing forges an HMAC.
            let text: Vec<u8> = u.arbitrary()?;
            assert!(decrypt_export(&text, key.as_bytes()).is_err());
        }
        _ => {
            // Arbitrary key text and token: no panic.
            let key_text: Vec<u8> = u.arbitrary()?;
            let text: Vec<u8> = u.arbitrary()?;
            let _ = decrypt_export(&text, &key_text);
        }
    }
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    let _ = run(&mut Unstructured::new(data));
});
