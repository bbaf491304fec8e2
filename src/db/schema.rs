//! Diesel table definitions, kept by hand (diesel_cli's `print-schema` needs
//! libpq). They must match `migrations/`; the integration tests exercise every
//! column, so a drift fails a test.
//!
//! Generated columns (`podcasts.search`) are left out: nothing writes them and
//! queries reach them through SQL fragments.

diesel::table! {
    /// Accounts.
    users (id) {
        id -> Uuid,
        email -> Text,
        password_hash -> Text,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    /// Sign-in sessions; one refresh-token rotation family each.
    sessions (id) {
        id -> Uuid,
        user_id -> Uuid,
        created_at -> Timestamptz,
        revoked_at -> Nullable<Timestamptz>,
        revoked_reason -> Nullable<Text>,
    }
}

diesel::table! {
    /// Refresh tokens, SHA-256 hashed.
    refresh_tokens (id) {
        id -> Uuid,
        session_id -> Uuid,
        token_hash -> Bytea,
        expires_at -> Timestamptz,
        used_at -> Nullable<Timestamptz>,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    /// The podcast library.
    podcasts (id) {
        id -> Uuid,
        owner_id -> Uuid,
        topic -> Text,
        status -> Text,
        stage -> Nullable<Text>,
        progress -> Float4,
        format -> Text,
        language -> Text,
        target_duration_seconds -> Int4,
        hosts -> Jsonb,
        audience -> Nullable<Text>,
        tone -> Nullable<Text>,
        instructions -> Nullable<Text>,
        requested_sources -> Jsonb,
        idempotency_key -> Nullable<Text>,
        title -> Nullable<Text>,
        description -> Nullable<Text>,
        tags -> Array<Text>,
        show_notes -> Nullable<Text>,
        estimated_duration_seconds -> Nullable<Int4>,
        word_count -> Nullable<Int4>,
        usage -> Nullable<Jsonb>,
        error_code -> Nullable<Text>,
        error_message -> Nullable<Text>,
        error_retryable -> Nullable<Bool>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        completed_at -> Nullable<Timestamptz>,
        event_seq -> Int4,
        generation_run -> Int4,
        quality -> Nullable<Jsonb>,
    }
}

diesel::table! {
    /// The generic job queue.
    jobs (id) {
        id -> Uuid,
        kind -> Text,
        payload -> Jsonb,
        status -> Text,
        priority -> Int2,
        attempts -> Int4,
        max_attempts -> Int4,
        run_at -> Timestamptz,
        unique_key -> Nullable<Text>,
        lease_owner -> Nullable<Uuid>,
        lease_expires_at -> Nullable<Timestamptz>,
        cancel_requested -> Bool,
        last_error -> Nullable<Text>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        finished_at -> Nullable<Timestamptz>,
        last_error_code -> Nullable<Text>,
    }
}

diesel::table! {
    /// Stage checkpoints.
    podcast_stages (podcast_id, stage) {
        podcast_id -> Uuid,
        stage -> Text,
        output -> Jsonb,
        usage -> Jsonb,
        started_at -> Timestamptz,
        completed_at -> Timestamptz,
    }
}

diesel::table! {
    /// The progress event stream.
    generation_events (podcast_id, seq) {
        podcast_id -> Uuid,
        seq -> Int4,
        kind -> Text,
        stage -> Nullable<Text>,
        status -> Text,
        progress -> Float4,
        message -> Text,
        data -> Nullable<Jsonb>,
        dedupe_key -> Nullable<Text>,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    /// Sign-in throttle buckets (GCRA theoretical arrival times).
    signin_throttle (bucket) {
        bucket -> Text,
        tat -> Timestamptz,
    }
}

diesel::table! {
    /// Media objects (finished MP3s) a podcast owns.
    media (podcast_id, kind) {
        podcast_id -> Uuid,
        kind -> Text,
        key -> Text,
        mime_type -> Text,
        bytes -> Int8,
        sha256 -> Text,
        duration_seconds -> Float8,
        loudness_lufs -> Float8,
        true_peak_dbtp -> Float8,
        created_at -> Timestamptz,
    }
}

diesel::joinable!(media -> podcasts (podcast_id));
diesel::joinable!(podcast_stages -> podcasts (podcast_id));
diesel::joinable!(generation_events -> podcasts (podcast_id));
diesel::joinable!(sessions -> users (user_id));
diesel::joinable!(refresh_tokens -> sessions (session_id));
diesel::joinable!(podcasts -> users (owner_id));
diesel::allow_tables_to_appear_in_same_query!(
    users,
    sessions,
    refresh_tokens,
    podcasts,
    jobs,
    podcast_stages,
    generation_events,
    signin_throttle,
    media
);
