//! What every end-to-end test needs: a fresh database of either kind, the
//! real `relocate` binary, fixtures, and ways to look at the result.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use sqlx::{AssertSqlSafe, Connection};

/// PostgreSQL for the tests; each test gets a database of its own in it.
pub fn pg_admin_url() -> String {
    std::env::var("RELOCATE_TEST_PG").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A path under the repository's `tests/fixtures/`.
pub fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures").join(rel)
}

pub fn example(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples").join(rel)
}

/// A test plugin's component, built by host/build.rs.
pub fn test_plugin(name: &str) -> PathBuf {
    Path::new(env!("RELOCATE_PLUGIN_ARTIFACTS")).join(format!("test_plugin_{}.wasm", name.replace('-', "_")))
}

/// A fresh, empty target database, dropped (PostgreSQL) or deleted with its
/// directory (SQLite) when the test ends.
pub struct Target {
    pub url: String,
    pub dir: tempfile::TempDir,
    pg_name: Option<String>,
}

#[derive(Clone, Copy, Debug)]
pub enum Kind {
    Sqlite,
    Postgres,
}

impl Target {
    pub async fn new(kind: Kind) -> Target {
        match kind {
            Kind::Sqlite => {
                let dir = tempfile::tempdir().expect("create a temp dir");
                Target { url: format!("sqlite:{}", dir.path().join("target.db").display()), dir, pg_name: None }
            }
            Kind::Postgres => Target::postgres_with("").await,
        }
    }

    /// A fresh PostgreSQL database created `CREATE DATABASE name {options}`
    /// (say, `TEMPLATE template0 LC_CTYPE 'C'`).
    pub async fn postgres_with(options: &str) -> Target {
        let dir = tempfile::tempdir().expect("create a temp dir");
        let name = format!("relocate_t_{}", uuid::Uuid::new_v4().simple());
        let admin = pg_admin_url();
        let mut c = sqlx::PgConnection::connect(&admin).await.unwrap_or_else(|e| {
            panic!(
                "PostgreSQL is not reachable at {admin} ({e}). Start it (see README: Testing) \
                 or point RELOCATE_TEST_PG at a server where the user may create databases."
            )
        });
        sqlx::query(AssertSqlSafe(format!("CREATE DATABASE {name} {options}")))
            .execute(&mut c)
            .await
            .expect("create a test database");
        let url = match admin.rsplit_once('/') {
            Some((base, _)) => format!("{base}/{name}"),
            None => panic!("RELOCATE_TEST_PG must end in /DATABASE"),
        };
        Target { url, dir, pg_name: Some(name) }
    }

    /// Runs `relocate` with `--db` pointing here (where the command takes it).
    pub fn relocate(&self, args: &[&str]) -> Run {
        self.relocate_with_input(args, "")
    }

    /// Runs `relocate` with `input` on its standard input.
    pub fn relocate_with_input(&self, args: &[&str], input: &str) -> Run {
        let mut all: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        if matches!(args.first(), Some(&"import") | Some(&"db")) {
            all.push("--db".into());
            all.push(self.url.clone());
        }
        relocate_with_input(&all.iter().map(String::as_str).collect::<Vec<_>>(), input)
    }

    pub async fn connect(&self) -> Conn {
        if self.url.starts_with("sqlite:") {
            use std::str::FromStr;
            // A target the import never touched may not exist yet.
            let options =
                sqlx::sqlite::SqliteConnectOptions::from_str(&self.url).expect("a SQLite URL").create_if_missing(true);
            Conn::Sqlite(sqlx::SqliteConnection::connect_with(&options).await.expect("open the SQLite target"))
        } else {
            Conn::Postgres(sqlx::PgConnection::connect(&self.url).await.expect("open the PostgreSQL target"))
        }
    }

    /// Row count of `table`; 0 when the table does not exist.
    pub async fn count(&self, table: &str) -> i64 {
        let mut c = self.connect().await;
        if !c.has_table(table).await {
            return 0;
        }
        c.i64s(&format!("SELECT COUNT(*) FROM {table}")).await[0]
    }

    pub async fn strings(&self, sql: &str) -> Vec<Option<String>> {
        self.connect().await.strings(sql).await
    }

    pub async fn i64s(&self, sql: &str) -> Vec<i64> {
        self.connect().await.i64s(sql).await
    }

    /// Everything a user could see in the database: its schema (tables,
    /// indexes; PostgreSQL's sequences with their positions) and every row of
    /// every table, as text, in a stable order. An absent SQLite file is
    /// `None`, as it must stay after a dry run.
    pub async fn snapshot(&self) -> Option<BTreeMap<String, Vec<String>>> {
        if let Some(path) = self.url.strip_prefix("sqlite:")
            && !Path::new(path).exists()
        {
            return None;
        }
        let mut c = self.connect().await;
        let mut out = BTreeMap::new();
        let (schema, tables) = match &c {
            Conn::Sqlite(_) => (
                "SELECT type || ' ' || name || ': ' || COALESCE(sql, '') FROM sqlite_master ORDER BY 1",
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY 1",
            ),
            Conn::Postgres(_) => (
                "SELECT x FROM (SELECT 'index ' || indexname || ': ' || indexdef AS x FROM pg_indexes \
                 WHERE schemaname = current_schema() UNION ALL SELECT 'sequence ' || sequencename || ': ' || \
                 COALESCE(last_value, 0) FROM pg_sequences WHERE schemaname = current_schema() UNION ALL \
                 SELECT 'column ' || table_name || '.' || column_name || ': ' || data_type FROM \
                 information_schema.columns WHERE table_schema = current_schema()) s ORDER BY 1",
                "SELECT tablename::text FROM pg_tables WHERE schemaname = current_schema() ORDER BY 1",
            ),
        };
        out.insert("(schema)".to_string(), c.strings(schema).await.into_iter().flatten().collect());
        for table in c.strings(tables).await.into_iter().flatten() {
            let rows = match &c {
                Conn::Sqlite(_) => {
                    let cols: Vec<String> = c
                        .strings(&format!("SELECT name FROM pragma_table_info('{table}') ORDER BY cid"))
                        .await
                        .into_iter()
                        .flatten()
                        .map(|col| format!("\"{col}\""))
                        .collect();
                    format!("SELECT json_array({}) FROM \"{table}\" ORDER BY 1", cols.join(", "))
                }
                Conn::Postgres(_) => format!("SELECT row_to_json(t)::text FROM \"{table}\" t ORDER BY 1"),
            };
            out.insert(table, c.strings(&rows).await.into_iter().flatten().collect());
        }
        Some(out)
    }

