//! The one-shot commands: `check`, `status`, `requeue`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use outpost_config::{Config, Credentials};
use outpost_watcher::{Spool, default_instance};

use crate::EXIT_CONFIG;

/// Loads the configuration or prints the located error.
pub fn load(path: &Path) -> Result<Config, u8> {
    Config::load(path).map_err(|e| {
        eprintln!("outpost: configuration error: {e}");
        EXIT_CONFIG
    })
}

/// Checks that can fail only on this host: secret files and the spool's layout — what
/// `run` would refuse (`check` and `run` report the same problems, exit 78).
pub fn host_problems(cfg: &Config) -> Vec<String> {
    let mut out = Vec::new();
    for s in cfg.servers.values() {
        if let Credentials::Static {
            secret_access_key_file,
            ..
        } = &s.credentials
            && let Err(e) = outpost_uploader::check_secret_file(secret_access_key_file)
        {
            out.push(format!("server {}: {}", s.name, e.message));
        }
    }
    out.extend(spool_problems(cfg));
    out
}

/// What a folder of the spool's layout looks like to [`spool_problems`].
#[derive(Clone, Copy)]
enum Folder {
    /// A folder this user can open.
    Open,
    /// Missing, and this user may create it.
    Missing,
    /// Refused (the problem is reported).
    Refused,
}

/// What `run` would refuse in the spool's layout when it opens it (`Spool::open`),
/// found without creating or changing anything: `spool_dir` below something that is
/// not a folder, a folder of the layout (`spool_dir`, `.outpost/<instance>/claims/<server>`,
/// each server folder) that is a symbolic link or not a folder — `run` follows no link
/// in the spool — or that this user could not open, or would have to create where it
/// may not write (e.g. a read-only file system: a `spool_dir` outside the unit's
/// `ReadWritePaths=`). The instance lock is not tried: a running daemon holds it.
fn spool_problems(cfg: &Config) -> Vec<String> {
    use rustix::fs::{Access, access};
    let root = cfg.spool_dir.as_path();
    let mut out = Vec::new();
    match std::fs::symlink_metadata(root) {
        Ok(md) if md.file_type().is_symlink() => {
            out.push(format!(
                "spool_dir {} is a symbolic link; outpost follows no link in the spool: name the folder itself",
                root.display()
            ));
            return out;
        }
        Ok(md) if !md.is_dir() => {
            out.push(format!("spool_dir {} is not a folder", root.display()));
            return out;
        }
        Ok(_) => {}
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
            ) =>
        {
            // Created at start: the nearest existing folder above must take it.
            let mut above = root.parent();
            while let Some(a) = above {
                match std::fs::metadata(a) {
                    Ok(md) if md.is_dir() => {
                        if let Err(e) = access(a, Access::WRITE_OK | Access::EXEC_OK) {
                            out.push(format!(
                                "cannot create spool_dir {} in {}: {e}",
                                root.display(),
                                a.display()
                            ));
                        }
                        break;
                    }
                    Ok(_) => {
                        out.push(format!(
                            "spool_dir {} is below {}, which is not a folder",
                            root.display(),
                            a.display()
                        ));
                        break;
                    }
                    Err(e)
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
                        ) =>
                    {
                        above = a.parent();
                    }
                    Err(e) => {
                        out.push(format!(
                            "spool_dir {}: {}: {e}",
                            root.display(),
                            a.display()
                        ));
                        break;
                    }
                }
            }
            return out;
        }
        Err(e) => {
            out.push(format!("spool_dir {}: {e}", root.display()));
            return out;
        }
    }
    if let Err(e) = access(root, Access::READ_OK | Access::EXEC_OK) {
        out.push(format!("spool_dir {}: {e}", root.display()));
        return out;
    }
    let inspect = |parent: &Path, path: &Path, out: &mut Vec<String>| -> Folder {
        match std::fs::symlink_metadata(path) {
            Ok(md) if md.file_type().is_symlink() => {
                out.push(format!(
                    "{} is a symbolic link; outpost follows no link in the spool: make it a folder",
                    path.display()
                ));
                Folder::Refused
            }
            Ok(md) if !md.is_dir() => {
                out.push(format!("{} is not a folder", path.display()));
                Folder::Refused
            }
            Ok(_) => match access(path, Access::READ_OK | Access::EXEC_OK) {
                Ok(()) => Folder::Open,
                Err(e) => {
                    out.push(format!("{}: {e}", path.display()));
                    Folder::Refused
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                match access(parent, Access::WRITE_OK | Access::EXEC_OK) {
                    Ok(()) => Folder::Missing,
                    Err(e) => {
                        out.push(format!("cannot create {}: {e}", path.display()));
                        Folder::Refused
                    }
                }
            }
            Err(e) => {
                out.push(format!("{}: {e}", path.display()));
                Folder::Refused
            }
        }
    };
    let instance = cfg.instance.clone().unwrap_or_else(default_instance);
    let state = Path::new(".outpost").join(&instance);
    let mut layout = vec![state.clone()];
    for s in cfg.servers.keys() {
        layout.push(state.join("claims").join(s));
        layout.push(PathBuf::from(s));
    }
    let mut seen: HashMap<PathBuf, Folder> = HashMap::new();
    'folders: for rel in &layout {
        let mut cur = root.to_path_buf();
        for part in rel.components() {
            let parent = cur.clone();
            cur.push(part);
            let f = match seen.get(&cur) {
                Some(f) => *f,
                None => {
                    let f = inspect(&parent, &cur, &mut out);
                    seen.insert(cur.clone(), f);
                    f
                }
            };
            if !matches!(f, Folder::Open) {
                continue 'folders;
            }
        }
    }
    // The instance folder holds the lock (never opened through a link) and the lease.
    let inst = root.join(&state);
    if matches!(seen.get(&inst), Some(Folder::Open)) {
        if let Err(e) = access(&inst, Access::WRITE_OK) {
            out.push(format!("{}: {e}", inst.display()));
        }
        let lock = inst.join("lock");
        match std::fs::symlink_metadata(&lock) {
            Ok(md) if !md.file_type().is_file() => {
                out.push(format!("{} is not a regular file", lock.display()))
            }
            Ok(_) => {
                if let Err(e) = access(&lock, Access::WRITE_OK) {
                    out.push(format!("{}: {e}", lock.display()));
                }
            }
            Err(_) => {}
        }
    }
    out
}

