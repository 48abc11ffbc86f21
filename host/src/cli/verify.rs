//! `relocate verify`: an import's rows read back and compared with the export.

use std::io::Write as _;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::bail;
use clap::{Args, ValueEnum};

use super::{DbArg, PluginArgs, UsageError, load_plugins, read_key};
use crate::engine::verify::{self, Finding, FindingKind, Verification, VerifyOptions};
use crate::engine::{self};
use crate::model::ImportScope;
use crate::plugin::ImportFlags;
use crate::{db, reader};

#[derive(Args)]
pub struct VerifyArgs {
    /// The export the import read: a JSON file or an encrypted tarball.
    src: PathBuf,
    /// The import to check (its UUID, as the import printed it).
    #[arg(long)]
    import_uuid: String,
    /// The scope the import ran in.
    #[arg(long, value_enum)]
    scope: ScopeArg,
    /// The import ran with --merge-users.
    #[arg(long)]
    merge_users: bool,
    /// The import ran with --hide-organizations.
    #[arg(long)]
    hide_organizations: bool,
    /// The import ran with --overwrite-configs.
    #[arg(long)]
    overwrite_configs: bool,
    /// The RSA private key for an encrypted tarball (PEM).
    #[arg(long)]
    decrypt_with: Option<PathBuf>,
    #[command(flatten)]
    db: DbArg,
    /// Print the findings as one JSON document on stdout.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    plugins: PluginArgs,
}

#[derive(Clone, Copy, ValueEnum)]
enum ScopeArg {
    Users,
    Organizations,
    Config,
    Global,
}

impl From<ScopeArg> for ImportScope {
    fn from(s: ScopeArg) -> ImportScope {
        match s {
            ScopeArg::Users => ImportScope::Users,
            ScopeArg::Organizations => ImportScope::Organizations,
            ScopeArg::Config => ImportScope::Config,
            ScopeArg::Global => ImportScope::Global,
        }
    }
}

/// Verification found differences (exit 1).
#[derive(Debug, thiserror::Error)]
#[error("import {uuid} differs from the export in {count} place(s); see the findings above")]
struct Differs {
    uuid: uuid::Uuid,
    count: usize,
}

pub async fn run(args: &VerifyArgs) -> anyhow::Result<()> {
    let import_uuid = uuid::Uuid::parse_str(&args.import_uuid)
        .map_err(|e| UsageError(format!("--import-uuid `{}` is not a UUID: {e}", args.import_uuid)))?;
    let key = args.decrypt_with.as_deref().map(read_key).transpose()?;
    let export = Arc::new(reader::Export::open(&args.src, key.as_ref()).map_err(engine::Error::from)?);
    let (host, registry) = load_plugins(&args.plugins)?;
    let mut conn = db::Db::connect(&args.db.db).await.map_err(engine::Error::from)?;
    let opts = VerifyOptions {
        scope: args.scope.into(),
        import_uuid,
        flags: ImportFlags {
            merge_users: args.merge_users,
            hide_organizations: args.hide_organizations,
            overwrite_configs: args.overwrite_configs,
        },
        seed: rand::random(),
    };
    let verification = verify::verify(&export, &host, &registry, &mut conn, &opts).await?;
    if args.json {
        println!("{}", json(&import_uuid, &verification));
    } else {
        print(&import_uuid, &verification);
    }
    if !verification.findings.is_empty() {
        bail!(Differs { uuid: import_uuid, count: verification.findings.len() });
    }
    Ok(())
}

fn print(uuid: &uuid::Uuid, v: &Verification) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "{:<40} {:>9} {:>9}  columns the plugin rewrites (not compared)",
        "model", "compared", "existing"
    );
    for (model, c) in &v.checked {
        let _ = writeln!(out, "{:<40} {:>9} {:>9}  {}", model.as_str(), c.compared, c.existing, c.rewritten.join(", "));
    }
    for finding in &v.findings {
        let _ = writeln!(out, "finding: {finding}");
    }
    let compared: u64 = v.checked.values().map(|c| c.compared + c.existing).sum();
    let _ = writeln!(out, "verified import {uuid}: {compared} rows checked, {} findings", v.findings.len());
}

fn json(uuid: &uuid::Uuid, v: &Verification) -> serde_json::Value {
    let finding = |f: &Finding| {
        let (kind, column, expected, found) = match &f.kind {
            FindingKind::MissingRow => ("missing-row", None, None, None),
            FindingKind::ForeignKey { column, expected, found } => {
                ("foreign-key", Some(column.clone()), expected.map(|p| p.to_string()), found.clone())
            }
            FindingKind::Value { column, expected, found } => {
                ("value", Some(column.clone()), expected.clone(), found.clone())
            }
        };
        serde_json::json!({
            "model": f.model.as_str(),
            "ordinal": f.ordinal,
            "old_pk": f.old_pk,
            "new_pk": f.new_pk,
            "kind": kind,
            "column": column,
            "expected": expected,
            "found": found,
            "message": f.to_string(),
        })
    };
    let models: serde_json::Map<String, serde_json::Value> = v
        .checked
        .iter()
        .map(|(m, c)| {
            let entry = serde_json::json!({"compared": c.compared, "existing": c.existing, "rewritten": c.rewritten});
            (m.to_string(), entry)
        })
        .collect();
    serde_json::json!({
        "import_uuid": uuid.to_string(),
        "models": models,
        "findings": v.findings.iter().map(finding).collect::<Vec<_>>(),
    })
}
