//! The `relocate` command line: Sentry's command shape, relocate's engine.
//!
//! Raw clap structs are turned into engine options here; errors become the
//! documented exit codes (see [`exit`]).

use std::collections::BTreeSet;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::{Args, CommandFactory as _, Parser, Subcommand};

use crate::engine::graph::Registry;
use crate::engine::{self, Commit, Detail, Filters, ImportOptions, ModelSummary, Summary};
use crate::model::ImportScope;
use crate::plugin::{self, ImportFlags, Origin, PluginHost, RuntimeConfig};
use crate::{crypto, db, jobs, reader};

mod inspect;
mod observe;
mod plugin_test;
mod queue;
mod scaffold;
mod status;
mod verify;
mod worker;

/// Exit codes, stable and documented in the README.
pub mod exit {
    pub const OK: u8 = 0;
    /// The import stopped on a bad record or a conflict (see the findings).
    pub const IMPORT_FAILED: u8 = 1;
    /// The command line was wrong (clap uses 2 as well).
    pub const USAGE: u8 = 2;
    /// The export could not be read: missing file, not JSON, malformed records.
    pub const BAD_INPUT: u8 = 3;
    /// Decryption failed: wrong key, mismatched key.pub, tampered tarball.
    pub const DECRYPTION: u8 = 4;
    /// A plugin failed to load, trapped, ran out of time or memory, or broke the contract.
    pub const PLUGIN: u8 = 5;
    /// The database could not be opened or refused a statement.
    pub const DATABASE: u8 = 6;
    /// The job queue (NATS JetStream) could not be reached or refused a request.
    pub const QUEUE: u8 = 7;
}

#[derive(Parser)]
#[command(
    name = "relocate",
    version,
    about = "Import relational backup exports (Sentry relocations) through sandboxed wasm model plugins."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Import an export (plain JSON or an encrypted tarball) into a database.
    #[command(subcommand)]
    Import(ImportCommand),
    /// Decrypt an encrypted export tarball to plain JSON.
    Decrypt {
        /// Where to write the JSON.
        dest: PathBuf,
        /// The encrypted export tarball to decrypt.
        #[arg(long)]
        src: PathBuf,
        /// The RSA private key (PEM, PKCS#8 or PKCS#1).
        #[arg(long)]
        decrypt_with: PathBuf,
    },
    /// Encrypt a JSON export into Sentry's tarball format.
    Encrypt {
        /// Where to write the tarball.
        dest: PathBuf,
        /// The JSON export to encrypt.
        #[arg(long)]
        src: PathBuf,
        /// The RSA public key (PEM, SubjectPublicKeyInfo).
        #[arg(long)]
        encrypt_with: PathBuf,
    },
    /// Plugins: what is loaded and which models each serves.
    #[command(subcommand)]
    Plugins(PluginsCommand),
    /// One plugin: what it describes and what it asks of the sandbox.
    #[command(subcommand)]
    Plugin(PluginCommand),
    /// The target database.
    #[command(subcommand)]
    Db(DbCommand),
    /// Read an import's rows back and compare them with the export through its pk map.
    Verify(verify::VerifyArgs),
    /// The imports a database holds, per model: what a rerun with the same --import-uuid skips.
    Status(status::StatusArgs),
    /// Print a shell completion script for relocate to standard output.
    Completions {
        /// The shell to complete in.
        shell: clap_complete::Shell,
    },
    /// Print relocate's man page (roff) to standard output.
    Man,
    /// Put an export on the job queue (NATS JetStream) for `relocate worker`s to import.
    Submit(queue::SubmitArgs),
    /// Import jobs from the queue until stopped (SIGTERM: after the current batch).
    Worker(worker::WorkerArgs),
    /// List the queue's jobs: queued, running, retrying, done or failed.
    Jobs(queue::JobsArgs),
}

