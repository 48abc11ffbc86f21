//! `sentry.monitor`: a cron monitor. Every imported monitor gets a new
//! `guid`, as Sentry's `Monitor.normalize_before_relocation_import` assigns
//! `uuid4()` whatever the export held (spec §5.6, scenario 37).

use relocate_plugin_sdk::{Model, ModelDesc, Prepared, Record, Result, Session};

pub struct Monitor;

impl Model for Monitor {
    fn describe() -> ModelDesc {
        sentry_models::sentry::MONITOR.desc()
    }

    fn new(_: &Session) -> Result<Self> {
        Ok(Self)
    }

    fn prepare(&mut self, session: &Session, record: &mut Record) -> Result<Prepared> {
        record.set("guid", hyphenated(&session.uuid4_hex()))?;
        Ok(Prepared::ready())
    }
}

/// `str(uuid)`: 32 hex digits as 8-4-4-4-12, the way the export writes a
/// UUIDField.
fn hyphenated(hex: &str) -> String {
    let mut out = String::with_capacity(36);
    for (i, c) in hex.chars().enumerate() {
        if matches!(i, 8 | 12 | 16 | 20) {
            out.push('-');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use relocate_plugin_sdk::testing::{TestHost, record};
    use relocate_plugin_sdk::{Decision, ImportFlags, ImportKind, Scope};

    use super::*;

    #[test]
    fn every_monitor_gets_a_new_guid() {
        let host = TestHost::new(1);
        let old = "d37a3010-1437-4000-96b7-f110d251aee9";
        let monitor = |pk| {
            record::<Monitor>(pk)
                .fk("organization_id", 1, 10, ImportKind::Inserted)
                .fk("project_id", 2, 20, ImportKind::Inserted)
                .set("guid", old)
                .set("slug", "c61022fb7276")
                .set("is_muted", false)
                .build()
        };
        let out = host
            .session::<Monitor>(Scope::Organization, ImportFlags::default())
            .run(vec![monitor(1), monitor(2)])
            .unwrap();
        assert!(out.iter().all(|d| matches!(d, Decision::Insert { .. })));
        let guids: Vec<String> =
            host.rows("sentry.monitor").iter().map(|r| r.text("guid").expect("a guid").to_string()).collect();
        for guid in &guids {
            assert_ne!(guid, old);
            let groups: Vec<usize> = guid.split('-').map(str::len).collect();
            assert_eq!(groups, [8, 4, 4, 4, 12], "{guid}");
            assert_eq!(&guid[14..15], "4", "a version-4 UUID: {guid}");
        }
        assert_ne!(guids[0], guids[1]);
    }
}
