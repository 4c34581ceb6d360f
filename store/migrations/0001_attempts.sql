-- The attempt log: one row per attempt, appended by a single writer.
-- seq is the rowid alias, so it orders attempts and is what tails resume from.
CREATE TABLE attempts (
	seq         INTEGER PRIMARY KEY,
	notice_id   TEXT    NOT NULL,
	stamp_ms    INTEGER NOT NULL,
	n           INTEGER NOT NULL,
	due_ms      INTEGER NOT NULL,
	-- Unix microseconds, so lateness (start - due) is precise.
	start_us    INTEGER NOT NULL,
	duration_us INTEGER NOT NULL,
	url         TEXT    NOT NULL,
	status      INTEGER NOT NULL,
	outcome     TEXT    NOT NULL,
	error       TEXT    NOT NULL DEFAULT '',
	response    TEXT    NOT NULL DEFAULT '',
	-- NULL when no further attempt is scheduled.
	next_due_ms INTEGER
);

-- `notifier status ID` and `tail --id`.
CREATE INDEX attempts_notice_seq ON attempts (notice_id, seq);
-- `tail --outcome gave-up`.
CREATE INDEX attempts_outcome_seq ON attempts (outcome, seq);
