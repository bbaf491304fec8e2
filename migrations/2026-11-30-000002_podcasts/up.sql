-- The podcast library: one row per requested episode, owned by one user.

CREATE TABLE podcasts (
    id          uuid PRIMARY KEY,
    owner_id    uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    topic       text NOT NULL,
    status      text NOT NULL DEFAULT 'queued',
    -- The pipeline stage running or last run: research, outline, script, assembly.
    stage       text,
    -- 0.0 to 1.0 over the whole generation.
    progress    real NOT NULL DEFAULT 0,
    -- Request settings, as generation needs them.
    format      text NOT NULL DEFAULT 'deep_dive',
    language    text NOT NULL DEFAULT 'en',
    target_duration_seconds integer NOT NULL,
    hosts       jsonb NOT NULL DEFAULT '[]',
    audience    text,
    tone        text,
    instructions text,
    -- User-supplied sources as requested: [{"url": ...} | {"title": ..., "text": ...}].
    requested_sources jsonb NOT NULL DEFAULT '[]',
    idempotency_key text,
    -- Results.
    title       text,
    description text,
    tags        text[] NOT NULL DEFAULT '{}',
    show_notes  text,
    estimated_duration_seconds integer,
    word_count  integer,
    usage       jsonb,
    error_code  text,
    error_message text,
    error_retryable boolean,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    completed_at timestamptz,
    -- Full-text search over title, topic and description. The 'simple'
    -- configuration (no stemming, no stop words) because a library mixes languages.
    search tsvector GENERATED ALWAYS AS (
        to_tsvector('simple',
            coalesce(title, '') || ' ' || topic || ' ' || coalesce(description, ''))
    ) STORED,
    CONSTRAINT podcasts_status_check CHECK (status IN (
        'queued', 'researching', 'outlining', 'scripting', 'assembling',
        'completed', 'failed', 'cancelled')),
    CONSTRAINT podcasts_progress_check CHECK (progress >= 0 AND progress <= 1),
    CONSTRAINT podcasts_target_duration_check CHECK (target_duration_seconds > 0)
);

-- The library's keyset pagination: newest first or oldest first per owner.
CREATE INDEX podcasts_owner_created_idx ON podcasts (owner_id, created_at, id);
CREATE INDEX podcasts_search_idx ON podcasts USING gin (search);
-- A repeated generatePodcast with the same key returns the first podcast.
CREATE UNIQUE INDEX podcasts_owner_idempotency_key
    ON podcasts (owner_id, idempotency_key) WHERE idempotency_key IS NOT NULL;
