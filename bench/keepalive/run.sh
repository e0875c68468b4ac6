#!/usr/bin/env bash
# Keepalive benchmark: sipedge keeping N NATed registrations alive with SIP
# OPTIONS, N phones on loopback (one UDP socket and address each). Reports
# sipedge's CPU per ping, the schedule's spread, answers/misses and memory
# per binding. See bench/keepalive/README.md.
#
#   bench/keepalive/run.sh                  # full: 100,000 phones, ~5 minutes
#   bench/keepalive/run.sh quick            # 10,000 phones, ~2 minutes
#   bench/keepalive/run.sh summary [RUN_DIR]   # rebuild a run's summary.md
#   bench/keepalive/run.sh full -n 50000 -intervals 25s   # any kabench flags
#
# Results: bench/out/keepalive/runs/<UTC time>/ (one JSON per sipedge run,
# run.log, summary.md, sipedge logs and configs, profiles);
# bench/out/keepalive/latest points at the newest run.
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=bench/out/keepalive
BIN=$OUT/bin
mode=${1:-full}
[ $# -gt 0 ] && shift

mkdir -p "$BIN"
go build -o "$BIN/" ./cmd/sipedge ./bench/keepalive/kabench

case "$mode" in
summary)
	exec "$BIN/kabench" -summary "${1:-$OUT/latest}"
	;;
full | quick) ;;
*)
	echo "usage: $0 [full|quick|summary [RUN_DIR]] [kabench flags]" >&2
	exit 2
	;;
esac

# kabench keeps to its own plan; this is the hard stop. sipedge dies with
# kabench (parent-death signal), and kabench stops it by PID otherwise.
limit=7m
[ "$mode" = quick ] && limit=150s
exec timeout --kill-after=15s "$limit" "$BIN/kabench" -mode "$mode" -sipedge "$BIN/sipedge" -out "$OUT" "$@"
