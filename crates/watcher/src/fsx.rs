//! File-system primitives that never follow a symbolic link: every path below a server
//! folder is resolved with `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)`, so a folder
//! swapped for a link mid-scan cannot lead outside the spool.

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use rustix::fs::{AtFlags, Mode, OFlags, ResolveFlags, Stat};

pub use rustix::fs::FileType;

fn resolve() -> ResolveFlags {
    ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS
}

/// Opens the folder `rel` below `root` (an empty `rel` reopens `root`).
pub fn open_dir_beneath(root: impl AsFd, rel: &Path) -> io::Result<OwnedFd> {
    let rel = if rel.as_os_str().is_empty() {
        Path::new(".")
    } else {
        rel
    };
    Ok(rustix::fs::openat2(
        root,
        rel,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC | OFlags::NOFOLLOW,
        Mode::empty(),
        resolve(),
    )?)
}

/// Opens an absolute folder path, refusing a link in its last component.
pub fn open_dir(path: &Path) -> io::Result<OwnedFd> {
    Ok(rustix::fs::open(
        path,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC | OFlags::NOFOLLOW,
        Mode::empty(),
    )?)
}

/// Opens a regular file below `root` read-only, refusing links anywhere on the way.
pub fn open_file_beneath(root: impl AsFd, rel: &Path) -> io::Result<std::fs::File> {
    let fd = rustix::fs::openat2(
        root,
        rel,
        OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW | OFlags::NONBLOCK,
        Mode::empty(),
        resolve(),
    )?;
    Ok(std::fs::File::from(fd))
}

/// `lstat` of `name` in `dir`.
pub fn lstat_at(dir: impl AsFd, name: &OsStr) -> io::Result<Stat> {
    Ok(rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)?)
}

/// The file type in a `Stat`.
pub fn kind(st: &Stat) -> FileType {
    FileType::from_raw_mode(st.st_mode)
}

/// Modification time in nanoseconds since the epoch.
pub fn mtime_ns(st: &Stat) -> i128 {
    st.st_mtime as i128 * 1_000_000_000 + st.st_mtime_nsec as i128
}

/// Entries of an open folder, without `.` and `..`.
pub fn list(dir: impl AsFd) -> io::Result<Vec<(OsString, FileType)>> {
    let mut out = Vec::new();
    for entry in rustix::fs::Dir::read_from(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_bytes();
        if name == b"." || name == b".." {
            continue;
        }
        out.push((OsString::from_vec(name.to_vec()), entry.file_type()));
    }
    Ok(out)
}

/// Atomic rename between two open folders.
pub fn rename_at(from: impl AsFd, old: &OsStr, to: impl AsFd, new: &OsStr) -> io::Result<()> {
    Ok(rustix::fs::renameat(from, old, to, new)?)
}

/// Removes a file.
pub fn unlink_at(dir: impl AsFd, name: &OsStr) -> io::Result<()> {
    Ok(rustix::fs::unlinkat(dir, name, AtFlags::empty())?)
}

/// Removes an empty folder.
pub fn rmdir_at(dir: impl AsFd, name: &OsStr) -> io::Result<()> {
    Ok(rustix::fs::unlinkat(dir, name, AtFlags::REMOVEDIR)?)
}

/// Flushes a folder's entries (after a rename into or out of it).
pub fn sync(fd: impl AsFd) -> io::Result<()> {
    Ok(rustix::fs::fsync(fd)?)
}

/// Creates `rel` and its parents below `root` (mode 0o2775 so exporters in the group
/// can write) and opens it.
pub fn mkdirs_beneath(root: impl AsFd, rel: &Path, mode: u32) -> io::Result<OwnedFd> {
    let root = root.as_fd();
    let mut cur = open_dir_beneath(root, Path::new(""))?;
    for comp in rel.components() {
        let name = comp.as_os_str();
        match rustix::fs::mkdirat(&cur, name, Mode::from_raw_mode(mode)) {
            Ok(()) | Err(rustix::io::Errno::EXIST) => {}
            Err(e) => return Err(e.into()),
        }
        cur = open_dir_beneath(&cur, Path::new(name))?;
    }
    Ok(cur)
}