#[derive(Subcommand)]
enum ImportCommand {
    /// Users and their own settings (User scope).
    Users {
        #[command(flatten)]
        common: ImportArgs,
        /// Reuse existing users with the same username instead of adding suffixed copies.
        #[arg(long)]
        merge_users: bool,
        /// Import only these users (comma-separated usernames).
        #[arg(long, conflicts_with = "filter_usernames_file")]
        filter_usernames: Option<String>,
        /// Import only the users listed in this file (one per line or comma-separated).
        #[arg(long)]
        filter_usernames_file: Option<PathBuf>,
    },
    /// Organizations, their projects and members (Organization scope).
    Organizations {
        #[command(flatten)]
        common: ImportArgs,
        /// Reuse existing users with the same username instead of adding suffixed copies.
        #[arg(long)]
        merge_users: bool,
        /// Import only these organizations (comma-separated slugs) and their members.
        #[arg(long)]
        filter_org_slugs: Option<String>,
        /// Import organizations hidden, pending approval.
        #[arg(long)]
        hide_organizations: bool,
    },
    /// Instance configuration and privileged users (Config scope).
    Config {
        #[command(flatten)]
        common: ImportArgs,
        /// Reuse existing users with the same username instead of adding suffixed copies.
        #[arg(long)]
        merge_users: bool,
        /// Replace existing configuration values instead of keeping them.
        #[arg(long)]
        overwrite_configs: bool,
    },
    /// Everything (Global scope).
    Global {
        #[command(flatten)]
        common: ImportArgs,
    },
}

#[derive(Args)]
struct ImportArgs {
    /// The export: a JSON file or an encrypted tarball.
    src: PathBuf,
    /// The RSA private key for an encrypted tarball (PEM).
    #[arg(long)]
    decrypt_with: Option<PathBuf>,
    #[command(flatten)]
    db: DbArg,
    /// Identity of the import; rerun with the same one to resume without writing anything twice.
    #[arg(long)]
    import_uuid: Option<String>,
    /// Write Sentry-style findings (JSON) here: `[]` on success.
    #[arg(long)]
    findings_file: Option<PathBuf>,
    /// Never ask for confirmation.
    #[arg(long)]
    no_prompt: bool,
    /// Print nothing but errors.
    #[arg(long)]
    silent: bool,
    /// Records per plugin call and per transaction (rounded up to a multiple of 20; at most 10000).
    #[arg(long, default_value_t = 1000, value_parser = batch_size)]
    batch_size: usize,
    /// Seed for generated suffixes, tokens and passwords (makes runs reproducible).
    #[arg(long)]
    seed: Option<u64>,
    /// Refuse an export with records of a model no plugin describes, before writing anything.
    #[arg(long)]
    strict: bool,
    /// Run the whole import, plugins and collision questions included, in one transaction that is
    /// rolled back: the summary is what a real run would write, and the database is left as it was.
    #[arg(long, conflicts_with = "atomic")]
    dry_run: bool,
    /// All or nothing: one transaction for the whole import, committed at the end. An import that
    /// stops (an error, a kill) leaves the database exactly as it was, and is not resumable.
    #[arg(long)]
    atomic: bool,
    /// Print the summary as one JSON document on stdout instead of the table.
    #[arg(long)]
    json: bool,
    /// Write one JSON line per record that was not inserted (skipped, dropped, existing,
    /// overwritten, resumed) to FILE: model, ordinal, old and new pk, outcome and reason.
    #[arg(long, value_name = "FILE")]
    report: Option<PathBuf>,
    /// With --report: list inserted records too (their old and new pks: the pk map).
    #[arg(long, requires = "report")]
    report_inserted: bool,
    /// When a plugin makes a batch fail (trap, time or memory limit, contract, invalid record), write
    /// the batch to DIR as a case that `relocate plugin test` replays.
    #[arg(long, value_name = "DIR")]
    capture_failures: Option<PathBuf>,
    #[command(flatten)]
    plugins: PluginArgs,
}

/// `--batch-size`: 1 to [`engine::MAX_BATCH_SIZE`].
fn batch_size(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(n) if (1..=engine::MAX_BATCH_SIZE).contains(&n) => Ok(n),
        _ => Err(format!("expected a number of records from 1 to {}", engine::MAX_BATCH_SIZE)),
    }
}

#[derive(Args)]
struct DbArg {
    /// Target database: sqlite:PATH or postgres://USER@HOST/DB.
    #[arg(long, env = "RELOCATE_DB", default_value = "sqlite:relocate.db", value_parser = db_url)]
    db: String,
}

/// `--db`: a URL relocate can use, refused at parsing like any bad value.
fn db_url(text: &str) -> Result<String, String> {
    db::check_url(text).map(|()| text.to_string()).map_err(|e| e.to_string())
}

#[derive(Args)]
struct PluginArgs {
    /// An extra plugin (.wasm component); it replaces the built-in plugin for the models it describes.
    #[arg(long = "plugin")]
    plugins: Vec<PathBuf>,
    /// A folder of extra plugins: every .wasm file in it, in name order, loaded as --plugin files are.
    #[arg(long = "plugin-dir", value_name = "DIR", env = "RELOCATE_PLUGIN_DIR")]
    plugin_dirs: Vec<PathBuf>,
    /// Time limit of one plugin call, in seconds.
    #[arg(long, default_value_t = 10.0)]
    plugin_timeout: f64,
    /// Memory limit of one plugin instance, in MiB (at most 1024).
    #[arg(long, default_value_t = 64)]
    plugin_memory: usize,
    /// Where compiled plugins are cached (default: the user cache directory).
    #[arg(long)]
    cache_dir: Option<PathBuf>,
}

