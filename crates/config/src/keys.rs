//! How a section of the YAML is declared: [`section!`] turns one list of keys into the
//! raw struct (every key optional), its `Deserialize` (each key read by [`KeySeed`], so a
//! merge key, an unknown key or a key given twice is refused where it was written) and,
//! for sections that merge key by key, the merge of a server over `defaults`. [`Field`]
//! says how a value merges (whole, unless it is such a section) and which keys a raw
//! value holds (to tell where a merged value was written). A reader adds a key in
//! `raw.rs`, not here; this file changes only to change how every section is read.

use std::fmt;

use serde::de::{self, DeserializeSeed, Visitor};

/// A value of a raw section: how a server's value merges over the one in `defaults`, and
/// whether a key path below it was written.
pub(crate) trait Field: Sized {
    /// The server's value over the one in `defaults`: taken whole unless a section
    /// declared `by_key` merges key by key.
    fn merge(server: Option<Self>, defaults: Option<Self>) -> Option<Self> {
        server.or(defaults)
    }
    /// Whether `path` (keys below this value) was written; a value taken whole holds all.
    fn has(&self, _path: &[&str]) -> bool {
        true
    }
    /// Reads the value of this key: optional (`key:`, `key: ~` and `key: null` read as
    /// not written) unless a type says otherwise.
    fn read<'de, A: de::MapAccess<'de>>(map: &mut A) -> Result<Option<Self>, A::Error>
    where
        Self: serde::Deserialize<'de>,
    {
        map.next_value()
    }
}

/// Values that are taken whole when merged.
macro_rules! whole {
    ($($t:ty),* $(,)?) => { $(impl $crate::keys::Field for $t {})* };
}
pub(crate) use whole;

whole!(
    String,
    bool,
    std::path::PathBuf,
    std::net::SocketAddr,
    Vec<String>
);

/// Reads one key of a mapping whose keys are `keys`: the key as declared, or an error at
/// the key itself (merge key, unknown key, key given twice).
pub(crate) struct KeySeed<'a> {
    /// The keys of the section, in the order the docs list them.
    pub keys: &'static [&'static str],
    /// Keys read so far in this mapping.
    pub seen: &'a mut Vec<&'static str>,
    /// Whose keys these are, for messages ("server", "retry", "top-level").
    pub what: &'static str,
}

impl<'de> DeserializeSeed<'de> for KeySeed<'_> {
    type Value = &'static str;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed<'_> {
    type Value = &'static str;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a {} key", self.what)
    }
    fn visit_str<E: de::Error>(self, k: &str) -> Result<&'static str, E> {
        if k == "<<" {
            return Err(E::custom(
                "merge keys (<<) are not supported; use `defaults:` for settings servers share",
            ));
        }
        let Some(&key) = self.keys.iter().find(|key| **key == k) else {
            return Err(E::custom(format!(
                "unknown key `{k}`; {} keys are: {}",
                self.what,
                self.keys.join(", ")
            )));
        };
        if self.seen.contains(&key) {
            return Err(E::custom(format!("duplicate key `{k}`")));
        }
        self.seen.push(key);
        Ok(key)
    }
}

/// The `visit_*` methods of a visitor that wants a mapping: anything else is refused
/// with `$msg`, except an empty value, which is an empty mapping.
macro_rules! not_a_mapping {
    ($msg:expr) => {
        fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(Default::default())
        }
        fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<Self::Value, E> {
            Err(E::custom($msg))
        }
        fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<Self::Value, E> {
            Err(E::custom($msg))
        }
        fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<Self::Value, E> {
            Err(E::custom($msg))
        }
        fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<Self::Value, E> {
            Err(E::custom($msg))
        }
        fn visit_str<E: serde::de::Error>(self, _: &str) -> Result<Self::Value, E> {
            Err(E::custom($msg))
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(self, _: A) -> Result<Self::Value, A::Error> {
            Err(serde::de::Error::custom($msg))
        }
    };
}
pub(crate) use not_a_mapping;

