//! Instants as the outside world reads them: RFC 3339 in UTC with milliseconds
//! (`2026-12-04T18:37:04.123Z`). The engine counts in [`Millis`]; every instant the API answers
//! with is written this way (and so stored, the same types being stored), and read back either
//! way: an RFC 3339 date-time with any offset, or milliseconds since the epoch, as data written
//! before instants were text has them.

use std::fmt;
use std::time::{Duration, UNIX_EPOCH};

use serde::de::{self, Visitor};
use serde::{Deserializer, Serializer};

use super::Millis;

/// The last millisecond RFC 3339 can write (its years have four digits): 9999-12-31T23:59:59.999Z.
pub const LAST: Millis = 253_402_300_799_999;

/// `at` as RFC 3339 in UTC with milliseconds; an instant past [`LAST`] (a deadline that is in
/// effect never) as its milliseconds, exactly, rather than a date RFC 3339 cannot write.
pub fn format(at: Millis) -> impl fmt::Display {
    Formatted { at, millis: true }
}

/// The same to the second, for people (`2026-12-04T18:37:04Z`).
pub fn format_seconds(at: Millis) -> impl fmt::Display {
    Formatted { at, millis: false }
}

struct Formatted {
    at: Millis,
    millis: bool,
}

impl fmt::Display for Formatted {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self.at {
            at @ 0..=LAST => {
                let at = UNIX_EPOCH + Duration::from_millis(at);
                match self.millis {
                    true => fmt::Display::fmt(&humantime::format_rfc3339_millis(at), f),
                    false => fmt::Display::fmt(&humantime::format_rfc3339_seconds(at), f),
                }
            }
            beyond => write!(f, "{beyond}"),
        }
    }
}

/// An RFC 3339 date-time with its offset (`2026-12-04T19:37:04+01:00`), as milliseconds since
/// the epoch; an error says what is wrong with it.
pub fn parse(text: &str) -> Result<Millis, String> {
    let at = chrono::DateTime::parse_from_rfc3339(text.trim()).map_err(|e| {
        format!("`{text}` is not an RFC 3339 date-time with an offset (like 2026-12-04T09:30:00+01:00): {e}")
    })?;
    Millis::try_from(at.timestamp_millis())
        .map_err(|_| format!("`{text}` is before 1970-01-01T00:00:00Z"))
}

struct Instant;

impl Visitor<'_> for Instant {
    type Value = Millis;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an RFC 3339 date-time, or milliseconds since the epoch")
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Millis, E> {
        Ok(v)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Millis, E> {
        Millis::try_from(v).map_err(|_| E::custom(format!("{v} is before the epoch")))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Millis, E> {
        parse(v).map_err(E::custom)
    }
}

/// `#[serde(with = "crate::time::rfc3339")]` on a [`Millis`] that is an instant.
pub mod rfc3339 {
    use super::*;

    pub fn serialize<S: Serializer>(at: &Millis, s: S) -> Result<S::Ok, S::Error> {
        match *at {
            at @ 0..=LAST => s.collect_str(&format(at)),
            beyond => s.serialize_u64(beyond),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Millis, D::Error> {
        d.deserialize_any(Instant)
    }

    /// The same for an `Option<Millis>` (with `#[serde(default)]`).
    pub mod option {
        use super::*;

        pub fn serialize<S: Serializer>(at: &Option<Millis>, s: S) -> Result<S::Ok, S::Error> {
            match at {
                Some(at) => super::serialize(at, s),
                None => s.serialize_none(),
            }
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Millis>, D::Error> {
            struct Maybe;
            impl<'de> Visitor<'de> for Maybe {
                type Value = Option<Millis>;
                fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                    f.write_str("an RFC 3339 date-time, milliseconds since the epoch, or null")
                }
                fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
                    Ok(None)
                }
                fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                    Ok(None)
                }
                fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
                    d.deserialize_any(Instant).map(Some)
                }
                fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                    Instant.visit_u64(v).map(Some)
                }
                fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                    Instant.visit_i64(v).map(Some)
                }
                fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                    Instant.visit_str(v).map(Some)
                }
            }
            d.deserialize_option(Maybe)
        }
    }
}

#[cfg(test)]
mod tests {
    use serde::{Deserialize, Serialize};

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Stamped {
        #[serde(with = "super::rfc3339")]
        at: u64,
        #[serde(default, with = "super::rfc3339::option")]
        until: Option<u64>,
    }

    #[test]
    fn instants_are_written_as_rfc_3339_and_read_in_either_form() {
        let stamped = Stamped {
            at: 1_796_408_224_123,
            until: None,
        };
        let text = serde_json::to_string(&stamped).unwrap_or_default();
        assert_eq!(text, r#"{"at":"2026-12-04T18:17:04.123Z","until":null}"#);
        let back: Result<Stamped, _> = serde_json::from_str(&text);
        assert_eq!(back.ok(), Some(stamped));
        let older: Result<Stamped, _> =
            serde_json::from_str(r#"{"at":1796408224123,"until":1796408224124}"#);
        assert_eq!(older.ok().and_then(|s| s.until), Some(1_796_408_224_124));
        let offset: Result<Stamped, _> =
            serde_json::from_str(r#"{"at":"2026-12-04T19:17:04.123+01:00"}"#);
        assert_eq!(offset.ok().map(|s| s.at), Some(1_796_408_224_123));
        // Past year 9999 (a deadline of `10000 years`, a buffer kept for ever), the instant
        // stays exact as milliseconds, and reads back the same.
        let never = Stamped {
            at: u64::MAX,
            until: Some(super::LAST + 1),
        };
        let text = serde_json::to_string(&never).unwrap_or_default();
        assert_eq!(
            text,
            format!(r#"{{"at":{},"until":{}}}"#, u64::MAX, super::LAST + 1)
        );
        let back: Result<Stamped, _> = serde_json::from_str(&text);
        assert_eq!(back.ok(), Some(never));
        assert_eq!(
            super::format(super::LAST).to_string(),
            "9999-12-31T23:59:59.999Z"
        );
        let wrong: Result<Stamped, _> = serde_json::from_str(r#"{"at":"yesterday"}"#);
        let why = wrong.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(
            why.contains("`yesterday` is not an RFC 3339 date-time"),
            "{why}"
        );
    }
}
