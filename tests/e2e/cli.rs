//! The commands around imports: plugins, schema, encrypt and decrypt.

use crate::support::{Kind, Target, example, fixture, relocate};

#[test]
fn plugins_list_names_every_first_party_model() {
    let run = relocate(&["plugins", "list"]);
    run.success();
    let records: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(fixture("sentry/backup/fresh-install.json")).unwrap()).unwrap();
    for record in &records {
        let model = record["model"].as_str().unwrap();
        assert!(
            run.stdout.lines().any(|l| l.trim_start().starts_with(&format!("{model} "))),
            "{model} missing from:\n{}",
            run.stdout
        );
    }
    assert!(run.stdout.contains("builtin:sentry-users"), "{}", run.stdout);
}

#[tokio::test]
async fn db_init_creates_the_schema() {
    for kind in [Kind::Sqlite, Kind::Postgres] {
        let t = Target::new(kind).await;
        t.relocate(&["db", "init"]).success();
        let mut c = t.connect().await;
        for table in [
            "auth_user",
            "sentry_organization",
            "sentry_projectkey",
            "sentry_regionimportchunk",
            "sentry_controlimportchunkreplica",
        ] {
            assert!(c.has_table(table).await, "{table} missing after db init ({kind:?})");
        }
    }
}

#[test]
fn encrypt_then_decrypt_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let src = fixture("sentry/backup/fresh-install.json");
    let tar = dir.path().join("out.tar");
    let back = dir.path().join("back.json");
    relocate(&[
        "encrypt",
        tar.to_str().unwrap(),
        "--src",
        src.to_str().unwrap(),
        "--encrypt-with",
        example("fresh-install.pub.pem").to_str().unwrap(),
    ])
    .success();
    relocate(&[
        "decrypt",
        back.to_str().unwrap(),
        "--src",
        tar.to_str().unwrap(),
        "--decrypt-with",
        example("fresh-install.key.pem").to_str().unwrap(),
    ])
    .success();
    assert_eq!(std::fs::read(&src).unwrap(), std::fs::read(&back).unwrap());
}

#[test]
fn decrypt_with_the_wrong_key_fails_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("x.json");
    let run = relocate(&[
        "decrypt",
        out.to_str().unwrap(),
        "--src",
        example("fresh-install.tar").to_str().unwrap(),
        "--decrypt-with",
        fixture("crypto/other-private.pem").to_str().unwrap(),
    ]);
    run.failure(4);
    assert!(run.stderr.contains("The public key does not match"), "{}", run.stderr);
    assert!(!out.exists());
}

#[test]
fn usage_errors_exit_2() {
    relocate(&["import", "users"]).failure(2);
    relocate(&["import", "users", "x.json", "--overwrite-configs"]).failure(2);
    let dir = tempfile::tempdir().unwrap();
    let run = relocate(&[
        "import",
        "users",
        fixture("sentry/backup/single-option.json").to_str().unwrap(),
        "--import-uuid",
        "nope",
        "--db",
        &format!("sqlite:{}", dir.path().join("t.db").display()),
    ]);
    run.failure(2);
    assert!(run.stderr.contains("--import-uuid"), "{}", run.stderr);
}

/// Every argument of every subcommand has help text, and every subcommand
/// says what it does.
#[test]
fn every_flag_has_help() {
    fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
        let path = format!("{path} {}", cmd.get_name());
        if cmd.get_about().is_none() && cmd.get_long_about().is_none() {
            missing.push(format!("{path}: the command itself"));
        }
        for arg in cmd.get_arguments() {
            let id = arg.get_id().as_str();
            if matches!(id, "help" | "version") {
                continue;
            }
            if arg.get_help().is_none() && arg.get_long_help().is_none() {
                missing.push(format!("{path}: {id}"));
            }
        }
        for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
            walk(sub, &path, missing);
        }
    }
    let cmd = relocate::cli::command();
    cmd.clone().debug_assert();
    let mut missing = Vec::new();
    walk(&cmd, "", &mut missing);
    assert!(missing.is_empty(), "no help text for:\n{}", missing.join("\n"));
}

#[test]
fn completions_and_man_page_come_from_the_cli_definition() {
    let bash = relocate(&["completions", "bash"]);
    bash.success();
    assert!(bash.stdout.contains("import") && bash.stdout.contains("--decrypt-with"), "{}", bash.stdout);
    for shell in ["zsh", "fish", "elvish", "powershell"] {
        let run = relocate(&["completions", shell]);
        run.success();
        assert!(run.stdout.contains("status"), "{shell}: {}", run.stdout);
    }
    relocate(&["completions", "tcsh"]).failure(2);
    let man = relocate(&["man"]);
    man.success();
    assert!(man.stdout.contains(".TH"), "{}", man.stdout);
    assert!(man.stdout.contains("relocate"), "{}", man.stdout);
}
