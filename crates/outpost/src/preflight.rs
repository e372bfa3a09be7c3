//! What `run`, `check` and a reload agree on before anything starts: the configuration
//! loads, and what can fail only on this host — secret files, the spool's layout — is
//! found without creating or changing anything (`check` and `run` report the same
//! problems and exit 78; a reload refuses the same).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use outpost_config::{Config, Credentials};
use outpost_watcher::default_instance;

use crate::EXIT_CONFIG;

/// Loads the configuration or prints the located error.
pub fn load(path: &Path) -> Result<Config, u8> {
    Config::load(path).map_err(|e| {
        eprintln!("outpost: configuration error: {e}");
        EXIT_CONFIG
    })
}

/// Checks that can fail only on this host: secret files and the spool's layout — what
/// `run` would refuse (`check` and `run` report the same problems, exit 78). Each
/// problem names the configuration file `path` it came from, and a secret file's the
/// line and column of the key that names it.
pub fn host_problems(cfg: &Config, path: &Path) -> Vec<String> {
    let mut out = Vec::new();
    // Each secret file is checked (and a problem located) once, however many servers
    // share it through `defaults`: locating walks the whole file.
    let mut seen = std::collections::HashSet::<&Path>::new();
    for s in cfg.servers.values() {
        if let Credentials::Static {
            secret_access_key_file,
            ..
        } = &s.credentials
        {
            if !seen.insert(secret_access_key_file) {
                continue;
            }
            if let Err(e) = outpost_uploader::check_secret_file(secret_access_key_file) {
                out.push(cfg.secret_file_error(&s.name, &e.message).to_string());
            }
        }
        // A webhook's HMAC key: refused like a credential's secret (never sent loose).
        for t in &s.notify {
            if let outpost_config::TargetKind::Webhook { secret_file, .. } = &t.kind
                && let Err(e) = outpost_uploader::read_secret_file(secret_file, "secret_file")
            {
                out.push(format!(
                    "{}: server {}: notify target {}: {}",
                    path.display(),
                    s.name,
                    t.name,
                    e.message
                ));
            }
        }
    }
    out.extend(
        spool_problems(cfg)
            .into_iter()
            .map(|p| format!("{}: {p}", path.display())),
    );
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
