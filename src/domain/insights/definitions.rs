//! GitLab's metric definitions export (`GET /api/v4/usage_data/metric_definitions`): one YAML
//! list of entries with `key_path`, `description`, `product_group`, `value_type`, `status`,
//! `time_frame`, `data_source` and `tier`. Parsed and checked here, all or nothing: the first
//! bad entry is named by its index (0-based, in file order) and its `key_path`.
//!
//! * `key_path` is required, a non-empty string without spaces; it is unique in the file.
//! * `time_frame` is required: `7d`, `28d`, `all` or `none`. GitLab writes a definition that
//!   covers several time frames as a list (`[7d, 28d]`); it stands for one key path per time
//!   frame, named as GitLab names them: `<key_path>_7d`, `<key_path>_28d`, and `<key_path>`
//!   for `all`/`none`. A list of one is that one value.
//! * `tier` may be one string or a list of strings; it is kept comma-separated.
//! * The other fields are optional strings; unknown fields are ignored.

use serde_yaml::Value;

use super::time_frame::TimeFrame;

/// Largest definitions file read (GitLab 18.9's export is about 5 MiB).
pub const MAX_FILE_BYTES: u64 = 32 * 1024 * 1024;
/// Most entries one file may hold.
pub const MAX_ENTRIES: usize = 100_000;
/// Longest text field kept.
const MAX_FIELD_CHARS: usize = 4_096;

/// One metric definition, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Definition {
    /// The metric's key path.
    pub key_path: String,
    /// What it measures.
    pub description: Option<String>,
    /// Owning product group.
    pub product_group: Option<String>,
    /// `number`, `string`, `boolean`, `object`.
    pub value_type: Option<String>,
    /// `active`, `removed`, …
    pub status: Option<String>,
    /// The time frame that decides the period rule.
    pub time_frame: TimeFrame,
    /// `database`, `redis_hll`, …
    pub data_source: Option<String>,
    /// Tiers, comma-separated.
    pub tier: Option<String>,
}

/// Why a definitions file was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DefinitionsError {
    /// Not YAML, or not a list.
    #[error("the file is not a YAML list of metric definitions: {0}")]
    NotAList(String),
    /// Too many entries.
    #[error("the file holds more than {MAX_ENTRIES} entries")]
    TooMany,
    /// One bad entry.
    #[error("entry {index} (key_path `{key_path}`): {problem}")]
    Entry {
        /// 0-based position in the file.
        index: usize,
        /// Its key path, or `?` when it has none.
        key_path: String,
        /// What is wrong.
        problem: String,
    },
}

/// Parses and checks a whole file; nothing is returned unless every entry is good.
pub fn parse(text: &str) -> Result<Vec<Definition>, DefinitionsError> {
    let doc: Value =
        serde_yaml::from_str(text).map_err(|e| DefinitionsError::NotAList(e.to_string()))?;
    let Value::Sequence(entries) = doc else {
        return Err(DefinitionsError::NotAList(
            "the top level is not a list".into(),
        ));
    };
    if entries.len() > MAX_ENTRIES {
        return Err(DefinitionsError::TooMany);
    }
    let mut out: Vec<Definition> = Vec::with_capacity(entries.len());
    let mut seen = std::collections::HashSet::new();
    for (index, entry) in entries.iter().enumerate() {
        let key_path = entry
            .get("key_path")
            .and_then(Value::as_str)
            .map(str::trim)
            .unwrap_or_default()
            .to_owned();
        let fail = |problem: String| DefinitionsError::Entry {
            index,
            key_path: if key_path.is_empty() {
                "?".into()
            } else {
                key_path.clone()
            },
            problem,
        };
        for definition in entry_definitions(entry, &key_path).map_err(fail)? {
            if !seen.insert(definition.key_path.clone()) {
                return Err(fail(format!(
                    "key path `{}` is defined twice",
                    definition.key_path
                )));
            }
            out.push(definition);
        }
    }
    Ok(out)
}

