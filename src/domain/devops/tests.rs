//! DevOps score tests: the mapping, instance scores, leaders and the conv_index answer.
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
    for feature in Feature::all() {
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
        "../../../tests/fixtures/payload_13.9.0-pre.json"
    ))
    .unwrap();
    let generated: serde_json::Value = serde_json::from_slice(include_bytes!(
        "../../../tests/fixtures/payload_18.9.0_generated.json"
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
    assert!(
        err(&base.replace("kind = \"gauge\"", "kind = \"level\"")).contains("unknown kind `level`")
    );
    assert!(err(&base.replace(
        "{ key = \"counts_monthly.deployments\", kind = \"window\", days = 28 }",
        "{ key = \"counts_monthly.deployments\", kind = \"window\" }"
    ))
    .contains("needs days > 0"));
    assert!(
        err(&base.replace("percentile = 90", "percentile = 190")).contains("leaders.percentile")
    );
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
    for feature in Feature::all() {
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
    let explained = explain_instance_scores(&mapping, &submission(&metrics, 29, Some(-1.0)), None);
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
    for feature in Feature::all() {
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
    for feature in Feature::all() {
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
        include_str!("../../../tests/fixtures/series_18.9.0_minimal.ndjson")
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