#[derive(Subcommand)]
enum PluginsCommand {
    /// List the plugins and the models each one serves.
    List {
        #[command(flatten)]
        plugins: PluginArgs,
    },
}

#[derive(Subcommand)]
enum PluginCommand {
    /// Show a plugin's contract, models, foreign keys and imports, and check it as an import would.
    Inspect(inspect::InspectArgs),
    /// Create a plugin crate: one model, a native test, the tuned release profile.
    New(scaffold::NewArgs),
    /// Run fixture cases through a plugin with no database and compare them with what they expect.
    Test(plugin_test::TestArgs),
}

#[derive(Subcommand)]
enum DbCommand {
    /// Create the tables of every model the plugins describe, and the import-chunk tables.
    Init {
        #[command(flatten)]
        db: DbArg,
        #[command(flatten)]
        plugins: PluginArgs,
    },
}

/// Runs the command line and turns the outcome into an exit code.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { exit::USAGE } else { exit::OK });
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::from(exit::OK),
        Err(e) => {
            eprintln!("error: {}", one_line(&e));
            ExitCode::from(exit_code(&e))
        }
    }
}

/// The error and its causes on one line, each said once. relocate's own
/// errors carry their causes' text; a cause whose text is already on the
/// line (a foreign error that repeats its source, say) is left out.
fn one_line(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if line.contains(text.trim()) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

/// The clap definition of the whole command line, for completions, the man
/// page and the tests that check every flag has help.
pub fn command() -> clap::Command {
    Cli::command()
}

fn exit_code(e: &anyhow::Error) -> u8 {
    for cause in e.chain() {
        if let Some(e) = cause.downcast_ref::<engine::Error>() {
            return match e {
                engine::Error::Reader(r) => reader_code(r),
                engine::Error::Plugin(_) | engine::Error::Contract { .. } | engine::Error::Graph(_) => exit::PLUGIN,
                engine::Error::Db(e) => db_code(e),
                // The database lost or refused the batch for its own reasons,
                // not for one of its records.
                engine::Error::Write { error, .. } if error.is_transient() => exit::DATABASE,
                engine::Error::Deserialization { .. }
                | engine::Error::Invalid { .. }
                | engine::Error::Write { .. }
                | engine::Error::Internal(_)
                | engine::Error::Cancelled => exit::IMPORT_FAILED,
                engine::Error::NoSuchImport(_) => exit::USAGE,
            };
        }
        if let Some(r) = cause.downcast_ref::<reader::Error>() {
            return reader_code(r);
        }
        if cause.downcast_ref::<crypto::Error>().is_some() {
            return exit::DECRYPTION;
        }
        if cause.downcast_ref::<plugin::Error>().is_some() {
            return exit::PLUGIN;
        }
        if let Some(e) = cause.downcast_ref::<db::Error>() {
            return db_code(e);
        }
        if cause.downcast_ref::<UsageError>().is_some() {
            return exit::USAGE;
        }
        if cause.downcast_ref::<BadInput>().is_some() {
            return exit::BAD_INPUT;
        }
        if cause.downcast_ref::<Undescribed>().is_some() {
            return exit::IMPORT_FAILED;
        }
        if let Some(e) = cause.downcast_ref::<jobs::Error>() {
            return match e {
                jobs::Error::Prefix(_) | jobs::Error::Invalid(_) => exit::USAGE,
                jobs::Error::Io { .. } => exit::BAD_INPUT,
                _ => exit::QUEUE,
            };
        }
    }
    exit::IMPORT_FAILED
}

fn db_code(e: &db::Error) -> u8 {
    match e {
        db::Error::BadUrl(_) | db::Error::NoFile { .. } => exit::USAGE,
        db::Error::UniqueViolation { .. } => exit::IMPORT_FAILED,
        _ => exit::DATABASE,
    }
}

fn reader_code(e: &reader::Error) -> u8 {
    match e {
        reader::Error::Crypto { .. } | reader::Error::NeedsKey { .. } => exit::DECRYPTION,
        _ => exit::BAD_INPUT,
    }
}

/// The user declined to clear the database.
#[derive(Debug, thiserror::Error)]
#[error("aborted: nothing was changed (pass --no-prompt to clear the database without asking)")]
struct Aborted;

/// Sentry's question before a Global import, asked before any progress
/// output so that it cannot be missed.
fn confirm(rows: i64) -> anyhow::Result<bool> {
    eprint!(
        "Proceeding with this operation will irrecoverably delete all existing low-volume data \
         ({rows} rows) - are you sure want to continue? [y/N] "
    );
    std::io::stderr().flush()?;
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer)?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes" | "Yes"))
}

