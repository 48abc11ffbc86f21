//! Writes a Sentry-shaped export of any size (see `relocate::synth`):
//!
//! ```sh
//! cargo run --release --example synth -- --records 1000000 --out export.json \
//!     [--seed N] [--collide F --collide-with SEED] [--encrypt-with PUB.pem]
//! ```
//!
//! Prints the per-model record counts. With `--encrypt-with` the output is
//! Sentry's encrypted tarball, for `relocate import ... --decrypt-with KEY.pem`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use relocate::synth::{self, Config};

#[derive(Parser)]
#[command(about = "Write a Sentry-shaped export for benches and tests")]
struct Args {
    /// At least this many records (whole organizations are added until reached).
    #[arg(long, default_value_t = 10_000)]
    records: u64,
    /// Where to write the export (replaced).
    #[arg(long)]
    out: PathBuf,
    /// Seeds names, keys and dates; the shape depends on --records only.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Fraction of usernames and org slugs taken from the --collide-with namespace.
    #[arg(long, default_value_t = 0.0)]
    collide: f64,
    /// The seed of an earlier export whose names the colliding ones reuse.
    #[arg(long, default_value_t = 0)]
    collide_with: u64,
    /// Write Sentry's encrypted tarball to this RSA public key (PEM).
    #[arg(long)]
    encrypt_with: Option<PathBuf>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let config = Config {
        records: args.records,
        seed: args.seed,
        collide_fraction: args.collide,
        collide_with: args.collide_with,
        encrypt_to: args.encrypt_with,
    };
    match synth::write(&config, &args.out) {
        Ok(generated) => {
            for m in &generated.models {
                println!("{:<32} {:>10}", m.model, m.records);
            }
            println!(
                "{} records, {} organizations, {:.1} MB JSON, {:.1} MB written to {}",
                generated.records,
                generated.tenants,
                generated.json_bytes as f64 / 1e6,
                generated.bytes as f64 / 1e6,
                args.out.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