    /// Counts of every given table, for before/after comparisons.
    pub async fn counts(&self, tables: &[&str]) -> Vec<(String, i64)> {
        let mut out = Vec::new();
        for t in tables {
            out.push((t.to_string(), self.count(t).await));
        }
        out
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        let Some(name) = self.pg_name.take() else { return };
        // Drop runs outside async context; a short-lived thread does the async work.
        let admin = pg_admin_url();
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
            rt.block_on(async {
                let mut c = sqlx::PgConnection::connect(&admin).await.ok()?;
                sqlx::query(AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")))
                    .execute(&mut c)
                    .await
                    .ok()
            })
        })
        .join();
    }
}

pub enum Conn {
    Sqlite(sqlx::SqliteConnection),
    Postgres(sqlx::PgConnection),
}

impl Conn {
    pub async fn has_table(&mut self, table: &str) -> bool {
        match self {
            Conn::Sqlite(c) => {
                sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM sqlite_master WHERE type='table' AND name = ?")
                    .bind(table)
                    .fetch_one(c)
                    .await
                    .expect("list tables")
                    > 0
            }
            Conn::Postgres(c) => {
                sqlx::query_scalar::<_, i64>(
                    "SELECT COUNT(*) FROM pg_tables WHERE schemaname = current_schema() AND tablename = $1",
                )
                .bind(table)
                .fetch_one(c)
                .await
                .expect("list tables")
                    > 0
            }
        }
    }

    pub async fn strings(&mut self, sql: &str) -> Vec<Option<String>> {
        match self {
            Conn::Sqlite(c) => sqlx::query_scalar(AssertSqlSafe(sql.to_string())).fetch_all(c).await,
            Conn::Postgres(c) => sqlx::query_scalar(AssertSqlSafe(sql.to_string())).fetch_all(c).await,
        }
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    pub async fn i64s(&mut self, sql: &str) -> Vec<i64> {
        match self {
            Conn::Sqlite(c) => sqlx::query_scalar(AssertSqlSafe(sql.to_string())).fetch_all(c).await,
            Conn::Postgres(c) => sqlx::query_scalar(AssertSqlSafe(sql.to_string())).fetch_all(c).await,
        }
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    pub async fn execute(&mut self, sql: &str) {
        match self {
            Conn::Sqlite(c) => sqlx::query(AssertSqlSafe(sql.to_string())).execute(c).await.map(|_| ()),
            Conn::Postgres(c) => sqlx::query(AssertSqlSafe(sql.to_string())).execute(c).await.map(|_| ()),
        }
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }
}

/// The outcome of one run of the binary.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    #[track_caller]
    pub fn success(&self) -> &Self {
        assert_eq!(self.code, 0, "relocate failed\n--- stdout\n{}\n--- stderr\n{}", self.stdout, self.stderr);
        self
    }

    #[track_caller]
    pub fn failure(&self, code: i32) -> &Self {
        assert_eq!(self.code, code, "unexpected exit code\n--- stdout\n{}\n--- stderr\n{}", self.stdout, self.stderr);
        self
    }
}

/// Runs the real binary. Compiled plugins are cached under the target dir so
/// only the first test pays for compiling them.
pub fn relocate(args: &[&str]) -> Run {
    relocate_with_input(args, "")
}

/// The real binary with `args`, its compiled plugins cached for the tests.
pub fn command(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_relocate"));
    command.args(args).env("XDG_CACHE_HOME", cache_home()).env_remove("RELOCATE_DB").env_remove("RELOCATE_PLUGIN_DIR");
    command
}

/// Where the tests' runs of the binary cache compiled plugins.
pub fn cache_home() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("cache")
}

pub fn relocate_with_input(args: &[&str], input: &str) -> Run {
    run_relocate(args, input, &[])
}

/// Runs the real binary with extra environment variables.
pub fn relocate_with_env(args: &[&str], env: &[(&str, &str)]) -> Run {
    run_relocate(args, "", env)
}

fn run_relocate(args: &[&str], input: &str, env: &[(&str, &str)]) -> Run {
    use std::io::Write as _;
    let mut child = command(args)
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run relocate");
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(input.as_bytes());
    }
    let out: Output = child.wait_with_output().expect("wait for relocate");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Declares one test per database kind running the same scenario.
#[macro_export]
macro_rules! db_test {
    ($name:ident, |$t:ident| $body:block) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            async fn scenario($t: $crate::support::Target) $body
            #[tokio::test]
            async fn sqlite() {
                scenario($crate::support::Target::new($crate::support::Kind::Sqlite).await).await
            }
            #[tokio::test]
            async fn postgres() {
                scenario($crate::support::Target::new($crate::support::Kind::Postgres).await).await
            }
        }
    };
}
