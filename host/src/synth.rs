//! Sentry-shaped exports of any size, for benches and tests.
//!
//! [`write`] streams a JSON array of Django records to a file, one model at a
//! time in Sentry's export order, without holding the export in memory. The
//! records are those of an organization-heavy Sentry instance: users (with
//! their `Email`, `UserEmail` and options), organizations (with options,
//! members, teams, memberships) and projects (with teams, keys and options),
//! plus the instance's `Option`s. Field shapes follow
//! `tests/fixtures/sentry/backup/fresh-install.json` and Sentry's model
//! registry; every record imports in any scope with the first-party plugins.
//!
//! An export is a sequence of *tenants* (an organization and what hangs off
//! it). A tenant's shape (how many members, teams, projects...) and its
//! primary keys depend only on its index, so two exports of the same size
//! have the same per-model counts whatever their seeds. Primary keys are
//! sparse: organizations, teams and projects get snowflake-like ids, the
//! rest small ids with gaps.
//!
//! Names depend on the seed: user `k` of an export with seed `s` is
//! `user{k}.{s}@example.com` and organization `i` has slug `o{i}-{s}`. A
//! [`Config::collide_fraction`] of the users and organizations take their
//! name from the namespace [`Config::collide_with`] instead, so that they
//! collide with an earlier import of an export generated with that seed
//! (the default namespace, 0, is the default seed's). Importing the same
//! export twice collides on every name.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{Value, json};

use crate::crypto;

/// What to generate.
#[derive(Debug, Clone)]
pub struct Config {
    /// At least this many records: whole tenants are added until it is reached.
    pub records: u64,
    /// Seeds names, keys, hashes and dates; the shape does not depend on it.
    pub seed: u64,
    /// Fraction (0..=1) of usernames and organization slugs taken from the
    /// `collide_with` namespace instead of this export's own.
    pub collide_fraction: f64,
    /// The seed of the export whose names the colliding ones reuse.
    pub collide_with: u64,
    /// Write Sentry's encrypted tarball to this public key (PEM file) instead of plain JSON.
    pub encrypt_to: Option<PathBuf>,
}

impl Default for Config {
    fn default() -> Self {
        Config { records: 10_000, seed: 0, collide_fraction: 0.0, collide_with: 0, encrypt_to: None }
    }
}

/// How many records of one model an export holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelCount {
    pub model: &'static str,
    /// The model's table in relocate's (and Sentry's) schema.
    pub table: &'static str,
    pub records: u64,
}

/// What [`write`] wrote.
#[derive(Debug, Clone)]
pub struct Generated {
    pub records: u64,
    pub tenants: u64,
    /// Size of the written file (the tarball when encrypted).
    pub bytes: u64,
    /// Size of the export's JSON, encrypted or not.
    pub json_bytes: u64,
    /// Per model, in the order the export holds them.
    pub models: Vec<ModelCount>,
}

