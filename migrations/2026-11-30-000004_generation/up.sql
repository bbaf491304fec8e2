-- Generation state: checkpoints per stage and the append-only event stream.

-- Last sequence number handed to an event of this podcast. Incrementing it
-- row-locks the podcast, which orders concurrent writers of one podcast.
ALTER TABLE podcasts ADD COLUMN event_seq integer NOT NULL DEFAULT 0;
-- Incremented by retryGeneration: events of a new run are not deduplicated
-- against those of earlier runs.
ALTER TABLE podcasts ADD COLUMN generation_run integer NOT NULL DEFAULT 1;

-- One row per finished stage: its output is the checkpoint a resumed job
-- starts from. Written in the same transaction as STAGE_COMPLETED.
CREATE TABLE podcast_stages (
    podcast_id   uuid NOT NULL REFERENCES podcasts (id) ON DELETE CASCADE,
    stage        text NOT NULL,
    output       jsonb NOT NULL,
    -- Provider usage: {"calls", "prompt_tokens", "completion_tokens", "latency_ms"}.
    usage        jsonb NOT NULL DEFAULT '{}',
    started_at   timestamptz NOT NULL,
    completed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (podcast_id, stage),
    CONSTRAINT podcast_stages_stage_check CHECK (stage IN ('research', 'outline', 'script', 'assembly'))
);

-- The progress stream. The table is the truth: subscribers replay it by seq;
-- notifications only wake them.
CREATE TABLE generation_events (
    podcast_id uuid NOT NULL REFERENCES podcasts (id) ON DELETE CASCADE,
    seq        integer NOT NULL,
    kind       text NOT NULL,
    stage      text,
    -- The podcast's status and progress (0.0 to 1.0) once this event happened.
    status     text NOT NULL,
    progress   real NOT NULL,
    message    text NOT NULL DEFAULT '',
    -- Partial artifact (ARTIFACT), warning details, retry delay...
    data       jsonb,
    -- Makes an event idempotent: a resumed stage does not repeat it.
    dedupe_key text,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (podcast_id, seq),
    CONSTRAINT generation_events_kind_check CHECK (kind IN (
        'stage_started', 'stage_completed', 'artifact', 'warning', 'retrying',
        'completed', 'failed', 'cancelled'))
);
CREATE UNIQUE INDEX generation_events_dedupe ON generation_events (podcast_id, dedupe_key)
    WHERE dedupe_key IS NOT NULL;
