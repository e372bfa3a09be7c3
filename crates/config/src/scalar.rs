//! Scalar values checked where they are written, so that an error carries the parser's
//! position of the value: sizes (`8MiB`), durations (`30s`, or `0` for off), rates
//! (`50MiB/s`), delivery windows (`"22:00-06:00"`), whole numbers, and keys that count as
//! written even when empty. `raw.rs` uses them as key types; a
//! reader adds a new kind of checked value here.

use std::fmt;
use std::time::Duration;

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};

use crate::keys::Field;
use crate::units::{parse_duration, parse_period, parse_size};

/// A string value checked (and turned into `T`) where it is written, so that an error
/// carries the position of the value.
macro_rules! checked_str {
    ($(#[$doc:meta])* $name:ident($t:ty), $expect:literal, $check:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone)]
        pub(crate) struct $name(pub(crate) $t);

        impl Field for $name {}

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V;
                impl Visitor<'_> for V {
                    type Value = $name;
                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        f.write_str($expect)
                    }
                    fn visit_str<E: de::Error>(self, s: &str) -> Result<$name, E> {
                        let check: fn(&str) -> Result<$t, String> = $check;
                        check(s).map($name).map_err(E::custom)
                    }
                }
                d.deserialize_str(V)
            }
        }
    };
}

checked_str!(
    /// A size written as a string like `8MiB`.
    Size(u64),
    "a size like 8MiB",
    parse_size
);

checked_str!(
    /// A duration written as a string like `30s`.
    Dur(Duration),
    "a duration like 30s",
    parse_duration
);

checked_str!(
    /// A delivery window written as a string like `"22:00-06:00 Europe/Berlin"`.
    RawWindow(crate::Window),
    "a window like \"22:00-06:00\" or \"22:00-02:00, 04:00-06:00 Europe/Berlin\"",
    crate::Window::parse
);

checked_str!(
    /// A rate written as a string like `50MiB/s`, or `0` (unlimited).
    Rate(u64),
    "a rate like 50MiB/s, or 0",
    crate::units::parse_rate
);

checked_str!(
    /// A period that may be switched off: a duration like `6h`, or `0` (off: `None`).
    OffDur(Option<Duration>),
    "a duration like 6h, or 0 (off)",
    parse_period
);

/// A key that counts as written even with an empty or null value: a key of another
/// credentials mode is refused however it is written.
#[derive(Debug, Clone)]
pub(crate) struct Written<T>(pub(crate) Option<T>);

impl<T> Field for Written<T> {
    fn read<'de, A: de::MapAccess<'de>>(map: &mut A) -> Result<Option<Self>, A::Error>
    where
        Self: Deserialize<'de>,
    {
        map.next_value::<Written<T>>().map(Some)
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Written<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Option::<T>::deserialize(d).map(Written)
    }
}

/// A whole number (`max_attempts: 20`) that fits `T`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Count<T>(pub(crate) T);

impl<T> Field for Count<T> {}

impl<'de, T: TryFrom<u64>> Deserialize<'de> for Count<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(std::marker::PhantomData<T>);
        impl<T: TryFrom<u64>> Visitor<'_> for V<T> {
            type Value = Count<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a whole number")
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Count<T>, E> {
                T::try_from(n)
                    .map(Count)
                    .map_err(|_| E::custom(format!("{n} is too large")))
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<Count<T>, E> {
                let n = u64::try_from(n).map_err(|_| E::custom(format!("{n} is negative")))?;
                self.visit_u64(n)
            }
        }
        d.deserialize_u64(V(std::marker::PhantomData))
    }
}
