//! What the serde attributes of the input types share: defaults that are not
//! `Default::default()`, and patch fields where `null` differs from absent.

use serde::{Deserialize, Deserializer};
use serde_json::Value;

/// A patch field that can be cleared: absent leaves it as it is (`None`, with
/// `#[serde(default)]`), `null` clears it (`Some(None)`), a value sets it.
pub(crate) fn clearable<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

/// `true` (for `is_active`).
pub(crate) fn yes() -> bool {
    true
}

/// `{}` (for `meta`).
pub(crate) fn empty_object() -> Value {
    Value::Object(Default::default())
}
