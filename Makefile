# Two commands on a fresh Debian machine: `make run` and `make test`.
# Each installs what it needs first (redis-server, and for the tests
# Chromium, via apt-get when run as root; otherwise it says what to install).

export PATH := $(PATH):/usr/local/go/bin
export CGO_ENABLED := 1
GO ?= go
BIN := bin/notifier
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)

.PHONY: build run test fuzz bench bench-inprocess bench-peer bench-locked-redis bench-redis-instructions soak lint fmt deps test-deps

build:
	$(GO) build -ldflags "-X main.version=$(VERSION)" -o $(BIN) .

## run: build and start serve on the embedded default (private redis-server + ./notifier-data).
## It lets partners on this machine through the SSRF guard, for trying it out
## (make run RUN_FLAGS= keeps the guard closed, as a production serve does).
RUN_FLAGS ?= --allow-private
run: deps build
	./$(BIN) serve $(RUN_FLAGS)

## test: install what is missing, lint, then run every test with the race
## detector, then each fuzz target briefly (their seed corpora also run as
## plain tests)
test: test-deps
	$(MAKE) --no-print-directory lint
	$(GO) test -race -count=1 -timeout 15m ./...
	$(MAKE) --no-print-directory fuzz FUZZTIME=$(FUZZTIME)

# A count of executions, not a duration: with a duration, go test can end a
# target that is still gathering its baseline on a loaded machine with a
# bare "context deadline exceeded" failure.
FUZZTIME ?= 20000x
FUZZ_TARGETS := store:FuzzParseTrigger store:FuzzDecodePayload backoff:FuzzParse notifier:FuzzReadLines notifier:FuzzFastLine notifier:FuzzURLPolicyCheck notifier:FuzzSuccessRule