/// The definitions one entry stands for (more than one for a list of time frames).
fn entry_definitions(entry: &Value, key_path: &str) -> Result<Vec<Definition>, String> {
    if !entry.is_mapping() {
        return Err("the entry is not a mapping".into());
    }
    if key_path.is_empty() {
        return Err("`key_path` is missing or not a string".into());
    }
    if key_path.chars().any(char::is_whitespace) || key_path.len() > 512 {
        return Err("`key_path` must be a dotted path without spaces, at most 512 bytes".into());
    }
    let frames: Vec<TimeFrame> = match entry.get("time_frame") {
        None | Some(Value::Null) => return Err("`time_frame` is missing".into()),
        Some(Value::Sequence(items)) if !items.is_empty() => {
            items.iter().map(frame_of).collect::<Result<_, _>>()?
        }
        Some(v) => vec![frame_of(v)?],
    };
    let text = |name: &str| -> Result<Option<String>, String> {
        match entry.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.chars().take(MAX_FIELD_CHARS).collect())),
            Some(Value::Number(n)) => Ok(Some(n.to_string())),
            Some(Value::Bool(b)) => Ok(Some(b.to_string())),
            Some(_) => Err(format!("`{name}` must be a string")),
        }
    };
    let tier = match entry.get("tier") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Sequence(items)) => Some(
            items
                .iter()
                .map(|v| v.as_str().map(str::to_owned))
                .collect::<Option<Vec<_>>>()
                .ok_or("`tier` must be a string or a list of strings")?
                .join(", "),
        ),
        Some(_) => return Err("`tier` must be a string or a list of strings".into()),
    };
    let base = Definition {
        key_path: key_path.to_owned(),
        description: text("description")?,
        product_group: text("product_group")?,
        value_type: text("value_type")?,
        status: text("status")?,
        time_frame: frames[0],
        data_source: text("data_source")?,
        tier,
    };
    if frames.len() == 1 {
        return Ok(vec![base]);
    }
    Ok(frames
        .into_iter()
        .map(|frame| Definition {
            key_path: match frame {
                TimeFrame::Days7 | TimeFrame::Days28 => format!("{key_path}_{frame}"),
                TimeFrame::AllTime | TimeFrame::None => key_path.to_owned(),
            },
            time_frame: frame,
            ..base.clone()
        })
        .collect())
}

fn frame_of(value: &Value) -> Result<TimeFrame, String> {
    match value {
        Value::String(s) => s.trim().parse(),
        other => Err(format!(
            "time_frame must be 7d, 28d, all or none, got `{}`",
            serde_yaml::to_string(other)
                .unwrap_or_default()
                .trim()
                .chars()
                .take(40)
                .collect::<String>()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
- key_path: counts.issues
  description: Count of issues
  product_group: project_management
  value_type: number
  status: active
  time_frame: all
  data_source: database
  tier: [free, premium, ultimate]
- key_path: counts.weird_monthly
  description: null
  time_frame: none
  tier: premium
  extra_field: ignored
- key_path: counts.count_total_x
  time_frame: [7d, 28d]
"#;

    #[test]
    fn a_good_file_parses() {
        let defs = parse(GOOD).unwrap();
        let paths: Vec<&str> = defs.iter().map(|d| d.key_path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "counts.issues",
                "counts.weird_monthly",
                "counts.count_total_x_7d",
                "counts.count_total_x_28d"
            ]
        );
        assert_eq!(defs[0].time_frame, TimeFrame::AllTime);
        assert_eq!(defs[0].tier.as_deref(), Some("free, premium, ultimate"));
        assert_eq!(defs[0].product_group.as_deref(), Some("project_management"));
        assert_eq!(defs[1].time_frame, TimeFrame::None);
        assert_eq!(defs[1].description, None);
        assert_eq!(defs[3].time_frame, TimeFrame::Days28);
        assert_eq!(parse("[]").unwrap(), vec![]);
    }

    #[test]
    fn a_bad_entry_is_named() {
        let bad = "- key_path: a.b\n  time_frame: 7d\n- key_path: c.d\n  time_frame: 1y\n";
        let err = parse(bad).unwrap_err().to_string();
        assert!(
            err.contains("entry 1") && err.contains("`c.d`") && err.contains("1y"),
            "{err}"
        );
        let missing = "- key_path: a.b\n  time_frame: 7d\n- description: x\n  time_frame: 7d\n";
        let err = parse(missing).unwrap_err().to_string();
        assert!(
            err.contains("entry 1") && err.contains("`?`") && err.contains("key_path"),
            "{err}"
        );
        let twice = "- key_path: a.b\n  time_frame: 7d\n- key_path: a.b\n  time_frame: all\n";
        assert!(parse(twice).unwrap_err().to_string().contains("twice"));
        let no_frame = "- key_path: a.b\n";
        assert!(parse(no_frame)
            .unwrap_err()
            .to_string()
            .contains("`time_frame` is missing"));
        assert!(matches!(
            parse("key_path: a"),
            Err(DefinitionsError::NotAList(_))
        ));
        assert!(matches!(
            parse("- [unclosed"),
            Err(DefinitionsError::NotAList(_))
        ));
        let tier = "- key_path: a.b\n  time_frame: 7d\n  tier: {x: 1}\n";
        assert!(parse(tier).unwrap_err().to_string().contains("`tier`"));
    }
}
