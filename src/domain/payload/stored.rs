//! The text form of stored Service Ping values (issue 10): plain JSON that both stores can
//! read in SQL (`json_each`), exact for integers, and compact.
//!
//! - A staged submission is one object, `{"<key_id>":<value>,…}` in key order.
//! - A block keeps one array per metric, `[<value or null>,…]`, aligned with its members'
//!   ids (`[<id>,…]`, ascending).
//!
//! Whole numbers and booleans (as 0/1) are written as JSON integers, so an `i64` such as
//! `database.pg_system_id` comes back exact; floats are written as JSON floats (`1.0`, not `1`,
//! so a reader can tell them apart). These writers produce no whitespace, which keeps the
//! parsers here a split on commas instead of a general JSON parser.

/// One stored value: the double every aggregate uses, and the exact integer of a whole-number
/// or boolean leaf.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StoredValue {
    /// The value as a double (what `usage_data_metrics.value` held).
    pub value: f64,
    /// The exact value of an integer or boolean leaf; `None` for a float.
    pub exact: Option<i64>,
}

impl StoredValue {
    /// A value as the flattener gives it.
    pub fn new(value: f64, exact: Option<i64>) -> StoredValue {
        StoredValue { value, exact }
    }
}

/// Why stored value text could not be read (a row not written by these functions).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("stored metric values are malformed: {0}")]
pub struct MalformedValues(pub String);

fn bad(what: &str, text: &str) -> MalformedValues {
    let shown: String = text.chars().take(40).collect();
    MalformedValues(format!("{what} near `{shown}`"))
}

/// Appends `value` as a JSON number.
fn push_value(out: &mut String, value: &StoredValue) {
    match value.exact {
        Some(int) => out.push_str(itoa::Buffer::new().format(int)),
        // JSON input has no NaN or infinity; a non-finite value cannot be written as a
        // number, and null reads back as "no value", which is the least wrong.
        None if !value.value.is_finite() => out.push_str("null"),
        // serde_json formats like JSON does (ryu): always with a point or an exponent.
        None => out.push_str(&serde_json::Number::from_f64(value.value).map_or_else(
            || "null".to_owned(),
            |n| {
                let text = n.to_string();
                if text.contains(['.', 'e', 'E']) {
                    text
                } else {
                    format!("{text}.0")
                }
            },
        )),
    }
}

/// Reads one JSON number written by [`push_value`]; `None` for `null`.
fn parse_value(token: &str) -> Result<Option<StoredValue>, MalformedValues> {
    if token == "null" {
        return Ok(None);
    }
    if token.contains(['.', 'e', 'E']) {
        let value: f64 = token.parse().map_err(|_| bad("a number", token))?;
        return Ok(Some(StoredValue::new(value, None)));
    }
    let int: i64 = token.parse().map_err(|_| bad("an integer", token))?;
    Ok(Some(StoredValue::new(int as f64, Some(int))))
}

/// The staged body of one submission; `values` must be sorted by key id, without repeats.
pub fn format_body<'a>(values: impl Iterator<Item = (i64, &'a StoredValue)>) -> String {
    let mut out = String::with_capacity(16 * 1024);
    out.push('{');
    for (index, (key, value)) in values.enumerate() {
        if index > 0 {
            out.push(',');
        }
        out.push('"');
        out.push_str(itoa::Buffer::new().format(key));
        out.push_str("\":");
        push_value(&mut out, value);
    }
    out.push('}');
    out
}

/// Every `(key_id, value)` of a staged body, in the body's (key) order.
pub fn parse_body(body: &str) -> Result<Vec<(i64, StoredValue)>, MalformedValues> {
    let mut out = Vec::with_capacity(body.len() / 8);
    for token in body_tokens(body) {
        let (key, text) = token?;
        if let Some(value) = parse_value(text)? {
            out.push((key, value));
        }
    }
    Ok(out)
}

