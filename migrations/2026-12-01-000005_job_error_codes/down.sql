ALTER TABLE jobs DROP COLUMN last_error_code;
