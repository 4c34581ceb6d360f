#!/bin/sh
# Start or stop a throwaway local Redis Cluster: three masters with one
# replica each, on 127.0.0.1 ports 7101-7106, data in DIR. Used by
# `make bench` for the cluster scenarios; handy to try --redis
# redis+cluster://127.0.0.1:7101 by hand.
#   deploy/local-cluster.sh start DIR     prints the redis+cluster:// URL
#   deploy/local-cluster.sh stop DIR
set -eu
cmd=${1:?start|stop}; dir=${2:?DIR}
ports="7101 7102 7103 7104 7105 7106"
case $cmd in
start)
	mkdir -p "$dir"
	for p in $ports; do
		redis-server --port "$p" --bind 127.0.0.1 --dir "$dir" --cluster-enabled yes \
			--cluster-config-file "nodes-$p.conf" --cluster-node-timeout 2000 --appendonly no --save "" \
			--notify-keyspace-events Ex --daemonize yes --pidfile "$dir/redis-$p.pid" --logfile "$dir/redis-$p.log"
	done
	wait_for() { # up to 30 s
		i=0
		until "$@" >/dev/null 2>&1; do
			i=$((i + 1)); [ "$i" -lt 300 ] || { echo "local cluster: timed out waiting for: $*" >&2; exit 1; }
			sleep 0.1
		done
	}
	for p in $ports; do wait_for redis-cli -p "$p" ping; done
	redis-cli --cluster create $(for p in $ports; do printf '127.0.0.1:%s ' "$p"; done) \
		--cluster-replicas 1 --cluster-yes >"$dir/create.log" 2>&1
	for p in $ports; do wait_for sh -c "redis-cli -p $p cluster info | grep -q cluster_state:ok"; done
	echo "redis+cluster://127.0.0.1:7101,127.0.0.1:7102,127.0.0.1:7103"
	;;
stop)
	for p in $ports; do
		[ -f "$dir/redis-$p.pid" ] && kill "$(cat "$dir/redis-$p.pid")" 2>/dev/null || true
	done
	;;
*) echo "usage: $0 start|stop DIR" >&2; exit 2 ;;
esac
