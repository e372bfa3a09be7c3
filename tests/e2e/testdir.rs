//! A test's own folder: its spool, configuration and logs, and what is left in the
//! spool, claimed or failed.

use std::path::{Path, PathBuf};

/// A test's own folder: spool, config, logs.
pub struct TestDir {
    /// Keeps the folder alive.
    pub dir: tempfile::TempDir,
}

impl TestDir {
    /// A new folder.
    pub fn new() -> TestDir {
        let base = std::env::var("OUTPOST_TEST_TMP")
            .unwrap_or_else(|_| std::env::temp_dir().display().to_string());
        std::fs::create_dir_all(&base).expect("tmp base");
        TestDir {
            dir: tempfile::Builder::new()
                .prefix("outpost-e2e-")
                .tempdir_in(base)
                .expect("tempdir"),
        }
    }
    /// A new folder that any user can traverse (mode 0755 under the system's temporary
    /// folder), for a daemon started as another user: the checkout and `OUTPOST_TEST_TMP`
    /// may lie inside a 0700 home folder.
    pub fn new_public() -> TestDir {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::Builder::new()
            .prefix("outpost-e2e-pub-")
            .tempdir_in(std::env::temp_dir())
            .expect("tempdir");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
        TestDir { dir }
    }
    /// Its path.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
    /// The spool.
    pub fn spool(&self) -> PathBuf {
        self.path().join("spool")
    }
    /// Writes the config file.
    pub fn config(&self, yaml: &str) -> PathBuf {
        let p = self.path().join("outpost.yaml");
        std::fs::write(&p, yaml).expect("write config");
        p
    }
    /// Drops a file the way exporters must: write under a temporary name, rename.
    pub fn drop_file(&self, server: &str, rel: &str, data: &[u8]) {
        let p = self.spool().join(server).join(rel);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        let tmp = p.with_file_name(format!(".drop-{}.tmp", fastrand::u64(..)));
        std::fs::write(&tmp, data).expect("write");
        std::fs::rename(&tmp, &p).expect("rename");
    }
    /// Regular files left under `<spool>/<server>`.
    pub fn left_in_spool(&self, server: &str) -> Vec<PathBuf> {
        files_below(&self.spool().join(server))
    }
    /// Files under `.failed/`.
    pub fn failed(&self) -> Vec<PathBuf> {
        files_below(&self.spool().join(".failed"))
    }
    /// Claimed files not yet finished.
    pub fn claimed(&self) -> Vec<PathBuf> {
        files_below(&self.spool().join(".outpost"))
            .into_iter()
            .filter(|p| p.extension().is_some_and(|e| e == "data"))
            .collect()
    }
}

impl Default for TestDir {
    fn default() -> Self {
        Self::new()
    }
}

/// Every regular file below `dir`.
pub fn files_below(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in rd.flatten() {
        let p = e.path();
        match std::fs::symlink_metadata(&p) {
            Ok(md) if md.is_dir() => out.extend(files_below(&p)),
            Ok(_) => out.push(p),
            Err(_) => {}
        }
    }
    out.sort();
    out
}
