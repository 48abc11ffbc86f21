//! Sentry's collision scenarios for secrets and identifiers (36–41): API
//! tokens, monitor guids, org auth tokens, project keys, query subscription
//! ids and global saved searches, from the 24.7.0 release export.
//!
//! Sentry's tests make the colliding rows with model factories; here an
//! earlier import of the same release writes them.

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::{first, load, path, with, write};
use crate::db_test;
use crate::support::Target;

const RELEASE: &str = "releases/24.7.0.json";

fn release() -> Vec<Value> {
    load(RELEASE)
}

fn strings(rows: Vec<Option<String>>) -> Vec<String> {
    rows.into_iter().flatten().collect()
}

fn distinct(values: &[String]) -> bool {
    let set: std::collections::BTreeSet<&String> = values.iter().collect();
    set.len() == values.len()
}

fn sha256_hex(s: &str) -> String {
    Sha256::digest(s.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

// Sentry: tests/sentry/backup/test_imports.py::CollisionTests::test_colliding_api_token
// Adapted: the colliding rows come from a Global import of the release; the
// colliding tokens are user tokens (no application, so Config scope)
// imported afterwards with `import config`, which does not clear.
db_test!(colliding_api_token, |t| {
    let records = release();
    t.relocate(&["import", "global", path(&write(&t, "release.json", &records)), "--no-prompt", "--seed", "1"])
        .success();
    let before = strings(
        t.strings("SELECT token || ' ' || COALESCE(refresh_token, '-') FROM sentry_apitoken ORDER BY id").await,
    );
    assert_eq!(before.len(), 3);

    let tokens: Vec<&Value> = records.iter().filter(|r| r["model"] == "sentry.apitoken").collect();
    let token = |i: usize, f: &str| tokens[i]["fields"][f].clone();
    let base = first(&records, "sentry.apitoken");
    let user = base["fields"]["user"].as_i64().expect("the token has a user");
    let fresh = |c: char| std::iter::repeat_n(c, 64).collect::<String>();
    let expires = json!("2024-08-01T00:00:00.000Z");
    let colliding = vec![
        // Collides on the refresh token only.
        with(
            &base,
            11,
            json!({"application": null, "token": fresh('a'), "refresh_token": token(0, "refresh_token"), "expires_at": expires}),
        ),
        // On the token only, with no expiry.
        with(
            &base,
            12,
            json!({"application": null, "token": token(1, "token"), "refresh_token": fresh('b'), "expires_at": null}),
        ),
        // On both.
        with(
            &base,
            13,
            json!({"application": null, "token": token(0, "token"), "refresh_token": token(0, "refresh_token"), "expires_at": expires}),
        ),
        // On neither, with no refresh token and no expiry.
        with(&base, 14, json!({"application": null, "token": fresh('c'), "refresh_token": null, "expires_at": null})),
    ];
    let mut export: Vec<Value> =
        records.iter().filter(|r| r["model"] == "sentry.user" && r["pk"] == user).cloned().collect();
    export.extend(colliding);
    t.relocate(&["import", "config", path(&write(&t, "tokens.json", &export)), "--seed", "2"]).success();

    // The old tokens are untouched and the new ones were added.
    let after = strings(
        t.strings("SELECT token || ' ' || COALESCE(refresh_token, '-') FROM sentry_apitoken ORDER BY id").await,
    );
    assert_eq!(after.len(), 7);
    assert_eq!(after[..3], before[..]);
    let new_tokens = strings(t.strings("SELECT token FROM sentry_apitoken ORDER BY id").await);
    assert!(distinct(&new_tokens), "tokens repeat: {new_tokens:?}");
    let refresh = strings(t.strings("SELECT refresh_token FROM sentry_apitoken WHERE refresh_token IS NOT NULL").await);
    assert!(distinct(&refresh), "refresh tokens repeat: {refresh:?}");
    assert_eq!(refresh.len(), 5, "null refresh tokens stay null");
    // Each colliding token got new values; the one that collided with nothing kept its own.
    for (i, token) in new_tokens[3..6].iter().enumerate() {
        assert!(
            !before.iter().any(|b| b.starts_with(token.as_str())) && *token != fresh('a'),
            "token {} kept a colliding value",
            11 + i
        );
    }
    assert_eq!(new_tokens[6], fresh('c'));
    let expiries = t.strings("SELECT CAST(expires_at AS TEXT) FROM sentry_apitoken ORDER BY id").await;
    assert!(expiries[4].is_none() && expiries[6].is_none(), "a null expiry stays null: {expiries:?}");
    assert!(expiries[3].is_some() && expiries[5].is_some(), "a set expiry is renewed: {expiries:?}");
    // The hashes and last characters follow the (new) tokens, as save() recomputes them.
    let derived = t
        .strings("SELECT token || ' ' || hashed_token || ' ' || token_last_characters FROM sentry_apitoken ORDER BY id")
        .await;
    for row in strings(derived)[3..].iter() {
        let parts: Vec<&str> = row.split(' ').collect();
        assert_eq!(parts[1], sha256_hex(parts[0]), "hashed_token of {}", parts[0]);
        assert_eq!(parts[2], &parts[0][parts[0].len() - 4..]);
    }
});

/// The release's organization (and what it needs), imported twice in
/// Organization scope under two import UUIDs.
async fn import_organization_twice(t: &Target, records: &[Value]) {
    let src = write(t, "release.json", records);
    t.relocate(&["import", "organizations", path(&src), "--seed", "1"]).success();
    t.relocate(&["import", "organizations", path(&src), "--seed", "2"]).success();
}

// Sentry: tests/sentry/backup/test_imports.py::CollisionTests::test_colliding_monitor
db_test!(colliding_monitor, |t| {
    let records = release();
    let exported = first(&records, "sentry.monitor")["fields"]["guid"].as_str().expect("a guid").to_string();
    import_organization_twice(&t, &records).await;
    let guids = strings(t.strings("SELECT guid FROM sentry_monitor").await);
    assert_eq!(guids.len(), 2);
    assert!(distinct(&guids), "{guids:?}");
    // Sentry gives every imported monitor a new uuid4.
    for g in &guids {
        assert!(g != &exported && uuid::Uuid::parse_str(g).is_ok_and(|u| u.get_version_num() == 4), "{g}");
    }
});

// Sentry: tests/sentry/backup/test_imports.py::CollisionTests::test_colliding_org_auth_token
db_test!(colliding_org_auth_token, |t| {
    let records = release();
    let exported =
        first(&records, "sentry.orgauthtoken")["fields"]["token_hashed"].as_str().expect("a hash").to_string();
    import_organization_twice(&t, &records).await;
    let hashes = strings(t.strings("SELECT token_hashed FROM sentry_orgauthtoken ORDER BY id").await);
    assert_eq!(hashes.len(), 2);
    assert_eq!(hashes[0], exported, "the first import has nothing to collide with");
    assert!(
        hashes[1] != exported && hashes[1].len() == 64 && hashes[1].chars().all(|c| c.is_ascii_hexdigit()),
        "{hashes:?}"
    );
    let last = strings(t.strings("SELECT token_last_characters FROM sentry_orgauthtoken ORDER BY id").await);
    assert_eq!(last[1].len(), 4);
});

// Sentry: tests/sentry/backup/test_imports.py::CollisionTests::test_colliding_project_key
db_test!(colliding_project_key, |t| {
    let records = release();
    let exported: Vec<String> = records
        .iter()
        .filter(|r| r["model"] == "sentry.projectkey")
        .map(|r| r["fields"]["public_key"].as_str().expect("a key").to_string())
        .collect();
    import_organization_twice(&t, &records).await;
    let public = strings(t.strings("SELECT public_key FROM sentry_projectkey ORDER BY id").await);
    let secret = strings(t.strings("SELECT secret_key FROM sentry_projectkey ORDER BY id").await);
    assert_eq!(public.len(), 2 * exported.len());
    assert!(distinct(&public) && distinct(&secret), "{public:?} {secret:?}");
    assert_eq!(public[..exported.len()], exported[..], "the originals are kept");
    for key in &public[exported.len()..] {
        assert!(key.len() == 32 && key.chars().all(|c| c.is_ascii_hexdigit()), "{key}");
    }
});

// Sentry: tests/sentry/backup/test_imports.py::CollisionTests::test_colliding_query_subscription
// Adapted: the release's subscriptions have no `subscription_id` yet, so the
// export gives them some; two imports must still leave every id unique.
db_test!(colliding_query_subscription, |t| {
    let mut records = release();
    for (i, r) in records.iter_mut().filter(|r| r["model"] == "sentry.querysubscription").enumerate() {
        r["fields"]["subscription_id"] = json!(format!("0/{i:032x}"));
    }
    import_organization_twice(&t, &records).await;
    let ids = strings(t.strings("SELECT subscription_id FROM sentry_querysubscription").await);
    let exported = records.iter().filter(|r| r["model"] == "sentry.querysubscription").count();
    assert_eq!(ids.len(), 2 * exported);
    assert!(distinct(&ids), "{ids:?}");
});

// Sentry: tests/sentry/backup/test_imports.py::CollisionTests::test_colliding_saved_search
db_test!(colliding_saved_search, |t| {
    let mut records = release();
    let search = first(&records, "sentry.savedsearch");
    records.push(with(
        &search,
        900,
        json!({"is_global": true, "organization": null, "owner_id": null, "name": "Global search"}),
    ));
    let src = write(&t, "release.json", &records);
    t.relocate(&["import", "organizations", path(&src)]).success();
    let names = strings(t.strings("SELECT name FROM sentry_savedsearch").await);
    assert_eq!(names.len(), 1, "an Organization import adds no global search: {names:?}");
    t.relocate(&["import", "global", path(&src), "--no-prompt"]).success();
    let global = t.i64s("SELECT COUNT(*) FROM sentry_savedsearch WHERE is_global").await;
    assert_eq!(global, [1], "a Global import brings the global search");
    assert_eq!(t.count("sentry_savedsearch").await, 2);
});