/// `--strict`: the export has records of models no plugin describes. Sentry
/// stops on such a record (`UnexpectedModel`), hence "import stopped".
#[derive(Debug, thiserror::Error)]
#[error(
    "--strict: no plugin describes {}; nothing was written (pass --plugin with the plugin that describes them, \
     or drop --strict to import the rest without them)",
    counts(.0)
)]
struct Undescribed(Vec<(String, u64)>);

/// `acme.invoice (3 records), acme.line (1 record)`.
fn counts(models: &[(String, u64)]) -> String {
    let one = |(model, n): &(String, u64)| format!("{model} ({n} record{})", if *n == 1 { "" } else { "s" });
    models.iter().map(one).collect::<Vec<_>>().join(", ")
}

/// A mistake on the command line found after parsing, including a file it
/// names (other than the export) that cannot be read or written.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct UsageError(String);

/// An export that cannot be read outside an import (`relocate encrypt`).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct BadInput(String);

/// A file named on the command line that cannot be read or written.
fn file_error(what: &str, path: &Path, e: std::io::Error) -> UsageError {
    UsageError(format!("cannot {what} {}: {e}", path.display()))
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Import(cmd) => import(cmd).await,
        Command::Submit(args) => queue::submit(args).await,
        Command::Worker(args) => worker::run(args).await,
        Command::Jobs(args) => queue::list(args).await,
        Command::Decrypt { dest, src, decrypt_with } => {
            let key = read_key(&decrypt_with)?;
            // As an import says it: the tarball named, and a wrong key
            // reported as the key's fault, not the tarball's.
            let tarball_error = |error: crypto::Error| match error {
                crypto::Error::File { path, error } => reader::Error::Io { path, error },
                error => reader::Error::Crypto { path: src.clone(), error },
            };
            let sealed = crypto::SealedExport::open(&src).map_err(tarball_error)?;
            write_whole(&dest, |out| Ok(sealed.decrypt_to(&key, out).map_err(tarball_error)?))
        }
        Command::Encrypt { dest, src, encrypt_with } => {
            let cannot_read = |error: std::io::Error| reader::Error::Io { path: src.clone(), error };
            let mut json = std::fs::File::open(&src).map_err(cannot_read)?;
            serde_json::from_reader::<_, serde::de::IgnoredAny>(std::io::BufReader::new(&json))
                .map_err(|e| BadInput(format!("{}: not a JSON export: {e}", src.display())))?;
            let len = std::io::Seek::rewind(&mut json).and_then(|()| json.metadata()).map_err(cannot_read)?.len();
            let pem = std::fs::read(&encrypt_with).map_err(|e| file_error("read the public key", &encrypt_with, e))?;
            write_whole(&dest, |out| {
                crypto::encrypt_to(std::io::BufReader::new(&json), len, &pem, &mut rand::rngs::OsRng, out)
                    .with_context(|| format!("cannot encrypt with {}", encrypt_with.display()))
            })
        }
        Command::Plugins(PluginsCommand::List { plugins }) => {
            let (host, registry) = load_plugins(&plugins)?;
            let mut out = std::io::stdout().lock();
            for (id, info) in host.plugins() {
                let extra = if matches!(info.origin, Origin::File(_)) { "  [extra]" } else { "" };
                writeln!(out, "{} {} ({}){extra}", info.name, info.version, info.origin)?;
                for desc in &info.models {
                    let serving = registry.get(&desc.name).is_some_and(|(p, _)| *p == id);
                    let scopes: Vec<&str> = desc.scopes.iter().map(|s| s.as_str()).collect();
                    let note = if serving { "" } else { "  (replaced by a later plugin)" };
                    writeln!(
                        out,
                        "  {:<44} {:<40} {}{note}",
                        desc.name.as_str(),
                        desc.table.as_str(),
                        scopes.join(",")
                    )?;
                }
            }
            Ok(())
        }
        Command::Plugin(PluginCommand::Inspect(args)) => inspect::run(&args),
        Command::Plugin(PluginCommand::New(args)) => scaffold::run(&args),
        Command::Plugin(PluginCommand::Test(args)) => plugin_test::run(&args).await,
        Command::Verify(args) => verify::run(&args).await,
        Command::Status(args) => status::run(&args).await,
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut command(), "relocate", &mut std::io::stdout().lock());
            Ok(())
        }
        Command::Man => {
            clap_mangen::Man::new(command()).render(&mut std::io::stdout().lock())?;
            Ok(())
        }
        Command::Db(DbCommand::Init { db, plugins }) => {
            let (_host, registry) = load_plugins(&plugins)?;
            let mut conn = db::Db::connect(&db.db).await?;
            let order = registry.order().map_err(engine::Error::from)?;
            let descs: Vec<_> = order.iter().filter_map(|m| registry.desc(m)).collect();
            conn.create_schema(&descs).await?;
            println!("created the tables of {} models in {}", descs.len(), db.db);
            Ok(())
        }
    }
}

