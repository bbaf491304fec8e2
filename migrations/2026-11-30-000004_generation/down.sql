DROP TABLE generation_events;
DROP TABLE podcast_stages;
ALTER TABLE podcasts DROP COLUMN event_seq;
ALTER TABLE podcasts DROP COLUMN generation_run;
