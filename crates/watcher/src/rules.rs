//! Pure naming rules of the spool protocol: in-progress names, markers, keys.

use std::ffi::OsStr;

/// S3's key length limit, in bytes.
pub const MAX_KEY_BYTES: usize = 1024;

/// Whether a name marks an in-progress entry (SPEC §1): dot-files and `.tmp`, `.part`,
/// `.partial` names; for folders, a leading dot hides everything inside.
pub fn in_progress(name: &OsStr) -> bool {
    let b = name.as_encoded_bytes();
    b.first() == Some(&b'.')
        || b.ends_with(b".tmp")
        || b.ends_with(b".part")
        || b.ends_with(b".partial")
}

/// The data file a marker name stands for, if `name` is a marker.
pub fn marker_target<'a>(name: &'a [u8], suffix: &str) -> Option<&'a [u8]> {
    let s = suffix.as_bytes();
    (name.len() > s.len() && name.ends_with(s)).then(|| &name[..name.len() - s.len()])
}

/// Why a relative path cannot become a key, if it cannot.
pub fn key_problem(prefix: &str, rel: &[u8]) -> Option<crate::FailReason> {
    let Ok(_) = std::str::from_utf8(rel) else {
        return Some(crate::FailReason::NameNotUtf8);
    };
    (prefix.len() + rel.len() > MAX_KEY_BYTES).then_some(crate::FailReason::KeyTooLong)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::ffi::OsStrExt;

    #[test]
    fn in_progress_names() {
        let cases = [
            ("batch.csv", false),
            (".batch.csv", true),
            ("batch.csv.tmp", true),
            ("batch.part", true),
            ("batch.partial", true),
            ("batch.tmpl", false),
            ("part", false),
            ("x.ready", false),
        ];
        for (name, want) in cases {
            assert_eq!(in_progress(OsStr::new(name)), want, "{name}");
        }
    }

    #[test]
    fn markers() {
        assert_eq!(marker_target(b"a.csv.ready", ".ready"), Some(&b"a.csv"[..]));
        assert_eq!(marker_target(b".ready", ".ready"), None);
        assert_eq!(marker_target(b"a.csv", ".ready"), None);
        assert_eq!(marker_target(b"a.csv.done", ".done"), Some(&b"a.csv"[..]));
    }

    #[test]
    fn keys() {
        assert_eq!(key_problem("p/", b"a/b.csv"), None);
        assert_eq!(
            key_problem("p/", OsStr::from_bytes(b"a\xff.csv").as_bytes()),
            Some(crate::FailReason::NameNotUtf8)
        );
        let long = "x".repeat(1022);
        assert_eq!(key_problem("p/", long.as_bytes()), None);
        assert_eq!(
            key_problem("p/x", long.as_bytes()),
            Some(crate::FailReason::KeyTooLong)
        );
    }
}
