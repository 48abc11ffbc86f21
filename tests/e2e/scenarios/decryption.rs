//! Sentry's DecryptionTests (scenarios 26–29): `fresh-install.json` in
//! Sentry's encrypted tarball, imported in each scope. Sentry generates a
//! key pair per test; these use the repository's fixture pair and build the
//! tarball with `relocate encrypt`, which follows the same recipe (§2.6).

use super::path;
use crate::db_test;
use crate::support::{Target, fixture, relocate};

fn import_encrypted(t: &Target, scope: &str) {
    let tar = t.dir.path().join("input.tar");
    let src = fixture("sentry/backup/fresh-install.json");
    relocate(&["encrypt", path(&tar), "--src", path(&src), "--encrypt-with", path(&fixture("crypto/public.pem"))])
        .success();
    t.relocate(&[
        "import",
        scope,
        path(&tar),
        "--decrypt-with",
        path(&fixture("crypto/private-pkcs8.pem")),
        "--no-prompt",
    ])
    .success();
}

// Sentry: tests/sentry/backup/test_imports.py::DecryptionTests::test_user_import_decryption
db_test!(user_import_decryption, |t| {
    import_encrypted(&t, "users");
    assert!(t.count("auth_user").await > 0);
});

// Sentry: tests/sentry/backup/test_imports.py::DecryptionTests::test_organization_import_decryption
db_test!(organization_import_decryption, |t| {
    import_encrypted(&t, "organizations");
    assert!(t.count("sentry_organization").await > 0);
});

// Sentry: tests/sentry/backup/test_imports.py::DecryptionTests::test_config_import_decryption
db_test!(config_import_decryption, |t| {
    import_encrypted(&t, "config");
    assert!(t.count("sentry_userrole").await > 0);
});

// Sentry: tests/sentry/backup/test_imports.py::DecryptionTests::test_global_import_decryption
db_test!(global_import_decryption, |t| {
    import_encrypted(&t, "global");
    assert!(t.count("sentry_organization").await > 0);
    assert!(t.count("auth_user").await > 0);
    assert!(t.count("sentry_userrole").await > 0);
});
