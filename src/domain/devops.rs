//! The DevOps score (`conv_index`) returned to `POST /usage_data` (protocol.md §2.2).
//!
//! GitLab shows, per feature, how much an instance uses it compared with "leading" instances.
//! The exact formula was never published, so this module defines one (docs/devops-score.md):
//!
//! * `instance_X`: events of feature X per active user over the last 30 days, read from the
//!   payload metrics named in `assets/devops_score.toml` ([`ScoreMapping`]);
//! * `leader_X`: a high percentile of `instance_X` over other instances' latest submissions
//!   ([`leaders`]), recomputed in the background and cached by the caller;
//! * `percentage_X`: `min(100, 100 × instance_X / leader_X)`, `0` when the leader is `0`.
//!
//! Everything here is pure: the caller passes metric lookups, timestamps and the cached
//! leaders, so a stored submission can be re-scored exactly. The module depends on nothing
//! else in the crate.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::hash::BuildHasher;

use chrono::{DateTime, Utc};
use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize, Serializer};

/// The mapping shipped with the application; [`ScoreMapping::default`] parses it.
pub const DEFAULT_MAPPING_TOML: &str = include_str!("../../assets/devops_score.toml");

/// The ten features of the DevOps score, in the order GitLab lists them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Feature {
    /// `issues`
    Issues,
    /// `notes` (comments)
    Notes,
    /// `milestones`
    Milestones,
    /// `boards`
    Boards,
    /// `merge_requests`
    MergeRequests,
    /// `ci_pipelines`
    CiPipelines,
    /// `environments`
    Environments,
    /// `deployments`
    Deployments,
    /// `projects_prometheus_active`
    ProjectsPrometheusActive,
    /// `service_desk_issues`
    ServiceDeskIssues,
}

impl Feature {
    /// All features, in protocol order.
    pub const ALL: [Feature; 10] = [
        Feature::Issues,
        Feature::Notes,
        Feature::Milestones,
        Feature::Boards,
        Feature::MergeRequests,
        Feature::CiPipelines,
        Feature::Environments,
        Feature::Deployments,
        Feature::ProjectsPrometheusActive,
        Feature::ServiceDeskIssues,
    ];

    /// The name used in `conv_index` keys and in the TOML mapping.
    pub fn name(self) -> &'static str {
        match self {
            Feature::Issues => "issues",
            Feature::Notes => "notes",
            Feature::Milestones => "milestones",
            Feature::Boards => "boards",
            Feature::MergeRequests => "merge_requests",
            Feature::CiPipelines => "ci_pipelines",
            Feature::Environments => "environments",
            Feature::Deployments => "deployments",
            Feature::ProjectsPrometheusActive => "projects_prometheus_active",
            Feature::ServiceDeskIssues => "service_desk_issues",
        }
    }

    /// The feature with this name, if any.
    pub fn from_name(name: &str) -> Option<Feature> {
        Feature::ALL
            .into_iter()
            .find(|feature| feature.name() == name)
    }

    fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Feature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How a source metric turns into "events over the score window".
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SourceKind {
    /// The metric counts events over the last `days` days (e.g. 28-day metrics).
    Window {
        /// Length of the metric's own window.
        days: f64,
    },
    /// An all-time counter: events are its increase since an earlier submission.
    Cumulative,
    /// A current level (not events), used as is.
    Gauge,
}

impl SourceKind {
    /// The TOML spelling: `window`, `cumulative` or `gauge`.
    pub fn name(self) -> &'static str {
        match self {
            SourceKind::Window { .. } => "window",
            SourceKind::Cumulative => "cumulative",
            SourceKind::Gauge => "gauge",
        }
    }
}

/// One payload metric that can feed a feature.
#[derive(Debug, Clone, PartialEq)]
pub struct Source {
    /// Flattened key path, e.g. `counts.issues`.
    pub key: String,
    /// How to read it.
    pub kind: SourceKind,
}

/// Where the "active users" denominator comes from.
#[derive(Debug, Clone, PartialEq)]
pub struct UserCountRule {
    /// Metric keys tried in order after the caller's own `active_users`.
    pub keys: Vec<String>,
    /// Floor applied to the denominator (guards division by tiny numbers).
    pub minimum: f64,
}

/// Which earlier submission may turn an all-time counter into a rate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CumulativeRule {
    /// Fewest days between the two submissions.
    pub min_elapsed_days: f64,
    /// Preferred distance; [`pick_previous`] takes the candidate closest to it.
    pub target_elapsed_days: f64,
    /// Most days between the two submissions.
    pub max_elapsed_days: f64,
}

/// How leaders are derived from other instances' scores.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LeaderPolicy {
    /// Percentile (0–100) of instance scores that defines the leader.
    pub percentile: f64,
    /// Fewest instances with a valid value before a leader exists at all.
    pub min_peers: usize,
    /// Only instances whose latest submission is this recent take part (applied by the
    /// caller when it selects submissions).
    pub lookback_days: u32,
}

/// The validated contents of `devops_score.toml`.
#[derive(Debug, Clone, PartialEq)]
pub struct ScoreMapping {
    /// Bumped whenever a change alters scores; store it next to computed scores.
    pub formula_version: u32,
    /// Scores are events per active user over this many days.
    pub window_days: f64,
    /// The denominator.
    pub users: UserCountRule,
    /// Rules for all-time counters.
    pub cumulative: CumulativeRule,
    /// Rules for leaders.
    pub leaders: LeaderPolicy,
    sources: [Vec<Source>; 10],
}

