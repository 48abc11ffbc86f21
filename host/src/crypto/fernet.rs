//! Fernet (the format of Python `cryptography`'s `Fernet`) over streams, in bounded memory.
//!
//! A token is the url-safe base64 text of `0x80 | timestamp (8, big-endian) | IV (16) |
//! AES-128-CBC ciphertext with PKCS#7 padding | HMAC-SHA256 (32)`; the HMAC covers everything
//! before it and is keyed with the first half of the 32-byte key, AES with the second half.
//!
//! Decryption reads the token twice: [`verify`] checks the HMAC over the whole token before
//! [`decrypt_verified`] decrypts a single byte, so nothing downstream ever sees plaintext of a
//! token that fails it. The second pass recomputes the HMAC as well, so a file that changes
//! between the passes is an error rather than unverified plaintext.

use std::io::{self, Read, Write};

use aes::Aes128;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, URL_SAFE};
use base64::engine::{DecodePaddingMode, Engine as _};
use base64::read::DecoderReader;
use base64::write::EncoderWriter;
use cbc::cipher::inout::InOutBuf;
use cbc::cipher::{BlockDecryptMut, BlockEncryptMut, KeyIvInit};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::{Error, Result, read_up_to};

const VERSION: u8 = 0x80;
/// Version, timestamp and IV.
const HEADER: usize = 1 + 8 + 16;
const TAG: usize = 32;
const BLOCK: usize = 16;
/// Bytes handled at once; a multiple of the AES block.
const CHUNK: usize = 64 * 1024;

type HmacSha256 = Hmac<Sha256>;

/// url-safe base64 that, like the `fernet` crate, accepts the text with or without its `=`
/// padding; Python writes it padded.
static LENIENT: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// A Fernet key: the signing and the encryption half.
pub struct Key {
    signing: [u8; 16],
    encryption: [u8; 16],
}

impl Key {
    /// Parses the key text (44 characters of url-safe base64, as `Fernet.generate_key()`).
    pub fn from_text(text: &[u8]) -> Result<Self> {
        let raw = LENIENT.decode(text).map_err(|_| Error::NotAFernetKey)?;
        let raw: [u8; 32] = raw.try_into().map_err(|_| Error::NotAFernetKey)?;
        let (signing, encryption) = raw.split_at(16);
        Ok(Self {
            signing: signing.try_into().map_err(|_| Error::NotAFernetKey)?,
            encryption: encryption.try_into().map_err(|_| Error::NotAFernetKey)?,
        })
    }

    /// The key text for raw key bytes, padded, as `Fernet.generate_key()` writes it.
    pub fn text_of(raw: &[u8; 32]) -> String {
        URL_SAFE.encode(raw)
    }

    fn mac(&self) -> Result<HmacSha256> {
        HmacSha256::new_from_slice(&self.signing).map_err(|_| Error::NotAFernetKey)
    }
}

/// Pass 1: checks the token's shape and its HMAC, reading it once. Returns the length of the
/// decoded token, which [`decrypt_verified`] needs.
pub fn verify(key: &Key, token: impl Read) -> Result<u64> {
    let mut decoded = decoder(token);
    let mut mac = key.mac()?;
    let header = read_header(&mut decoded)?;
    mac.update(&header);
    // Everything but the last 32 bytes goes into the HMAC; those are the tag.
    let mut buf = vec![0u8; CHUNK + TAG];
    let mut held = 0;
    let mut len = HEADER as u64;
    loop {
        let n = read_up_to(&mut decoded, &mut buf[held..]).map_err(token_read_error)?;
        if n == 0 {
            break;
        }
        len += n as u64;
        let filled = held + n;
        if filled > TAG {
            mac.update(&buf[..filled - TAG]);
            buf.copy_within(filled - TAG..filled, 0);
            held = TAG;
        } else {
            held = filled;
        }
    }
    let ciphertext = len.checked_sub((HEADER + TAG) as u64).ok_or(Error::TokenTooShort)?;
    if ciphertext == 0 {
        return Err(Error::TokenTooShort);
    }
    if ciphertext % BLOCK as u64 != 0 {
        return Err(Error::TokenLength);
    }
    mac.verify_slice(&buf[..TAG]).map_err(|_| Error::TokenHmac)?;
    Ok(len)
}

