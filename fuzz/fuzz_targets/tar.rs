//! The encrypted-export tarball reader, on arbitrary bytes (seeded with the
//! fixture tarballs, plain and gzipped): the in-memory `Tarball::read` and
//! `crypto::decrypt`, and the path an import takes (`Export::open`: sniffing,
//! `SealedExport` seeking over the token, streamed decryption with the
//! fixture key, indexing, reading each record) must never panic and must
//! agree with each other; what `Tarball::write` writes reads back the same.

#![no_main]

use std::io::Write as _;

use libfuzzer_sys::fuzz_target;
use relocate::crypto::{self, Tarball};
use relocate::reader::{self, Export};
use relocate_fuzz::key;

fuzz_target!(|data: &[u8]| {
    let in_memory = Tarball::read(data);

    let mut file = tempfile::NamedTempFile::new().expect("a temporary file");
    file.write_all(data).expect("write the input");
    let path = file.path();
    let sealed = crypto::SealedExport::open(path);
    let opened = Export::open(path, Some(key()));

    match (&in_memory, &sealed) {
        (Ok(tarball), Ok(sealed)) => {
            assert_eq!(tarball.public_key_pem, sealed.public_key_pem(), "the readers found different `key.pub`s");
            // What Tarball::write makes of the members reads back the same.
            let mut rewritten = Vec::new();
            tarball.write(&mut rewritten).expect("write to memory");
            assert_eq!(&Tarball::read(&rewritten[..]).expect("a written tarball reads back"), tarball);
            // The in-memory decryption and the streamed one of an import agree.
            let sniffed = data.get(257..262) == Some(b"ustar") || data.starts_with(&[0x1f, 0x8b]);
            match (crypto::decrypt(tarball, key()), &opened) {
                (Ok(plain), Ok(export)) => {
                    let (_, total) = relocate::fuzzing::index(&plain, 1 << 16).expect("the import indexed it");
                    assert_eq!(export.total(), total);
                }
                (Ok(_), Err(e)) => {
                    assert!(matches!(e, reader::Error::Syntax { .. } | reader::Error::Record { .. }), "{e}")
                }
                (Err(e), Ok(_)) => assert!(!sniffed, "an import decrypted what crypto::decrypt refused: {e}"),
                (Err(_), Err(_)) => {}
            }
        }
        (Err(_), Err(_)) => {}
        // Reading from a stream, the tar crate refuses an archive cut short in
        // the padding after its last member; seeking over a file (as an import
        // does, and as Python's tarfile does) it reads to the end. Both are fine.
        (Err(crypto::Error::NotTar(_)), Ok(_)) => {}
        _ => panic!("Tarball::read gave {in_memory:?} but SealedExport::open {sealed:?}"),
    }

    if let Ok(export) = opened {
        let mut buf = Vec::new();
        for (_, records) in export.models() {
            for at in records {
                let _ = export.read(at, &mut buf);
            }
        }
    }
});
