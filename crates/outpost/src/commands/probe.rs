//! The commands that ask AWS: `verify` probes each server with the requests uploads
//! make; `policy` prints what the customer and the publisher must grant.

use std::path::Path;

use super::{runtime, say, server};
use crate::preflight::load;

/// `outpost policy SERVER`.
pub fn policy(path: &Path, server: &str) -> u8 {
    let cfg = match super::load_for(path, server) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let s = &cfg.servers[server];
    let account = match &cfg.publisher_account_id {
        Some(a) => a.clone(),
        None => {
            let rt = match runtime() {
                Ok(rt) => rt,
                Err(code) => return code,
            };
            match rt.block_on(outpost_uploader::caller_account(s)) {
                Ok(a) => a,
                Err(e) => {
                    eprintln!(
                        "outpost: cannot find the publisher's account (set publisher_account_id, or give the daemon's identity sts:GetCallerIdentity): {}",
                        one_line(&e.to_string())
                    );
                    return 1;
                }
            }
        }
    };
    let doc = crate::policy::parts(s, &account);
    say!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
    0
}

/// `outpost verify [SERVER…]`.
pub fn verify(path: &Path, only: &[String]) -> u8 {
    let cfg = match load(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    for o in only {
        if let Err(code) = server(&cfg, path, o) {
            return code;
        }
    }
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let mut all_ok = true;
    for s in cfg.servers.values() {
        if !only.is_empty() && !only.contains(&s.name) {
            continue;
        }
        let dest = match rt.block_on(outpost_uploader::Destination::new(std::sync::Arc::new(
            s.clone(),
        ))) {
            Ok(d) => d,
            Err(e) => {
                say!("{}: FAILED at credentials: {}", s.name, e.message);
                all_ok = false;
                continue;
            }
        };
        let steps = rt.block_on(dest.verify());
        let key = s.key_for(outpost_uploader::VERIFY_KEY);
        let mut ok = true;
        for step in &steps {
            match &step.result {
                Ok(()) => say!("{}: {} s3://{}/{key}: OK", s.name, step.op, s.bucket),
                Err(e) => {
                    ok = false;
                    say!(
                        "{}: {} s3://{}/{key}: FAILED: {}",
                        s.name,
                        step.op,
                        s.bucket,
                        e.message
                    );
                    let fix = outpost_uploader::fix(&steps, step, s);
                    say!("{}:   fix: {fix}", s.name);
                }
            }
        }
        say!("{}: {}", s.name, if ok { "OK" } else { "FAILED" });
        all_ok &= ok;
    }
    u8::from(!all_ok)
}

/// An SDK error in one line: the credential chain's list of every provider it tried
/// becomes its gist.
fn one_line(e: &str) -> String {
    if e.contains("no credentials found in chain") {
        return "no AWS credentials found (environment, profile, web identity, container or instance metadata)".to_owned();
    }
    e.lines().next().unwrap_or_default().to_owned()
}
