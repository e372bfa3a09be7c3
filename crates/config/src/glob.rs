//! `publish_last` globs, compiled once when a server's rules are set (scheduler,
//! discovery) and matched without backtracking. The semantics (pinned by the tests
//! below): byte-wise, `*` any run of bytes (`/` included), `?` exactly one byte, the rest
//! literal. A reader may change how a pattern is stored or searched here; what matches
//! must stay what the tests pin.

/// One glob, split at its `*`s: `prefix*middle[0]*…*middle[k]*suffix`. Matching checks
/// the two ends, then finds each middle part leftmost in what remains: no backtracking,
/// at most O(name × pattern) work however many `*` there are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob {
    /// Before the first `*` (the whole pattern if it has none).
    prefix: Box<[u8]>,
    /// The non-empty parts between two `*`s, in order.
    middle: Vec<Box<[u8]>>,
    /// After the last `*`.
    suffix: Box<[u8]>,
    /// The pattern has a `*`: without one, the name must be exactly as long as `prefix`.
    star: bool,
}

impl Glob {
    /// Compiles `pattern`.
    pub fn new(pattern: &str) -> Self {
        // `split` yields at least one part; k `*`s give k + 1 parts.
        let mut parts: Vec<&[u8]> = pattern.as_bytes().split(|&b| b == b'*').collect();
        let star = parts.len() > 1;
        let suffix = if star {
            parts.pop().unwrap_or_default()
        } else {
            b""
        };
        let prefix = parts.first().copied().unwrap_or_default();
        let between = parts.get(1..).unwrap_or_default();
        Glob {
            prefix: prefix.into(),
            middle: between
                .iter()
                .filter(|m| !m.is_empty())
                .map(|m| (*m).into())
                .collect(),
            suffix: suffix.into(),
            star,
        }
    }

    /// Whether `name` matches.
    pub fn matches(&self, name: &str) -> bool {
        let n = name.as_bytes();
        if !self.star {
            return fits(&self.prefix, n);
        }
        let (p, s) = (self.prefix.len(), self.suffix.len());
        if n.len() < p + s || !fits(&self.prefix, &n[..p]) || !fits(&self.suffix, &n[n.len() - s..])
        {
            return false;
        }
        let mut rest = &n[p..n.len() - s];
        for part in &self.middle {
            match find(rest, part) {
                Some(at) => rest = &rest[at + part.len()..],
                None => return false,
            }
        }
        true
    }
}

/// `part` (with `?` for any byte) matches all of `s`.
fn fits(part: &[u8], s: &[u8]) -> bool {
    part.len() == s.len() && part.iter().zip(s).all(|(p, b)| *p == b'?' || p == b)
}

/// Where `part` first fits in `hay`.
fn find(hay: &[u8], part: &[u8]) -> Option<usize> {
    let last = hay.len().checked_sub(part.len())?;
    (0..=last).find(|&i| fits(part, &hay[i..i + part.len()]))
}

/// Whether `name` matches the glob `glob` (compiled for this one call).
pub fn glob_match(glob: &str, name: &str) -> bool {
    Glob::new(glob).matches(name)
}

/// A server's `publish_last` globs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Globs(Vec<Glob>);

impl Globs {
    /// Compiles every pattern.
    pub fn new(patterns: &[String]) -> Self {
        Globs(patterns.iter().map(|p| Glob::new(p)).collect())
    }

    /// Some glob matches `name`.
    pub fn any(&self, name: &str) -> bool {
        self.0.iter().any(|g| g.matches(name))
    }
}

#[cfg(test)]
mod tests {
    use super::Glob;

    fn matches(glob: &str, name: &str) -> bool {
        Glob::new(glob).matches(name)
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

    /// The first, recursive matcher: clearly right, exponential in the number of `*`.
    fn recursive(g: &[u8], n: &[u8]) -> bool {
        match (g.first(), n.first()) {
            (None, None) => true,
            (Some(b'*'), _) => recursive(&g[1..], n) || (!n.is_empty() && recursive(g, &n[1..])),
            (Some(b'?'), Some(_)) => recursive(&g[1..], &n[1..]),
            (Some(a), Some(b)) if a == b => recursive(&g[1..], &n[1..]),
            _ => false,
        }
    }

    /// The compiled glob agrees with the recursive matcher on every pattern of up to 5
    /// symbols from `a b / ? *` and every name of up to 5 bytes from `a b /`.
    #[test]
    fn agrees_with_the_recursive_matcher() {
        fn all(alphabet: &[char], max: usize) -> Vec<String> {
            let mut out = vec![String::new()];
            let mut layer = vec![String::new()];
            for _ in 0..max {
                layer = layer
                    .iter()
                    .flat_map(|s| alphabet.iter().map(move |c| format!("{s}{c}")))
                    .collect();
                out.extend(layer.iter().cloned());
            }
            out
        }
        let names = all(&['a', 'b', '/'], 5);
        for g in all(&['a', 'b', '/', '?', '*'], 5) {
            let glob = Glob::new(&g);
            for n in &names {
                assert_eq!(
                    glob.matches(n),
                    recursive(g.as_bytes(), n.as_bytes()),
                    "{g:?} on {n:?}"
                );
            }
        }
    }

    /// Many `*` against a long name: the recursive matcher takes exponential time here;
    /// this one must simply finish.
    #[test]
    fn many_stars_on_a_long_name_finish() {
        let name = "a".repeat(10_000);
        assert!(!matches("*a*a*a*a*a*a*a*a*a*a*a*a*b", &name));
        assert!(matches("*a*a*a*a*a*a*a*a*a*a*a*a*", &name));
    }
}
