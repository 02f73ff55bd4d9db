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