/// Writes `dest` through a temporary file beside it, renamed over it once whole, so that a
/// failure leaves no partial `dest`.
fn write_whole(
    dest: &Path,
    write: impl FnOnce(&mut std::io::BufWriter<&mut std::fs::File>) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let cannot_write = |e: std::io::Error| file_error("write", dest, e);
    let dir = dest.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let mut temp = tempfile::NamedTempFile::new_in(dir).map_err(cannot_write)?;
    let mut out = std::io::BufWriter::new(temp.as_file_mut());
    write(&mut out)?;
    out.into_inner().map_err(|e| e.into_error()).and_then(|f| f.sync_all()).map_err(cannot_write)?;
    temp.persist(dest).map_err(|e| cannot_write(e.error))?;
    Ok(())
}

/// The `--decrypt-with` key. A key file that cannot be read is a mistake in
/// the command, as a `--plugin` file is; one that is not a usable key is a
/// decryption failure.
fn read_key(path: &Path) -> anyhow::Result<crypto::PrivateKey> {
    crypto::PrivateKey::from_pem_file(path).map_err(|e| match e {
        crypto::Error::File { error, .. } => file_error("read the private key", path, error).into(),
        e => anyhow::Error::new(e).context(format!("{}", path.display())),
    })
}

/// Loads the built-in plugins, then the user's (which replace built-ins
/// model by model), and checks that their descriptions fit together.
fn load_plugins(args: &PluginArgs) -> anyhow::Result<(PluginHost, Registry)> {
    let host = plugin_host(args)?;
    let registry = Registry::new(host.plugins()).map_err(engine::Error::from)?;
    Ok((host, registry))
}

/// The built-in plugins and the `--plugin` files, loaded but not yet checked
/// against each other.
fn plugin_host(args: &PluginArgs) -> anyhow::Result<PluginHost> {
    plugin_host_with(args, false)
}

/// [`plugin_host`], counting the instructions plugins run if `meter`.
fn plugin_host_with(args: &PluginArgs, meter: bool) -> anyhow::Result<PluginHost> {
    if !(args.plugin_timeout > 0.0 && args.plugin_timeout <= 3600.0) {
        bail!(UsageError("--plugin-timeout must be between 0 and 3600 seconds".into()));
    }
    // The runtime's own limit, so that a value it would refuse is a usage error.
    let max_mib = plugin::MAX_MEMORY_LIMIT >> 20;
    if !(1..=max_mib).contains(&args.plugin_memory) {
        bail!(UsageError(format!("--plugin-memory must be between 1 and {max_mib} MiB")));
    }
    let config = RuntimeConfig {
        cache_dir: args.cache_dir.clone().or_else(plugin::default_cache_dir),
        memory_limit: args.plugin_memory << 20,
        call_timeout: Duration::from_secs_f64(args.plugin_timeout),
        meter,
    };
    let mut host = PluginHost::new(config)?;
    crate::builtin::load(&mut host)?;
    for path in plugin_dir_files(&args.plugin_dirs)?.iter().chain(&args.plugins) {
        host.load(Origin::File(path.clone()), &read_plugin_file(path)?)?;
    }
    Ok(host)
}

/// The `.wasm` files of the `--plugin-dir` folders, each folder's in name
/// order so that loading is the same on every machine. Other files (a
/// README, a build's leftovers) are not plugins and are passed over; a
/// folder that cannot be read is a mistake in the command.
fn plugin_dir_files(dirs: &[PathBuf]) -> Result<Vec<PathBuf>, UsageError> {
    let mut all = Vec::new();
    for dir in dirs {
        let cannot_read = |e| file_error("read the plugin folder", dir, e);
        let mut files = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(cannot_read)? {
            let path = entry.map_err(cannot_read)?.path();
            if path.extension().is_some_and(|e| e == "wasm") && path.is_file() {
                files.push(path);
            }
        }
        files.sort();
        all.extend(files);
    }
    Ok(all)
}

