DROP TABLE media;
DELETE FROM podcast_stages WHERE stage = 'synthesis';
UPDATE podcasts SET status = 'assembling' WHERE status = 'synthesizing';
ALTER TABLE podcast_stages DROP CONSTRAINT podcast_stages_stage_check;
ALTER TABLE podcast_stages ADD CONSTRAINT podcast_stages_stage_check
    CHECK (stage IN ('research', 'outline', 'script', 'assembly'));
ALTER TABLE podcasts DROP CONSTRAINT podcasts_status_check;
ALTER TABLE podcasts ADD CONSTRAINT podcasts_status_check CHECK (status IN (
    'queued', 'researching', 'outlining', 'scripting', 'assembling',
    'completed', 'failed', 'cancelled'));