/// Every `(key_id, number text)` of a staged body, in the body's (key) order, without reading
/// the numbers: the merge copies their text into the blocks as it is. A token that is not
/// number-like is refused, so a block never holds anything but JSON numbers and nulls.
pub fn body_tokens(body: &str) -> impl Iterator<Item = Result<(i64, &str), MalformedValues>> {
    let inner = body
        .strip_prefix('{')
        .and_then(|b| b.strip_suffix('}'))
        .ok_or_else(|| bad("an object", body));
    let (inner, err) = match inner {
        Ok(inner) => (inner, None),
        Err(err) => ("", Some(err)),
    };
    err.into_iter().map(Err).chain(
        inner
            .split(',')
            .filter(|pair| !pair.is_empty())
            .map(|pair| {
                let (key, value) = pair.split_once(':').ok_or_else(|| bad("a pair", pair))?;
                let key: i64 = key
                    .strip_prefix('"')
                    .and_then(|k| k.strip_suffix('"'))
                    .and_then(|k| k.parse().ok())
                    .ok_or_else(|| bad("a key id", pair))?;
                let number_like = value == "null"
                    || (!value.is_empty()
                        && value.bytes().all(|b| {
                            b.is_ascii_digit() || matches!(b, b'-' | b'+' | b'.' | b'e' | b'E')
                        }));
                if number_like {
                    Ok((key, value))
                } else {
                    Err(bad("a number", pair))
                }
            }),
    )
}

/// One key's value in a staged body, found without reading the rest: keys are quoted and
/// values are numbers, so `"<key>":` occurs once at most.
pub fn body_value(body: &str, key_id: i64) -> Result<Option<StoredValue>, MalformedValues> {
    let needle = format!("\"{key_id}\":");
    let Some(at) = body.find(&needle) else {
        return Ok(None);
    };
    let rest = &body[at + needle.len()..];
    let end = rest.find([',', '}']).ok_or_else(|| bad("a value", rest))?;
    parse_value(&rest[..end])
}

/// A block's ids, `[1,2,3]`.
pub fn format_ids(ids: &[i64]) -> String {
    let mut out = String::with_capacity(ids.len() * 8 + 2);
    out.push('[');
    for (index, id) in ids.iter().enumerate() {
        if index > 0 {
            out.push(',');
        }
        out.push_str(itoa::Buffer::new().format(*id));
    }
    out.push(']');
    out
}

/// Reads [`format_ids`].
pub fn parse_ids(text: &str) -> Result<Vec<i64>, MalformedValues> {
    let inner = strip_array(text)?;
    if inner.is_empty() {
        return Ok(Vec::new());
    }
    inner
        .split(',')
        .map(|id| id.parse().map_err(|_| bad("an id", id)))
        .collect()
}

/// One metric's values in a block, aligned with its ids.
pub fn format_values(values: &[Option<StoredValue>]) -> String {
    let mut out = String::with_capacity(values.len() * 3 + 2);
    out.push('[');
    for (index, value) in values.iter().enumerate() {
        if index > 0 {
            out.push(',');
        }
        match value {
            Some(value) => push_value(&mut out, value),
            None => out.push_str("null"),
        }
    }
    out.push(']');
    out
}

/// Reads [`format_values`].
pub fn parse_values(text: &str) -> Result<Vec<Option<StoredValue>>, MalformedValues> {
    let inner = strip_array(text)?;
    if inner.is_empty() {
        return Ok(Vec::new());
    }
    inner.split(',').map(parse_value).collect()
}

/// Builds one metric's block array from number texts given in member order (the merge): a
/// member that lacks the metric gets `null`. The texts are copied, not re-read.
#[derive(Debug)]
pub struct ColumnBuilder {
    text: String,
    filled: usize,
}

impl Default for ColumnBuilder {
    fn default() -> Self {
        ColumnBuilder {
            text: String::from("["),
            filled: 0,
        }
    }
}

impl ColumnBuilder {
    fn push_raw(&mut self, token: &str) {
        if self.filled > 0 {
            self.text.push(',');
        }
        self.text.push_str(token);
        self.filled += 1;
    }

