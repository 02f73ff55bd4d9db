//! Diesel table definitions, written by hand with portable types only so that one schema
//! serves SQLite and PostgreSQL (the migration trees differ only in DDL spelling).

diesel::table! {
    /// GitLab releases and their security levels.
    releases (id) {
        /// Row id.
        id -> BigInt,
        /// Canonical version text (`X.Y.Z`).
        version -> Text,
        /// Numeric major, for sorting in SQL.
        major -> BigInt,
        /// Numeric minor.
        minor -> BigInt,
        /// Numeric patch.
        patch -> BigInt,
        /// Publication day.
        released_on -> Date,
        /// `none`, `non_critical` or `critical`.
        security -> Text,
        /// Advisory batch id, if named.
        advisory -> Nullable<Text>,
        /// Advisory text shown in GitLab's modal.
        details -> Text,
        /// When the row was created (UTC).
        created_at -> Timestamp,
        /// When the row last changed (UTC).
        updated_at -> Timestamp,
    }
}

diesel::table! {
    /// API tokens, stored only as hashes.
    api_tokens (id) {
        /// Row id.
        id -> BigInt,
        /// Human name given at creation.
        name -> Text,
        /// Hex SHA-256 of the token.
        token_hash -> Text,
        /// What the token may do, e.g. `releases:write`.
        scope -> Text,
        /// Creation time (UTC).
        created_at -> Timestamp,
        /// Last successful use (UTC).
        last_used_at -> Nullable<Timestamp>,
        /// Revocation time (UTC); a revoked token is refused.
        revoked_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    /// Version checks per day: one row per (day, Referer host, version, country), counts
    /// added up by every app process's flushes.
    version_checks (day, host, version, country) {
        /// UTC day of the checks.
        day -> Date,
        /// Referer hostname (lower-case, punycode); `''` when the check had no Referer.
        host -> Text,
        /// Normalised running version (no `-ee`).
        version -> Text,
        /// Two-letter country code of the client; `''` when unknown or GeoIP is off.
        country -> Text,
        /// Checks counted.
        count -> BigInt,
        /// Latest check (UTC).
        last_seen -> Timestamp,
    }
}

diesel::table! {
    /// Every instance that ever sent a check with a Referer.
    hosts (hostname) {
        /// Referer hostname (lower-case, punycode).
        hostname -> Text,
        /// First check (UTC).
        first_seen -> Timestamp,
        /// Latest check (UTC).
        last_seen -> Timestamp,
        /// Version reported by the latest check.
        last_version -> Text,
        /// Country of the latest check's client, when known.
        country -> Nullable<Text>,
    }
}

diesel::table! {
    /// The verdict for every version ever seen in a check, recomputed when releases change,
    /// so that "who runs a vulnerable version?" is a join.
    version_status (version) {
        /// Normalised version, as in `version_checks.version` and `hosts.last_version`.
        version -> Text,
        /// Numeric major, for sorting in SQL.
        major -> BigInt,
        /// Numeric minor.
        minor -> BigInt,
        /// Numeric patch.
        patch -> BigInt,
        /// Pre-release tag (`rc42`, `pre`) or `''`.
        prerelease -> Text,
        /// `success`, `warning` or `danger`, as `check.json` answers now.
        severity -> Text,
        /// True when exposed to a critical advisory.
        critical -> Bool,
        /// When this verdict was computed (UTC).
        computed_at -> Timestamp,
    }
}

diesel::table! {
    /// One Service Ping submission: identity summary, DevOps score, and where it came from.
    usage_data (id) {
        /// Row id: the `usage_data_id` answered to the instance.
        id -> BigInt,
        /// Instance UUID.
        uuid -> Text,
        /// `unique_instance_id` (GitLab ≥ 16), when sent.
        unique_instance_id -> Nullable<Text>,
        /// Hostname from the payload.
        hostname -> Nullable<Text>,
        /// `version` exactly as sent.
        version_raw -> Nullable<Text>,
        /// Normalised version (`18.9.0`).
        version -> Nullable<Text>,
        /// Numeric major, for sorting in SQL.
        version_major -> Nullable<BigInt>,
        /// Numeric minor.
        version_minor -> Nullable<BigInt>,
        /// Numeric patch.
        version_patch -> Nullable<BigInt>,
        /// `CE`, `EE`, `EEP`, …
        edition -> Nullable<Text>,
        /// `omnibus-gitlab`, `gitlab-helm-chart`, …
        installation_type -> Nullable<Text>,
        /// `active_user_count`.
        active_user_count -> Nullable<BigInt>,
        /// `historical_max_users`.
        historical_max_users -> Nullable<BigInt>,
        /// `license_md5`.
        license_md5 -> Nullable<Text>,
        /// `license_sha256`.
        license_sha256 -> Nullable<Text>,
        /// `license_id`.
        license_id -> Nullable<BigInt>,
        /// `license_plan`.
        license_plan -> Nullable<Text>,
        /// `license_trial`.
        license_trial -> Nullable<Bool>,
        /// `license_expires_at`.
        license_expires_at -> Nullable<Date>,
        /// `license_user_count`.
        license_user_count -> Nullable<BigInt>,
        /// `licensee.Name`.
        licensee_name -> Nullable<Text>,
        /// `recorded_at` (UTC).
        recorded_at -> Timestamp,
        /// Monday of `recorded_at`'s week, for portable weekly series.
        recorded_week -> Date,
        /// When the submission was committed here (UTC).
        received_at -> Timestamp,
        /// `automatic` (POST from GitLab) or `manual` (upload form).
        source -> Text,
        /// Sender's country (ISO code) when GeoIP is configured.
        country -> Nullable<Text>,
        /// Numeric/boolean leaves stored in `usage_data_metrics`.
        metrics_count -> BigInt,
        /// JSON: the values of every key the DevOps mapping reads.
        score_inputs -> Text,
        /// JSON: `instance_X` per feature (`null` = no value).
        instance_scores -> Text,
        /// The earlier submission used for cumulative sources.
        score_previous_id -> Nullable<BigInt>,
        /// The mapping's `formula_version`.
        formula_version -> BigInt,
        /// JSON: the `conv_index` answered.
        conv_index -> Text,
    }
}

diesel::table! {
    /// Verbatim payloads (decoded from gzip when sent gzipped).
    usage_data_raw (usage_data_id) {
        /// The submission.
        usage_data_id -> BigInt,
        /// The JSON bytes.
        payload -> Binary,
        /// `identity` (the bytes as received) or `zstd` (compressed).
        encoding -> Text,
    }
}

diesel::table! {
    /// Summary fields beyond `usage_data`'s 32 columns; a row only when one was sent.
    usage_data_extra (usage_data_id) {
        /// The submission.
        usage_data_id -> BigInt,
        /// `license_starts_at` (a date; a full timestamp is reduced to its UTC date).
        license_starts_at -> Nullable<Date>,
    }
}

diesel::table! {
    /// Dictionary of flattened metric key paths.
    metric_keys (id) {
        /// Key id.
        id -> BigInt,
        /// Dotted key path, e.g. `counts.issues`.
        key_path -> Text,
    }
}

diesel::table! {
    /// One numeric/boolean leaf of one submission (booleans as 1/0).
    usage_data_metrics (key_id, usage_data_id) {
        /// `metric_keys.id`.
        key_id -> BigInt,
        /// `usage_data.id`.
        usage_data_id -> BigInt,
        /// The value as sent (special values included).
        value -> Double,
        /// The exact value of an integer or boolean (0/1) leaf; NULL for a float.
        value_int -> Nullable<BigInt>,
    }
}

diesel::table! {
    /// One row per submission stored since issue 10: its values while staged (`body`, a JSON
    /// object keyed by `metric_keys.id`), then the block that holds them (`block_id`).
    usage_data_values (usage_data_id) {
        /// The submission.
        usage_data_id -> BigInt,
        /// `metric_blocks.id` once merged; NULL while staged.
        block_id -> Nullable<BigInt>,
        /// `{"<key_id>": value, …}` while staged; NULL once merged.
        body -> Nullable<Text>,
    }
}

diesel::table! {
    /// A group of merged submissions whose values are kept per metric key.
    metric_blocks (id) {
        /// Block id.
        id -> BigInt,
        /// Lowest member id.
        first_usage_data_id -> BigInt,
        /// Highest member id.
        last_usage_data_id -> BigInt,
        /// The members' ids, a JSON array in ascending order.
        usage_data_ids -> Text,
        /// When the block was written.
        merged_at -> Timestamp,
    }
}

diesel::table! {
    /// One metric's values in one block: a JSON array aligned with the block's ids.
    metric_block_values (key_id, block_id) {
        /// `metric_keys.id`.
        key_id -> BigInt,
        /// `metric_blocks.id`.
        block_id -> BigInt,
        /// `[value or null, …]`, one entry per member.
        vals -> Text,
    }
}

diesel::table! {
    /// A VIEW, not a table: every stored metric value as one narrow row, whichever form holds
    /// it (`usage_data_metrics`, staged `usage_data_values`, `metric_block_values`). For
    /// analysts and tests; the application reads the forms directly (`metric_values`).
    metric_values (key_id, usage_data_id) {
        /// `metric_keys.id`.
        key_id -> BigInt,
        /// `usage_data.id`.
        usage_data_id -> BigInt,
        /// The value as a double.
        value -> Double,
        /// The exact value of an integer or boolean leaf; NULL for a float.
        value_int -> Nullable<BigInt>,
    }
}

diesel::table! {
    /// Failures reported by instances (`POST /usage_ping_errors`).
    usage_ping_errors (id) {
        /// Row id.
        id -> BigInt,
        /// Instance UUID, when sent.
        uuid -> Nullable<Text>,
        /// `unique_instance_id`, when sent.
        unique_instance_id -> Nullable<Text>,
        /// Hostname, when sent.
        hostname -> Nullable<Text>,
        /// GitLab version, when sent.
        version -> Nullable<Text>,
        /// The error message.
        message -> Nullable<Text>,
        /// Seconds spent before the failure.
        elapsed -> Nullable<Double>,
        /// The `time` field as sent.
        error_time -> Nullable<Text>,
        /// When received (UTC).
        received_at -> Timestamp,
        /// The body as received (JSON text).
        body -> Text,
    }
}

diesel::table! {
    /// Collection timings reported by instances (`POST /usage_ping_metadata`).
    usage_ping_metadata (id) {
        /// Row id.
        id -> BigInt,
        /// Instance UUID (very old clients do not send it).
        uuid -> Nullable<Text>,
        /// `unique_instance_id`, when sent.
        unique_instance_id -> Nullable<Text>,
        /// When received (UTC).
        received_at -> Timestamp,
        /// Entries in `metrics`.
        metrics_count -> BigInt,
        /// The body as received (JSON text).
        body -> Text,
    }
}

diesel::table! {
    /// One metric timing of a metadata report.
    usage_ping_metadata_metrics (metadata_id, position) {
        /// `usage_ping_metadata.id`.
        metadata_id -> BigInt,
        /// Index in the `metrics` array.
        position -> BigInt,
        /// Metric key path.
        name -> Text,
        /// Seconds the metric took.
        time_elapsed -> Nullable<Double>,
        /// Error text when the metric failed.
        error -> Nullable<Text>,
    }
}

diesel::joinable!(usage_data_raw -> usage_data (usage_data_id));
diesel::joinable!(usage_data_extra -> usage_data (usage_data_id));
diesel::allow_tables_to_appear_in_same_query!(
    usage_data,
    usage_data_raw,
    usage_data_extra,
    usage_data_metrics,
    usage_data_values,
    metric_values,
    metric_keys
);
diesel::joinable!(metric_block_values -> metric_blocks (block_id));
diesel::allow_tables_to_appear_in_same_query!(metric_blocks, metric_block_values);

diesel::table! {
    /// People who may use the console, with their role.
    console_users (id) {
        /// Row id.
        id -> BigInt,
        /// Login name (unique).
        name -> Text,
        /// `analyst`, `release_manager` or `admin`.
        role -> Text,
        /// argon2id PHC string.
        password_hash -> Text,
        /// Creation time (UTC).
        created_at -> Timestamp,
        /// A disabled account cannot log in.
        disabled -> Bool,
    }
}

diesel::table! {
    /// Console sessions; the cookie carries a random id, the table only its SHA-256.
    console_sessions (id) {
        /// Row id.
        id -> BigInt,
        /// Hex SHA-256 of the cookie's session id.
        session_hash -> Text,
        /// The account.
        user_id -> BigInt,
        /// CSRF synchronizer token of this session.
        csrf_token -> Text,
        /// Login time (UTC).
        created_at -> Timestamp,
        /// Last request seen (UTC), for the idle timeout.
        last_seen -> Timestamp,
        /// Absolute end of the session (UTC).
        expires_at -> Timestamp,
    }
}

diesel::joinable!(console_sessions -> console_users (user_id));
diesel::allow_tables_to_appear_in_same_query!(console_users, console_sessions);

// --- privacy and data lifecycle (docs/privacy.md) ---

diesel::table! {
    /// Version checks older than `version_check_daily_retention_days`, summed by month.
    version_checks_monthly (month, host, version, country) {
        /// First day of the UTC month.
        month -> Date,
        /// Referer hostname, as in `version_checks.host`.
        host -> Text,
        /// Normalised version.
        version -> Text,
        /// Country code or `''`.
        country -> Text,
        /// Checks counted in the month.
        count -> BigInt,
        /// Latest check of the month (UTC).
        last_seen -> Timestamp,
    }
}

diesel::table! {
    /// One row per `version-app erase`.
    erasures (id) {
        /// Row id.
        id -> BigInt,
        /// When the erasure committed (UTC).
        erased_at -> Timestamp,
        /// JSON: rows removed per table.
        removed -> Text,
        /// Who erased: a console account name or `cli:USER` (NULL before it was recorded).
        erased_by -> Nullable<Text>,
    }
}

diesel::table! {
    /// Keyed hashes of the identifiers an erasure removed.
    erasure_subjects (subject_hash, erasure_id) {
        /// `erasures.id`.
        erasure_id -> BigInt,
        /// Hex HMAC-SHA256 under `erasure_key` of `kind:value`.
        subject_hash -> Text,
    }
}

diesel::joinable!(erasure_subjects -> erasures (erasure_id));
diesel::allow_tables_to_appear_in_same_query!(erasures, erasure_subjects);
diesel::table! {
    /// Audit trail of the release table: one append-only row per changed field.
    release_changes (id) {
        /// Change id (what `releases revert` takes).
        id -> BigInt,
        /// Operation id shared by the entries of one write.
        batch -> Text,
        /// When (UTC).
        at -> Timestamp,
        /// Who: account, `token:NAME`, OS user, or `sync:URL`.
        actor -> Text,
        /// `web`, `api`, `cli`, `import` or `sync`.
        via -> Text,
        /// The release.
        version -> Text,
        /// `version` (creation/deletion), `released_on`, `security`, `advisory`, `details`.
        field -> Text,
        /// Value before.
        old -> Nullable<Text>,
        /// Value after.
        new -> Nullable<Text>,
        /// Free note, e.g. `revert of change 12`.
        note -> Nullable<Text>,
    }
}

// --- insights rollups (issue 13; migration 2026-12-01-000300_insights_rollups) ---

diesel::table! {
    /// Insights job bookkeeping (e.g. the watermark).
    insights_state (name) {
        /// What the value is.
        name -> Text,
        /// The value.
        value -> BigInt,
    }
}

diesel::table! {
    /// Installations: (uuid, hostname) pairs.
    insights_installations (id) {
        /// Row id.
        id -> BigInt,
        /// Instance UUID.
        uuid -> Text,
        /// Lower-case hostname, `''` when not sent.
        hostname -> Text,
        /// Internal or staging host (left out by default).
        excluded -> Bool,
    }
}

diesel::table! {
    /// Processed submissions, placed by their effective recorded_at.
    insights_submissions (usage_data_id) {
        /// `usage_data.id`.
        usage_data_id -> BigInt,
        /// `insights_installations.id`.
        installation_id -> BigInt,
        /// Effective recorded_at (after the fallback rule).
        recorded_at -> Timestamp,
        /// Normalised version.
        version -> Nullable<Text>,
        /// Numeric major.
        version_major -> Nullable<BigInt>,
        /// Numeric minor.
        version_minor -> Nullable<BigInt>,
        /// Numeric patch.
        version_patch -> Nullable<BigInt>,
        /// Edition as sent.
        edition -> Nullable<Text>,
        /// Tier from edition and licence.
        tier -> Text,
        /// Installation type.
        installation_type -> Nullable<Text>,
        /// Sender's country.
        country -> Nullable<Text>,
        /// `active_user_count`.
        active_user_count -> Nullable<BigInt>,
    }
}

diesel::table! {
    /// The counted submission per installation and period.
    insights_periods (period_kind, period_start, installation_id) {
        /// `month` or `week`.
        period_kind -> Text,
        /// First day of the month / Monday of the week.
        period_start -> Date,
        /// `insights_installations.id`.
        installation_id -> BigInt,
        /// The counted submission.
        usage_data_id -> BigInt,
        /// Its effective recorded_at.
        recorded_at -> Timestamp,
        /// Normalised version.
        version -> Nullable<Text>,
        /// Numeric major.
        version_major -> Nullable<BigInt>,
        /// Numeric minor.
        version_minor -> Nullable<BigInt>,
        /// Edition.
        edition -> Nullable<Text>,
        /// Tier.
        tier -> Text,
        /// Installation type.
        installation_type -> Nullable<Text>,
        /// Country.
        country -> Nullable<Text>,
        /// Internal or staging host.
        excluded -> Bool,
        /// The counted submission of the installation's previous period of this kind (the
        /// baseline of all-time counters); 0 when there is none, NULL when not known (written
        /// by an earlier release).
        previous_usage_data_id -> Nullable<BigInt>,
    }
}

diesel::table! {
    /// Period value of each metric per installation, after the time-frame rule. Written by
    /// releases before 2026-12-04 only (values are now computed when asked); emptied by a
    /// rebuild and by erasure, dropped by the next release.
    insights_metric_values (period_kind, key_id, period_start, installation_id) {
        /// `month` or `week`.
        period_kind -> Text,
        /// `metric_keys.id`.
        key_id -> BigInt,
        /// Period start.
        period_start -> Date,
        /// `insights_installations.id`.
        installation_id -> BigInt,
        /// The period value; NULL when the counted value was special.
        value -> Nullable<Double>,
        /// True when the counted value was special (excluded).
        special -> Bool,
    }
}

diesel::table! {
    /// Change counters per (source, period) behind the insights views' cache: a write that
    /// changes what a period shows adds 1 in its transaction (migration
    /// 2026-12-04-000300_insights_generations).
    insights_generations (source, period_kind, period_start) {
        /// `pings` (rollup period rows), `checks` (version-check days) or `all`.
        source -> Text,
        /// `month`, `week`, or `all` (a change that may touch any period).
        period_kind -> Text,
        /// Period start (`1970-01-01` for `all`).
        period_start -> Date,
        /// Changes so far.
        generation -> BigInt,
    }
}

diesel::allow_tables_to_appear_in_same_query!(
    insights_installations,
    insights_submissions,
    insights_periods,
    insights_metric_values,
    metric_keys
);

// --- metric definitions and catalogue (issue 13; migration 2026-12-03-000400_metric_definitions_catalogue) ---

diesel::table! {
    /// GitLab's metric definitions, as last imported.
    metric_definitions (key_path) {
        /// The metric's key path.
        key_path -> Text,
        /// What it measures.
        description -> Nullable<Text>,
        /// Owning product group.
        product_group -> Nullable<Text>,
        /// number, string, boolean, object.
        value_type -> Nullable<Text>,
        /// active, removed, …
        status -> Nullable<Text>,
        /// 7d, 28d, all, none.
        time_frame -> Text,
        /// database, redis_hll, …
        data_source -> Nullable<Text>,
        /// Tiers, comma-separated.
        tier -> Nullable<Text>,
    }
}

diesel::table! {
    /// Per key: the lowest and highest version that sent it.
    insights_metric_catalogue (key_id) {
        /// `metric_keys.id`.
        key_id -> BigInt,
        /// Lowest version.
        first_version -> Text,
        /// Its sort key.
        first_sort -> BigInt,
        /// Highest version.
        last_version -> Text,
        /// Its sort key.
        last_sort -> BigInt,
    }
}

diesel::table! {
    /// Per key and month: installations whose counted submission carries the key.
    insights_key_months (period_start, key_id) {
        /// `metric_keys.id`.
        key_id -> BigInt,
        /// First day of the month.
        period_start -> Date,
        /// Installations (internal and staging left out).
        installations -> BigInt,
    }
}

diesel::allow_tables_to_appear_in_same_query!(
    insights_metric_catalogue,
    insights_key_months,
    metric_keys,
    metric_definitions
);
diesel::table! {
    /// When each once-across-processes background job last started (store clock).
    job_schedule (job) {
        /// Job name (the `job` label in `/metrics`).
        job -> Text,
        /// Milliseconds since the Unix epoch, by the store's clock.
        last_started_ms -> BigInt,
        /// Runs started, all processes together.
        runs -> BigInt,
    }
}
