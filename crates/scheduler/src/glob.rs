//! `publish_last` globs, compiled once when a server's rules are set and matched in
//! linear time. The semantics are [`crate::glob_match`]'s (pinned by the tests below).

#[cfg(test)]
mod tests {
    fn matches(glob: &str, name: &str) -> bool {
        crate::glob_match(glob, name)
    }

    /// Today's semantics: byte-wise, case-sensitive; `*` is any run of bytes (also none,
    /// also `/`); `?` is exactly one byte (so one per byte of a multi-byte character);
    /// everything else, `[`, `\\` and `.` included, is literal.
    #[test]
    fn semantics_are_pinned() {
        let yes = [
            ("*.info", "batch.info"),
            ("*", ""),
            ("*", "a/b"),
            ("a*b", "ab"),
            ("a*b", "a/x/b"),
            ("manifest-??.json", "manifest-01.json"),
            ("?", "/"),
            ("??", "é"),
            ("*.*", "a.b.c"),
            ("**", "x"),
            ("a**b", "ab"),
            ("[ab]", "[ab]"),
            ("\\*", "\\x"),
            ("", ""),
            ("*a*b*c", "xaybzc"),
            ("?*?", "ab"),
        ];
        let no = [
            ("*.info", "batch.info.csv"),
            ("manifest-??.json", "manifest-1.json"),
            ("?", "é"),
            ("?", ""),
            ("", "a"),
            ("a", ""),
            ("A", "a"),
            ("[ab]", "a"),
            ("\\*", "*"),
            ("a*b", "ba"),
            ("*a*b*c", "xaybz"),
            ("?*?", "a"),
            ("ab*ba", "aba"),
        ];
        for (g, n) in yes {
            assert!(matches(g, n), "{g:?} should match {n:?}");
        }
        for (g, n) in no {
            assert!(!matches(g, n), "{g:?} should not match {n:?}");
        }
    }
}
