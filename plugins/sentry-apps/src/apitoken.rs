//! `sentry.apitoken`: a user's or an application's API token (spec §5.6,
//! scenario 36).
//!
//! Its scope is Global when it belongs to an application, else Config
//! (Sentry's `ApiToken.get_relocation_scope`). A token whose `token`, or
//! non-null `refresh_token`, is already some row's gets new ones, as
//! Sentry's `write_relocation_import` does: a new token carrying the
//! `token_type` prefix, a new refresh token only where there was one, and
//! `expires_at` moved to 30 days after the import's start only where it was
//! set. As Sentry's `save()` does for every token, the digests and the last
//! characters are then computed from the token the row ends up with.

use relocate_plugin_sdk::{
    Answer, Answers, Decision, Fatal, HashSet, Model, ModelDesc, Prepared, Query, Record, Result, Scope, Session, Value,
};
use sentry_models::{datetime, tokens};

/// Sentry's `DEFAULT_EXPIRATION`.
const EXPIRATION_DAYS: i64 = 30;

/// The fields holding a secret Sentry requires to be unique.
const SECRETS: [&str; 2] = ["token", "refresh_token"];

pub struct ApiToken {
    /// Tokens and refresh tokens this import wrote: a later record of the
    /// same import collides with them as with a row that was already there.
    given: HashSet<String>,
}

impl Model for ApiToken {
    fn describe() -> ModelDesc {
        sentry_models::sentry::APITOKEN.desc()
    }

    fn new(session: &Session) -> Result<Self> {
        Ok(Self { given: HashSet::with_hasher(session.hasher()) })
    }

    fn prepare(&mut self, _: &Session, record: &mut Record) -> Result<Prepared> {
        let scope = if record.is_null("application") { Scope::Config } else { Scope::Global };
        let mut queries = Vec::new();
        for field in SECRETS {
            if let Some(secret) = record.text(field).filter(|s| !s.is_empty()) {
                queries.push(Query::find_by(record.model(), field, secret));
            }
        }
        Ok(Prepared::ready_in(scope).with_queries(queries))
    }

    fn resolve(&mut self, session: &Session, mut record: Record, answers: &Answers) -> Result<Decision> {
        let token_type = record.text("token_type").filter(|t| !t.is_empty()).map(str::to_string);
        // A token the export lacks gets Django's default, `generate_token()`.
        let mut token = match record.text("token").filter(|t| !t.is_empty()) {
            Some(t) => t.to_string(),
            None => tokens::api_token(session, None),
        };
        let mut refresh = record.text("refresh_token").map(str::to_string);
        let given = |s: &Option<String>| s.as_ref().is_some_and(|s| self.given.contains(s));
        let collides = answers.iter().any(|(_, a)| matches!(a, Answer::Found(Some(_))))
            || self.given.contains(&token)
            || given(&refresh);
        if collides {
            token = tokens::api_token(session, token_type.as_deref());
            if refresh.is_some() {
                refresh = Some(tokens::api_token(session, token_type.as_deref()));
            }
            if !record.is_null("expires_at") {
                let expires = datetime::add_days(session.started_at(), EXPIRATION_DAYS).ok_or_else(|| {
                    Fatal::internal(format!("the import's start `{}` is not a datetime", session.started_at()))
                })?;
                record.set("expires_at", expires)?;
            }
        }
        self.given.insert(token.clone());
        self.given.extend(refresh.clone());
        set_if_column(&mut record, "hashed_token", Value::from(tokens::sha256_hex(&token)))?;
        let hashed_refresh = refresh.as_deref().filter(|r| !r.is_empty()).map(tokens::sha256_hex);
        set_if_column(&mut record, "hashed_refresh_token", Value::from(hashed_refresh))?;
        set_if_column(&mut record, "token_last_characters", Value::from(tokens::last_characters(&token, 4)))?;
        record.set("token", token)?;
        record.set("refresh_token", Value::from(refresh))?;
        Ok(Decision::insert(record))
    }
}

/// Sets `field` when the model has it: older Sentry releases had no digests.
fn set_if_column(record: &mut Record, field: &str, value: Value) -> Result<()> {
    if record.desc().column_index(field).is_some() { record.set(field, value) } else { Ok(()) }
}

#[cfg(test)]
mod tests {
    use relocate_plugin_sdk::testing::{InputRecord, STARTED_AT, TestHost, record};
    use relocate_plugin_sdk::{ImportFlags, ImportKind};

    use super::*;

    const TOKEN: &str = "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";
    const REFRESH: &str = "d43703fb5bdd4a708262e14b951382921abb157d0c0a2204d951aa70486ba7e6";

    fn token(pk: i64, token: &str, refresh: Option<&str>, expires: Option<&str>) -> InputRecord {
        record::<ApiToken>(pk)
            .fk("user", 1, 10, ImportKind::Inserted)
            .set("token", token)
            .set("refresh_token", refresh)
            .set("expires_at", expires)
            .set("token_type", "sntryu_")
            .set("hashed_token", "stale")
            .set("token_last_characters", "stal")
            .set("date_added", "2024-05-31T16:24:03.451Z")
            .build()
    }

    fn field(d: &Decision, name: &str) -> Value {
        match d {
            Decision::Insert { values, .. } => {
                values[ApiToken::describe().column_index(name).expect("a column")].clone()
            }
            other => panic!("expected an insert, got {other:?}"),
        }
    }

    fn text(d: &Decision, name: &str) -> String {
        field(d, name).as_text().unwrap_or_else(|| panic!("{name} is not text")).to_string()
    }

    fn session(host: &TestHost) -> relocate_plugin_sdk::testing::TestSession<ApiToken> {
        host.session::<ApiToken>(Scope::Global, ImportFlags::default())
    }

