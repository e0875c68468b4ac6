#!/usr/bin/env bash
# RTP relay benchmark: packets/s relayed, loss and added latency for sipedge's
# relay, a trivial Go relay (the reference limit) and, where Debian's
# rtpengine-daemon is installed, rtpengine in userspace mode, all on this
# machine over loopback. See bench/rtp/README.md.
#
#   bench/rtp/run.sh            # full plan, about 10 minutes
#   bench/rtp/run.sh quick      # about 2 minutes
#   bench/rtp/run.sh summary [RUN_DIR]   # rebuild a run's summary.md
#   bench/rtp/run.sh full -relays sipedge,rtpengine -loads 500,1000   # any rtpbench flags
#
# Results: bench/out/rtp/runs/<UTC time>/ (one JSON per step, run.log,
# summary.md), bench/out/rtp/latest points at the newest run.
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=bench/out/rtp
BIN=$OUT/bin
mode=${1:-full}
[ $# -gt 0 ] && shift

mkdir -p "$BIN"
go build -o "$BIN/" ./bench/rtp/rtpload ./bench/rtp/relayd ./bench/rtp/rtpbench

case "$mode" in
summary)
	exec "$BIN/rtpbench" -summary "${1:-$OUT/latest}"
	;;
full | quick) ;;
*)
	echo "usage: $0 [full|quick|summary [RUN_DIR]] [rtpbench flags]" >&2
	exit 2
	;;
esac

if [ ! -x /usr/bin/rtpengine ]; then
	echo "rtpengine is not installed: no comparison (apt-get install -y rtpengine-daemon; its service need not run)" >&2
fi
# The plan keeps to its own time budget; this is the hard stop. rtpbench's
# rtpload children and their relays die with it (parent-death signal).
limit=20m
[ "$mode" = quick ] && limit=6m
exec timeout --kill-after=20s "$limit" "$BIN/rtpbench" -mode "$mode" -out "$OUT" "$@"
