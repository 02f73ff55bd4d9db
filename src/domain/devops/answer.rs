//! The `conv_index` answer of `POST /usage_data`: the per-feature numbers GitLab stores, and
//! their exact JSON shape.

use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};

use strum::{EnumCount, VariantArray};

use super::{Feature, FeatureScores};

/// The three numbers GitLab stores per feature.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FeatureIndex {
    /// `leader_X`.
    pub leader: f64,
    /// `instance_X`.
    pub instance: f64,
    /// `percentage_X`, 0–100.
    pub percentage: f64,
}

/// The `conv_index` object of a `POST /usage_data` answer. Serialises to exactly 31 keys:
/// `usage_data_id`, then `leader_X`, `instance_X`, `percentage_X` for each feature in protocol
/// order; every float is finite and ≥ 0.
#[derive(Debug, Clone, PartialEq)]
pub struct ConvIndex {
    /// The stored submission's id (must be > 0 for the client to accept it).
    pub usage_data_id: i64,
    /// Per-feature numbers, in protocol order ([`Feature::all`]).
    pub features: [FeatureIndex; Feature::COUNT],
}

impl ConvIndex {
    /// The numbers for one feature.
    pub fn feature(&self, feature: Feature) -> FeatureIndex {
        self.features[feature.index()]
    }

    /// As a JSON object, e.g. to embed as `{"conv_index": …}`.
    pub fn to_json_map(&self) -> serde_json::Map<String, serde_json::Value> {
        let mut map = ConvScores(self.features).to_json_map();
        map.insert("usage_data_id".to_owned(), self.usage_data_id.into());
        map
    }
}

fn json_number(value: f64) -> serde_json::Value {
    // Values are sanitised in conv_index; 0 is the fallback should that ever change.
    serde_json::Number::from_f64(value).map_or_else(|| 0.0.into(), serde_json::Value::Number)
}

impl Serialize for ConvIndex {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(1 + 3 * Feature::COUNT))?;
        map.serialize_entry("usage_data_id", &self.usage_data_id)?;
        for feature in Feature::all() {
            let numbers = self.feature(feature);
            map.serialize_entry(&format!("leader_{feature}"), &numbers.leader)?;
            map.serialize_entry(&format!("instance_{feature}"), &numbers.instance)?;
            map.serialize_entry(&format!("percentage_{feature}"), &numbers.percentage)?;
        }
        map.end()
    }
}

/// A number GitLab will accept: finite and ≥ 0, else 0.
fn sanitize(value: f64) -> f64 {
    if value.is_finite() && value > 0.0 {
        value
    } else {
        0.0
    }
}

/// The 30 numbers of a `conv_index` without its `usage_data_id`: what is stored beside a
/// submission and answered again, unchanged, when the payload is re-delivered.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ConvScores(pub [FeatureIndex; Feature::COUNT]);

impl ConvScores {
    /// As a JSON object keyed `leader_X`, `instance_X`, `percentage_X`.
    pub fn to_json_map(&self) -> serde_json::Map<String, serde_json::Value> {
        let mut map = serde_json::Map::new();
        for feature in Feature::all() {
            let numbers = self.0[feature.index()];
            for (prefix, value) in [
                ("leader", numbers.leader),
                ("instance", numbers.instance),
                ("percentage", numbers.percentage),
            ] {
                map.insert(format!("{prefix}_{feature}"), json_number(value));
            }
        }
        map
    }
}

/// The per-feature numbers of the answer, from an instance's scores and the cached leaders.
///
/// Per feature: `instance_X` is the instance score or `0`; `leader_X` is the cached leader,
/// or the instance's own score when there were too few peers; `percentage_X` is
/// `min(100, 100 × instance_X / leader_X)`, or `0` when the leader is `0`.
pub fn conv_scores(instance: &FeatureScores, leaders: &FeatureScores) -> ConvScores {
    // One entry per feature, in protocol (declaration) order.
    ConvScores(std::array::from_fn(|i| {
        let feature = Feature::VARIANTS[i];
        let mine = sanitize(instance.get(feature).unwrap_or(0.0));
        let leader = sanitize(leaders.get(feature).unwrap_or(mine));
        let percentage = if leader > 0.0 {
            sanitize((100.0 * mine / leader).min(100.0))
        } else {
            0.0
        };
        FeatureIndex {
            leader,
            instance: mine,
            percentage,
        }
    }))
}

/// Builds the `conv_index` answer from an instance's scores and the cached leaders (see
/// [`conv_scores`]).
pub fn conv_index(
    usage_data_id: i64,
    instance: &FeatureScores,
    leaders: &FeatureScores,
) -> ConvIndex {
    debug_assert!(
        usage_data_id > 0,
        "GitLab rejects a non-positive usage_data_id"
    );
    ConvIndex {
        usage_data_id,
        features: conv_scores(instance, leaders).0,
    }
}
