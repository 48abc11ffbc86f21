//! The streaming JSON export indexer and the record parser, on arbitrary
//! bytes (seeded with the JSON fixtures). The indexer reads through a buffer
//! of the size an import uses and through tiny ones, so that records, strings
//! and escapes straddle every refill: the result must not depend on it. Every
//! indexed record must be the bytes of one JSON object, and reading it (as
//! `Export::read` does) parses or errors, never panics.

#![no_main]

use libfuzzer_sys::fuzz_target;
use relocate::fuzzing::index;
use relocate::model::ModelName;
use relocate::reader::RawRecord;

fuzz_target!(|data: &[u8]| {
    let reference = index(data, 64 * 1024);
    for capacity in [1, 2, 3, 7, 16, 255] {
        let other = index(data, capacity);
        match (&reference, &other) {
            (Ok((a, total_a)), Ok((b, total_b))) => {
                assert_eq!(total_a, total_b, "capacity {capacity}");
                assert_eq!(a.len(), b.len(), "capacity {capacity}");
                for ((model_a, recs_a), (model_b, recs_b)) in a.iter().zip(b) {
                    assert_eq!(model_a, model_b, "capacity {capacity}");
                    let key = |r: &relocate::reader::RecordRef| (r.offset, r.len, r.position, r.pk);
                    assert!(recs_a.iter().map(key).eq(recs_b.iter().map(key)), "capacity {capacity}");
                }
            }
            (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string(), "capacity {capacity}"),
            _ => panic!("64 KiB buffer: {reference:?}; {capacity}-byte buffer: {other:?}"),
        }
    }

    let Ok((models, total)) = reference else { return };
    let mut positions = Vec::new();
    for (model, records) in &models {
        let mut last_offset = None;
        for at in records {
            let start = usize::try_from(at.offset).expect("offset fits");
            let bytes = &data[start..start + at.len as usize];
            assert_eq!(bytes.first(), Some(&b'{'), "a record starts with `{{`");
            assert_eq!(bytes.last(), Some(&b'}'), "a record ends with `}}`");
            assert!(last_offset < Some(at.offset), "records of a model are in file order");
            last_offset = Some(at.offset);
            positions.push(at.position);
            if let Ok(record) = serde_json::from_slice::<RawRecord>(bytes) {
                let name = ModelName::new(&record.model).expect("the indexer checked the model name");
                assert_eq!(&name, model, "the record is filed under its own model");
                assert_eq!(record.pk.as_i64(), Some(at.pk), "the indexed pk is the record's");
            }
        }
    }
    positions.sort_unstable();
    assert!(positions.iter().copied().eq(1..=total), "positions are 1..=total, once each");
});
