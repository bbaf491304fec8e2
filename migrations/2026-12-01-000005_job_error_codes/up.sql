-- The stable code of a job's last failure, stored as data beside its text,
-- so a handler that gives up (possibly in another process, after the worker
-- that saw the failure died) reads the code instead of parsing the text.
ALTER TABLE jobs ADD COLUMN last_error_code text;
