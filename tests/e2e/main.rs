//! End-to-end tests: the real `outpost` binary against real S3 servers on 127.0.0.1
//! (radosgw, s3s-fs, moto), started by `make test`.

mod bad_input;
mod crash;
mod cross_account;
mod faults;
mod flow;
mod hostile;
mod ops;
mod reload;
mod shared_spool;
mod spool_rules;