/// A plugin file named on the command line; one that cannot be read is a
/// mistake in the command, not a failing plugin.
fn read_plugin_file(path: &Path) -> Result<Vec<u8>, UsageError> {
    std::fs::read(path).map_err(|e| file_error("read the plugin file", path, e))
}

fn split_list(s: &str) -> BTreeSet<String> {
    s.split([',', '\n']).map(str::trim).filter(|x| !x.is_empty()).map(str::to_string).collect()
}

async fn import(cmd: ImportCommand) -> anyhow::Result<()> {
    let (scope, common, flags, filters) = match cmd {
        ImportCommand::Users { common, merge_users, filter_usernames, filter_usernames_file } => {
            let usernames = match (filter_usernames, filter_usernames_file) {
                (Some(list), _) => Some(split_list(&list)),
                (None, Some(path)) => {
                    Some(split_list(&std::fs::read_to_string(&path).map_err(|e| file_error("read", &path, e))?))
                }
                (None, None) => None,
            };
            let flags = ImportFlags { merge_users, ..ImportFlags::default() };
            (ImportScope::Users, common, flags, Filters { usernames, ..Filters::default() })
        }
        ImportCommand::Organizations { common, merge_users, filter_org_slugs, hide_organizations } => {
            let flags = ImportFlags { merge_users, hide_organizations, ..ImportFlags::default() };
            (
                ImportScope::Organizations,
                common,
                flags,
                Filters { org_slugs: filter_org_slugs.as_deref().map(split_list), ..Filters::default() },
            )
        }
        ImportCommand::Config { common, merge_users, overwrite_configs } => {
            let flags = ImportFlags { merge_users, overwrite_configs, ..ImportFlags::default() };
            (ImportScope::Config, common, flags, Filters::default())
        }
        ImportCommand::Global { common } => (ImportScope::Global, common, ImportFlags::default(), Filters::default()),
    };
    // Opened (and emptied) first, so that an unwritable path stops the
    // import before it writes anything; an import that dies leaves it empty,
    // which no reader takes for `[]`.
    let findings = match &common.findings_file {
        Some(path) => {
            Some((path, std::fs::File::create(path).map_err(|e| file_error("write the findings to", path, e))?))
        }
        None => None,
    };
    let result = run_import(scope, &common, flags, filters).await;
    if let Some((path, mut file)) = findings {
        let json = findings_json(result.as_ref().err());
        file.write_all(json.as_bytes()).map_err(|e| file_error("write the findings to", path, e))?;
    }
    let summary = result?;
    if common.json {
        println!("{}", observe::summary_json(&summary));
    } else if !common.silent {
        print_summary(&summary);
    }
    Ok(())
}

/// What to import and how, from `relocate import`'s command line or from a
/// queued job: the one place the engine's options are built.
struct Request {
    scope: ImportScope,
    flags: ImportFlags,
    filters: Filters,
    import_uuid: uuid::Uuid,
    seed: u64,
    batch_size: usize,
    commit: Commit,
}

impl Request {
    fn options(self) -> ImportOptions {
        ImportOptions {
            // As Sentry, a Global import replaces what is there.
            clear_first: self.scope == ImportScope::Global,
            scope: self.scope,
            import_uuid: self.import_uuid,
            flags: self.flags,
            filters: self.filters,
            batch_size: self.batch_size,
            seed: self.seed,
            commit: self.commit,
        }
    }
}

/// Opens (decrypting if need be) and indexes an export.
fn open_export(src: &Path, key: Option<&crypto::PrivateKey>) -> anyhow::Result<std::sync::Arc<reader::Export>> {
    Ok(std::sync::Arc::new(reader::Export::open(src, key).map_err(engine::Error::from)?))
}

