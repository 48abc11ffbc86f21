//! Contract versions: a plugin built against the frozen contract 0.1.0
//! (`plugins/test-plugins/v1-invoice`, bound to `wit/v1` directly) imports
//! next to the first-party plugins, which speak 0.2.0; a plugin built against
//! a version relocate does not link is refused in one line.

use std::path::{Path, PathBuf};

use crate::db_test;
use crate::support::{Target, example, relocate, test_plugin};

const PLUGIN: i32 = 5;

/// The acme-invoice example's organization and project, and four
/// `legacy.invoice` records: one with its project, one whose project is not
/// exported (kept, project null), one whose organization is not (dropped),
/// and one whose number differs only in case from the first's in another
/// batch (reused: the plugin upper-cases numbers and asks for them).
fn export(dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(example("acme-invoice/export.json")).unwrap();
    let mut records: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap();
    records.retain(|r| r["model"] != "acme.invoice");
    let invoice = |pk: i64, organization: i64, project: Option<i64>, number: &str| {
        serde_json::json!({
            "model": "legacy.invoice",
            "pk": pk,
            "fields": {"organization": organization, "project": project, "number": number, "org_new_pk": null},
        })
    };
    records.push(invoice(1, 1, Some(1), "l-1"));
    records.push(invoice(2, 1, Some(7), "L-2"));
    records.push(invoice(3, 2, None, "L-3"));
    records.extend((4..=22).map(|pk| invoice(pk, 1, None, &format!("fill-{pk}"))));
    records.push(invoice(23, 1, None, "L-1"));
    let path = dir.join("export.json");
    std::fs::write(&path, serde_json::to_vec(&records).unwrap()).unwrap();
    path
}

/// The `--json` summary's [inserted, existing, dropped] of `model`.
fn counts(stdout: &str, model: &str) -> [u64; 3] {
    let json: serde_json::Value =
        serde_json::from_str(stdout).unwrap_or_else(|e| panic!("--json prints one JSON document ({e}):\n{stdout}"));
    let line = json["models"].as_array().unwrap().iter().find(|m| m["model"] == model);
    let line = line.unwrap_or_else(|| panic!("{model} is not in the summary:\n{stdout}"));
    let n = |k: &str| line[k].as_u64().unwrap();
    [n("inserted"), n("existing"), n("dropped")]
}

db_test!(a_plugin_built_against_contract_0_1_0_imports_next_to_0_2_0_plugins, |t| {
    let src = export(t.dir.path());
    let plugin = test_plugin("v1-invoice");
    let run = t.relocate(&[
        "import",
        "global",
        src.to_str().unwrap(),
        "--plugin",
        plugin.to_str().unwrap(),
        "--no-prompt",
        "--batch-size",
        "20",
        "--json",
    ]);
    run.success();
    assert_eq!(counts(&run.stdout, "legacy.invoice"), [21, 1, 1], "{}", run.stdout);
    assert_eq!(counts(&run.stdout, "sentry.project"), [1, 0, 0], "{}", run.stdout);
    // The 0.1.0 plugin's log line went through the 0.1.0 `host` import.
    assert!(run.stderr.contains("0.1.0 session on legacy.invoice in scope global"), "{}", run.stderr);

    let rows = t
        .strings(
            "SELECT i.number || ':' || \
                 CASE WHEN i.project_id IS NULL THEN 'no project' \
                      WHEN i.project_id = p.id THEN 'its project' ELSE 'another project' END || ':' || \
                 CASE WHEN i.org_new_pk = o.id THEN 'mapped' ELSE 'not mapped' END \
             FROM legacy_invoice i JOIN sentry_organization o ON o.id = i.organization_id \
             LEFT JOIN sentry_project p ON p.organization_id = o.id \
             WHERE i.number NOT LIKE 'FILL-%' ORDER BY i.number",
        )
        .await;
    let rows: Vec<String> = rows.into_iter().map(Option::unwrap).collect();
    assert_eq!(rows, ["L-1:its project:mapped", "L-2:no project:mapped"]);
    assert_eq!(t.count("legacy_invoice").await, 21);
});

#[test]
fn plugin_inspect_names_the_contract_each_plugin_speaks() {
    let old = test_plugin("v1-invoice");
    let run = relocate(&["plugin", "inspect", old.to_str().unwrap(), "--json"]);
    run.success();
    let doc: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(doc["contract"], "relocate:plugin@0.1.0");
    let fk = &doc["models"][0]["foreign_keys"][0];
    assert_eq!((fk["target"].as_str(), fk["kind"].as_str()), (Some("sentry.organization"), Some("FlexibleForeignKey")));

    let run = relocate(&["plugin", "inspect", "builtin:sentry-orgs"]);
    run.success();
    assert!(run.stdout.contains("contract  relocate:plugin@0.2.0"), "{}", run.stdout);
}

/// A component exporting `relocate:plugin/importer@9.0.0` (built from
/// `plugins/test-plugins/future-contract/wit`, a version that does not
/// exist) is refused by every command that loads it, in one line naming
/// the version it speaks and those relocate links.
#[tokio::test]
async fn a_plugin_of_an_unsupported_contract_version_is_refused_in_one_line() {
    let plugin = test_plugin("future-contract");
    let t = Target::new(crate::support::Kind::Sqlite).await;
    let src = export(t.dir.path());
    let import = ["import", "global", src.to_str().unwrap(), "--plugin", plugin.to_str().unwrap(), "--no-prompt"];
    for args in [
        &["plugins", "list", "--plugin", plugin.to_str().unwrap()][..],
        &["plugin", "inspect", plugin.to_str().unwrap()][..],
        &import[..],
    ] {
        let run = if args[0] == "import" { t.relocate(args) } else { relocate(args) };
        run.failure(PLUGIN);
        let lines: Vec<&str> = run.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{args:?}: expected one line on stderr:\n{}", run.stderr);
        let line = lines[0];
        for needle in [
            "error: plugin ",
            "test_plugin_future_contract.wasm",
            "`relocate:plugin/importer@9.0.0` (contract 9.0.0)",
            "does not support",
            "supports 0.2.0 and 0.1.0",
        ] {
            assert!(line.contains(needle), "{args:?}: {needle:?} missing from: {line}");
        }
    }
    assert!(!t.dir.path().join("target.db").exists() || t.count("sentry_organization").await == 0);
}
