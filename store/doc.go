// Package store implements the interfaces package notifier consumes: Redis
// holds what is pending (trigger keys, payloads, the due index, claims and the
// expiry-event subscription) and SQLite holds the attempt log. It also starts
// the embedded redis-server that `notifier serve` uses by default.
//
// Every Redis key and channel name is built in keys.go, and every change that
// touches more than one key is a Lua script in scripts.go (but for the far
// records' promotion, in far.go), so a reader can check the data model in
// two files.
//
// The Redis side, type Redis, by what each file owns:
//
//	redis.go    the type, NewRedis, CheckEvents and the published default schedule
//	enqueue.go  Enqueue and Resend: storing new notices, in bounded pipelines,
//	            sent again after a lost reply (the receipt makes that safe)
//	queue.go    notifier.Queue: claims, completions, releases, leases, and
//	            reading the due index (Overdue, NextDue, Nudge)
//	listen.go   notifier.Events: the expired-event subscription and its canary
//	cluster.go  listening to every master of a Redis Cluster
//	ops.go      notice state and cancel, parking, partner pause, resume and
//	            unpark, shared partner state, published partners, URL policy
//	park.go     the partners with parked attempts, configured or not, and
//	            Publish: what serve publishes for enqueue and other serves
//	listing.go  listing pending notices by reading payload headers only
//	stored.go   a waiting notice with its body, for the partner portal
//	fleet.go    FleetLog: the capped attempt stream shared by every serve
//	payload.go  the payload encoding (binary header, then the raw body; the
//	            JSON header line of earlier releases still decodes)
//	records.go  the payload table: pending notices' payloads in shared small
//	            lists (linear hashing) and its Lua helpers
//	far.go      far attempts: those due beyond the far horizon wait in the
//	            table, not the due index, until promoteScript moves them
//	eval.go     running scripts pipelined, each sent once (never re-sent
//	            blindly by go-redis), again only when Redis did not run it;
//	            the Lua fragments the scripts share
//	connect.go  Redis URLs (single node, Sentinel, Cluster) and clients
//	server.go   the embedded redis-server and the data-dir lock
//
// The SQLite side, type SQLite, the attempt log and the archive of ended
// notices:
//
//	sqlite.go   opening, migrations (migrations/*.sql), Close, and the WHERE
//	            clause builder the attempt and archive queries share
//	writer.go   Record and Sync, and Run: the one writer, committing batches
//	checkpoint.go  WAL checkpoints, on a connection of their own, never in
//	            the writer's commits
//	retention.go  --retain: the writer's batched deletes, incremental vacuum,
//	            and the one-off switch of older files to incremental
//	            auto-vacuum
//	stats.go    RedisStats and LogStats: what Redis and the log hold
//	attempts.go attempt queries: Last, Follow, Each (notifier.AttemptFilter)
//	archive.go  archive queries: Ended, EachEnded, CountEnded
//	            (notifier.NoticeFilter)
//
// Packages under store: redistest starts private redis-servers and local
// clusters for tests, storetest gives tests a running attempt log, and bench
// measures notifier end to end on a real Redis (`notifier bench`);
// bench/soak is `make soak`, the long run of the built binary.
package store