    #[test]
    fn the_scope_follows_the_application() {
        let host = TestHost::new(1);
        let with_app = record::<ApiToken>(1)
            .fk("user", 1, 10, ImportKind::Inserted)
            .fk("application", 1, 5, ImportKind::Inserted)
            .set("token", "a")
            .build();
        let without = record::<ApiToken>(2).fk("user", 1, 10, ImportKind::Inserted).set("token", "b").build();
        let prepared = session(&host).prepare(vec![with_app, without]).unwrap();
        assert!(matches!(prepared[0], Prepared::Ready { scope: Some(Scope::Global), .. }), "{:?}", prepared[0]);
        assert!(matches!(prepared[1], Prepared::Ready { scope: Some(Scope::Config), .. }), "{:?}", prepared[1]);
    }

    #[test]
    fn a_fresh_token_is_kept_and_its_digests_computed() {
        let host = TestHost::new(1);
        let out = session(&host).run(vec![token(1, TOKEN, Some(REFRESH), None)]).unwrap();
        assert_eq!(text(&out[0], "token"), TOKEN);
        assert_eq!(text(&out[0], "refresh_token"), REFRESH);
        assert_eq!(text(&out[0], "hashed_token"), tokens::sha256_hex(TOKEN));
        assert_eq!(text(&out[0], "hashed_refresh_token"), tokens::sha256_hex(REFRESH));
        assert_eq!(text(&out[0], "token_last_characters"), "0353");
    }

    #[test]
    fn a_colliding_token_gets_new_secrets_and_a_new_expiry() {
        let host = TestHost::new(1);
        host.insert_row("sentry.apitoken", 3, &[("token", TOKEN.into()), ("refresh_token", "other".into())]);
        let out = session(&host).run(vec![token(1, TOKEN, Some(REFRESH), Some("2024-06-01T00:24:03.254Z"))]).unwrap();
        let new = text(&out[0], "token");
        let hex_part = new.strip_prefix("sntryu_").expect("the token type prefixes the new token");
        assert!(hex_part.len() == 64 && hex_part.bytes().all(|b| b.is_ascii_hexdigit()) && new != TOKEN, "{new}");
        let refresh = text(&out[0], "refresh_token");
        assert!(refresh.starts_with("sntryu_") && refresh != REFRESH && refresh != new, "{refresh}");
        assert_eq!(text(&out[0], "expires_at"), "2024-01-31T00:00:00.000Z");
        assert_eq!(STARTED_AT, "2024-01-01T00:00:00.000Z");
        assert_eq!(text(&out[0], "hashed_token"), tokens::sha256_hex(&new));
        assert_eq!(text(&out[0], "hashed_refresh_token"), tokens::sha256_hex(&refresh));
        assert_eq!(text(&out[0], "token_last_characters"), new[new.len() - 4..]);
        // The existing row is left alone.
        assert_eq!(host.rows("sentry.apitoken")[0].text("token"), Some(TOKEN));
    }

    #[test]
    fn a_colliding_refresh_token_alone_renews_both() {
        let host = TestHost::new(1);
        host.insert_row("sentry.apitoken", 3, &[("token", "other".into()), ("refresh_token", REFRESH.into())]);
        let out = session(&host).run(vec![token(1, TOKEN, Some(REFRESH), None)]).unwrap();
        assert_ne!(text(&out[0], "token"), TOKEN);
        assert_ne!(text(&out[0], "refresh_token"), REFRESH);
        assert_eq!(field(&out[0], "expires_at"), Value::Null, "a null expiry stays null");
    }

    #[test]
    fn null_refresh_tokens_and_expiries_stay_null_on_a_collision() {
        let host = TestHost::new(1);
        host.insert_row("sentry.apitoken", 3, &[("token", TOKEN.into()), ("refresh_token", Value::Null)]);
        let out = session(&host).run(vec![token(1, TOKEN, None, None)]).unwrap();
        assert_ne!(text(&out[0], "token"), TOKEN);
        assert_eq!(field(&out[0], "refresh_token"), Value::Null);
        assert_eq!(field(&out[0], "hashed_refresh_token"), Value::Null);
        assert_eq!(field(&out[0], "expires_at"), Value::Null);
    }

    #[test]
    fn a_null_refresh_token_does_not_collide_with_null_ones() {
        let host = TestHost::new(1);
        host.insert_row("sentry.apitoken", 3, &[("token", "other".into()), ("refresh_token", Value::Null)]);
        let out = session(&host).run(vec![token(1, TOKEN, None, None)]).unwrap();
        assert_eq!(text(&out[0], "token"), TOKEN);
    }

    #[test]
    fn a_repeat_within_one_import_is_a_collision() {
        let host = TestHost::new(1);
        let mut s = session(&host);
        let out = s.run(vec![token(1, TOKEN, Some(REFRESH), None), token(2, TOKEN, None, None)]).unwrap();
        assert_eq!(text(&out[0], "token"), TOKEN);
        assert_ne!(text(&out[1], "token"), TOKEN);
        // And across batches of the same import: the refresh token given out
        // first collides, which renews both.
        let later = s.run(vec![token(3, "fresh", Some(REFRESH), None)]).unwrap();
        assert_ne!(text(&later[0], "token"), "fresh");
        assert_ne!(text(&later[0], "refresh_token"), REFRESH);
    }

    #[test]
    fn new_tokens_repeat_for_a_seed() {
        let run = || {
            let host = TestHost::new(9);
            host.insert_row("sentry.apitoken", 3, &[("token", TOKEN.into())]);
            text(&session(&host).run(vec![token(1, TOKEN, None, None)]).unwrap()[0], "token")
        };
        assert_eq!(run(), run());
    }
}
