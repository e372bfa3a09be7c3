//! End-to-end tests: the real `outpost` binary against real S3 servers on 127.0.0.1
//! (radosgw, s3s-fs, moto), started by `make test`.

mod bad_input;
mod cli;
mod crash;
mod create_only;
mod cross_account;
mod faults;
mod flow;
mod hostile;
mod integrity;
mod ledger_cli;
mod manifests;
mod many_servers;
mod notifications;
mod ops;
mod ordering;
mod pacing;
mod reload;
mod secrets;
mod shared_spool;
mod spool_rules;
mod tidy;
mod trust;
mod upkeep;

/// moto with IAM enforced, shared by the tests that need identities.
pub fn cross_account_iam() -> cross_account::Iam {
    cross_account::Iam::new()
}