/// Pass 2: decrypts a token that [`verify`] accepted into `out`, checking the HMAC again as it
/// goes. On an error, what was written to `out` must be discarded.
pub fn decrypt_verified(key: &Key, token: impl Read, len: u64, mut out: impl Write) -> Result<()> {
    let mut decoded = decoder(token);
    let mut mac = key.mac()?;
    let header = read_header(&mut decoded)?;
    mac.update(&header);
    let iv: [u8; 16] = header[9..].try_into().map_err(|_| Error::TokenChanged)?;
    let mut cipher = cbc::Decryptor::<Aes128>::new(&key.encryption.into(), &iv.into());
    let mut remaining = len.checked_sub((HEADER + TAG) as u64).ok_or(Error::TokenChanged)?;
    let mut buf = vec![0u8; CHUNK];
    while remaining > 0 {
        let want = usize::try_from(remaining).map_or(CHUNK, |r| r.min(CHUNK));
        let chunk = &mut buf[..want];
        if read_up_to(&mut decoded, chunk).map_err(token_read_error)? != want {
            return Err(Error::TokenChanged);
        }
        mac.update(chunk);
        let (blocks, tail) = InOutBuf::from(&mut *chunk).into_chunks();
        if !tail.is_empty() {
            return Err(Error::TokenChanged);
        }
        cipher.decrypt_blocks_inout_mut(blocks);
        remaining -= want as u64;
        let plain = if remaining == 0 { unpad(chunk)? } else { &*chunk };
        out.write_all(plain)?;
    }
    let mut tag = [0u8; TAG + 1];
    if read_up_to(&mut decoded, &mut tag).map_err(token_read_error)? != TAG {
        return Err(Error::TokenChanged);
    }
    mac.verify_slice(&tag[..TAG]).map_err(|_| Error::TokenChanged)?;
    out.flush()?;
    Ok(())
}

/// Both passes over a token that `open` can read as often as needed.
pub fn decrypt<R: Read>(key: &Key, mut open: impl FnMut() -> io::Result<R>, out: impl Write) -> Result<()> {
    let len = verify(key, open()?)?;
    decrypt_verified(key, open()?, len, out)
}

/// The length of the token text for a plaintext of `len` bytes.
pub fn token_text_len(len: u64) -> u64 {
    let decoded = (HEADER + TAG) as u64 + (len / BLOCK as u64 + 1) * BLOCK as u64;
    decoded.div_ceil(3) * 4
}

/// Writes the token of exactly `len` bytes of `plaintext` as padded url-safe base64 text.
pub fn encrypt(
    key: &Key,
    iv: [u8; 16],
    timestamp: u64,
    mut plaintext: impl Read,
    len: u64,
    out: impl Write,
) -> Result<()> {
    let mut text = EncoderWriter::new(out, &URL_SAFE);
    let mut mac = key.mac()?;
    let mut cipher = cbc::Encryptor::<Aes128>::new(&key.encryption.into(), &iv.into());
    let mut header = [0u8; HEADER];
    header[0] = VERSION;
    header[1..9].copy_from_slice(&timestamp.to_be_bytes());
    header[9..].copy_from_slice(&iv);
    mac.update(&header);
    text.write_all(&header)?;
    let mut buf = vec![0u8; CHUNK];
    let mut read = 0u64;
    loop {
        let n = read_up_to(&mut plaintext, &mut buf)?;
        read += n as u64;
        let last = n < CHUNK;
        let end = if last {
            // PKCS#7: 1 to 16 bytes, each the pad length.
            let pad = BLOCK - n % BLOCK;
            buf[n..n + pad].fill(pad as u8);
            n + pad
        } else {
            n
        };
        let (blocks, _) = InOutBuf::from(&mut buf[..end]).into_chunks();
        cipher.encrypt_blocks_inout_mut(blocks);
        mac.update(&buf[..end]);
        text.write_all(&buf[..end])?;
        if last {
            break;
        }
    }
    if read != len {
        let message =
            format!("the plaintext is {read} bytes, not the {len} announced: it changed while it was encrypted");
        return Err(io::Error::new(io::ErrorKind::InvalidData, message).into());
    }
    text.write_all(&mac.finalize().into_bytes())?;
    text.finish()?.flush()?;
    Ok(())
}