## fuzz: run each fuzz target for FUZZTIME (make fuzz FUZZTIME=5m for a longer hunt, or 1000000x).
## The targets run at the same time, each as its own go test with a log of
## its own: their builds and baselines overlap instead of queueing. A
## failing target's log is printed in full.
fuzz:
	@logs=$$(mktemp -d); pids=""; \
	for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; name=$${t#*:}; \
		echo "fuzz $$name ($$pkg, $(FUZZTIME))"; \
		$(GO) test -run '^$$' -fuzz "^$$name\$$" -fuzztime $(FUZZTIME) -fuzzminimizetime 5s ./$$pkg/ >$$logs/$$name.log 2>&1 & \
		pids="$$pids $$!:$$name"; \
	done; \
	fail=0; \
	for p in $$pids; do \
		wait $${p%%:*} || { echo "fuzz $${p#*:} failed:"; cat $$logs/$${p#*:}.log; fail=1; }; \
	done; \
	rm -rf $$logs; exit $$fail

## bench: the real path, as users run it (one JSON line per scenario): serve
## as its own process on its defaults, a partner process, enqueue --file.
## Sizes: BENCH_THROUGHPUT (20000), BENCH_DUE (10000), BENCH_RATE (1000),
## BENCH_PENDING (0,100000,1000000; drop 1000000 for a quicker run),
## BENCH_BODY (200); BENCH_REDIS=URL runs serve on that Redis instead.
bench: deps build
	$(GO) build -o bin/bench-real ./store/bench/real
	./bin/bench-real --bin $(BIN)

## bench-peer: notifier's throughput scenario and asynq doing the same job,
## interleaved A B A B (BENCH_ROUNDS, 2), then the ratio. asynq is built
## from its own module (store/bench/peer), so it is no dependency of notifier.
bench-peer: deps build
	$(GO) build -o bin/bench-real ./store/bench/real
	cd store/bench/peer && $(GO) build -o ../../../bin/bench-peer-asynq .
	./bin/bench-real --bin $(BIN) --peer bin/bench-peer-asynq

## bench-locked-redis: the backlog scenarios (bytes_per_pending, enqueue,
## lateness) on a private redis-server at its default settings whose ACL
## refuses CONFIG SET, as a managed Redis may: serve can change nothing.
bench-locked-redis: deps build
	$(GO) build -o bin/bench-real ./store/bench/real
	@dir=$$(mktemp -d); trap 'kill $$(cat '$$dir'/redis.pid 2>/dev/null) 2>/dev/null; rm -rf '$$dir EXIT; \
		printf 'user default on nopass ~* &* +@all -config|set\n' > $$dir/acl.conf; \
		redis-server --port 0 --unixsocket $$dir/redis.sock --save '' --appendonly no \
			--notify-keyspace-events Ex --aclfile $$dir/acl.conf --dir $$dir \
			--daemonize yes --pidfile $$dir/redis.pid --logfile $$dir/redis.log || exit 1; \
		for i in $$(seq 100); do [ -S $$dir/redis.sock ] && break; sleep 0.1; done; \
		./bin/bench-real --bin $(BIN) --redis unix://$$dir/redis.sock --throughput 0 \
			--pending $${BENCH_PENDING:-100000} --due $${BENCH_DUE:-1000}

## bench-redis-instructions: the instructions Redis executes per line of
## `notifier enqueue --file` (BENCH_LINES lines, 5000, due in 25 s, 200-byte
## bodies), counted by valgrind's callgrind on a private redis-server with
## serve's AOF settings: deterministic where CPU time on a shared machine
## is not, for comparing two commits (BENCH_BIN, bin/notifier). Nothing is
## delivered: no serve runs, and the notices' URL is 127.0.0.1:9. Then the
## same count per delivered notice, for a throughput scenario of
## BENCH_NOTICES (5000) run by the driver against such a redis-server
## (serve, the partner and the CLI as processes, as in `make bench`): the
## batches follow the timing there, so runs of one binary differ by up to 5%.
BENCH_LINES ?= 5000
BENCH_NOTICES ?= 5000
# CALLGRIND_REDIS starts a private redis-server with serve's AOF settings
# under callgrind, its socket and output in $dir, its pid in $vp (the EXIT
# trap stops it and removes $dir), and waits until it answers; bin is the
# notifier binary to measure. CALLGRIND_STOP shuts it down so callgrind
# writes its counts; $(call callgrind_total,FILE) is FILE's instruction total.
CALLGRIND_REDIS = dir=$$(mktemp -d); bin=$${BENCH_BIN:-$(BIN)}; \
	trap 'kill $$vp 2>/dev/null; rm -rf '$$dir EXIT; \
	valgrind --tool=callgrind --callgrind-out-file=$$dir/cg.out redis-server --port 0 --unixsocket $$dir/redis.sock \
		--save '' --appendonly yes --appendfsync everysec --notify-keyspace-events Ex --dir $$dir >$$dir/valgrind.log 2>&1 & vp=$$!; \
	for i in $$(seq 300); do redis-cli -s $$dir/redis.sock ping >/dev/null 2>&1 && break; sleep 0.2; done
CALLGRIND_STOP = redis-cli -s $$dir/redis.sock shutdown nosave >/dev/null 2>&1; wait $$vp
callgrind_total = $$(callgrind_annotate $(1) 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $$1); print $$1}')
bench-redis-instructions: deps build
	$(GO) build -o bin/bench-real ./store/bench/real
	@command -v valgrind >/dev/null || { \
		if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends valgrind >/dev/null; \
		else echo "valgrind is missing: sudo apt-get install valgrind"; exit 1; fi; }
	@$(CALLGRIND_REDIS); \
	pad=$$(printf '%0180d' 0); \
	seq $(BENCH_LINES) | awk -v pad=$$pad '{printf "{\"id\":\"ri-%08d\",\"url\":\"http://127.0.0.1:9/n\",\"body\":{\"order\":%d,\"pad\":\"%s\"},\"schedule\":\"25\"}\n", $$1, $$1, pad}' >$$dir/lines.jsonl; \
	head -5 $$dir/lines.jsonl | sed 's/"ri-/"rw-/' >$$dir/warm.jsonl; \
	$$bin enqueue --redis unix://$$dir/redis.sock --file $$dir/warm.jsonl >/dev/null 2>&1; \
	callgrind_control -z $$vp >/dev/null 2>&1; \
	$$bin enqueue --redis unix://$$dir/redis.sock --file $$dir/lines.jsonl >$$dir/enqueue.log 2>&1 || { cat $$dir/enqueue.log; exit 1; }; \
	callgrind_control -d $$vp >/dev/null 2>&1; \
	$(CALLGRIND_STOP); \
	total=$(call callgrind_total,$$dir/cg.out.1); \
	printf '{"scenario":"redis-instructions","bin":"%s","lines":%d,"redis_instructions_per_line":%d}\n' $$bin $(BENCH_LINES) $$((total / $(BENCH_LINES)))
	@$(CALLGRIND_REDIS); \
	./bin/bench-real --bin $$bin --redis unix://$$dir/redis.sock --throughput $(BENCH_NOTICES) --pending '' >$$dir/run.json 2>$$dir/run.log || { tail -5 $$dir/run.log; exit 1; }; \
	$(CALLGRIND_STOP); \
	total=$(call callgrind_total,$$dir/cg.out); \
	printf '{"scenario":"redis-instructions-delivery","bin":"%s","notices":%d,"redis_instructions_per_notice":%d}\n' $$bin $(BENCH_NOTICES) $$((total / $(BENCH_NOTICES)))

## bench-inprocess: the in-process scenarios of `notifier bench` (the
## dispatcher inside the benchmark, a private Redis without AOF), then the
## cluster scenarios on a throwaway local cluster (ports 7101-7106)
bench-inprocess: deps build
	./$(BIN) bench --backlog 0,100000,1000000
	@dir=$$(mktemp -d); trap 'deploy/local-cluster.sh stop '$$dir'; rm -rf '$$dir EXIT; \
		url=$$(deploy/local-cluster.sh start $$dir) && ./$(BIN) bench --cluster $$url --serves 1,2

## soak: run the built serve on its embedded default for SOAK_DURATION at
## SOAK_RATE notices/s through its HTTP API, against a partner process that
## fails 20% of first attempts, with --retain and --dedup-window set to
## SOAK_WINDOW so that expiry happens during the run; prints Redis memory and
## keys, SQLite sizes, RSS, goroutines and open files every 30 s, then each
## figure's growth per hour after the first window. Not part of make test.
SOAK_RATE ?= 1000
SOAK_DURATION ?= 10m
SOAK_WINDOW ?= 2m
soak: deps build
	$(GO) build -o bin/soak ./store/bench/soak
	./bin/soak -bin $(BIN) -rate $(SOAK_RATE) -duration $(SOAK_DURATION) -window $(SOAK_WINDOW)

## lint: go vet, gofmt, and two layout rules: no package under notifier/
## other than notifier/client imports store or a package under it (test
## files aside), and no non-test Go file outside testdata is longer than
## MAX_LINES lines. Every check runs; each offence is listed.
MAX_LINES := 500
MODULE := github.com/notifier/notifier
lint:
	@fail=0; \
	$(GO) vet ./... || fail=1; \
	unformatted=$$(gofmt -l .); \
	if [ -n "$$unformatted" ]; then echo "gofmt would change:"; echo "$$unformatted"; fail=1; fi; \
	imports=$$($(GO) list -f '{{.ImportPath}} {{join .Imports " "}}' ./notifier/...) || fail=1; \
	bad=$$(echo "$$imports" | awk '$$1 != "$(MODULE)/notifier/client" { \
		for (i = 2; i <= NF; i++) if ($$i == "$(MODULE)/store" || index($$i, "$(MODULE)/store/") == 1) print "  " $$1 " imports " $$i }'); \
	if [ -n "$$bad" ]; then echo "packages under notifier/ (bar notifier/client) must not import store:"; echo "$$bad"; fail=1; fi; \
	long=$$(find . -name '*.go' ! -name '*_test.go' ! -path '*/testdata/*' ! -path './.git/*' | sort | \
		while IFS= read -r f; do n=$$(wc -l <"$$f"); [ "$$n" -le $(MAX_LINES) ] || echo "  $${f#./}: $$n lines"; done); \
	if [ -n "$$long" ]; then echo "non-test Go files longer than $(MAX_LINES) lines:"; echo "$$long"; fail=1; fi; \
	exit $$fail

fmt:
	gofmt -w .

deps:
	@command -v $(GO) >/dev/null || { echo "Go is not installed: see https://go.dev/doc/install (Go 1.26 or later)"; exit 1; }
	@command -v gcc >/dev/null || { \
		if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq gcc libc6-dev >/dev/null; \
		else echo "gcc is missing (go-sqlite3 needs cgo): sudo apt-get install gcc"; exit 1; fi; }
	@command -v redis-server >/dev/null || { \
		if [ "$$(id -u)" = 0 ]; then echo "installing redis-server..."; apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends redis-server >/dev/null; \
		else echo "redis-server is missing: run 'sudo apt-get install redis-server' (or make test as root)"; exit 1; fi; }
	@command -v redis-server >/dev/null || { echo "redis-server still not on PATH after installing"; exit 1; }
	@command -v redis-cli >/dev/null || { echo "redis-cli is missing (the cluster tests need it): sudo apt-get install redis-tools"; exit 1; }

## test-deps: deps, plus Chromium for the web console's browser tests
test-deps: deps
	@command -v chromium >/dev/null || { \
		if [ "$$(id -u)" = 0 ]; then echo "installing chromium (the web console's browser tests drive it)..."; apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null; \
		else echo "chromium is missing (the web console's browser tests need it): run 'sudo apt-get install chromium' (or make test as root)"; exit 1; fi; }
	@command -v chromium >/dev/null || { echo "chromium still not on PATH after installing"; exit 1; }
