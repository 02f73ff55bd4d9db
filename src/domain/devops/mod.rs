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
use std::hash::BuildHasher;
use strum::EnumCount;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The mapping shipped with the application; [`ScoreMapping::default`] parses it.
pub const DEFAULT_MAPPING_TOML: &str = include_str!("../../../assets/devops_score.toml");

/// The ten features of the DevOps score, in the order GitLab lists them. Names (snake case,
/// as in `conv_index` keys and the TOML mapping) and the list come from strum's derives.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    strum::VariantArray,
    strum::EnumCount,
    strum::EnumString,
    strum::IntoStaticStr,
    strum::Display,
)]
#[strum(serialize_all = "snake_case")]
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
    /// All features, in protocol order (declaration order).
    pub fn all() -> impl Iterator<Item = Feature> {
        <Feature as strum::VariantArray>::VARIANTS.iter().copied()
    }

    /// The name used in `conv_index` keys and in the TOML mapping.
    pub fn name(self) -> &'static str {
        self.into()
    }

    /// The feature with this name, if any.
    pub fn from_name(name: &str) -> Option<Feature> {
        name.parse().ok()
    }

    /// Position in protocol order, for the per-feature arrays.
    fn index(self) -> usize {
        self as usize
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
    sources: [Vec<Source>; Feature::COUNT],
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

        let mut sources: [Vec<Source>; Feature::COUNT] = Default::default();
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
        if let Some(missing) = Feature::all().find(|feature| sources[feature.index()].is_empty()) {
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
        Feature::all().map(|feature| (feature, self.get(feature)))
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

    let features = Feature::all()
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
    for feature in Feature::all() {
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

mod answer;
pub use answer::{conv_index, conv_scores, ConvIndex, ConvScores, FeatureIndex};

#[cfg(test)]
mod tests;