/// `outpost check`.
pub fn check(path: &Path) -> u8 {
    let cfg = match load(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let problems = host_problems(&cfg);
    for p in &problems {
        eprintln!("outpost: configuration error: {}: {p}", path.display());
    }
    if !problems.is_empty() {
        return EXIT_CONFIG;
    }
    println!("configuration {} is valid", path.display());
    println!("spool_dir: {}", cfg.spool_dir.display());
    println!("listen: {}", cfg.listen);
    println!(
        "max_concurrent_uploads: {}, shutdown_grace: {}s",
        cfg.max_concurrent_uploads,
        cfg.shutdown_grace.as_secs()
    );
    for s in cfg.servers.values() {
        let folder = cfg.spool_dir.join(&s.name);
        println!(
            "server {}: s3://{}/{} region {}{} credentials {:?}, completion {:?}, after_upload {:?}, folder {}{}",
            s.name,
            s.bucket,
            s.prefix,
            s.region,
            s.endpoint
                .as_deref()
                .map(|e| format!(" endpoint {e}"))
                .unwrap_or_default(),
            s.credentials,
            s.completion,
            s.after_upload,
            folder.display(),
            if folder.is_dir() {
                ""
            } else {
                " (created at start)"
            }
        );
        if s.expected_bucket_owner.is_none() {
            println!(
                "warning: server {}: no expected_bucket_owner; a mistyped or re-owned bucket name would receive the data",
                s.name
            );
        }
    }
    0
}

/// `outpost status`.
pub fn status(path: &Path, json: bool) -> u8 {
    let cfg = match load(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let live = crate::run::read_live_state(&cfg.spool_dir);
    let mut rows = Vec::new();
    for s in cfg.servers.keys() {
        match Spool::status(&cfg.spool_dir, s, &cfg.servers[s].completion) {
            Ok(st) => rows.push((s.clone(), st)),
            Err(e) => {
                eprintln!("outpost: status of {s}: {e}");
                return 1;
            }
        }
    }
    if json {
        let v: Vec<serde_json::Value> = rows
            .iter()
            .map(|(s, st)| {
                serde_json::json!({
                    "server": s,
                    "pending_files": st.pending_files,
                    "pending_bytes": st.pending_bytes,
                    "oldest_pending_age_seconds": st.oldest_pending_age_seconds,
                    // live.json is refreshed every second: never more in flight than pending.
                    "in_flight": live.in_flight.get(s).copied().unwrap_or(0).min(st.pending_files),
                    "failed_files": st.failed_files,
                    "waiting_for_marker": st.waiting_for_marker,
                    "blocked": live.blocked.contains_key(s),
                    "blocked_reason": live.blocked.get(s),
                    "held_reason": live.held.get(s),
                    "daemon_running": live.running,
                })
            })
            .collect();
        println!("{}", serde_json::Value::Array(v));
        return 0;
    }
    println!(
        "{:<20} {:>10} {:>14} {:>12} {:>10} {:>8}  STATE",
        "SERVER", "PENDING", "BYTES", "OLDEST(s)", "IN_FLIGHT", "FAILED"
    );
    for (s, st) in rows {
        println!(
            "{:<20} {:>10} {:>14} {:>12.0} {:>10} {:>8}  {}",
            s,
            st.pending_files,
            st.pending_bytes,
            st.oldest_pending_age_seconds,
            live.in_flight
                .get(&s)
                .copied()
                .unwrap_or(0)
                .min(st.pending_files),
            st.failed_files,
            match (live.running, live.blocked.get(&s), live.held.get(&s)) {
                (false, _, _) => "daemon not running".to_owned(),
                (true, Some(why), _) => format!("BLOCKED: {why}"),
                (true, None, Some(why)) => format!("HELD: {why}"),
                (true, None, None) => "ok".to_owned(),
            } + &if st.waiting_for_marker > 0 {
                format!(" ({} waiting for marker)", st.waiting_for_marker)
            } else {
                String::new()
            }
        );
    }
    0
}

/// `outpost requeue`.
pub fn requeue(path: &Path, server: &str, files: &[String], all: bool) -> u8 {
    let cfg = match load(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    if !cfg.servers.contains_key(server) {
        eprintln!(
            "outpost: server {server:?} is not configured in {}",
            path.display()
        );
        return 1;
    }
    if !all && files.is_empty() {
        eprintln!("outpost: name the failed files to requeue, or pass --all");
        return 1;
    }
    let only = (!all).then_some(files);
    let marker = match &cfg.servers[server].completion {
        outpost_config::Completion::Marker { suffix } => Some(suffix.as_str()),
        _ => None,
    };
    let (done, errors) = Spool::requeue(&cfg.spool_dir, server, only, marker);
    for d in &done {
        match marker {
            Some(m) => println!("requeued {server}/{d} (marker {d}{m} made, so it is published)"),
            None => println!("requeued {server}/{d}"),
        }
    }
    for e in &errors {
        eprintln!("outpost: cannot requeue {e}");
    }
    println!("{} file(s) requeued", done.len());
    u8::from(!errors.is_empty())
}

/// `outpost policy SERVER`.
pub fn policy(path: &Path, server: &str) -> u8 {
    let cfg = match load(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let Some(s) = cfg.servers.get(server) else {
        eprintln!(
            "outpost: server {server:?} is not configured in {}",
            path.display()
        );
        return 1;
    };
    let account = match &cfg.publisher_account_id {
        Some(a) => a.clone(),
        None => {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("outpost: {e}");
                    return 1;
                }
            };
            match rt.block_on(outpost_uploader::caller_account(s)) {
                Ok(a) => a,
                Err(e) => {
                    eprintln!(
                        "outpost: cannot find the publisher's account (set publisher_account_id, or give the daemon's identity sts:GetCallerIdentity): {e}"
                    );
                    return 1;
                }
            }
        }
    };
    let doc = crate::policy::parts(s, &account);
    println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
    0
}

/// `outpost verify [SERVER…]`.
pub fn verify(path: &Path, only: &[String]) -> u8 {
    let cfg = match load(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    for o in only {
        if !cfg.servers.contains_key(o) {
            eprintln!(
                "outpost: server {o:?} is not configured in {}",
                path.display()
            );
            return 1;
        }
    }
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("outpost: {e}");
            return 1;
        }
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
                println!("{}: FAILED at credentials: {}", s.name, e.message);
                all_ok = false;
                continue;
            }
        };
        let steps = rt.block_on(dest.verify());
        let key = s.key_for(outpost_uploader::VERIFY_KEY);
        let mut ok = true;
        for step in &steps {
            match &step.result {
                Ok(()) => println!("{}: {} s3://{}/{key}: OK", s.name, step.op, s.bucket),
                Err(e) => {
                    ok = false;
                    println!(
                        "{}: {} s3://{}/{key}: FAILED: {}",
                        s.name, step.op, s.bucket, e.message
                    );
                    let fix = if step.op != "PutObject"
                        && e.class == outpost_uploader::ErrorClass::Refused
                        && steps.first().is_some_and(|f| f.result.is_ok())
                    {
                        format!(
                            "single PUTs are allowed but multipart is refused: the bucket policy must allow s3:PutObject without an s3:x-amz-acl condition on parts (plus s3:AbortMultipartUpload, s3:ListMultipartUploadParts) — run `outpost policy {}` and send it to the customer",
                            s.name
                        )
                    } else {
                        e.explain(s)
                    };
                    println!("{}:   fix: {fix}", s.name);
                }
            }
        }
        println!("{}: {}", s.name, if ok { "OK" } else { "FAILED" });
        all_ok &= ok;
    }
    u8::from(!all_ok)
}