/// Decodes the token text, skipping ASCII whitespace as Python's base64 decoder does.
fn decoder(token: impl Read) -> impl Read {
    DecoderReader::new(SkipWhitespace(token), &LENIENT)
}

fn read_header(decoded: &mut impl Read) -> Result<[u8; HEADER]> {
    let mut header = [0u8; HEADER];
    let n = read_up_to(decoded, &mut header).map_err(token_read_error)?;
    if n > 0 && header[0] != VERSION {
        return Err(Error::TokenVersion(header[0]));
    }
    if n < HEADER {
        return Err(Error::TokenTooShort);
    }
    Ok(header)
}

/// The plaintext of the last decrypted chunk without its PKCS#7 padding.
fn unpad(chunk: &[u8]) -> Result<&[u8]> {
    let pad = usize::from(*chunk.last().ok_or(Error::TokenPadding)?);
    if !(1..=BLOCK).contains(&pad) || chunk[chunk.len() - pad..].iter().any(|&b| usize::from(b) != pad) {
        return Err(Error::TokenPadding);
    }
    Ok(&chunk[..chunk.len() - pad])
}

/// Base64 errors of the token text become [`Error::TokenBase64`]; others stay I/O errors.
fn token_read_error(e: io::Error) -> Error {
    match e.get_ref().and_then(|inner| inner.downcast_ref::<base64::DecodeError>()) {
        Some(base64::DecodeError::InvalidByte(at, byte)) => {
            Error::TokenBase64(format!("{:?} (character {at}) is not a url-safe base64 character", char::from(*byte)))
        }
        Some(base64::DecodeError::InvalidLength(_)) => {
            Error::TokenBase64("its length is not that of base64 text: it may be truncated".into())
        }
        Some(base64::DecodeError::InvalidLastSymbol(..) | base64::DecodeError::InvalidPadding) => {
            Error::TokenBase64("it ends badly (padding or last character): it may be truncated".into())
        }
        None => Error::Io(e),
    }
}

/// A reader that drops ASCII whitespace.
struct SkipWhitespace<R>(R);

