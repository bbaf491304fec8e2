-- Sign-in throttle buckets (login, register, refreshToken), shared by every
-- instance: one row per bucket ("login:<email>", "address:<ip or /64>", ...),
-- holding the generic cell rate algorithm's theoretical arrival time: the
-- bucket is empty while `tat` is in the past, and full once `tat` is a whole
-- window ahead of now. Rows whose `tat` has passed mean nothing and are
-- deleted by each instance's periodic clean-up.
CREATE TABLE signin_throttle (
    bucket text PRIMARY KEY,
    tat    timestamptz NOT NULL
);
CREATE INDEX signin_throttle_tat ON signin_throttle (tat);
