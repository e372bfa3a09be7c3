//! File-system primitives that never follow a symbolic link: every path below a server
//! folder is resolved with `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)`, so a folder
//! swapped for a link mid-scan cannot lead outside the spool.

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::Path;

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

/// Writes `bytes` to `name` in `dir` atomically (temporary file, fsync, rename, fsync).
pub fn write_atomic(dir: impl AsFd, name: &OsStr, bytes: &[u8]) -> io::Result<()> {
    use std::io::Write;
    let dir = dir.as_fd();
    let mut tmp = name.to_owned();
    tmp.push(".tmp");
    let fd = rustix::fs::openat(
        dir,
        tmp.as_os_str(),
        OFlags::WRONLY | OFlags::CREATE | OFlags::TRUNC | OFlags::CLOEXEC | OFlags::NOFOLLOW,
        Mode::from_raw_mode(0o640),
    )?;
    let mut f = std::fs::File::from(fd);
    f.write_all(bytes)?;
    f.sync_all()?;
    rename_at(dir, &tmp, dir, name)?;
    sync(dir)
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

/// A name in `dir` based on `name` that does not exist yet: `name`, then `name.1`, …
pub fn free_name(dir: impl AsFd, name: &OsStr) -> io::Result<OsString> {
    let dir = dir.as_fd();
    for n in 0u32.. {
        let cand = if n == 0 {
            name.to_owned()
        } else {
            let mut c = name.to_owned();
            c.push(format!(".{n}"));
            c
        };
        if cand.as_bytes().len() > 255 {
            // Keep within the filesystem's name limit by shortening the base.
            let keep = 255usize.saturating_sub(12);
            let mut c = OsString::from_vec(name.as_bytes()[..keep].to_vec());
            c.push(format!(".{n}"));
            if !exists_at(dir, &c)? {
                return Ok(c);
            }
            continue;
        }
        if !exists_at(dir, &cand)? {
            return Ok(cand);
        }
    }
    Err(io::Error::other("no free name"))
}

/// Whether `name` exists in `dir` (without following links).
pub fn exists_at(dir: impl AsFd, name: &OsStr) -> io::Result<bool> {
    match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(_) => Ok(true),
        Err(rustix::io::Errno::NOENT) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Splits a relative path into its folder and its last component.
pub fn split(rel: &Path) -> (&Path, &OsStr) {
    (
        rel.parent().unwrap_or(Path::new("")),
        rel.file_name().unwrap_or(rel.as_os_str()),
    )
}
