-- Each attempt names the partner its notice was sent under ('' if none).
ALTER TABLE attempts ADD COLUMN partner TEXT NOT NULL DEFAULT '';

-- `tail --partner`.
CREATE INDEX attempts_partner_seq ON attempts (partner, seq);

-- The archive: the last end of each notice, with the notice itself, so that
-- `notifier retry ID` and `replay --since` can send it again after Redis has
-- forgotten it. A later end of the same id replaces the row.
CREATE TABLE notices (
	id       TEXT    PRIMARY KEY,
	stamp_ms INTEGER NOT NULL,
	partner  TEXT    NOT NULL DEFAULT '',
	outcome  TEXT    NOT NULL,
	-- Unix microseconds: start + duration of the attempt that ended it.
	ended_us INTEGER NOT NULL,
	attempts INTEGER NOT NULL,
	-- Redacted, for listing; the full URL is in payload.
	url      TEXT    NOT NULL,
	-- store.encodePayload: a JSON header line, then the body.
	payload  BLOB    NOT NULL
);

-- `replay --since`: archived notices in order of their end.
CREATE INDEX notices_ended ON notices (ended_us);
-- `replay --outcome gave-up --since`.
CREATE INDEX notices_outcome_ended ON notices (outcome, ended_us);
