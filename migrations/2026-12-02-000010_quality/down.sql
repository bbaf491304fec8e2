ALTER TABLE podcasts DROP COLUMN quality;
