-- A leaner attempt log: each delivered notice used to update eight B-trees
-- (attempts and its three indexes, notices, its primary key and its two
-- indexes). Measured, the log's CPU per delivered notice is mostly those
-- B-tree updates, so only the entries a query reads are kept.

-- `tail --outcome`, the console's outcome filter: the queries for any
-- outcome but delivered use this index (attemptsWhere repeats its WHERE
-- term, which is how SQLite knows a partial index applies). A query for
-- delivered, the outcome of most rows, reads the table in seq order instead,
-- and most rows it reads match.
DROP INDEX attempts_outcome_seq;
CREATE INDEX attempts_outcome_seq ON attempts (outcome, seq) WHERE outcome <> 'delivered';

-- `tail --partner`, the portal and the console's partner pages always name
-- a partner, so attempts of notices without one need no entry.
DROP INDEX attempts_partner_seq;
CREATE INDEX attempts_partner_seq ON attempts (partner, seq) WHERE partner <> '';

-- `replay --outcome gave-up|blocked --since`; a replay of delivered notices
-- reads notices_ended.
DROP INDEX notices_outcome_ended;
CREATE INDEX notices_outcome_ended ON notices (outcome, ended_us) WHERE outcome <> 'delivered';

-- Nothing reads them: listing redacts the URL in the payload, and the
-- payload holds the stamp.
ALTER TABLE notices DROP COLUMN url;
ALTER TABLE notices DROP COLUMN stamp_ms;
