-- The quality report of a finished episode (issue 12), written with the
-- episode's other fields at COMPLETED: words against target, citation
-- coverage, dangling citations, unfinished and repeated turns, cross-segment
-- 5-gram overlap, leaks, framing turns, segment languages, missed floors.
ALTER TABLE podcasts ADD COLUMN quality jsonb;