async fn run_import(
    scope: ImportScope,
    common: &ImportArgs,
    flags: ImportFlags,
    filters: Filters,
) -> anyhow::Result<Summary> {
    let import_uuid = match &common.import_uuid {
        Some(u) => {
            uuid::Uuid::parse_str(u).map_err(|e| UsageError(format!("--import-uuid `{u}` is not a UUID: {e}")))?
        }
        None => uuid::Uuid::new_v4(),
    };
    let key = common.decrypt_with.as_deref().map(read_key).transpose()?;
    let export = open_export(&common.src, key.as_ref())?;
    let (host, registry) = load_plugins(&common.plugins)?;
    if !common.silent {
        for d in export.duplicate_pks().iter().take(10) {
            eprintln!(
                "warning: {} pk {} appears again at record #{} (first at #{}): both are imported, and references \
                 to pk {} mean the last, as in Sentry",
                d.model, d.pk, d.again, d.first, d.pk
            );
        }
        if export.duplicate_pks().len() > 10 {
            eprintln!("warning: and {} more repeated pks", export.duplicate_pks().len() - 10);
        }
    }
    if common.strict {
        let undescribed: Vec<(String, u64)> = export
            .models()
            .iter()
            .filter(|(model, _)| registry.get(model).is_none())
            .map(|(model, records)| (model.to_string(), records.len() as u64))
            .collect();
        if !undescribed.is_empty() {
            bail!(Undescribed(undescribed));
        }
    }
    let commit = match (common.dry_run, common.atomic) {
        (true, _) => Commit::Never,
        (false, true) => Commit::AtEnd,
        (false, false) => Commit::EachBatch,
    };
    let report = match &common.report {
        Some(path) => {
            let detail = if common.report_inserted { Detail::All } else { Detail::NotInserted };
            let file = observe::ReportFile::create(path, detail)
                .map_err(|e| UsageError(format!("cannot write the report file {}: {e}", path.display())))?;
            Some(file)
        }
        None => None,
    };
    let opts = Request {
        scope,
        flags,
        filters,
        import_uuid,
        batch_size: common.batch_size,
        seed: common.seed.unwrap_or_else(rand::random),
        commit,
    }
    .options();
    let new_file = db::sqlite_file(&common.db.db).filter(|p| !p.exists()).map(Path::to_path_buf);
    let mut conn = match (&new_file, commit) {
        // A dry run creates no file: it rehearses against an empty database.
        (Some(_), Commit::Never) => db::Db::empty_in_memory().await,
        _ => db::Db::connect(&common.db.db).await,
    }
    .map_err(engine::Error::from)?;
    // A dry run deletes nothing, so there is nothing to confirm.
    if opts.clear_first && !common.no_prompt && commit != Commit::Never {
        let rows = engine::rows_to_clear(&mut conn, &registry, &import_uuid).await?;
        if rows > 0 && !confirm(rows)? {
            bail!(Aborted);
        }
    }
    if !common.silent {
        let how = match commit {
            Commit::EachBatch => "",
            Commit::AtEnd => " (atomic: committed at the end)",
            Commit::Never => " (dry run: rolled back at the end)",
        };
        eprintln!(
            "importing {} ({} records) into {} as import {import_uuid}{how}",
            common.src.display(),
            export.total(),
            common.db.db
        );
    }
    let capture = common
        .capture_failures
        .as_ref()
        .map(|dir| plugin_test::Capture::new(dir.clone(), &opts, export.clone(), &host, &common.plugins));
    let observer = observe::Observer::new(observe::Progress::new(common.silent), report).with_capture(capture);
    let result = engine::import(&export, &host, &registry, &mut conn, &opts, &observer).await;
    let (finished, captured) = observer.finish();
    if let Some(line) = captured {
        // Before the error line, which says what failed.
        eprintln!("{line}");
    }
    // An atomic import that fails into a SQLite file it created removes it.
    if let (Err(_), Commit::AtEnd, Some(path)) = (&result, commit, &new_file) {
        drop(conn);
        for suffix in ["", "-wal", "-shm"] {
            let mut file = path.clone().into_os_string();
            file.push(suffix);
            let _ = std::fs::remove_file(file);
        }
    }
    let summary = result.map_err(|e| {
        let context = match commit {
            // Only where a rerun can get further: a bad record or a broken
            // plugin would stop it at the same place.
            Commit::EachBatch if e.is_resumable() => {
                format!("import {import_uuid} stopped (rerun with --import-uuid {import_uuid} to resume)")
            }
            Commit::EachBatch => format!("import {import_uuid} stopped"),
            Commit::AtEnd => format!("import {import_uuid} stopped; it was rolled back and nothing was written"),
            Commit::Never => format!("dry run {import_uuid} stopped; nothing was written"),
        };
        anyhow::Error::new(e).context(context)
    })?;
    finished.map_err(|e| UsageError(format!("cannot write the report file {e}")))?;
    Ok(summary)
}

