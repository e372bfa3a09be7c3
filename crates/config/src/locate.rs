//! Where a key was written, as the YAML parser saw it: the text is walked again along a
//! key path and the walk stops with an error at the key, so serde_norway attaches the
//! key's own line and column — right in flow maps (`{ a: 1 }`) and through aliases
//! (the position is where the anchored value was written). Used only once a check
//! failed; nothing here decides whether a configuration is valid.

use std::fmt;

use serde::de::{self, DeserializeSeed, IgnoredAny, Visitor};

/// The message the walk stops with at the key it looks for.
const HERE: &str = "outpost-config: the key is here";

/// Line and column (1-based) of the deepest key of `path` that was written; (1, 1) when
/// not even the first was.
pub(crate) fn locate(text: &str, path: &[&str]) -> (usize, usize) {
    (1..=path.len())
        .rev()
        .find_map(|n| position(text, &path[..n]))
        .unwrap_or((1, 1))
}

/// Line and column (1-based) of the key at `path`, if it was written.
fn position(text: &str, path: &[&str]) -> Option<(usize, usize)> {
    let de = serde_norway::Deserializer::from_str(text);
    match Walk(path).deserialize(de) {
        Err(e) if e.to_string().contains(HERE) => e.location().map(|l| (l.line(), l.column())),
        _ => None,
    }
}

/// A walk down `path` (non-empty) from the value being read.
struct Walk<'a>(&'a [&'a str]);

impl<'de> DeserializeSeed<'de> for Walk<'_> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Walk<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any value")
    }
    fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(found) = map.next_key_seed(Key(self.0))? {
            if found {
                return map.next_value_seed(Walk(&self.0[1..]));
            }
            map.next_value::<IgnoredAny>()?;
        }
        Ok(())
    }
    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
}

/// A key of the mapping being walked: whether it is the next key of the path; at the
/// last key of the path, the error that carries its position.
struct Key<'a>(&'a [&'a str]);

impl<'de> DeserializeSeed<'de> for Key<'_> {
    type Value = bool;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_str(self)
    }
}

impl Visitor<'_> for Key<'_> {
    type Value = bool;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a key")
    }
    fn visit_str<E: de::Error>(self, k: &str) -> Result<bool, E> {
        match self.0 {
            [last] if *last == k => Err(E::custom(HERE)),
            [next, ..] => Ok(*next == k),
            [] => Ok(false),
        }
    }
}
