//! The flattening parser: a serde visitor that turns the payload into [`FlatMetrics`] while
//! it is parsed, keeping only the top-level identity fields as values.

use std::borrow::Cow;
use std::fmt::{self, Write as _};

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use super::flat::{sort_entries, FlatMetrics};
use super::special::SpecialValue;
use super::{PayloadError, PayloadLimits, IDENTITY_FIELDS, PARSER_MAX_DEPTH};

/// Shared state of one streaming flatten: the path buffer, the output, and the precise
/// reason when one of our limits stopped the parser.
pub(super) struct Flattener<'l> {
    path: String,
    metrics: FlatMetrics,
    limits: &'l PayloadLimits,
    max_depth: usize,
    pub(super) failure: Option<PayloadError>,
}

impl<'l> Flattener<'l> {
    /// A flattener for a body of `body_len` bytes.
    pub(super) fn new(limits: &'l PayloadLimits, body_len: usize) -> Self {
        // Reserved from the body's size: a full 18.9 payload (229 KB) has 4,194 leaves, one
        // per ~55 bytes, and 286 KB of key paths (each leaf's whole path). Growing from a
        // fixed guess instead copied (and page-faulted in) the buffers three times over: ~7 %
        // of ingest CPU in a profile. The caps keep a hostile body's reservation within what
        // the limits allow anyway; reserved pages that are never written are never touched.
        let leaves = (body_len / 40)
            .max(64)
            .min(limits.max_metrics.saturating_add(1));
        let key_bytes = body_len
            .saturating_add(body_len / 2)
            .max(1024)
            .min(limits.max_metrics.saturating_mul(limits.max_key_len));
        Flattener {
            path: String::with_capacity(256),
            metrics: FlatMetrics {
                keys: String::with_capacity(key_bytes),
                entries: Vec::with_capacity(leaves),
                skipped_long_keys: 0,
            },
            limits,
            max_depth: limits.max_depth.min(PARSER_MAX_DEPTH),
            failure: None,
        }
    }

    fn fail<E: de::Error>(&mut self, error: PayloadError) -> E {
        let message = error.to_string();
        self.failure = Some(error);
        E::custom(message)
    }

    fn leaf<E: de::Error>(
        &mut self,
        value: f64,
        is_bool: bool,
        exact: Option<i64>,
    ) -> Result<(), E> {
        let special = if is_bool {
            None
        } else {
            SpecialValue::from_value(value)
        };
        let pushed = self
            .metrics
            .push(&self.path, value, is_bool, exact, special, self.limits);
        pushed.map_err(|error| self.fail(error))
    }

    fn enter<E: de::Error>(&mut self, depth: usize) -> Result<(), E> {
        if depth > self.max_depth {
            let max_depth = self.max_depth;
            return Err(self.fail(PayloadError::TooDeep { max_depth }));
        }
        Ok(())
    }

    pub(super) fn finish(mut self) -> FlatMetrics {
        sort_entries(&mut self.metrics);
        self.metrics
    }
}

/// The payload object itself: counts keys, captures identity fields, streams the rest.
pub(super) struct TopLevel<'s, 'l> {
    pub(super) state: &'s mut Flattener<'l>,
    pub(super) identity: &'s mut Map<String, Value>,
    pub(super) keys: &'s mut usize,
}

impl<'de> DeserializeSeed<'de> for TopLevel<'_, '_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl TopLevel<'_, '_> {
    fn not_an_object<E: de::Error>(self, found: &'static str) -> Result<(), E> {
        Err(self.state.fail(PayloadError::NotAnObject { found }))
    }
}

impl<'de> Visitor<'de> for TopLevel<'_, '_> {
    type Value = ();

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let state = self.state;
        state.enter(1)?;
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            *self.keys += 1;
            state.path.clear();
            state.path.push_str(&key);
            if IDENTITY_FIELDS.contains(&key.as_ref()) {
                // Identity fields are few and small: keep the value for the summary, then
                // flatten it like any other (active_user_count is also a metric).
                let value: Value = map.next_value()?;
                Node {
                    state: &mut *state,
                    depth: 2,
                }
                .deserialize(&value)
                .map_err(de::Error::custom)?;
                self.identity.insert(key.into_owned(), value);
            } else {
                map.next_value_seed(Node {
                    state: &mut *state,
                    depth: 2,
                })?;
            }
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, _: A) -> Result<(), A::Error> {
        self.not_an_object("an array")
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        self.not_an_object("a string")
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        self.not_an_object("a boolean")
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        self.not_an_object("a number")
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        self.not_an_object("a number")
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        self.not_an_object("a number")
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.not_an_object("null")
    }
}

/// Any value below the top level, `depth` being the depth it has if it is a container.
struct Node<'s, 'l> {
    state: &'s mut Flattener<'l>,
    depth: usize,
}

impl<'de> DeserializeSeed<'de> for Node<'_, '_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Node<'_, '_> {
    type Value = ();

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("any JSON value")
    }

    fn visit_bool<E: de::Error>(self, value: bool) -> Result<(), E> {
        let bit = i64::from(value);
        self.state.leaf(bit as f64, true, Some(bit))
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<(), E> {
        self.state.leaf(value as f64, false, Some(value))
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<(), E> {
        self.state
            .leaf(value as f64, false, i64::try_from(value).ok())
    }

    fn visit_f64<E: de::Error>(self, value: f64) -> Result<(), E> {
        self.state.leaf(value, false, None)
    }

    // Strings and nulls are not metrics (see FlatMetrics).
    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let state = self.state;
        state.enter(self.depth)?;
        let base = state.path.len();
        let first_entry = state.metrics.entries.len();
        let mut count = 0usize;
        let mut only_key_is_minus_one = false;
        while map
            .next_key_seed(KeySegment {
                path: &mut state.path,
                base,
            })?
            .is_some()
        {
            if count == 0 {
                only_key_is_minus_one = state.path[base..].trim_start_matches('.') == "-1";
            }
            count += 1;
            map.next_value_seed(Node {
                state: &mut *state,
                depth: self.depth + 1,
            })?;
        }
        state.path.truncate(base);
        // `{"-1": -1}` is a failed histogram, not a bucket: relabel the one leaf it produced.
        let entries = &mut state.metrics.entries;
        if count == 1 && only_key_is_minus_one && entries.len() == first_entry + 1 {
            let entry = &mut entries[first_entry];
            if !entry.is_bool && entry.value == -1.0 {
                entry.special = Some(SpecialValue::HistogramFailure);
            }
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let state = self.state;
        state.enter(self.depth)?;
        let base = state.path.len();
        let mut index = 0usize;
        loop {
            state.path.truncate(base);
            // Writing to a String cannot fail.
            let _ = write!(state.path, "[{index}]");
            let element = seq.next_element_seed(Node {
                state: &mut *state,
                depth: self.depth + 1,
            })?;
            if element.is_none() {
                break;
            }
            index += 1;
        }
        state.path.truncate(base);
        Ok(())
    }
}

/// A map key: appended to the path buffer in place (`.key`), never allocated.
struct KeySegment<'s> {
    path: &'s mut String,
    base: usize,
}

impl<'de> DeserializeSeed<'de> for KeySegment<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySegment<'_> {
    type Value = ();

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("an object key")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<(), E> {
        self.path.truncate(self.base);
        if self.base > 0 {
            self.path.push('.');
        }
        self.path.push_str(key);
        Ok(())
    }
}