/// Why a mapping was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MappingError {
    /// Not valid TOML, or a field has the wrong type or an unknown name.
    #[error("DevOps score mapping is not valid TOML: {0}")]
    Toml(String),
    /// Valid TOML whose contents make no sense.
    #[error("DevOps score mapping is invalid: {0}")]
    Invalid(String),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMapping {
    formula_version: u32,
    window_days: f64,
    users: RawUsers,
    cumulative: RawCumulative,
    leaders: RawLeaders,
    features: BTreeMap<String, RawFeature>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUsers {
    keys: Vec<String>,
    minimum: f64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCumulative {
    min_elapsed_days: f64,
    target_elapsed_days: f64,
    max_elapsed_days: f64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLeaders {
    percentile: f64,
    min_peers: usize,
    lookback_days: u32,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFeature {
    sources: Vec<RawSource>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSource {
    key: String,
    kind: String,
    days: Option<f64>,
}

fn positive(value: f64) -> bool {
    value.is_finite() && value > 0.0
}

impl ScoreMapping {
    /// Parses and validates a mapping. Every feature must be present with at least one
    /// source; unknown features, fields or kinds are errors (a typo must not silently zero a
    /// score).
    pub fn from_toml(text: &str) -> Result<ScoreMapping, MappingError> {
        let raw: RawMapping =
            toml::from_str(text).map_err(|e| MappingError::Toml(e.message().to_owned()))?;
        let invalid = |message: String| Err(MappingError::Invalid(message));

        if !positive(raw.window_days) {
            return invalid(format!("window_days must be > 0, not {}", raw.window_days));
        }
        if !(raw.users.minimum.is_finite() && raw.users.minimum >= 0.0) {
            return invalid(format!(
                "users.minimum must be >= 0, not {}",
                raw.users.minimum
            ));
        }
        if raw.users.keys.iter().any(|key| key.trim().is_empty()) {
            return invalid("users.keys must not contain empty keys".to_owned());
        }
        let c = &raw.cumulative;
        if !(positive(c.min_elapsed_days)
            && c.min_elapsed_days <= c.target_elapsed_days
            && c.target_elapsed_days <= c.max_elapsed_days
            && c.max_elapsed_days.is_finite())
        {
            return invalid(format!(
                "cumulative needs 0 < min_elapsed_days <= target_elapsed_days <= max_elapsed_days, \
                 got {} / {} / {}",
                c.min_elapsed_days, c.target_elapsed_days, c.max_elapsed_days
            ));
        }
        let l = &raw.leaders;
        if !(0.0..=100.0).contains(&l.percentile) {
            return invalid(format!(
                "leaders.percentile must be within 0..=100, not {}",
                l.percentile
            ));
        }
        if l.min_peers == 0 {
            return invalid("leaders.min_peers must be at least 1".to_owned());
        }
        if l.lookback_days == 0 {
            return invalid("leaders.lookback_days must be at least 1".to_owned());
        }

        let mut sources: [Vec<Source>; 10] = Default::default();
        for (name, feature) in &raw.features {
            let Some(known) = Feature::from_name(name) else {
                return invalid(format!("unknown feature `{name}`"));
            };
            if feature.sources.is_empty() {
                return invalid(format!("feature `{name}` has no sources"));
            }
            for source in &feature.sources {
                if source.key.trim().is_empty() {
                    return invalid(format!("feature `{name}` has a source with an empty key"));
                }
                let kind = match (source.kind.as_str(), source.days) {
                    ("window", Some(days)) if positive(days) => SourceKind::Window { days },
                    ("window", _) => {
                        return invalid(format!(
                            "feature `{name}`: window source `{}` needs days > 0",
                            source.key
                        ))
                    }
                    ("cumulative", None) => SourceKind::Cumulative,
                    ("gauge", None) => SourceKind::Gauge,
                    ("cumulative" | "gauge", Some(_)) => {
                        return invalid(format!(
                            "feature `{name}`: `days` only applies to window sources (`{}`)",
                            source.key
                        ))
                    }
                    (other, _) => {
                        return invalid(format!(
                            "feature `{name}`: unknown kind `{other}` (expected window, \
                             cumulative or gauge)"
                        ))
                    }
                };
                sources[known.index()].push(Source {
                    key: source.key.trim().to_owned(),
                    kind,
                });
            }
        }
        if let Some(missing) = Feature::ALL
            .into_iter()
            .find(|feature| sources[feature.index()].is_empty())
        {
            return invalid(format!("feature `{missing}` is missing"));
        }

        Ok(ScoreMapping {
            formula_version: raw.formula_version,
            window_days: raw.window_days,
            users: UserCountRule {
                keys: raw.users.keys.iter().map(|k| k.trim().to_owned()).collect(),
                minimum: raw.users.minimum,
            },
            cumulative: CumulativeRule {
                min_elapsed_days: c.min_elapsed_days,
                target_elapsed_days: c.target_elapsed_days,
                max_elapsed_days: c.max_elapsed_days,
            },
            leaders: LeaderPolicy {
                percentile: l.percentile,
                min_peers: l.min_peers,
                lookback_days: l.lookback_days,
            },
            sources,
        })
    }

    /// The sources of one feature, in priority order.
    pub fn sources(&self, feature: Feature) -> &[Source] {
        &self.sources[feature.index()]
    }

    /// Every metric key the score reads (sources and user-count keys), sorted, without
    /// duplicates. Store these values with each submission ([`extract_inputs`]) so a later
    /// submission can compute deltas without re-reading the raw payload.
    pub fn referenced_keys(&self) -> Vec<&str> {
        let mut keys: Vec<&str> = self
            .sources
            .iter()
            .flatten()
            .map(|source| source.key.as_str())
            .chain(self.users.keys.iter().map(String::as_str))
            .collect();
        keys.sort_unstable();
        keys.dedup();
        keys
    }
}

impl Default for ScoreMapping {
    /// The shipped mapping (`assets/devops_score.toml`), which the tests prove valid.
    fn default() -> Self {
        ScoreMapping::from_toml(DEFAULT_MAPPING_TOML).expect("assets/devops_score.toml is valid")
    }
}

/// Read access to one submission's flattened metrics (key path → value).
///
/// Implemented for closures, so `&|key: &str| parsed.metrics.get(key)` works, and for
/// `HashMap`/`BTreeMap<String, f64>`, e.g. the stored output of [`extract_inputs`].
pub trait MetricLookup {
    /// The value at `key`, sentinels included; `None` when absent or not a number.
    fn metric(&self, key: &str) -> Option<f64>;
}

impl<F: Fn(&str) -> Option<f64>> MetricLookup for F {
    fn metric(&self, key: &str) -> Option<f64> {
        self(key)
    }
}

impl<S: BuildHasher> MetricLookup for HashMap<String, f64, S> {
    fn metric(&self, key: &str) -> Option<f64> {
        self.get(key).copied()
    }
}

impl MetricLookup for BTreeMap<String, f64> {
    fn metric(&self, key: &str) -> Option<f64> {
        self.get(key).copied()
    }
}

/// The values of [`ScoreMapping::referenced_keys`] in one submission, as sent (sentinels
/// included, so the stored record is faithful). A few dozen bytes as JSON.
pub fn extract_inputs(mapping: &ScoreMapping, metrics: &dyn MetricLookup) -> BTreeMap<String, f64> {
    mapping
        .referenced_keys()
        .into_iter()
        .filter_map(|key| {
            let value = metrics.metric(key)?;
            value.is_finite().then(|| (key.to_owned(), value))
        })
        .collect()
}

/// One submission as the score needs it.
pub struct Submission<'a> {
    /// Its flattened metrics (the full payload, or just [`extract_inputs`] for an old one).
    pub metrics: &'a dyn MetricLookup,
    /// Its `recorded_at`.
    pub recorded_at: DateTime<Utc>,
    /// Its active user count (the payload summary's `active_user_count`), if known. Invalid
    /// values (`None`, sentinels, `0`) fall through to [`UserCountRule::keys`].
    pub active_users: Option<f64>,
}

/// A value per feature. `None` means "no valid value", which is not the same as `0`: it keeps
/// the instance out of leader computations. Serialises as an object keyed by feature name
/// (`null` for `None`), suitable for storage next to a submission or in a leader cache.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct FeatureScores {
    /// Issues.
    pub issues: Option<f64>,
    /// Notes.
    pub notes: Option<f64>,
    /// Milestones.
    pub milestones: Option<f64>,
    /// Boards.
    pub boards: Option<f64>,
    /// Merge requests.
    pub merge_requests: Option<f64>,
    /// CI pipelines.
    pub ci_pipelines: Option<f64>,
    /// Environments.
    pub environments: Option<f64>,
    /// Deployments.
    pub deployments: Option<f64>,
    /// Projects with Prometheus active.
    pub projects_prometheus_active: Option<f64>,
    /// Service Desk issues.
    pub service_desk_issues: Option<f64>,
}

impl FeatureScores {
    fn slot(&mut self, feature: Feature) -> &mut Option<f64> {
        match feature {
            Feature::Issues => &mut self.issues,
            Feature::Notes => &mut self.notes,
            Feature::Milestones => &mut self.milestones,
            Feature::Boards => &mut self.boards,
            Feature::MergeRequests => &mut self.merge_requests,
            Feature::CiPipelines => &mut self.ci_pipelines,
            Feature::Environments => &mut self.environments,
            Feature::Deployments => &mut self.deployments,
            Feature::ProjectsPrometheusActive => &mut self.projects_prometheus_active,
            Feature::ServiceDeskIssues => &mut self.service_desk_issues,
        }
    }

    /// The value for `feature`.
    pub fn get(&self, feature: Feature) -> Option<f64> {
        match feature {
            Feature::Issues => self.issues,
            Feature::Notes => self.notes,
            Feature::Milestones => self.milestones,
            Feature::Boards => self.boards,
            Feature::MergeRequests => self.merge_requests,
            Feature::CiPipelines => self.ci_pipelines,
            Feature::Environments => self.environments,
            Feature::Deployments => self.deployments,
            Feature::ProjectsPrometheusActive => self.projects_prometheus_active,
            Feature::ServiceDeskIssues => self.service_desk_issues,
        }
    }

    /// Sets the value for `feature`.
    pub fn set(&mut self, feature: Feature, value: Option<f64>) {
        *self.slot(feature) = value;
    }

    /// `(feature, value)` in protocol order.
    pub fn iter(&self) -> impl Iterator<Item = (Feature, Option<f64>)> + '_ {
        Feature::ALL
            .into_iter()
            .map(|feature| (feature, self.get(feature)))
    }

    /// Number of features with a valid value.
    pub fn valid_count(&self) -> usize {
        self.iter().filter(|(_, value)| value.is_some()).count()
    }
}

/// How one feature's instance score was obtained (for logs, support and tests).
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureExplanation {
    /// The feature.
    pub feature: Feature,
    /// The source that produced the value, or `None` when no source was valid.
    pub source: Option<Source>,
    /// Events (or the gauge level) over the score window, before dividing by users.
    pub volume: Option<f64>,
    /// The resulting `instance_X`, or `None`.
    pub value: Option<f64>,
}

/// The full account of an instance score computation.
#[derive(Debug, Clone, PartialEq)]
pub struct ScoreExplanation {
    /// The denominator used (after the floor), or `None` when no user count was valid.
    pub users: Option<f64>,
    /// Days between the submission and the previous one used for cumulative sources.
    pub elapsed_days: Option<f64>,
    /// One entry per feature, in protocol order.
    pub features: Vec<FeatureExplanation>,
}

/// A measurement usable in the score: finite and not negative. All of GitLab's sentinels
/// (`-1`, `-2`, `-3`, `-1000`, and the `-1` of a failed histogram) are negative.
fn valid(value: Option<f64>) -> Option<f64> {
    value.filter(|v| v.is_finite() && *v >= 0.0)
}

fn days_between(earlier: DateTime<Utc>, later: DateTime<Utc>) -> f64 {
    (later - earlier).num_milliseconds() as f64 / 86_400_000.0
}

/// Computes `instance_X` for every feature, with the reasoning behind each value.
///
/// `previous` is an earlier submission of the same instance (see [`pick_previous`]); it is
/// only used by cumulative sources, and only when it lies within the mapping's elapsed-day
/// bounds.
pub fn explain_instance_scores(
    mapping: &ScoreMapping,
    current: &Submission<'_>,
    previous: Option<&Submission<'_>>,
) -> ScoreExplanation {
    let users = valid(current.active_users)
        .filter(|users| *users > 0.0)
        .or_else(|| {
            mapping
                .users
                .keys
                .iter()
                .find_map(|key| valid(current.metrics.metric(key)).filter(|users| *users > 0.0))
        })
        .map(|users| users.max(mapping.users.minimum));

    let rule = &mapping.cumulative;
    let previous = previous
        .map(|prev| (prev, days_between(prev.recorded_at, current.recorded_at)))
        .filter(|(_, days)| (rule.min_elapsed_days..=rule.max_elapsed_days).contains(days));

    let features = Feature::ALL
        .into_iter()
        .map(|feature| {
            let found = mapping.sources(feature).iter().find_map(|source| {
                let volume = source_volume(mapping, source, current, previous)?;
                Some((source.clone(), volume))
            });
            let (source, volume) = match found {
                Some((source, volume)) => (Some(source), Some(volume)),
                None => (None, None),
            };
            let value = match (volume, users) {
                (Some(volume), Some(users)) => valid(Some(volume / users)),
                _ => None,
            };
            FeatureExplanation {
                feature,
                source,
                volume,
                value,
            }
        })
        .collect();

    ScoreExplanation {
        users,
        elapsed_days: previous.map(|(_, days)| days),
        features,
    }
}

/// Events of one source over the score window, or `None` when the source is unusable here.
fn source_volume(
    mapping: &ScoreMapping,
    source: &Source,
    current: &Submission<'_>,
    previous: Option<(&Submission<'_>, f64)>,
) -> Option<f64> {
    let now = valid(current.metrics.metric(&source.key))?;
    let volume = match source.kind {
        SourceKind::Window { days } => now * mapping.window_days / days,
        SourceKind::Gauge => now,
        SourceKind::Cumulative => {
            let (prev, elapsed) = previous?;
            let before = valid(prev.metrics.metric(&source.key))?;
            // A counter that went down (bulk deletion, restore from backup) says nothing
            // reliable about recent activity.
            if now < before {
                return None;
            }
            (now - before) * mapping.window_days / elapsed
        }
    };
    valid(Some(volume))
}

/// Computes `instance_X` for every feature: events per active user over the score window.
/// Features without a valid source value are `None` (reported as `0`, left out of leaders).
pub fn instance_scores(
    mapping: &ScoreMapping,
    current: &Submission<'_>,
    previous: Option<&Submission<'_>>,
) -> FeatureScores {
    let explanation = explain_instance_scores(mapping, current, previous);
    let mut scores = FeatureScores::default();
    for feature in explanation.features {
        scores.set(feature.feature, feature.value);
    }
    scores
}

/// Chooses which earlier submission of the same instance serves cumulative sources: among
/// `candidates` (their `recorded_at`), one between `min_elapsed_days` and `max_elapsed_days`
/// before `current`, closest to `target_elapsed_days`; on a tie, the more recent. Returns its
/// index in `candidates`.
pub fn pick_previous(
    mapping: &ScoreMapping,
    current: DateTime<Utc>,
    candidates: &[DateTime<Utc>],
) -> Option<usize> {
    let rule = &mapping.cumulative;
    candidates
        .iter()
        .enumerate()
        .map(|(index, at)| (index, days_between(*at, current)))
        .filter(|(_, days)| (rule.min_elapsed_days..=rule.max_elapsed_days).contains(days))
        .min_by(|(_, a), (_, b)| {
            let distance = |days: f64| (days - rule.target_elapsed_days).abs();
            distance(*a)
                .total_cmp(&distance(*b))
                .then_with(|| a.total_cmp(b))
        })
        .map(|(index, _)| index)
}

/// Computes `leader_X` for every feature from the scores of many instances.
///
/// Pass one entry per instance (its latest submission within `policy.lookback_days`); the
/// caller decides whether the requesting instance is among them (at the 90th percentile one
/// entry moves the leader by at most one rank). Per feature, only valid values count; with
/// fewer than `policy.min_peers` of them the leader is `None`, and [`conv_index`] then uses
/// the instance's own value. The percentile interpolates linearly between the two nearest
/// ranks (the common "type 7" definition), so it is deterministic and order-independent.
pub fn leaders(per_instance: &[FeatureScores], policy: &LeaderPolicy) -> FeatureScores {
    let mut result = FeatureScores::default();
    let mut values = Vec::with_capacity(per_instance.len());
    for feature in Feature::ALL {
        values.clear();
        values.extend(
            per_instance
                .iter()
                .filter_map(|scores| valid(scores.get(feature))),
        );
        if values.len() < policy.min_peers.max(1) {
            continue;
        }
        values.sort_unstable_by(f64::total_cmp);
        result.set(feature, Some(percentile(&values, policy.percentile)));
    }
    result
}

/// Linear-interpolation percentile of sorted, non-empty `values`; `p` in 0..=100.
fn percentile(values: &[f64], p: f64) -> f64 {
    let rank = (p.clamp(0.0, 100.0) / 100.0) * (values.len() - 1) as f64;
    let low = rank.floor() as usize;
    let high = rank.ceil() as usize;
    let fraction = rank - low as f64;
    values[low] + (values[high] - values[low]) * fraction
}

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
    /// Per-feature numbers, in [`Feature::ALL`] order.
    pub features: [FeatureIndex; 10],
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
        let mut map = serializer.serialize_map(Some(1 + 3 * Feature::ALL.len()))?;
        map.serialize_entry("usage_data_id", &self.usage_data_id)?;
        for feature in Feature::ALL {
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
pub struct ConvScores(pub [FeatureIndex; 10]);

impl ConvScores {
    /// As a JSON object keyed `leader_X`, `instance_X`, `percentage_X`.
    pub fn to_json_map(&self) -> serde_json::Map<String, serde_json::Value> {
        let mut map = serde_json::Map::new();
        for feature in Feature::ALL {
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
    ConvScores(Feature::ALL.map(|feature| {
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

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(day: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, day, 12, 0, 0).unwrap()
    }

    fn map(pairs: &[(&str, f64)]) -> BTreeMap<String, f64> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect()
    }

    fn submission<'a>(
        metrics: &'a BTreeMap<String, f64>,
        day: u32,
        users: Option<f64>,
    ) -> Submission<'a> {
        Submission {
            metrics,
            recorded_at: at(day),
            active_users: users,
        }
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn default_mapping_is_valid_and_complete() {
        let mapping = ScoreMapping::default();
        assert_eq!(mapping.formula_version, 1);
        assert_eq!(mapping.window_days, 30.0);
        for feature in Feature::ALL {
            assert!(!mapping.sources(feature).is_empty(), "{feature}");
        }
        assert_eq!(
            mapping.sources(Feature::Deployments)[0],
            Source {
                key: "counts_monthly.deployments".to_owned(),
                kind: SourceKind::Window { days: 28.0 }
            }
        );
        let keys = mapping.referenced_keys();
        assert!(keys.contains(&"counts.issues"));
        assert!(keys.contains(&"active_user_count"));
        assert!(keys.windows(2).all(|pair| pair[0] < pair[1]));
        assert_eq!(mapping.leaders.percentile, 90.0);
        assert_eq!(mapping.leaders.min_peers, 5);
    }

    #[test]
    fn default_mapping_keys_exist_in_real_payloads() {
        // Every source key is either in the 18.9 index or in the 13.9 sample (older clients);
        // checked through the fixtures so a typo cannot slip in.
        let sample: serde_json::Value = serde_json::from_slice(include_bytes!(
            "../../tests/fixtures/payload_13.9.0-pre.json"
        ))
        .unwrap();
        let generated: serde_json::Value = serde_json::from_slice(include_bytes!(
            "../../tests/fixtures/payload_18.9.0_generated.json"
        ))
        .unwrap();
        let has = |value: &serde_json::Value, key: &str| {
            key.split('.')
                .try_fold(value, |node, part| node.get(part))
                .is_some()
        };
        for key in ScoreMapping::default().referenced_keys() {
            assert!(
                has(&sample, key) || has(&generated, key),
                "`{key}` is in no known payload"
            );
        }
    }

    #[test]
    fn mapping_errors_name_the_problem() {
        let base = DEFAULT_MAPPING_TOML;
        let err = |text: &str| ScoreMapping::from_toml(text).unwrap_err().to_string();

        assert!(err("not = [toml").starts_with("DevOps score mapping is not valid TOML"));
        assert!(err(&base.replace("[features.boards]", "[features.bords]"))
            .contains("unknown feature `bords`"));
        assert!(err(&base.replace("kind = \"gauge\"", "kind = \"level\""))
            .contains("unknown kind `level`"));
        assert!(err(&base.replace(
            "{ key = \"counts_monthly.deployments\", kind = \"window\", days = 28 }",
            "{ key = \"counts_monthly.deployments\", kind = \"window\" }"
        ))
        .contains("needs days > 0"));
        assert!(err(&base.replace("percentile = 90", "percentile = 190"))
            .contains("leaders.percentile"));
        assert!(err(&base.replace("min_peers = 5", "min_peers = 0")).contains("min_peers"));
        assert!(err(&base.replace("window_days = 30", "window_days = 0")).contains("window_days"));
        assert!(
            err(&base.replace("max_elapsed_days = 90", "max_elapsed_days = 3"))
                .contains("cumulative needs")
        );
        // A typo in a field name is caught, not ignored.
        assert!(err(&base.replace("min_peers = 5", "min_peer = 5"))
            .starts_with("DevOps score mapping is not valid TOML"));
        // A feature removed from the file is reported.
        let without_boards = base.replace(
            "[features.boards]\nsources = [\n    { key = \"counts.boards\", kind = \"cumulative\" },\n]",
            "",
        );
        assert_ne!(without_boards, base);
        assert!(err(&without_boards).contains("feature `boards` is missing"));
    }

    #[test]
    fn window_sources_scale_to_thirty_days_per_user() {
        let mapping = ScoreMapping::default();
        let metrics = map(&[
            ("counts_monthly.deployments", 280.0),
            ("counts_monthly.ci_internal_pipelines", 56.0),
            (
                "usage_activity_by_stage_monthly.plan.service_desk_issues",
                0.0,
            ),
        ]);
        let scores = instance_scores(&mapping, &submission(&metrics, 20, Some(10.0)), None);
        // 280 deployments in 28 days → 300 in 30 days → 30 per user.
        assert!(close(scores.deployments.unwrap(), 30.0));
        assert!(close(scores.ci_pipelines.unwrap(), 6.0));
        // A measured zero is valid (and takes part in leaders); missing features are None.
        assert_eq!(scores.service_desk_issues, Some(0.0));
        assert_eq!(scores.issues, None);
        assert_eq!(scores.valid_count(), 3);
    }

    #[test]
    fn cumulative_sources_use_the_previous_submission() {
        let mapping = ScoreMapping::default();
        let before = map(&[("counts.issues", 1_000.0), ("counts.notes", 500.0)]);
        let now = map(&[("counts.issues", 1_140.0), ("counts.notes", 400.0)]);
        let current = submission(&now, 15, Some(20.0));
        let previous = submission(&before, 1, None);
        let explained = explain_instance_scores(&mapping, &current, Some(&previous));
        assert_eq!(explained.elapsed_days, Some(14.0));
        assert_eq!(explained.users, Some(20.0));
        // 140 issues in 14 days → 300 per 30 days → 15 per user.
        let scores = instance_scores(&mapping, &current, Some(&previous));
        assert!(close(scores.issues.unwrap(), 15.0));
        // A counter that went down is not evidence of activity.
        assert_eq!(scores.notes, None);
        // Without a previous submission, cumulative features have no value.
        assert_eq!(instance_scores(&mapping, &current, None).issues, None);
    }

    #[test]
    fn previous_submission_must_be_in_range() {
        let mapping = ScoreMapping::default();
        let before = map(&[("counts.issues", 1_000.0)]);
        let now = map(&[("counts.issues", 1_100.0)]);
        // A retry of the same week (0 days) and a two-day-old submission are too close.
        for day in [20, 18] {
            let scores = instance_scores(
                &mapping,
                &submission(&now, 20, Some(1.0)),
                Some(&submission(&before, day, None)),
            );
            assert_eq!(scores.issues, None, "previous on day {day}");
        }
        // More than 90 days apart is too far.
        let old = Submission {
            metrics: &before,
            recorded_at: at(20) - chrono::Duration::days(120),
            active_users: None,
        };
        let scores = instance_scores(&mapping, &submission(&now, 20, Some(1.0)), Some(&old));
        assert_eq!(scores.issues, None);
    }

    #[test]
    fn window_source_wins_over_cumulative_fallback() {
        let mapping = ScoreMapping::default();
        let before = map(&[("counts.deployments", 0.0)]);
        let now = map(&[
            ("counts_monthly.deployments", 28.0),
            ("counts.deployments", 9_000.0),
        ]);
        let current = submission(&now, 29, Some(1.0));
        let previous = submission(&before, 1, None);
        let explained = explain_instance_scores(&mapping, &current, Some(&previous));
        let deployments = &explained.features[Feature::Deployments.index()];
        assert_eq!(
            deployments.source.as_ref().unwrap().key,
            "counts_monthly.deployments"
        );
        assert!(close(deployments.value.unwrap(), 30.0));
        // When the window metric failed (-1), the cumulative counter takes over.
        let failed = map(&[
            ("counts_monthly.deployments", -1.0),
            ("counts.deployments", 2_800.0),
        ]);
        let current = submission(&failed, 29, Some(100.0));
        let scores = instance_scores(&mapping, &current, Some(&previous));
        assert!(close(
            scores.deployments.unwrap(),
            2_800.0 * 30.0 / 28.0 / 100.0
        ));
    }

    #[test]
    fn special_values_are_excluded() {
        let mapping = ScoreMapping::default();
        let before = map(&[("counts.issues", -1.0), ("counts.boards", 10.0)]);
        let now = map(&[
            ("counts.issues", 50.0),
            ("counts.boards", -1000.0),
            ("counts.milestones", -3.0),
            ("counts_monthly.deployments", -2.0),
            ("counts_monthly.ci_internal_pipelines", f64::NAN),
            ("counts.projects_prometheus_active", -1.0),
            (
                "usage_activity_by_stage_monthly.plan.service_desk_issues",
                f64::INFINITY,
            ),
        ]);
        let scores = instance_scores(
            &mapping,
            &submission(&now, 29, Some(5.0)),
            Some(&submission(&before, 1, None)),
        );
        assert_eq!(scores, FeatureScores::default());
        let answer = conv_index(1, &scores, &FeatureScores::default());
        for feature in Feature::ALL {
            assert_eq!(
                answer.feature(feature),
                FeatureIndex {
                    leader: 0.0,
                    instance: 0.0,
                    percentage: 0.0
                }
            );
        }
    }

    #[test]
    fn user_count_falls_back_and_is_floored() {
        let mapping = ScoreMapping::default();
        let metrics = map(&[
            ("counts_monthly.deployments", 28.0),
            ("active_user_count", -1.0),
            ("usage_activity_by_stage_monthly.manage.events", 0.0),
            ("historical_max_users", 3.0),
        ]);
        // The caller's value is a sentinel, the first key failed, the second is 0: use the
        // third.
        let explained =
            explain_instance_scores(&mapping, &submission(&metrics, 29, Some(-1.0)), None);
        assert_eq!(explained.users, Some(3.0));
        assert!(close(
            explained.features[Feature::Deployments.index()]
                .value
                .unwrap(),
            10.0
        ));
        // A fractional count is floored to `minimum` (1).
        let small = map(&[("counts_monthly.deployments", 28.0)]);
        let explained = explain_instance_scores(&mapping, &submission(&small, 29, Some(0.5)), None);
        assert_eq!(explained.users, Some(1.0));
        // No user count at all: nothing can be per user.
        let scores = instance_scores(&mapping, &submission(&small, 29, None), None);
        assert_eq!(scores, FeatureScores::default());
    }

    #[test]
    fn pick_previous_prefers_four_weeks_and_respects_bounds() {
        let mapping = ScoreMapping::default();
        let now = Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).unwrap();
        let days_ago = |d: i64| now - chrono::Duration::days(d);
        let candidates = [
            days_ago(0),
            days_ago(7),
            days_ago(14),
            days_ago(21),
            days_ago(28),
            days_ago(35),
        ];
        assert_eq!(pick_previous(&mapping, now, &candidates), Some(4));
        assert_eq!(pick_previous(&mapping, now, &candidates[..3]), Some(2));
        assert_eq!(
            pick_previous(&mapping, now, &[days_ago(0), days_ago(2)]),
            None
        );
        assert_eq!(pick_previous(&mapping, now, &[days_ago(91)]), None);
        assert_eq!(pick_previous(&mapping, now, &[]), None);
        // Equal distance from the target: the more recent one.
        assert_eq!(
            pick_previous(&mapping, now, &[days_ago(30), days_ago(26)]),
            Some(1)
        );
    }

    #[test]
    fn leaders_take_the_percentile_of_valid_peers() {
        let policy = LeaderPolicy {
            percentile: 90.0,
            min_peers: 5,
            lookback_days: 28,
        };
        let mut peers = Vec::new();
        for i in 0..=10 {
            peers.push(FeatureScores {
                issues: Some(f64::from(i)),
                // Only three instances report boards: too few for a leader.
                boards: (i < 3).then_some(5.0),
                // Invalid values do not count as peers.
                notes: Some(if i < 6 { -1.0 } else { f64::from(i) }),
                ..FeatureScores::default()
            });
        }
        let result = leaders(&peers, &policy);
        // 0..=10, 90th percentile by linear interpolation = 9.
        assert!(close(result.issues.unwrap(), 9.0));
        assert_eq!(result.boards, None);
        // notes: 6, 7, 8, 9, 10 → rank 3.6 → 9.6.
        assert!(close(result.notes.unwrap(), 9.6));
        assert_eq!(result.milestones, None);
        // Order of the input does not matter.
        peers.reverse();
        assert_eq!(leaders(&peers, &policy), result);
        assert_eq!(leaders(&[], &policy), FeatureScores::default());
    }

    #[test]
    fn percentile_edges() {
        assert_eq!(percentile(&[4.0], 90.0), 4.0);
        assert_eq!(percentile(&[1.0, 2.0], 0.0), 1.0);
        assert_eq!(percentile(&[1.0, 2.0], 100.0), 2.0);
        assert!(close(percentile(&[1.0, 2.0], 50.0), 1.5));
    }

    #[test]
    fn conv_index_has_exactly_the_protocol_keys() {
        let instance = FeatureScores {
            issues: Some(2.0),
            ..FeatureScores::default()
        };
        let answer = conv_index(42, &instance, &FeatureScores::default());
        let json = serde_json::to_value(&answer).unwrap();
        let object = json.as_object().unwrap();
        assert_eq!(object.len(), 31);
        assert_eq!(object["usage_data_id"], 42);
        for feature in Feature::ALL {
            for prefix in ["leader", "instance", "percentage"] {
                let value = &object[&format!("{prefix}_{feature}")];
                let number = value
                    .as_f64()
                    .unwrap_or_else(|| panic!("{prefix}_{feature}: {value}"));
                assert!(number.is_finite() && number >= 0.0);
            }
        }
        assert_eq!(serde_json::Value::Object(answer.to_json_map()), json);
        // Serialised order: id first, then per feature in protocol order.
        let text = serde_json::to_string(&answer).unwrap();
        assert!(text.starts_with(r#"{"usage_data_id":42,"leader_issues":2.0,"instance_issues":2.0,"percentage_issues":100.0,"leader_notes":0.0"#), "{text}");
    }

    #[test]
    fn percentages_are_capped_and_never_nan() {
        let mut instance = FeatureScores::default();
        let mut leader = FeatureScores::default();
        instance.issues = Some(50.0);
        leader.issues = Some(10.0);
        instance.notes = Some(5.0);
        leader.notes = Some(10.0);
        instance.boards = Some(3.0);
        leader.boards = Some(0.0);
        instance.milestones = Some(f64::NAN);
        leader.milestones = Some(f64::INFINITY);
        instance.merge_requests = Some(-4.0);
        leader.merge_requests = Some(2.0);
        let answer = conv_index(7, &instance, &leader);
        assert_eq!(answer.feature(Feature::Issues).percentage, 100.0);
        assert_eq!(answer.feature(Feature::Notes).percentage, 50.0);
        assert_eq!(answer.feature(Feature::Boards).percentage, 0.0);
        assert_eq!(
            answer.feature(Feature::Milestones),
            FeatureIndex {
                leader: 0.0,
                instance: 0.0,
                percentage: 0.0
            }
        );
        assert_eq!(answer.feature(Feature::MergeRequests).instance, 0.0);
        assert_eq!(answer.feature(Feature::MergeRequests).percentage, 0.0);
        for numbers in answer.features {
            for value in [numbers.leader, numbers.instance, numbers.percentage] {
                assert!(value.is_finite() && value >= 0.0);
            }
            assert!(numbers.percentage <= 100.0);
        }
    }

    #[test]
    fn too_few_peers_means_the_instance_leads_itself() {
        let instance = FeatureScores {
            issues: Some(0.25),
            ..FeatureScores::default()
        };
        let answer = conv_index(1, &instance, &FeatureScores::default());
        let issues = answer.feature(Feature::Issues);
        assert_eq!(
            (issues.leader, issues.instance, issues.percentage),
            (0.25, 0.25, 100.0)
        );
    }

    #[test]
    fn feature_scores_round_trip_as_json() {
        let scores = FeatureScores {
            deployments: Some(1.5),
            ..FeatureScores::default()
        };
        let text = serde_json::to_string(&scores).unwrap();
        assert!(text.contains(r#""deployments":1.5"#));
        assert!(text.contains(r#""issues":null"#));
        let back: FeatureScores = serde_json::from_str(&text).unwrap();
        assert_eq!(back, scores);
        for feature in Feature::ALL {
            assert_eq!(Feature::from_name(feature.name()), Some(feature));
        }
        assert_eq!(Feature::from_name("nope"), None);
    }

    #[test]
    fn extract_inputs_keeps_only_referenced_keys_as_sent() {
        let mapping = ScoreMapping::default();
        let metrics = map(&[
            ("counts.issues", 5.0),
            ("counts.boards", -1.0),
            ("counts.unrelated", 9.0),
            ("active_user_count", 3.0),
        ]);
        let inputs = extract_inputs(&mapping, &metrics);
        assert_eq!(
            inputs,
            map(&[
                ("active_user_count", 3.0),
                ("counts.boards", -1.0),
                ("counts.issues", 5.0)
            ])
        );
    }

    #[test]
    fn closures_are_lookups() {
        let mapping = ScoreMapping::default();
        let lookup = |key: &str| (key == "counts_monthly.deployments").then_some(56.0);
        let current = Submission {
            metrics: &lookup,
            recorded_at: at(1),
            active_users: Some(2.0),
        };
        let scores = instance_scores(&mapping, &current, None);
        assert!(close(scores.deployments.unwrap(), 30.0));
    }

    #[test]
    fn worked_example_from_the_docs() {
        // docs/devops-score.md, "Worked example".
        let mapping = ScoreMapping::default();
        let before = map(&[("counts.issues", 5_000.0)]);
        let now = map(&[
            ("counts.issues", 5_420.0),
            ("counts_monthly.deployments", 112.0),
            ("counts.notes", -1.0),
        ]);
        let current = Submission {
            metrics: &now,
            recorded_at: Utc.with_ymd_and_hms(2026, 3, 2, 9, 0, 0).unwrap(),
            active_users: Some(40.0),
        };
        let previous = Submission {
            metrics: &before,
            recorded_at: Utc.with_ymd_and_hms(2026, 2, 2, 9, 0, 0).unwrap(),
            active_users: Some(38.0),
        };
        let scores = instance_scores(&mapping, &current, Some(&previous));
        assert!(close(scores.issues.unwrap(), 11.25));
        assert!(close(scores.deployments.unwrap(), 3.0));
        assert_eq!(scores.notes, None);
        let cached = FeatureScores {
            issues: Some(15.0),
            deployments: Some(2.5),
            ..FeatureScores::default()
        };
        let answer = conv_index(9, &scores, &cached);
        assert!(close(answer.feature(Feature::Issues).percentage, 75.0));
        assert_eq!(answer.feature(Feature::Deployments).percentage, 100.0);
        assert_eq!(answer.feature(Feature::Notes).instance, 0.0);
    }

    #[test]
    fn generated_weekly_series_scores_from_deltas() {
        // Five weekly submissions of one instance (`gen_payload.py --seed 3 --minimal
        // --uuid-pool 1 --count 5 --special-rate 0`): all-time counters grow between them.
        let series: Vec<serde_json::Value> =
            include_str!("../../tests/fixtures/series_18.9.0_minimal.ndjson")
                .lines()
                .map(|line| serde_json::from_str(line).unwrap())
                .collect();
        assert_eq!(series.len(), 5);
        let lookup = |payload: &serde_json::Value, key: &str| {
            payload
                .pointer(&format!("/{}", key.replace('.', "/")))
                .and_then(serde_json::Value::as_f64)
        };
        let recorded_at = |payload: &serde_json::Value| {
            DateTime::parse_from_rfc3339(payload["recorded_at"].as_str().unwrap())
                .unwrap()
                .with_timezone(&Utc)
        };
        let mapping = ScoreMapping::default();
        let last = &series[4];
        let earlier: Vec<DateTime<Utc>> = series[..4].iter().map(recorded_at).collect();
        // Four weeks back is the preferred distance.
        let chosen = pick_previous(&mapping, recorded_at(last), &earlier).unwrap();
        assert_eq!(chosen, 0);
        let previous_payload = &series[chosen];
        let current_lookup = |key: &str| lookup(last, key);
        let previous_lookup = |key: &str| lookup(previous_payload, key);
        let current = Submission {
            metrics: &current_lookup,
            recorded_at: recorded_at(last),
            active_users: lookup(last, "active_user_count"),
        };
        let previous = Submission {
            metrics: &previous_lookup,
            recorded_at: recorded_at(previous_payload),
            active_users: None,
        };
        let scores = instance_scores(&mapping, &current, Some(&previous));
        let users = lookup(last, "active_user_count").unwrap();
        let delta = |key: &str| lookup(last, key).unwrap() - lookup(previous_payload, key).unwrap();
        // 28 days apart: the increase × 30/28 per user.
        assert!(close(
            scores.issues.unwrap(),
            delta("counts.issues") * 30.0 / 28.0 / users
        ));
        assert!(close(
            scores.merge_requests.unwrap(),
            delta("counts.merge_requests") * 30.0 / 28.0 / users
        ));
        // Window metrics come from the current payload alone.
        assert!(close(
            scores.deployments.unwrap(),
            lookup(last, "counts_monthly.deployments").unwrap() * 30.0 / 28.0 / users
        ));
        // Optional-category metrics are absent from minimal payloads; the removed Prometheus
        // metric is absent from every 18.9 payload.
        assert_eq!(scores.notes, None);
        assert_eq!(scores.boards, None);
        assert_eq!(scores.projects_prometheus_active, None);
        // The stored inputs of the earlier submission are enough to score the later one.
        let stored = extract_inputs(&mapping, &previous_lookup);
        let from_stored = Submission {
            metrics: &stored,
            recorded_at: recorded_at(previous_payload),
            active_users: None,
        };
        assert_eq!(
            instance_scores(&mapping, &current, Some(&from_stored)),
            scores
        );
    }

    #[test]
    fn many_instances_produce_well_formed_answers() {
        // Two weekly submissions of each of 20 instances: all 30 numbers well-formed.
        let mapping = ScoreMapping::default();
        let mut peers = Vec::new();
        for i in 1..=20 {
            let scale = f64::from(i);
            let before = map(&[
                ("counts.issues", 100.0 * scale),
                ("counts.notes", 1_000.0 * scale),
                ("counts.merge_requests", 50.0 * scale),
            ]);
            let now = map(&[
                ("counts.issues", 110.0 * scale),
                ("counts.notes", 1_200.0 * scale),
                ("counts.merge_requests", 57.0 * scale),
                ("counts_monthly.deployments", 4.0 * scale),
                ("active_user_count", 10.0),
            ]);
            let previous = submission(&before, 1, None);
            let current = submission(&now, 8, None);
            peers.push(instance_scores(&mapping, &current, Some(&previous)));
        }
        let top = leaders(&peers, &mapping.leaders);
        assert!(top.issues.unwrap() > 0.0);
        assert_eq!(top.boards, None);
        for (id, scores) in (1..).zip(&peers) {
            let answer = serde_json::to_value(conv_index(id, scores, &top)).unwrap();
            let object = answer.as_object().unwrap();
            assert_eq!(object.len(), 31);
            assert!(object
                .iter()
                .filter(|(key, _)| *key != "usage_data_id")
                .all(|(_, v)| v
                    .as_f64()
                    .is_some_and(|x| x.is_finite() && (0.0..=f64::MAX).contains(&x))));
            assert!(object["percentage_issues"].as_f64().unwrap() <= 100.0);
        }
    }
}