    /// Sets member `position`'s value (positions must come in increasing order; a repeated
    /// position keeps the first value).
    pub fn push(&mut self, position: usize, token: &str) {
        if position < self.filled {
            return;
        }
        while self.filled < position {
            self.push_raw("null");
        }
        self.push_raw(token);
    }

    /// The array for a block of `members` members.
    pub fn finish(mut self, members: usize) -> String {
        while self.filled < members {
            self.push_raw("null");
        }
        self.text.push(']');
        self.text
    }
}

fn strip_array(text: &str) -> Result<&str, MalformedValues> {
    text.strip_prefix('[')
        .and_then(|t| t.strip_suffix(']'))
        .ok_or_else(|| bad("an array", text))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn int(v: i64) -> StoredValue {
        StoredValue::new(v as f64, Some(v))
    }

    fn float(v: f64) -> StoredValue {
        StoredValue::new(v, None)
    }

    #[test]
    fn a_body_reads_back_exactly_including_large_integers_and_whole_floats() {
        let values = [
            (3, int(6_842_684_531_675_334_351)),
            (7, float(1.0)),
            (9, float(0.25)),
            (12, int(-1)),
            (40, float(1e20)),
            (41, int(0)),
        ];
        let body = format_body(values.iter().map(|(k, v)| (*k, v)));
        assert_eq!(
            body,
            r#"{"3":6842684531675334351,"7":1.0,"9":0.25,"12":-1,"40":1e+20,"41":0}"#
        );
        // It is JSON, with integers and floats told apart.
        let json: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert!(json["3"].is_i64() && json["7"].is_f64());
        assert_eq!(parse_body(&body).unwrap(), values.to_vec());
        assert_eq!(body_value(&body, 12).unwrap(), Some(int(-1)));
        assert_eq!(body_value(&body, 41).unwrap(), Some(int(0)));
        assert_eq!(body_value(&body, 4).unwrap(), None);
        // "1" must not match inside "12" or "41".
        assert_eq!(body_value(&body, 1).unwrap(), None);
        assert_eq!(parse_body("{}").unwrap(), vec![]);
        let tokens: Vec<(i64, &str)> = body_tokens(&body).map(Result::unwrap).collect();
        assert_eq!(tokens[0], (3, "6842684531675334351"));
        assert_eq!(tokens[4], (40, "1e+20"));
        assert_eq!(body_tokens("{}").count(), 0);
    }

    #[test]
    fn block_arrays_keep_their_positions() {
        let values = vec![Some(int(5)), None, Some(float(2.5)), Some(int(i64::MIN))];
        let text = format_values(&values);
        assert_eq!(text, "[5,null,2.5,-9223372036854775808]");
        assert_eq!(parse_values(&text).unwrap(), values);
        assert_eq!(
            parse_ids(&format_ids(&[1, 20, 300])).unwrap(),
            vec![1, 20, 300]
        );
        assert_eq!(parse_ids("[]").unwrap(), Vec::<i64>::new());
    }

    #[test]
    fn a_column_pads_missing_members_with_null() {
        let mut column = ColumnBuilder::default();
        column.push(1, "5");
        column.push(1, "6");
        column.push(3, "2.5");
        assert_eq!(column.finish(5), "[null,5,null,2.5,null]");
        assert_eq!(ColumnBuilder::default().finish(2), "[null,null]");
    }

    #[test]
    fn malformed_text_is_an_error_not_a_wrong_value() {
        assert!(parse_body("[1]").is_err());
        assert!(parse_body(r#"{"a":1}"#).is_err());
        assert!(parse_values("[1,x]").is_err());
        assert!(parse_ids("1,2").is_err());
        assert!(body_value(r#"{"3":"#, 3).is_err());
        assert!(body_tokens(r#"{"3":"x"}"#).any(|t| t.is_err()));
        assert!(body_tokens("[]").any(|t| t.is_err()));
    }
}