/// Declares a section of the YAML once: `section!(by_key|whole "what", "message when
/// not a mapping", struct Name { /// doc \n key: Type, ... })`. `by_key` sections merge
/// key by key over `defaults`; `whole` ones are taken whole from whichever side has them.
macro_rules! section {
    (by_key $what:literal, $msg:literal, $(#[$doc:meta])* struct $name:ident {
        $($(#[$fdoc:meta])* $field:ident: $ty:ty,)*
    }) => {
        $crate::keys::section!(@def $what, $msg, $(#[$doc])* struct $name { $($(#[$fdoc])* $field: $ty,)* });
        impl $crate::keys::Field for $name {
            fn merge(server: Option<Self>, defaults: Option<Self>) -> Option<Self> {
                match (server, defaults) {
                    (Some(s), Some(d)) => Some($name {
                        $($field: $crate::keys::Field::merge(s.$field, d.$field),)*
                    }),
                    (s, d) => s.or(d),
                }
            }
            fn has(&self, path: &[&str]) -> bool {
                match path.split_first() {
                    None => true,
                    $(Some((&k, rest)) if k == stringify!($field) => {
                        self.$field.as_ref().is_some_and(|v| v.has(rest))
                    })*
                    Some(_) => false,
                }
            }
        }
    };
    (whole $what:literal, $msg:literal, $(#[$doc:meta])* struct $name:ident {
        $($(#[$fdoc:meta])* $field:ident: $ty:ty,)*
    }) => {
        $crate::keys::section!(@def $what, $msg, $(#[$doc])* struct $name { $($(#[$fdoc])* $field: $ty,)* });
        impl $crate::keys::Field for $name {}
    };
    (@def $what:literal, $msg:literal, $(#[$doc:meta])* struct $name:ident {
        $($(#[$fdoc:meta])* $field:ident: $ty:ty,)*
    }) => {
        $(#[$doc])*
        #[derive(Clone, Default)]
        pub(crate) struct $name {
            $($(#[$fdoc])* pub(crate) $field: Option<$ty>,)*
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V;
                impl<'de> serde::de::Visitor<'de> for V {
                    type Value = $name;
                    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        f.write_str($msg)
                    }
                    fn visit_map<A: serde::de::MapAccess<'de>>(
                        self,
                        mut map: A,
                    ) -> Result<$name, A::Error> {
                        const KEYS: &[&str] = &[$(stringify!($field)),*];
                        let mut out = $name::default();
                        let mut seen = Vec::new();
                        while let Some(key) = map.next_key_seed($crate::keys::KeySeed {
                            keys: KEYS,
                            seen: &mut seen,
                            what: $what,
                        })? {
                            match key {
                                $(stringify!($field) => out.$field = $crate::keys::Field::read(&mut map)?,)*
                                _ => map.next_value::<serde::de::IgnoredAny>().map(drop)?,
                            }
                        }
                        Ok(out)
                    }
                    $crate::keys::not_a_mapping!($msg);
                }
                d.deserialize_any(V)
            }
        }
    };
}
pub(crate) use section;

/// Declares a keyword value (`checksum: crc32c`): the enum and its `Deserialize`, which
/// refuses any other word at the value with the words allowed.
macro_rules! keyword {
    ($what:literal, $(#[$doc:meta])* enum $name:ident { $($(#[$vdoc:meta])* $variant:ident = $word:literal,)* }) => {
        $(#[$doc])*
        #[derive(Clone, Copy)]
        pub(crate) enum $name { $($(#[$vdoc])* $variant,)* }

        impl $crate::keys::Field for $name {}

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V;
                impl serde::de::Visitor<'_> for V {
                    type Value = $name;
                    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(f, "one of: {}", [$($word),*].join(", "))
                    }
                    fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<$name, E> {
                        match s {
                            $($word => Ok($name::$variant),)*
                            _ => Err(E::custom(format!(
                                "unknown {} `{s}` (use {})", $what, [$($word),*].join(", ")
                            ))),
                        }
                    }
                }
                d.deserialize_str(V)
            }
        }
    };
}
pub(crate) use keyword;