/// A new temporary file in `dir` (`O_EXCL`, a short name of its own whatever the length
/// of the final name, so a 255-byte final name still has a temporary): its name and
/// the open file.
fn create_tmp(dir: BorrowedFd<'_>, mode: u32) -> io::Result<(OsString, std::fs::File)> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    loop {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let tmp = OsString::from(format!(".tmp-{}-{n}.tmp", std::process::id()));
        match rustix::fs::openat(
            dir,
            tmp.as_os_str(),
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::CLOEXEC | OFlags::NOFOLLOW,
            Mode::from_raw_mode(mode),
        ) {
            Ok(fd) => {
                // The umask must not widen or narrow what the caller asked for.
                let _ = rustix::fs::fchmod(&fd, Mode::from_raw_mode(mode));
                return Ok((tmp, std::fs::File::from(fd)));
            }
            Err(rustix::io::Errno::EXIST) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

fn write_tmp(dir: BorrowedFd<'_>, bytes: &[u8], mode: u32) -> io::Result<OsString> {
    use std::io::Write;
    let (tmp, mut f) = create_tmp(dir, mode)?;
    let r = f.write_all(bytes).and_then(|()| f.sync_all());
    if let Err(e) = r {
        let _ = unlink_at(dir, &tmp);
        return Err(e);
    }
    Ok(tmp)
}

/// Writes `bytes` to `name` in `dir` atomically (temporary file, fsync, rename, fsync),
/// replacing what is there; mode 0640.
pub fn write_atomic(dir: impl AsFd, name: &OsStr, bytes: &[u8]) -> io::Result<()> {
    write_atomic_mode(dir, name, bytes, 0o640)
}

/// [`write_atomic`] with the file's mode (0600 for the daemon's own state).
pub fn write_atomic_mode(dir: impl AsFd, name: &OsStr, bytes: &[u8], mode: u32) -> io::Result<()> {
    let dir = dir.as_fd();
    write_and_rename(dir, name, bytes, mode, true)?;
    sync(dir)
}

/// Writes `bytes` to a temporary file (fsynced) and renames it to `name`, replacing
/// what is there or (`replace` false) never; the temporary file goes if that fails.
fn write_and_rename(
    dir: BorrowedFd<'_>,
    name: &OsStr,
    bytes: &[u8],
    mode: u32,
    replace: bool,
) -> io::Result<()> {
    let tmp = write_tmp(dir, bytes, mode)?;
    let moved = if replace {
        rename_at(dir, &tmp, dir, name)
    } else {
        rename_noreplace(dir, &tmp, dir, name)
    };
    if moved.is_err() {
        let _ = unlink_at(dir, &tmp);
    }
    moved
}

/// Replaces `name` in `dir` with `bytes`, owner-only (0600), without fsync: for
/// advisory state rewritten every few seconds.
pub fn write_state(dir: impl AsFd, name: &OsStr, bytes: &[u8]) -> io::Result<()> {
    use std::io::Write;
    let dir = dir.as_fd();
    let (tmp, mut f) = create_tmp(dir, 0o600)?;
    let r = f
        .write_all(bytes)
        .and_then(|()| rename_at(dir, &tmp, dir, name));
    if r.is_err() {
        let _ = unlink_at(dir, &tmp);
    }
    r
}

/// Writes `bytes` as the new file `name` in `dir` (temporary file, fsync, rename that
/// never replaces): `AlreadyExists` when `name` is taken, and nothing is changed.
pub fn write_new(dir: impl AsFd, name: &OsStr, bytes: &[u8], mode: u32) -> io::Result<()> {
    write_and_rename(dir.as_fd(), name, bytes, mode, false)
}

/// Atomic rename that never replaces an existing entry (`renameat2(RENAME_NOREPLACE)`):
/// `AlreadyExists` when `new` is taken.
pub fn rename_noreplace(
    from: impl AsFd,
    old: &OsStr,
    to: impl AsFd,
    new: &OsStr,
) -> io::Result<()> {
    Ok(rustix::fs::renameat_with(
        from,
        old,
        to,
        new,
        rustix::fs::RenameFlags::NOREPLACE,
    )?)
}

/// Names to try, in order, for `name` in a folder that keeps earlier entries: `name`,
/// `name.1`, `name.2`, … each within the 255-byte name limit.
pub fn candidates(name: &OsStr) -> impl Iterator<Item = OsString> + '_ {
    (0u32..).map(move |n| {
        if n == 0 {
            return name.to_owned();
        }
        let suffix = format!(".{n}");
        let keep = name.as_bytes().len().min(255 - suffix.len());
        let mut c = OsString::from_vec(name.as_bytes()[..keep].to_vec());
        c.push(suffix);
        c
    })
}

/// Calls `f(folder, relative folder path, name, lstat)` for every regular file below
/// the open folder `dir`, opening each sub-folder with [`open_dir_beneath`] (never
/// through a link; a folder swapped for a link is skipped). Folders whose name starts
/// with a dot are skipped; dot-files are visited only with `dot`.
pub fn walk_files(dir: &OwnedFd, dot: bool, f: &mut dyn FnMut(&OwnedFd, &Path, &OsStr, &Stat)) {
    walk_in(dir, Path::new(""), dot, 0, f)
}

fn walk_in(
    dir: &OwnedFd,
    rel: &Path,
    dot: bool,
    depth: usize,
    f: &mut dyn FnMut(&OwnedFd, &Path, &OsStr, &Stat),
) {
    // Deeper than any real spool; bounds a crafted tree.
    if depth > 256 {
        return;
    }
    let Ok(entries) = list(dir) else { return };
    for (name, _) in entries {
        let Ok(st) = lstat_at(dir, &name) else {
            continue;
        };
        let hidden = name.as_bytes().starts_with(b".");
        match kind(&st) {
            FileType::Directory if !hidden => {
                if let Ok(sub) = open_dir_beneath(dir, Path::new(&name)) {
                    walk_in(&sub, &rel.join(&name), dot, depth + 1, f);
                }
            }
            FileType::RegularFile if dot || !hidden => f(dir, rel, &name, &st),
            _ => {}
        }
    }
}

/// Reads at most `limit` bytes of the regular file `rel` below `dir`, never through a
/// link and never waiting on what could block (a FIFO): `Ok(None)` when it is not a
/// regular file.
pub fn read_regular_beneath(dir: impl AsFd, rel: &Path, limit: u64) -> io::Result<Option<Vec<u8>>> {
    use std::io::Read;
    let file = open_file_beneath(dir, rel)?;
    if !file.metadata()?.is_file() {
        return Ok(None);
    }
    let mut bytes = Vec::new();
    file.take(limit).read_to_end(&mut bytes)?;
    Ok(Some(bytes))
}

/// Reads a small file in `dir`.
pub fn read_at(dir: impl AsFd, name: &OsStr) -> io::Result<Vec<u8>> {
    use std::io::Read;
    let fd = rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW,
        Mode::empty(),
    )?;
    let mut out = Vec::new();
    std::fs::File::from(fd).read_to_end(&mut out)?;
    Ok(out)
}

/// Splits a relative path into its folder and its last component.
pub fn split(rel: &Path) -> (&Path, &OsStr) {
    (
        rel.parent().unwrap_or(Path::new("")),
        rel.file_name().unwrap_or(rel.as_os_str()),
    )
}