fn print_summary(summary: &Summary) {
    let mut out = std::io::stdout().lock();
    let row = |out: &mut std::io::StdoutLock, m: &ModelSummary, derived: u64| {
        writeln!(
            out,
            "{:<40} {:>9} {:>9} {:>11} {:>8} {:>8} {:>8} {:>8}",
            m.model, m.inserted, m.existing, m.overwritten, m.dropped, m.skipped, m.resumed, derived
        )
    };
    let _ = writeln!(
        out,
        "{:<40} {:>9} {:>9} {:>11} {:>8} {:>8} {:>8} {:>8}",
        "model", "inserted", "existing", "overwritten", "dropped", "skipped", "resumed", "derived"
    );
    let mut total = ModelSummary { model: "total".into(), ..ModelSummary::default() };
    let mut derived = summary.derived.clone();
    for m in &summary.models {
        total.inserted += m.inserted;
        total.existing += m.existing;
        total.overwritten += m.overwritten;
        total.dropped += m.dropped;
        total.skipped += m.skipped;
        total.resumed += m.resumed;
        let _ = row(&mut out, m, derived.remove(&m.model).unwrap_or(0));
    }
    // Models with derived rows but no records of their own in the export.
    for (model, count) in &derived {
        let _ = row(&mut out, &ModelSummary { model: model.clone(), ..ModelSummary::default() }, *count);
    }
    let _ = row(&mut out, &total, summary.derived.values().sum());
    let _ = writeln!(
        out,
        "(records of the export: inserted as new rows; existing: an existing row stands for the record; \
         overwritten: it replaced a row; dropped: a required foreign key pointed at a record not imported; \
         skipped: filters, scope or plugin; resumed: written by an earlier run. derived: rows written along \
         with other records, as Sentry's signals do, not records of the export)"
    );
    for (model, count) in &summary.unknown {
        let _ = writeln!(out, "skipped {count} records of {model}: no plugin describes this model");
    }
    match summary.commit {
        Commit::Never => {
            let _ = writeln!(out, "dry run {}: rolled back, nothing was written", summary.import_uuid);
        }
        Commit::AtEnd | Commit::EachBatch => {
            let _ = writeln!(out, "import {} done", summary.import_uuid);
        }
    }
    if !summary.unknown.is_empty() {
        // Last, on stderr: records left out for want of a plugin are easy to miss in the table.
        eprintln!(
            "warning: not imported, no plugin describes them: {} (pass --plugin with the plugin that does; \
             --strict refuses such an export)",
            counts(&summary.unknown)
        );
    }
}

/// Sentry's findings JSON (spec §9.2): sorted keys, two-space indent.
fn findings_json(error: Option<&anyhow::Error>) -> String {
    let Some(error) = error else { return "[]\n".into() };
    let engine_error = error.chain().find_map(|c| c.downcast_ref::<engine::Error>());
    let undescribed = error.chain().find_map(|c| c.downcast_ref::<Undescribed>());
    let (kind, on, left_pk) = match (engine_error, undescribed) {
        (_, Some(Undescribed(models))) => {
            let on = models.first().map(|(m, _)| serde_json::json!({"model": m, "ordinal": null}));
            ("UnexpectedModel", on, None)
        }
        (Some(e), None) => {
            let on = e.instance().map(|(m, ordinal, _)| serde_json::json!({"model": m.as_str(), "ordinal": ordinal}));
            (e.sentry_kind(), on, e.instance().and_then(|(_, _, pk)| pk))
        }
        (None, None) => ("Unknown", None, None),
    };
    // Errors about no single record (a bad key, a lost database) have no `on`.
    let on = on.unwrap_or(serde_json::Value::Null);
    let finding = serde_json::json!([{
        "finding": "RpcImportError",
        "kind": kind,
        "left_pk": left_pk,
        "on": on,
        "reason": one_line(error),
        "right_pk": null,
    }]);
    // serde_json's map is insertion-ordered here only with preserve_order;
    // sort explicitly so the output matches Sentry's sort_keys.
    let sorted: serde_json::Value = sort_keys(finding);
    serde_json::to_string_pretty(&sorted).unwrap_or_default() + "\n"
}

fn sort_keys(v: serde_json::Value) -> serde_json::Value {
    match v {
        serde_json::Value::Object(map) => {
            let mut entries: Vec<_> = map.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            serde_json::Value::Object(entries.into_iter().map(|(k, v)| (k, sort_keys(v))).collect())
        }
        serde_json::Value::Array(items) => serde_json::Value::Array(items.into_iter().map(sort_keys).collect()),
        other => other,
    }
}
