-- Audio: a SYNTHESIZING status and a synthesis stage after assembly, and the
-- media objects (finished MP3s) each podcast owns.

ALTER TABLE podcasts DROP CONSTRAINT podcasts_status_check;
ALTER TABLE podcasts ADD CONSTRAINT podcasts_status_check CHECK (status IN (
    'queued', 'researching', 'outlining', 'scripting', 'assembling', 'synthesizing',
    'completed', 'failed', 'cancelled'));

ALTER TABLE podcast_stages DROP CONSTRAINT podcast_stages_stage_check;
ALTER TABLE podcast_stages ADD CONSTRAINT podcast_stages_stage_check
    CHECK (stage IN ('research', 'outline', 'script', 'assembly', 'synthesis'));

-- One row per media object a podcast owns. `key` names the object in the
-- media store (local directory or S3 bucket); the row is written in the same
-- transaction that marks the podcast COMPLETED, after the object exists, so
-- a COMPLETED podcast's audio is always there. Deleting the podcast deletes
-- its rows (and the service deletes the objects).
CREATE TABLE media (
    podcast_id       uuid NOT NULL REFERENCES podcasts (id) ON DELETE CASCADE,
    -- What the object is: 'episode' (the finished MP3).
    kind             text NOT NULL,
    key              text NOT NULL UNIQUE,
    mime_type        text NOT NULL,
    bytes            bigint NOT NULL,
    -- Lower-case hex SHA-256 of the object's bytes (also its ETag).
    sha256           text NOT NULL,
    duration_seconds double precision NOT NULL,
    -- Integrated loudness (BS.1770 / EBU R128) and true peak of the decoded file.
    loudness_lufs    double precision NOT NULL,
    true_peak_dbtp   double precision NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (podcast_id, kind),
    CONSTRAINT media_kind_check CHECK (kind IN ('episode')),
    CONSTRAINT media_bytes_check CHECK (bytes > 0),
    CONSTRAINT media_duration_check CHECK (duration_seconds > 0)
);