impl Generated {
    /// Records of `model` in the export (0 for a model it does not hold).
    pub fn count(&self, model: &str) -> u64 {
        self.models.iter().find(|m| m.model == model).map_or(0, |m| m.records)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("collide_fraction must be between 0 and 1, not {0}")]
    CollideFraction(f64),
    #[error("{}: {source}", path.display())]
    File { path: PathBuf, source: io::Error },
    #[error("cannot encrypt the export: {0}")]
    Encrypt(#[from] crypto::Error),
    #[error("cannot write the export: {0}")]
    Json(#[from] serde_json::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The models an export holds, in Sentry's export (dependency) order, with their tables.
const MODELS: [(Model, &str, &str); 14] = [
    (Model::Option, "sentry.option", "sentry_option"),
    (Model::Organization, "sentry.organization", "sentry_organization"),
    (Model::OrganizationOption, "sentry.organizationoption", "sentry_organizationoptions"),
    (Model::Team, "sentry.team", "sentry_team"),
    (Model::User, "sentry.user", "auth_user"),
    (Model::Project, "sentry.project", "sentry_project"),
    (Model::OrganizationMember, "sentry.organizationmember", "sentry_organizationmember"),
    (Model::Email, "sentry.email", "sentry_email"),
    (Model::UserOption, "sentry.useroption", "sentry_useroption"),
    (Model::UserEmail, "sentry.useremail", "sentry_useremail"),
    (Model::ProjectTeam, "sentry.projectteam", "sentry_projectteam"),
    (Model::ProjectOption, "sentry.projectoption", "sentry_projectoptions"),
    (Model::ProjectKey, "sentry.projectkey", "sentry_projectkey"),
    (Model::OrganizationMemberTeam, "sentry.organizationmemberteam", "sentry_organizationmember_teams"),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Model {
    Option,
    Organization,
    OrganizationOption,
    Team,
    User,
    Project,
    OrganizationMember,
    Email,
    UserOption,
    UserEmail,
    ProjectTeam,
    ProjectOption,
    ProjectKey,
    OrganizationMemberTeam,
}

/// Writes the export `config` describes to `out`, replacing it.
///
/// An encrypted export's plaintext goes through `out` with `.plain` appended,
/// removed afterwards; encryption itself holds it in memory
/// ([`crypto::encrypt`] takes a slice).
pub fn write(config: &Config, out: &Path) -> Result<Generated> {
    if !(0.0..=1.0).contains(&config.collide_fraction) {
        return Err(Error::CollideFraction(config.collide_fraction));
    }
    let Some(public_key) = &config.encrypt_to else {
        let (models, json_bytes) = write_plain(config, out)?;
        return Ok(generated(models, json_bytes, json_bytes));
    };
    let pem = std::fs::read(public_key).map_err(|source| Error::File { path: public_key.clone(), source })?;
    let mut plain_path = out.as_os_str().to_owned();
    plain_path.push(".plain");
    let plain_path = PathBuf::from(plain_path);
    let (models, json_bytes) = write_plain(config, &plain_path)?;
    let plaintext = std::fs::read(&plain_path).map_err(|source| Error::File { path: plain_path.clone(), source })?;
    let _ = std::fs::remove_file(&plain_path);
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(config.seed);
    let tarball = crypto::encrypt(&plaintext, &pem, &mut rng)?;
    drop(plaintext);
    tarball.write_file(out)?;
    let bytes = std::fs::metadata(out).map_err(|source| Error::File { path: out.to_path_buf(), source })?.len();
    Ok(generated(models, json_bytes, bytes))
}

fn generated(models: Vec<ModelCount>, json_bytes: u64, bytes: u64) -> Generated {
    let records = models.iter().map(|m| m.records).sum();
    let tenants = models.iter().find(|m| m.model == "sentry.organization").map_or(0, |m| m.records);
    Generated { records, tenants, bytes, json_bytes, models }
}

fn write_plain(config: &Config, path: &Path) -> Result<(Vec<ModelCount>, u64)> {
    let file_error = |source| Error::File { path: path.to_path_buf(), source };
    let file = File::create(path).map_err(file_error)?;
    let mut out = CountingWriter { inner: BufWriter::with_capacity(1 << 20, file), bytes: 0 };
    let tenants = tenants_for(config.records);
    out.write_all(b"[").map_err(file_error)?;
    let mut first = true;
    let mut models = Vec::with_capacity(MODELS.len());
    for (model, name, table) in MODELS {
        let mut records = 0;
        let mut emit = |fields: Value, pk: i64| -> Result<()> {
            out.write_all(if first { b"\n" } else { b",\n" }).map_err(file_error)?;
            first = false;
            serde_json::to_writer(&mut out, &json!({"model": name, "pk": pk, "fields": fields}))?;
            records += 1;
            Ok(())
        };
        if model == Model::Option {
            options(config.seed, &mut emit)?;
        } else {
            for i in 0..tenants {
                Tenant::new(config, i).emit(model, &mut emit)?;
            }
        }
        models.push(ModelCount { model: name, table, records });
    }
    out.write_all(b"\n]\n").map_err(file_error)?;
    out.flush().map_err(file_error)?;
    Ok((models, out.bytes))
}

struct CountingWriter<W> {
    inner: W,
    bytes: u64,
}

impl<W: Write> Write for CountingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.bytes += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Instance-wide options, once per export (as in fresh-install.json).
const OPTIONS: usize = 4;

/// The fewest tenants whose records (plus the options) reach `records`.
fn tenants_for(records: u64) -> u64 {
    let mut total = OPTIONS as u64;
    let mut tenants = 0;
    while total < records {
        total += Shape::of(tenants).records();
        tenants += 1;
    }
    tenants
}

fn options(seed: u64, emit: &mut impl FnMut(Value, i64) -> Result<()>) -> Result<()> {
    let mut rng = ChaCha8Rng::seed_from_u64(mix(seed ^ 0x0905_7105));
    let values = [
        ("sentry:last_worker_ping", json!(1_687_902_001.262_330_5)),
        ("sentry:last_worker_version", json!("\"23.7.0.dev0\"")),
        ("sentry:install-id", json!(format!("\"{}\"", hex(&mut rng, 40)))),
        ("sentry:latest_version", json!("\"23.6.1\"")),
    ];
    for (n, (key, value)) in values.into_iter().enumerate() {
        let fields = json!({"key": key, "last_updated": date(&mut rng), "last_updated_by": "unknown", "value": value});
        emit(fields, sparse(n as u64))?;
    }
    Ok(())
}

/// How big tenant `i` is; depends on `i` only.
struct Shape {
    index: u64,
    members: u64,
    teams: u64,
    projects: u64,
    org_options: u64,
}

/// Most members of one tenant (pk slots are reserved per tenant).
const MAX_MEMBERS: u64 = 6;
const MAX_PROJECTS: u64 = 4;
const MAX_TEAMS: u64 = 3;
const ORG_OPTIONS: [(&str, &str); 3] = [
    ("sentry:account-rate-limit", "0"),
    ("sentry:require_scrub_data", "false"),
    ("sentry:sensitive_fields", "[\"password\"]"),
];
const USER_OPTIONS: [(&str, &str); 2] = [("timezone", "\"Europe/Vienna\""), ("language", "\"en\"")];

impl Shape {
    fn of(index: u64) -> Shape {
        let mut rng = ChaCha8Rng::seed_from_u64(mix(index ^ 0x5ba9_e000_0000_0000));
        Shape {
            index,
            members: rng.gen_range(1..=MAX_MEMBERS),
            teams: rng.gen_range(1..=MAX_TEAMS),
            projects: rng.gen_range(1..=MAX_PROJECTS),
            org_options: rng.gen_range(1..=ORG_OPTIONS.len() as u64),
        }
    }

    /// Every tenant but the first also counts the first user of the one
    /// before it among its members, so that users belong to several organizations.
    fn guest(&self) -> u64 {
        u64::from(self.index > 0)
    }

    /// User `j`'s options: the first user of a tenant has none, the others one or two.
    fn user_options(&self, j: u64) -> u64 {
        (j + self.index) % (USER_OPTIONS.len() as u64 + 1)
    }

    /// Project `p`'s keys: every third project has a second one.
    fn keys(&self, p: u64) -> u64 {
        1 + u64::from((self.index + p).is_multiple_of(3))
    }

    /// Project `p`'s options: Relay's three, and `sentry:origins` on even projects.
    fn project_options(&self, p: u64) -> u64 {
        3 + u64::from(p.is_multiple_of(2))
    }

    fn records(&self) -> u64 {
        let users: u64 = (0..self.members).map(|j| 4 + self.user_options(j)).sum(); // user, email, useremail, member
        let projects: u64 = (0..self.projects).map(|p| 2 + self.keys(p) + self.project_options(p)).sum(); // project, projectteam
        1 + self.org_options + users + self.guest() + self.teams + self.members + self.guest() + projects
    }
}

/// One tenant with all its names and random values, rebuilt identically for each model.
struct Tenant {
    shape: Shape,
    org_ns: u64,
    user_ns: Vec<u64>,
    /// Per user: date joined, password salt, validation hash.
    users: Vec<(String, String, String)>,
    org_date: String,
    projects: Vec<Project>,
    guest_ns: u64,
}

/// A project's random values.
struct Project {
    /// (public, secret) per key.
    keys: Vec<(String, String)>,
    relay_rev: String,
    date_added: String,
}

impl Tenant {
    fn new(config: &Config, index: u64) -> Tenant {
        let shape = Shape::of(index);
        let mut rng = ChaCha8Rng::seed_from_u64(mix(config.seed) ^ mix(index));
        let ns = |rng: &mut ChaCha8Rng| {
            if rng.gen_bool(config.collide_fraction) { config.collide_with } else { config.seed }
        };
        let org_ns = ns(&mut rng);
        let user_ns = (0..shape.members).map(|_| ns(&mut rng)).collect();
        let users = (0..shape.members).map(|_| (date(&mut rng), alnum(&mut rng, 12), alnum(&mut rng, 32))).collect();
        let org_date = date(&mut rng);
        let projects = (0..shape.projects)
            .map(|p| {
                let keys = (0..shape.keys(p)).map(|_| (hex(&mut rng, 32), hex(&mut rng, 32))).collect();
                Project { keys, relay_rev: hex(&mut rng, 32), date_added: date(&mut rng) }
            })
            .collect();
        // The guest is user 0 of the tenant before: its name comes from there.
        let guest_ns = if index > 0 { Tenant::first_user_ns(config, index - 1) } else { config.seed };
        Tenant { shape, org_ns, user_ns, users, org_date, projects, guest_ns }
    }

    fn first_user_ns(config: &Config, index: u64) -> u64 {
        let mut rng = ChaCha8Rng::seed_from_u64(mix(config.seed) ^ mix(index));
        let _org = rng.gen_bool(config.collide_fraction);
        if rng.gen_bool(config.collide_fraction) { config.collide_with } else { config.seed }
    }

    fn emit(&self, model: Model, emit: &mut impl FnMut(Value, i64) -> Result<()>) -> Result<()> {
        let i = self.shape.index;
        let org = snowflake(i);
        let email = |j: u64| user_email(i * MAX_MEMBERS + j, self.user_ns[j as usize]);
        match model {
            Model::Option => {}
            Model::Organization => emit(
                json!({"name": format!("Organization {i}"), "slug": format!("o{i}-{}", self.org_ns), "status": 0,
                       "date_added": self.org_date, "default_role": "member", "is_test": false, "flags": "1"}),
                org,
            )?,
            Model::OrganizationOption => {
                for (n, (key, value)) in ORG_OPTIONS.iter().take(self.shape.org_options as usize).enumerate() {
                    emit(json!({"organization": org, "key": key, "value": value}), sparse(i * 4 + n as u64))?;
                }
            }
            Model::Team => {
                for t in 0..self.shape.teams {
                    emit(
                        json!({"organization": org, "slug": format!("team-{t}"), "name": format!("Team {t}"), "status": 0,
                               "idp_provisioned": false, "date_added": self.org_date}),
                        snowflake(team_slot(i, t)),
                    )?;
                }
            }
            Model::User => {
                for j in 0..self.shape.members {
                    let (joined, salt, _) = &self.users[j as usize];
                    let address = email(j);
                    emit(
                        json!({"password": format!("pbkdf2_sha256$150000${salt}$+QsGn0tfIJ1FZLxQI37mVU1gL2KbL/wqjMtG/dFhsMA="),
                               "last_login": null, "username": address, "name": format!("User {}", i * MAX_MEMBERS + j),
                               "email": address, "is_staff": false, "is_active": true, "is_superuser": j == 0 && i == 0,
                               "is_managed": false, "is_sentry_app": null, "is_password_expired": false, "is_unclaimed": false,
                               "last_password_change": joined, "flags": "0", "session_nonce": null, "date_joined": joined,
                               "last_active": joined, "avatar_type": 0, "avatar_url": null}),
                        user_pk(i, j),
                    )?;
                }
            }
            Model::Project => {
                for p in 0..self.shape.projects {
                    let added = &self.projects[p as usize].date_added;
                    emit(
                        json!({"slug": format!("project-{p}"), "name": format!("Project {p}"), "forced_color": null,
                               "organization": org, "public": false, "date_added": added, "status": 0, "first_event": null,
                               "flags": "10", "platform": if p.is_multiple_of(2) { Value::from("python") } else { Value::Null }, "template": null}),
                        snowflake(project_slot(i, p)),
                    )?;
                }
            }
            Model::OrganizationMember => {
                for j in 0..self.shape.members + self.shape.guest() {
                    let (user, address) = if j < self.shape.members {
                        (user_pk(i, j), email(j))
                    } else {
                        (user_pk(i - 1, 0), user_email((i - 1) * MAX_MEMBERS, self.guest_ns))
                    };
                    emit(
                        json!({"organization": org, "user_id": user, "email": null, "role": if j == 0 { "owner" } else { "member" },
                               "flags": "0", "token": null, "date_added": self.org_date, "token_expires_at": null,
                               "has_global_access": true, "inviter_id": null, "invite_status": 0, "type": 50,
                               "user_is_active": true, "user_email": address}),
                        member_pk(i, j),
                    )?;
                }
            }
            Model::Email => {
                for j in 0..self.shape.members {
                    emit(json!({"email": email(j), "date_added": self.users[j as usize].0}), user_pk(i, j))?;
                }
            }
            Model::UserOption => {
                for j in 0..self.shape.members {
                    for (n, (key, value)) in USER_OPTIONS.iter().take(self.shape.user_options(j) as usize).enumerate() {
                        emit(
                            json!({"user": user_pk(i, j), "project_id": null, "organization_id": null, "key": key, "value": value}),
                            sparse((i * MAX_MEMBERS + j) * 2 + n as u64),
                        )?;
                    }
                }
            }
            Model::UserEmail => {
                for j in 0..self.shape.members {
                    let (joined, _, hash) = &self.users[j as usize];
                    emit(
                        json!({"user": user_pk(i, j), "email": email(j), "validation_hash": hash,
                               "date_hash_added": joined, "is_verified": j.is_multiple_of(2)}),
                        user_pk(i, j),
                    )?;
                }
            }
            Model::ProjectTeam => {
                for p in 0..self.shape.projects {
                    emit(
                        json!({"project": snowflake(project_slot(i, p)), "team": snowflake(team_slot(i, p % self.shape.teams))}),
                        sparse(project_slot(i, p)),
                    )?;
                }
            }
            Model::ProjectOption => {
                for p in 0..self.shape.projects {
                    let Project { relay_rev: rev, date_added: added, .. } = &self.projects[p as usize];
                    let project = snowflake(project_slot(i, p));
                    let values = [
                        ("sentry:relay-rev", json!(format!("\"{rev}\""))),
                        ("sentry:relay-rev-lastchange", json!(format!("\"{added}\""))),
                        ("sentry:option-epoch", json!(11)),
                        ("sentry:origins", json!("[\"*\"]")),
                    ];
                    for (n, (key, value)) in values.into_iter().take(self.shape.project_options(p) as usize).enumerate()
                    {
                        emit(
                            json!({"project": project, "key": key, "value": value}),
                            sparse(project_slot(i, p) * 4 + n as u64),
                        )?;
                    }
                }
            }
            Model::ProjectKey => {
                for p in 0..self.shape.projects {
                    let Project { keys, date_added: added, .. } = &self.projects[p as usize];
                    for (n, (public, secret)) in keys.iter().enumerate() {
                        emit(
                            json!({"project": snowflake(project_slot(i, p)), "label": if n == 0 { "Default" } else { "Backend" },
                                   "public_key": public, "secret_key": secret, "roles": "1", "status": 0, "date_added": added,
                                   "rate_limit_count": null, "rate_limit_window": null,
                                   "data": {"dynamicSdkLoaderOptions": {"hasPerformance": true, "hasReplay": true}}}),
                            sparse(project_slot(i, p) * 2 + n as u64),
                        )?;
                    }
                }
            }
            Model::OrganizationMemberTeam => {
                for j in 0..self.shape.members + self.shape.guest() {
                    emit(
                        json!({"team": snowflake(team_slot(i, j % self.shape.teams)), "organizationmember": member_pk(i, j),
                               "is_active": true, "role": null}),
                        member_pk(i, j),
                    )?;
                }
            }
        }
        Ok(())
    }
}

/// User `k`'s address (and username) in namespace `ns`.
fn user_email(k: u64, ns: u64) -> String {
    format!("user{k}.{ns}@example.com")
}

fn user_pk(i: u64, j: u64) -> i64 {
    sparse(i * MAX_MEMBERS + j)
}

/// Members have one slot more per tenant than users: the guest.
fn member_pk(i: u64, j: u64) -> i64 {
    sparse(i * (MAX_MEMBERS + 1) + j)
}

fn team_slot(i: u64, t: u64) -> u64 {
    (i * MAX_TEAMS + t) * 2
}

fn project_slot(i: u64, p: u64) -> u64 {
    (i * MAX_PROJECTS + p) * 2 + 1
}

/// A small pk with gaps: slot `s` gets one of `3s+1..=3s+3`.
fn sparse(slot: u64) -> i64 {
    (slot * 3 + 1 + mix(slot) % 3) as i64
}

/// A snowflake-like id, as Sentry's region models have: unique per slot.
fn snowflake(slot: u64) -> i64 {
    (4_554_016_097_501_184 + (slot << 8) + mix(slot) % 256) as i64
}

/// SplitMix64's finalizer: a cheap, well-spread hash of a u64.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn date(rng: &mut ChaCha8Rng) -> String {
    format!(
        "20{}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        rng.gen_range(18..=24),
        rng.gen_range(1..=12),
        rng.gen_range(1..=28),
        rng.gen_range(0..24),
        rng.gen_range(0..60),
        rng.gen_range(0..60),
        rng.gen_range(0..1000)
    )
}

fn hex(rng: &mut ChaCha8Rng, n: usize) -> String {
    (0..n).map(|_| char::from(b"0123456789abcdef"[rng.gen_range(0..16)])).collect()
}

fn alnum(rng: &mut ChaCha8Rng, n: usize) -> String {
    const CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    (0..n).map(|_| char::from(CHARS[rng.gen_range(0..CHARS.len())])).collect()
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use super::*;

    fn generate(config: &Config) -> (Generated, Vec<Value>) {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("export.json");
        let generated = write(config, &path).expect("generate");
        let records: Vec<Value> = serde_json::from_slice(&std::fs::read(&path).expect("read")).expect("a JSON array");
        (generated, records)
    }

    #[test]
    fn counts_pks_and_foreign_keys_agree_with_the_records() {
        let (generated, records) = generate(&Config { records: 2_000, ..Config::default() });
        assert!(generated.records >= 2_000 && generated.records < 2_100, "{}", generated.records);
        assert_eq!(records.len() as u64, generated.records);
        let mut per_model: BTreeMap<&str, BTreeSet<i64>> = BTreeMap::new();
        for r in &records {
            let pk = r["pk"].as_i64().expect("pk");
            assert!(per_model.entry(r["model"].as_str().expect("model")).or_default().insert(pk), "duplicate pk {r}");
        }
        for m in &generated.models {
            assert_eq!(per_model[m.model].len() as u64, m.records, "{}", m.model);
        }
        let users = &per_model["sentry.user"];
        assert!(users.iter().max().expect("users") > &(users.len() as i64), "pks are sparse");
        for r in records.iter().filter(|r| r["model"] == "sentry.organizationmember") {
            assert!(users.contains(&r["fields"]["user_id"].as_i64().expect("user_id")), "{r}");
        }
    }

    #[test]
    fn a_colliding_fraction_reuses_the_other_namespace() {
        let usernames = |config: &Config| -> BTreeSet<String> {
            let (_, records) = generate(config);
            records
                .iter()
                .filter(|r| r["model"] == "sentry.user")
                .map(|r| r["fields"]["username"].to_string())
                .collect()
        };
        let base = usernames(&Config { records: 3_000, ..Config::default() });
        let other = usernames(&Config { records: 3_000, seed: 7, collide_fraction: 0.3, ..Config::default() });
        let shared = base.intersection(&other).count() as f64 / base.len() as f64;
        assert!((0.2..0.4).contains(&shared), "{shared}");
        assert_eq!(base.len(), other.len());
    }
}