impl<R: Read> Read for SkipWhitespace<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let n = self.0.read(buf)?;
            if n == 0 {
                return Ok(0);
            }
            let mut kept = 0;
            for i in 0..n {
                if !buf[i].is_ascii_whitespace() {
                    buf[kept] = buf[i];
                    kept += 1;
                }
            }
            // Zero would mean end of input; read on past all-whitespace chunks.
            if kept > 0 {
                return Ok(kept);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The `fernet` crate is the reference implementation here.
    fn reference_key() -> (String, Key) {
        let text = fernet::Fernet::generate_key();
        let key = Key::from_text(text.as_bytes()).unwrap();
        (text, key)
    }

    fn decrypt_vec(key: &Key, token: &[u8]) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        decrypt(key, || Ok(token), &mut out)?;
        Ok(out)
    }

    fn plaintext(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 31 % 251) as u8).collect()
    }

    #[test]
    fn round_trips_with_the_fernet_crate() {
        let (text, key) = reference_key();
        let reference = fernet::Fernet::new(&text).unwrap();
        for len in [0, 1, 15, 16, 17, CHUNK - 1, CHUNK, CHUNK + 1, 3 << 20] {
            let plain = plaintext(len);
            // Theirs, decrypted by ours.
            let token = reference.encrypt(&plain);
            assert_eq!(decrypt_vec(&key, token.as_bytes()).unwrap(), plain, "len {len}");
            // Ours, decrypted by theirs.
            let mut ours = Vec::new();
            encrypt(&key, [7; 16], 1_700_000_000, &plain[..], len as u64, &mut ours).unwrap();
            assert_eq!(ours.len() as u64, token_text_len(len as u64), "len {len}");
            assert_eq!(ours.len(), token.len(), "len {len}");
            let ours = String::from_utf8(ours).unwrap();
            assert_eq!(reference.decrypt(&ours).unwrap(), plain, "len {len}");
        }
    }

    #[test]
    fn every_flipped_byte_is_refused() {
        let (text, key) = reference_key();
        let plain = plaintext(40);
        let token = fernet::Fernet::new(&text).unwrap().encrypt(&plain);
        let mut raw = URL_SAFE.decode(&token).unwrap();
        // Version, timestamp, IV, every ciphertext block, the tag.
        for at in 0..raw.len() {
            raw[at] ^= 0x01;
            let err = decrypt_vec(&key, URL_SAFE.encode(&raw).as_bytes()).unwrap_err();
            let want = if at == 0 { "TokenVersion" } else { "TokenHmac" };
            assert!(format!("{err:?}").starts_with(want), "byte {at}: {err:?}");
            raw[at] ^= 0x01;
        }
        assert_eq!(decrypt_vec(&key, URL_SAFE.encode(&raw).as_bytes()).unwrap(), plain);
    }

    #[test]
    fn damaged_text_says_how() {
        let (text, key) = reference_key();
        let token = fernet::Fernet::new(&text).unwrap().encrypt(&plaintext(100));
        let bytes = token.as_bytes();
        // Cut into the data, past the `=` padding: bad base64, or whole characters that are not
        // whole AES blocks.
        let padding = bytes.iter().rev().take_while(|&&b| b == b'=').count();
        for cut in padding + 1..=padding + 12 {
            let left = bytes.len() - cut;
            let err = decrypt_vec(&key, &bytes[..left]).unwrap_err();
            let ok = match left % 4 {
                // One character past whole quads is never base64.
                1 => matches!(err, Error::TokenBase64(_)),
                // Otherwise the last character may have stray bits, or it all decodes.
                _ => matches!(err, Error::TokenLength | Error::TokenBase64(_)),
            };
            assert!(ok, "cut {cut}: {err:?}");
        }
        let err = decrypt_vec(&key, &bytes[..20]).unwrap_err();
        assert!(matches!(err, Error::TokenTooShort), "{err:?}");
        let err = decrypt_vec(&key, b"").unwrap_err();
        assert!(matches!(err, Error::TokenTooShort), "{err:?}");
        let mut bad = bytes.to_vec();
        bad[30] = b'*';
        let err = decrypt_vec(&key, &bad).unwrap_err();
        assert!(matches!(&err, Error::TokenBase64(m) if m.contains("'*'")), "{err:?}");
        // Unpadded text is accepted, as by the fernet crate.
        let unpadded = token.trim_end_matches('=');
        assert_eq!(decrypt_vec(&key, unpadded.as_bytes()).unwrap(), plaintext(100));
    }

    #[test]
    fn another_key_fails_the_hmac() {
        let (text, _) = reference_key();
        let (_, other) = reference_key();
        let token = fernet::Fernet::new(&text).unwrap().encrypt(b"[]");
        let err = decrypt_vec(&other, token.as_bytes()).unwrap_err();
        assert!(matches!(err, Error::TokenHmac), "{err:?}");
    }

    #[test]
    fn a_token_that_changes_between_the_passes_is_refused() {
        let (text, key) = reference_key();
        let good = fernet::Fernet::new(&text).unwrap().encrypt(&plaintext(50));
        let mut raw = URL_SAFE.decode(&good).unwrap();
        raw[HEADER + 3] ^= 0x01;
        let evil = URL_SAFE.encode(&raw);
        let mut opened = 0;
        let err = decrypt(
            &key,
            || {
                opened += 1;
                Ok(if opened == 1 { good.as_bytes() } else { evil.as_bytes() })
            },
            io::sink(),
        )
        .unwrap_err();
        assert!(matches!(err, Error::TokenChanged), "{err:?}");
    }

    #[test]
    fn whitespace_is_skipped() {
        let (text, key) = reference_key();
        let token = fernet::Fernet::new(&text).unwrap().encrypt(&plaintext(33));
        let spaced: String = token.chars().flat_map(|c| [c, '\n']).collect();
        assert_eq!(decrypt_vec(&key, spaced.as_bytes()).unwrap(), plaintext(33));
    }
}
