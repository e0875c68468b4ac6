#!/usr/bin/env bash
# bench/run.sh -- load benchmark: sipedge vs Kamailio 5.6, SIPp on loopback.
#
#   bench/run.sh [sipedge|kamailio|both] [register|register-auth|calls|memory|all]
#   bench/run.sh summary      (only rebuild bench/out/summary.md from bench/out/results)
#
# Every load run is bounded (sipp -m N, sipp -timeout, and a `timeout`
# wrapper) and stops by itself. Only 127.0.0.1 is used. Only processes this
# script started are stopped, by PID. See bench/README.md for what each
# figure means and the tunables (environment variables) below.
set -euo pipefail

# ---------------------------------------------------------------- settings --
STEP_SECONDS=${STEP_SECONDS:-10}          # length of one rate step
REG_RATES=${REG_RATES:-"5000 10000 20000 30000 40000 50000 60000 80000 100000"}
REGAUTH_RATES=${REGAUTH_RATES:-"2000 5000 10000 15000 20000 25000 30000 40000 60000"}
CALL_RATES=${CALL_RATES:-"500 1000 2000 3000 4000 5000 6000 7000 8000 10000"}
FAIL_PCT=${FAIL_PCT:-0.1}                 # a step passes with < FAIL_PCT % failed calls
RATE_TOLERANCE=${RATE_TOLERANCE:-0.95}    # ... and SIPp reached >= this share of the target rate
GRACE_S=${GRACE_S:-3}                     # ... and all calls ended within step + hold + GRACE_S
REFINE=${REFINE:-2}                       # bisection steps between last pass and first fail
RETRIES=${RETRIES:-1}                     # a failing step is run again this many times
COOLDOWN_S=${COOLDOWN_S:-3}               # pause between steps (longer after a failure)
REG_USERS=${REG_USERS:-10000}             # distinct users in the REGISTER/s tests
MEM_USERS=${MEM_USERS:-100000}            # distinct users registered in the memory test
MEM_RATE=${MEM_RATE:-5000}                # authenticated registrations/s in the memory test
MEM_SETTLE_S=${MEM_SETTLE_S:-30}          # wait before the second memory reading
SIPP_PROCS=${SIPP_PROCS:-1}               # parallel UAC sipp processes (rate split evenly)
CALL_HOLD_MS=${CALL_HOLD_MS:-1000}        # pause between ACK and BYE
# Kamailio UDP worker processes (-n): the best measured setting per test on
# 2 cores shared with SIPp (see README). KAM_CHILDREN overrides both.
KAM_CHILDREN_REG=${KAM_CHILDREN:-${KAM_CHILDREN_REG:-1}}     # register, register-auth, memory
KAM_CHILDREN_CALLS=${KAM_CHILDREN:-${KAM_CHILDREN_CALLS:-2}} # calls
KAM_SHM_MB=${KAM_SHM_MB:-4096}            # Kamailio shared memory (-m); 1 GB runs out in overloaded call steps
KAM_PKG_MB=${KAM_PKG_MB:-128}             # Kamailio private memory per process (-M)
QUIET_MAX_PCT=${QUIET_MAX_PCT:-15}        # machine busy (% of all cores) tolerated before a step
QUIET_WAIT_S=${QUIET_WAIT_S:-120}         # how long to wait for a quiet machine
SIPP=${SIPP:-/usr/bin/sipp}
KAMAILIO=${KAMAILIO:-/usr/sbin/kamailio}
KAMCMD=${KAMCMD:-/usr/sbin/kamcmd}

SE_PORT=5060          # from bench/sipedge-bench.toml
SE_ADMIN=127.0.0.1:5080
SE_TOKEN=benchtoken
KAM_PORT=${KAM_PORT:-5070}
UAS_PORT=${UAS_PORT:-25990}
UAC_PORT_BASE=${UAC_PORT_BASE:-26000}
DOMAIN=bench.example
CALLEE=uas
CALLEE_PW=uas-secret

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
BENCH="$ROOT/bench"
OUT="$BENCH/out"
SCEN="$BENCH/scenarios"
SE_CONFIG=bench/sipedge-bench.toml
SE_DATA="$OUT/sipedge-data"            # = data_dir in bench/sipedge-bench.toml
SE_TEMPLATE="$OUT/sipedge-data-template"
SE_BIN="$OUT/sipedge"
USERS_ALL="$OUT/users/all"              # max(REG_USERS, MEM_USERS) users: server side
USERS_REG="$OUT/users/reg"              # REG_USERS users: SIPp side, REGISTER/s
USERS_MEM="$OUT/users/mem"              # MEM_USERS users: SIPp side, memory test
STATS="$OUT/stats"
LOGS="$OUT/logs"
RESULTS="$OUT/results"
CLK_TCK=$(getconf CLK_TCK)
NCPU=$(nproc)

usage() {
	sed -n '2,10p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
	exit 2
}

TARGET=${1:-both}
TEST=${2:-all}
case "$TARGET" in sipedge | kamailio | both | summary) ;; -h | --help) usage ;; *) usage ;; esac
case "$TEST" in register | register-auth | calls | memory | all) ;; *) usage ;; esac

mkdir -p "$OUT" "$STATS" "$LOGS" "$RESULTS"
# SIPp wants (open calls + sockets) below the open-files limit.
ulimit -n 200000 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
RUN_LOG="$LOGS/run-$(date +%Y%m%d-%H%M%S).log"

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" | tee -a "$RUN_LOG" >&2; }
out() { printf '%s\n' "$*" | tee -a "$RUN_LOG"; }
die() {
	log "ERROR: $*"
	exit 1
}

# ------------------------------------------------------ process bookkeeping --
# PIDs of everything this script started and has not yet stopped.
declare -A STARTED=()
SERVER_PID=""
SERVER_NAME=""
SERVER_LOG=""
CURRENT_TEST=""
UAS_PID=""

stop_pid() { # stop_pid PID [seconds]: TERM, wait, then KILL -- only our own PIDs
	local pid=$1 t=${2:-10} i
	[[ -n "$pid" ]] || return 0
	if kill -0 "$pid" 2>/dev/null; then
		kill -TERM "$pid" 2>/dev/null || true
		for ((i = 0; i < t * 10; i++)); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		if kill -0 "$pid" 2>/dev/null; then
			log "pid $pid did not stop after ${t}s; sending KILL"
			kill -KILL "$pid" 2>/dev/null || true
		fi
	fi
	wait "$pid" 2>/dev/null || true
	unset "STARTED[$pid]"
}

cleanup() {
	local pid
	for pid in "${!STARTED[@]}"; do stop_pid "$pid" 5; done
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT TERM

# ------------------------------------------------------------ small helpers --
calc() { awk "BEGIN { printf \"%s\", $* }"; }
fmt_int() { awk -v x="$1" 'BEGIN { printf "%d", x + 0.5 }'; }

proc_ticks() { # utime+stime of the given PIDs, in clock ticks
	local t=0 p v
	for p in "$@"; do
		v=$(awk '{ print $14 + $15 }' "/proc/$p/stat" 2>/dev/null || echo 0)
		t=$((t + v))
	done
	echo "$t"
}

machine_ticks() { # "busy total" jiffies over all cores
	awk '/^cpu / { idle = $5 + $6; tot = 0; for (i = 2; i <= 9; i++) tot += $i; print tot - idle, tot; exit }' /proc/stat
}

machine_busy_pct() { # busy % of the whole machine over $1 seconds
	local a b
	a=$(machine_ticks)
	sleep "${1:-2}"
	b=$(machine_ticks)
	awk -v a="$a" -v b="$b" 'BEGIN { split(a, x, " "); split(b, y, " "); d = y[2] - x[2]; if (d <= 0) d = 1; printf "%d", 100 * (y[1] - x[1]) / d }'
}

wait_quiet() { # wait until the machine is (nearly) idle apart from our server
	local waited=0 busy
	busy=$(machine_busy_pct 2)
	while ((busy > QUIET_MAX_PCT)); do
		if ((waited >= QUIET_WAIT_S)); then
			log "machine still ${busy}% busy after ${waited}s (other processes); measuring anyway -- see the bg% column"
			return 0
		fi
		log "machine ${busy}% busy (other processes); waiting for it to calm down"
		sleep 5
		waited=$((waited + 7))
		busy=$(machine_busy_pct 2)
	done
}

server_pids() { # the server's PIDs: the main process and its children
	[[ -n "$SERVER_PID" ]] || return 0
	echo "$SERVER_PID"
	ps -o pid= --ppid "$SERVER_PID" 2>/dev/null | tr -d ' ' || true
}

server_alive() { [[ -n "$SERVER_PID" ]] && kill -0 "$SERVER_PID" 2>/dev/null; }

wait_udp_port() { # wait_udp_port PORT SECONDS
	local port=$1 t=$2 i
	for ((i = 0; i < t * 10; i++)); do
		if ss -uln "sport = :$port" 2>/dev/null | grep -q ":$port"; then return 0; fi
		server_alive || return 1
		sleep 0.1
	done
	return 1
}

port_free() { ! ss -uln "sport = :$1" 2>/dev/null | grep -q ":$1"; }

# -------------------------------------------------------------- user files --
prepare_users() {
	local all=$REG_USERS splits="1"
	((MEM_USERS > all)) && all=$MEM_USERS
	((SIPP_PROCS > 1)) && splits="1,$SIPP_PROCS"
	local stamp="$OUT/users/.stamp"
	local want="all=$all reg=$REG_USERS mem=$MEM_USERS splits=$splits"
	if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" && -x "$OUT/genusers" ]]; then
		return 0
	fi
	log "generating user files ($want)"
	go build -o "$OUT/genusers" ./bench/tools/genusers
	rm -rf "$OUT/users"
	"$OUT/genusers" -n "$all" -realm "$DOMAIN" -out "$USERS_ALL" -split 1 \
		-callee "$CALLEE" -callee-password "$CALLEE_PW"
	"$OUT/genusers" -n "$REG_USERS" -realm "$DOMAIN" -out "$USERS_REG" -split "$splits"
	"$OUT/genusers" -n "$MEM_USERS" -realm "$DOMAIN" -out "$USERS_MEM" -split "$splits"
	echo "$want" >"$stamp"
}

sipp_users() { # sipp_users SET I P -> injection file for process I of P
	local dir
	case "$1" in reg) dir=$USERS_REG ;; mem) dir=$USERS_MEM ;; esac
	echo "$dir/sipp-users-$2-of-$3.csv"
}

# ---------------------------------------------------------------- Kamailio --
KAM_RUN="$OUT/kamailio-run"

kamailio_available() { [[ -x "$KAMAILIO" ]] && "$KAMAILIO" -V >/dev/null 2>&1; }

start_kamailio() { # start_kamailio auth|noauth CHILDREN
	local mode=$1 children=$2 args
	port_free "$KAM_PORT" || die "udp port $KAM_PORT is in use"
	rm -rf "$KAM_RUN"
	mkdir -p "$KAM_RUN"
	args=(-DD -E -f "$BENCH/kamailio/kamailio-bench.cfg"
		-Y "$KAM_RUN" -P "$KAM_RUN/kamailio.pid"
		-m "$KAM_SHM_MB" -M "$KAM_PKG_MB" -n "$children"
		-A "BENCH_LISTEN=udp:127.0.0.1:$KAM_PORT"
		-A "BENCH_CTL=\"unixs:$KAM_RUN/kamailio_ctl\"")
	if [[ "$mode" == auth ]]; then
		args+=(-A WITH_AUTH -A "BENCH_DBURL=\"text://$USERS_ALL/kamailio-db\"")
	fi
	log "starting Kamailio ($mode, $children UDP worker(s), shm ${KAM_SHM_MB}MB, pkg ${KAM_PKG_MB}MB) on 127.0.0.1:$KAM_PORT"
	SERVER_LOG="$LOGS/kamailio-$CURRENT_TEST.log"
	"$KAMAILIO" "${args[@]}" >"$SERVER_LOG" 2>&1 &
	SERVER_PID=$!
	SERVER_NAME=kamailio
	STARTED[$SERVER_PID]=kamailio
	wait_udp_port "$KAM_PORT" 30 || {
		tail -20 "$SERVER_LOG" >&2
		die "Kamailio did not start"
	}
	local i
	for ((i = 0; i < 50; i++)); do
		"$KAMCMD" -s "unixs:$KAM_RUN/kamailio_ctl" core.uptime >/dev/null 2>&1 && break
		sleep 0.1
	done
	if [[ "$mode" == auth ]]; then
		local n
		n=$("$KAMCMD" -s "unixs:$KAM_RUN/kamailio_ctl" htable.stats 2>/dev/null | awk '/all:/ { print $2; exit }')
		log "Kamailio htable 'ha1' holds ${n:-?} users"
	fi
	sleep 1
}

kam_shm_used() { "$KAMCMD" -s "unixs:$KAM_RUN/kamailio_ctl" core.shmmem 2>/dev/null | awk '/real_used:/ { print $2; exit }'; }

# ----------------------------------------------------------------- sipedge --
build_sipedge() {
	if [[ -x "$SE_BIN" ]] && [[ -z "$(find . -path ./bench -prune -o \( -name '*.go' -o -name go.mod -o -name go.sum \) -newer "$SE_BIN" -print -quit)" ]]; then
		return 0
	fi
	log "building sipedge (go build -o bench/out/sipedge ./cmd/sipedge)"
	go build -o "$SE_BIN" ./cmd/sipedge || die "go build ./cmd/sipedge failed"
	rm -rf "$SE_TEMPLATE" # the store format may have changed
}

prepare_sipedge_users() {
	local csv="$USERS_ALL/sipedge-users.csv"
	if [[ -d "$SE_TEMPLATE" && "$SE_TEMPLATE/.stamp" -nt "$csv" && "$SE_TEMPLATE/.stamp" -nt "$SE_CONFIG" ]]; then return 0; fi
	rm -rf "$SE_TEMPLATE"
	mkdir -p "$SE_TEMPLATE"
	log "importing $(wc -l <"$csv") users into the sipedge user store (sipedge user import)"
	local t0 t1
	t0=$(date +%s.%N)
	# -c matters: the store keeps HA1 values, computed for the realm of the config.
	if ! "$SE_BIN" user import -c "$SE_CONFIG" --data-dir "$SE_TEMPLATE" "$csv" >"$LOGS/sipedge-import.log" 2>&1; then
		cat "$LOGS/sipedge-import.log" >&2
		die "'sipedge user import' failed (see above); users cannot be provisioned"
	fi
	t1=$(date +%s.%N)
	log "$(tail -1 "$LOGS/sipedge-import.log") in $(calc "$t1 - $t0" | cut -c1-5)s"
	touch "$SE_TEMPLATE/.stamp"
}

start_sipedge() {
	port_free "$SE_PORT" || die "udp port $SE_PORT is in use"
	rm -rf "$SE_DATA"
	cp -a "$SE_TEMPLATE" "$SE_DATA"
	log "starting sipedge ($("$SE_BIN" version 2>/dev/null | head -1)) on 127.0.0.1:$SE_PORT"
	SERVER_LOG="$LOGS/sipedge-$CURRENT_TEST.log"
	"$SE_BIN" serve -c "$SE_CONFIG" >"$SERVER_LOG" 2>&1 &
	SERVER_PID=$!
	SERVER_NAME=sipedge
	STARTED[$SERVER_PID]=sipedge
	wait_udp_port "$SE_PORT" 30 || {
		tail -20 "$SERVER_LOG" >&2
		die "sipedge did not start"
	}
	local i
	for ((i = 0; i < 100; i++)); do
		curl -fsS -m 2 -H "Authorization: Bearer $SE_TOKEN" "http://$SE_ADMIN/api/v1/status" >/dev/null 2>&1 && break
		sleep 0.1
	done
	sleep 1
}

se_status() { curl -fsS -m 5 -H "Authorization: Bearer $SE_TOKEN" "http://$SE_ADMIN/api/v1/status" 2>/dev/null || true; }

# server_report: after a test, save the server's own counters and show
# what it logged (warnings, errors) -- problems under load show up here.
server_report() {
	server_alive || {
		out "**$SERVER_NAME is not running any more** (see $SERVER_LOG)"
		return 0
	}
	local f="$LOGS/$SERVER_NAME-$CURRENT_TEST-counters"
	if [[ "$SERVER_NAME" == sipedge ]]; then
		se_status >"$f.json"
		local c
		c=$(jq -r '[(.counters // {} | to_entries[] | select(.value > 0) | "\(.key)=\(.value)"), "transactions=\(.transactions // {} | tostring)"] | join(" ")' "$f.json" 2>/dev/null || true)
		out "sipedge counters after $CURRENT_TEST: ${c:-unavailable}"
	else
		"$KAMCMD" -s "unixs:$KAM_RUN/kamailio_ctl" stats.get_statistics all >"$f.txt" 2>/dev/null || true
		local c
		c=$(tr -d ' \t' <"$f.txt" | grep -E '^(core:(drop_requests|drop_replies|err_requests|err_replies|bad_msg_hdr|rcv_requests|rcv_replies)|tmx:(active_transactions|UAS_transactions|UAC_transactions)|usrloc:registered_users|sl:(1xx|2xx|4xx|5xx)_replies)=' |
			tr '\n' ' ' || true)
		out "Kamailio counters after $CURRENT_TEST: ${c:-unavailable}"
	fi
	local n
	n=$(grep -ciE 'level=(warn|error)|\b(WARN|ERROR|ERR|CRITICAL|panic)\b' "$SERVER_LOG" 2>/dev/null || true)
	if [[ "${n:-0}" -gt 0 ]]; then
		out "$SERVER_NAME logged $n warning/error lines during $CURRENT_TEST (first 5; all in ${SERVER_LOG#"$ROOT"/}):"
		{ grep -iE 'level=(warn|error)|\b(WARN|ERROR|ERR|CRITICAL|panic)\b' "$SERVER_LOG" || true; } | head -5 | cut -c1-300 | sed 's/^/    /' | tee -a "$RUN_LOG" || true
	fi
}

stop_server() {
	[[ -n "$SERVER_PID" ]] || return 0
	server_report
	log "stopping $SERVER_NAME (pid $SERVER_PID)"
	stop_pid "$SERVER_PID" 15
	SERVER_PID=""
}

start_server() { # start_server NAME auth|noauth [kamailio-children]
	stop_server
	case "$1" in
	kamailio) start_kamailio "$2" "${3:-$KAM_CHILDREN_REG}" ;;
	sipedge) start_sipedge ;;
	esac
}

server_port() { case "$1" in kamailio) echo "$KAM_PORT" ;; sipedge) echo "$SE_PORT" ;; esac; }

# -------------------------------------------------------------------- SIPp --
# run_sipp_step SERVER TEST RATE TAG -> prints one result line:
#   created ok failed retrans achieved_rate wall_s rt_ms sipp_cpu_s server_cpu_s bg_pct
run_sipp_step() {
	local server=$1 test=$2 rate=$3 tag=$4 users_set=${5:-reg} seconds=${6:-$STEP_SECONDS}
	local port P=$SIPP_PROCS i r m hold_s=0 scen extra=()
	port=$(server_port "$server")
	case "$test" in
	register) scen=register-noauth.xml ;;
	register-auth) scen=register-auth.xml extra=(-auth_uri "$DOMAIN") ;;
	calls)
		scen=uac-call.xml extra=(-d "$CALL_HOLD_MS" -key callee "$CALLEE")
		hold_s=$(calc "$CALL_HOLD_MS / 1000")
		;;
	esac
	local tmax
	tmax=$(fmt_int "$(calc "$seconds * 3 + $hold_s + 30")")
	local pids=() files=() ms=() cpus=()
	local pids_server
	mapfile -t pids_server < <(server_pids)
	local uasp="" s0 u0 m0 t0
	[[ -z "$UAS_PID" ]] || uasp=$(uas_sipp_pid)
	s0=$(proc_ticks "${pids_server[@]}")
	u0=$(proc_ticks $uasp)
	m0=$(machine_ticks)
	t0=$(date +%s.%N)
	for ((i = 1; i <= P; i++)); do
		r=$((rate / P))
		((i <= rate % P)) && r=$((r + 1))
		m=$(fmt_int "$(calc "$r * $seconds")")
		ms+=("$m")
		local f="$STATS/$server-$test-$tag-p$i.csv"
		rm -f "$f" "$f.cpu"
		files+=("$f")
		local inf=()
		[[ "$test" == calls ]] || inf=(-inf "$(sipp_users "$users_set" "$i" "$P")")
		/usr/bin/time -f "%U %S" -o "$f.cpu" \
			timeout -k 5 "$((tmax + 10))" "$SIPP" "127.0.0.1:$port" \
			-sf "$SCEN/$scen" "${inf[@]}" "${extra[@]}" \
			-key domain "$DOMAIN" -i 127.0.0.1 -p "$((UAC_PORT_BASE + i))" -t u1 \
			-r "$r" -rp 1000 -m "$m" -l "$(max_calls "$r")" \
			-nostdin -nd -buff_size 4194304 -recv_timeout 10000 -timeout "${tmax}s" \
			-trace_stat -stf "$f" -fd 1 \
			-trace_err -error_file "$f.errors.log" -max_log_size 2000000 \
			>/dev/null 2>"$f.stderr" &
		pids+=($!)
		STARTED[$!]=sipp
	done
	for i in "${!pids[@]}"; do
		wait "${pids[$i]}" 2>/dev/null || true
		unset "STARTED[${pids[$i]}]"
	done
	local t1 m1 s1 u1
	t1=$(date +%s.%N)
	m1=$(machine_ticks)
	s1=$(proc_ticks "${pids_server[@]}")
	u1=$(proc_ticks $uasp)
	for ((i = 0; i < P; i++)); do cpus+=("$(cat "${files[$i]}.cpu" 2>/dev/null | tail -1 || echo "0 0")"); done
	# Per process: created, ok, failed, retrans, generation time, response time.
	local agg
	agg=$(for ((i = 0; i < P; i++)); do
		awk -F';' -v m="${ms[$i]}" '
			function ep(s,  a) { n = split(s, a, "\t"); return a[n] + 0 }
			function rt(s,  a) { split(s, a, ":"); return (a[1] * 3600 + a[2] * 60 + a[3]) * 1000 + a[4] / 1000 }
			NR == 1 { next }
			{
				st = ep($1); ct = ep($3); c = $13 + 0
				if (!started) { pt = st; pc = 0; started = 1 }
				if (!done && c >= m) {
					t = (c > pc) ? pt + (m - pc) / (c - pc) * (ct - pt) : ct
					gen = t - st; done = 1
				}
				pc = c; pt = ct
				created = $13; ok = $16; failed = $18; retr = $58; rtms = rt($70)
			}
			END {
				if (!done) gen = -1
				printf "%d %d %d %d %.3f %.3f\n", created, ok, failed, retr, gen, rtms
			}' "${files[$i]}" 2>/dev/null || echo "0 0 0 0 -1 0"
	done)
	local sipp_cpu
	# CPU seconds of all sipp processes of this step, plus the UAS if running
	sipp_cpu=$(printf '%s\n' "${cpus[@]}" | awk -v u="$((u1 - u0))" -v tck="$CLK_TCK" '{ s += $1 + $2 } END { printf "%.2f", s + u / tck }')
	printf '%s\n' "$agg" | awk -v t0="$t0" -v t1="$t1" -v m0="$m0" -v m1="$m1" \
		-v s0="$s0" -v s1="$s1" -v tck="$CLK_TCK" -v sc="$sipp_cpu" -v ms="${ms[*]}" '
		BEGIN { split(ms, M, " ") }
		{
			i++; c += $1; ok += $2; f += $3; r += $4
			if ($5 > 0) ach += M[i] / $5; else bad = 1
			rt += $6 * $2; 
		}
		END {
			wall = t1 - t0
			split(m0, a, " "); split(m1, b, " ")
			busy = (b[1] - a[1]) / tck; tot = (b[2] - a[2]) / tck
			srv = (s1 - s0) / tck
			bg = (tot > 0) ? 100 * (busy - srv - sc) / tot : 0
			if (bg < 0) bg = 0
			if (bad) ach = 0
			printf "%d %d %d %d %.0f %.2f %.2f %.2f %.2f %.0f\n", c, ok, f, r, ach, wall, (ok > 0 ? rt / ok : 0), sc, srv, bg
		}'
}

max_calls() { # sipp -l for a process sending $1 calls/s: 20 s worth, below the open-files limit
	local l=$(($1 * 20 + 100)) cap
	cap=$(($(ulimit -n) - 1000))
	((cap > 1000)) || cap=1000
	((l < cap)) || l=$cap
	echo "$l"
}

# The UAS (called party) for the calls test.
uas_sipp_pid() { # the sipp process under the timeout wrapper
	ps -o pid= --ppid "$UAS_PID" 2>/dev/null | tr -d ' ' | head -1 || true
}

start_uas() { # start_uas SERVER
	local server=$1 port
	port=$(server_port "$server")
	port_free "$UAS_PORT" || die "udp port $UAS_PORT is in use"
	local budget=3600 # seconds the UAS stays up at most; stopped by PID when done
	local f="$STATS/$server-calls-uas.csv"
	rm -f "$f"
	timeout -k 5 "$((budget + 30))" "$SIPP" "127.0.0.1:$port" \
		-sf "$SCEN/uas-register.xml" -oocsf "$SCEN/uas-answer.xml" \
		-key domain "$DOMAIN" -key callee "$CALLEE" -au "$CALLEE" -ap "$CALLEE_PW" -auth_uri "$DOMAIN" \
		-i 127.0.0.1 -p "$UAS_PORT" -t u1 -m 1 -d "$((budget * 1000))" \
		-nostdin -nd -buff_size 4194304 -timeout "${budget}s" \
		-trace_stat -stf "$f" -fd 5 \
		>/dev/null 2>"$f.stderr" &
	UAS_PID=$!
	STARTED[$UAS_PID]=sipp-uas
	log "started the UAS (sipp, user '$CALLEE', port $UAS_PORT, pid $UAS_PID)"
	# Readiness: a single test call must succeed (the UAS is registered).
	local i line
	for ((i = 1; i <= 5; i++)); do
		sleep 1
		line=$(SIPP_PROCS=1 run_sipp_step "$server" calls 1 "probe$i" reg 1)
		if [[ "$(awk '{ print $2 }' <<<"$line")" -ge 1 ]]; then
			log "UAS registered; probe call ok"
			return 0
		fi
	done
	die "the UAS could not be reached through $server (probe calls failed; see $STATS/$server-calls-probe*)"
}

stop_uas() {
	[[ -n "$UAS_PID" ]] || return 0
	stop_pid "$UAS_PID" 10
	UAS_PID=""
}

# ---------------------------------------------------------------- stepping --
STEP_HDR="| target/s | try | calls | ok | failed | fail % | retrans | achieved/s | wall s | avg RT ms | server CPU % | sipp CPU % | bg CPU % | server mem MB | verdict |"
STEP_SEP="|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"

server_mem_mb() { # the server allocator's view right after a step: Kamailio shm used, sipedge Go heap
	local b=""
	if [[ "$SERVER_NAME" == kamailio ]]; then b=$(kam_shm_used); else b=$(se_status | jq -r '.heap_bytes // empty' 2>/dev/null || true); fi
	if [[ -n "$b" ]]; then awk -v b="$b" 'BEGIN { printf "%.0f", b / 1048576 }'; else echo "?"; fi
}

# step SERVER TEST RATE TRY -> sets STEP_PASS (0/1), appends a table row
step() {
	local server=$1 test=$2 rate=$3 try=$4 hold_s=0 line
	[[ "$test" == calls ]] && hold_s=$(calc "$CALL_HOLD_MS / 1000 + 0.5")
	wait_quiet
	line=$(run_sipp_step "$server" "$test" "$rate" "r$rate-t$try")
	local c ok f r ach wall rt sc srv bg
	read -r c ok f r ach wall rt sc srv bg <<<"$line"
	local expect fpct verdict
	expect=$(fmt_int "$(calc "$rate * $STEP_SECONDS")")
	fpct=$(calc "($c > 0) ? 100 * ($c - $ok) / $c : 100")
	verdict=$(awk -v c="$c" -v ok="$ok" -v e="$expect" -v fp="$fpct" -v maxf="$FAIL_PCT" \
		-v ach="$ach" -v rate="$rate" -v tol="$RATE_TOLERANCE" -v wall="$wall" \
		-v lim="$(calc "$STEP_SECONDS + $hold_s + $GRACE_S")" 'BEGIN {
			v = ""
			if (c < e) v = v "not all calls created; "
			if (fp >= maxf) v = v sprintf("%.3f%% failed; ", fp)
			if (ach < tol * rate) v = v sprintf("rate reached %d/s; ", ach)
			if (wall > lim) v = v sprintf("took %.1fs > %.1fs; ", wall, lim)
			if (v == "") print "PASS"; else { sub(/; $/, "", v); print "FAIL: " v }
		}')
	if ! server_alive; then verdict="FAIL: server died"; fi
	local cpu_srv cpu_sipp mem
	mem=$(server_mem_mb)
	cpu_srv=$(calc "100 * $srv / $wall" | cut -d. -f1)
	cpu_sipp=$(calc "100 * $sc / $wall" | cut -d. -f1)
	out "| $rate | $try | $c | $ok | $((c - ok)) | $(printf '%.3f' "$fpct") | $r | $ach | $wall | $rt | $cpu_srv | $cpu_sipp | $bg | $mem | $verdict |"
	printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$(date +%FT%T)" "$server" "$test" "$rate" "$try" \
		"$c" "$ok" "$r" "$ach" "$wall" "$rt" "$cpu_srv" "$cpu_sipp" "$bg" "$mem" "$verdict" >>"$RESULTS/steps.tsv"
	STEP_PASS=0
	[[ "$verdict" == PASS ]] && STEP_PASS=1
	if [[ "$STEP_PASS" == 1 ]]; then sleep "$COOLDOWN_S"; else sleep "$((COOLDOWN_S * 3))"; fi
	server_alive || return 1
	return 0
}

# step_rate SERVER TEST RATE: passes if any of 1+RETRIES tries passes
step_rate() {
	local try
	for ((try = 1; try <= 1 + RETRIES; try++)); do
		step "$@" "$try" || {
			STEP_PASS=0
			return 1
		}
		[[ "$STEP_PASS" == 1 ]] && return 0
	done
	return 0
}

# find_max SERVER TEST "RATES" GRANULARITY -> sets FOUND_MAX, FOUND_NOTE
find_max() {
	local server=$1 test=$2 rates=$3 gran=$4 rate lo=0 hi=0
	out ""
	out "### $server: $test (steps of ${STEP_SECONDS}s, pass = < ${FAIL_PCT}% failed, rate reached, no backlog)"
	out ""
	out "$STEP_HDR"
	out "$STEP_SEP"
	for rate in $rates; do
		if ! step_rate "$server" "$test" "$rate"; then
			hi=$rate
			log "$server died during the $rate/s step"
			break
		fi
		if [[ "$STEP_PASS" == 1 ]]; then lo=$rate; else
			hi=$rate
			break
		fi
	done
	local i mid
	if ((hi > 0)) && server_alive; then
		for ((i = 0; i < REFINE; i++)); do
			mid=$(((lo + hi) / 2 / gran * gran))
			((mid > lo && mid < hi)) || break
			step_rate "$server" "$test" "$mid" || break
			if [[ "$STEP_PASS" == 1 ]]; then lo=$mid; else hi=$mid; fi
		done
	fi
	FOUND_MAX=$lo
	local cond=""
	if [[ "$server" == kamailio ]]; then
		if [[ "$test" == calls ]]; then cond="$KAM_CHILDREN_CALLS Kamailio worker(s)"; else cond="$KAM_CHILDREN_REG Kamailio worker(s)"; fi
	fi
	((SIPP_PROCS == 1)) || cond="${cond:+$cond, }$SIPP_PROCS SIPp UAC processes"
	if ((hi == 0)); then
		FOUND_NOTE="all steps passed; highest tested rate"
	elif ((lo == 0)); then
		FOUND_NOTE="already the lowest step ($hi/s) failed"
	else
		FOUND_NOTE="$hi/s failed"
	fi
	FOUND_NOTE="$FOUND_NOTE${cond:+; $cond}"
	out ""
	out "**$server $test: $FOUND_MAX/s** ($FOUND_NOTE)"
}

# ----------------------------------------------------------------- results --
# results file: metric<TAB>value<TAB>note<TAB>timestamp
set_result() { # set_result SERVER METRIC VALUE NOTE
	local f="$RESULTS/$1.tsv"
	touch "$f"
	grep -v "^$2	" "$f" >"$f.tmp" || true
	printf '%s\t%s\t%s\t%s\n' "$2" "$3" "$4" "$(date '+%F %H:%M')" >>"$f.tmp"
	mv "$f.tmp" "$f"
}
get_result() { awk -F'\t' -v k="$2" '$1 == k { v = $2 } END { print v }' "$RESULTS/$1.tsv" 2>/dev/null || true; }
get_note() { awk -F'\t' -v k="$2" '$1 == k { v = $3 " (" $4 ")" } END { print v }' "$RESULTS/$1.tsv" 2>/dev/null || true; }

# ------------------------------------------------------------------- tests --
test_register() { # no auth
	local server=$1
	CURRENT_TEST=register
	if [[ "$server" == sipedge ]]; then
		log "sipedge: REGISTER without auth is not measured (sipedge always authenticates REGISTER)"
		set_result sipedge register "n/a" "sipedge always authenticates REGISTER"
		return 0
	fi
	start_server "$server" noauth
	find_max "$server" register "$REG_RATES" 1000
	set_result "$server" register "$FOUND_MAX" "$FOUND_NOTE"
	stop_server
}

test_register_auth() {
	local server=$1
	CURRENT_TEST=register-auth
	start_server "$server" auth
	find_max "$server" register-auth "$REGAUTH_RATES" 1000
	set_result "$server" register-auth "$FOUND_MAX" "$FOUND_NOTE"
	stop_server
}

test_calls() {
	local server=$1
	CURRENT_TEST=calls
	start_server "$server" auth "$KAM_CHILDREN_CALLS"
	start_uas "$server"
	find_max "$server" calls "$CALL_RATES" 250
	set_result "$server" calls "$FOUND_MAX" "$FOUND_NOTE"
	stop_uas
	stop_server
}

rss_kb() { # VmRSS and Pss summed over the server's processes, in kB: "rss pss"
	local p rss=0 pss=0 v
	for p in $(server_pids); do
		v=$(awk '/^VmRSS:/ { print $2 }' "/proc/$p/status" 2>/dev/null || echo 0)
		rss=$((rss + ${v:-0}))
		v=$(awk '/^Pss:/ { print $2 }' "/proc/$p/smaps_rollup" 2>/dev/null || echo 0)
		pss=$((pss + ${v:-0}))
	done
	echo "$rss $pss"
}

test_memory() {
	local server=$1
	CURRENT_TEST=memory
	start_server "$server" auth
	sleep 2
	local before after settled shm0="" shm1="" st0="" st1="" h0="" h1=""
	before=$(rss_kb)
	[[ "$server" == kamailio ]] && shm0=$(kam_shm_used)
	[[ "$server" == sipedge ]] && st0=$(se_status)
	out ""
	out "### $server: memory per registration ($MEM_USERS distinct users, digest auth, $MEM_RATE/s)"
	out ""
	local secs line
	secs=$(calc "$MEM_USERS / $MEM_RATE")
	line=$(run_sipp_step "$server" register-auth "$MEM_RATE" mem mem "$secs")
	local c ok f r ach wall rt sc srv bg
	read -r c ok f r ach wall rt sc srv bg <<<"$line"
	out "registrations: $ok ok of $c sent, $r retransmissions, ${wall}s"
	sleep 3
	after=$(rss_kb)
	[[ "$server" == kamailio ]] && shm1=$(kam_shm_used)
	log "waiting ${MEM_SETTLE_S}s for a settled reading"
	sleep "$MEM_SETTLE_S"
	settled=$(rss_kb)
	[[ "$server" == sipedge ]] && st1=$(se_status)
	local rss0 pss0 rss1 pss1 rss2 pss2
	read -r rss0 pss0 <<<"$before"
	read -r rss1 pss1 <<<"$after"
	read -r rss2 pss2 <<<"$settled"
	local n=$ok
	((n > 0)) || n=1
	# Headline: RSS for sipedge (one process); for Kamailio, the sum of PSS over
	# all its processes (shared memory is counted once, split between them).
	local base now label
	if [[ "$server" == kamailio ]]; then
		base=$pss0 now=$pss2 label="PSS summed over all Kamailio processes"
	else
		base=$rss0 now=$rss2 label="VmRSS"
	fi
	local bpr
	bpr=$(fmt_int "$(calc "($now - $base) * 1024 / $n")")
	out ""
	out "| reading | VmRSS sum kB | PSS sum kB |"
	out "|---|---:|---:|"
	out "| before | $rss0 | $pss0 |"
	out "| +3 s | $rss1 | $pss1 |"
	out "| +${MEM_SETTLE_S}s more | $rss2 | $pss2 |"
	out ""
	local base3
	if [[ "$server" == kamailio ]]; then base3=$pss1; else base3=$rss1; fi
	out "per registration ($label, settled): **$bpr B** (reading at +3 s: $(fmt_int "$(calc "($base3 - $base) * 1024 / $n")") B)"
	local note=""
	if [[ "$server" == kamailio && -n "$shm0" && -n "$shm1" ]]; then
		note="shm allocator real_used: $(fmt_int "$(calc "($shm1 - $shm0) / $n")") B/registration"
		out "$note"
	fi
	if [[ "$server" == sipedge && -n "$st1" ]]; then
		printf '%s\n' "$st0" >"$LOGS/sipedge-status-before.json"
		printf '%s\n' "$st1" >"$LOGS/sipedge-status-after.json"
		local regs
		h0=$(jq -r '.heap_bytes // empty' <<<"$st0" 2>/dev/null || true)
		h1=$(jq -r '.heap_bytes // empty' <<<"$st1" 2>/dev/null || true)
		regs=$(jq -r '.registrations // empty' <<<"$st1" 2>/dev/null || true)
		if [[ -n "$h0" && -n "$h1" ]]; then
			note="Go heap (heap_bytes from /api/v1/status): $(fmt_int "$(calc "($h1 - $h0) / $n")") B/registration; server reports $regs registrations"
			out "$note"
		fi
	fi
	local alloc=""
	if [[ "$server" == kamailio && -n "$shm0" && -n "$shm1" ]]; then
		alloc=$(fmt_int "$(calc "($shm1 - $shm0) / $n")")
		set_result "$server" memory-alloc "$alloc" "shared memory allocator real_used (kamcmd core.shmmem)"
	fi
	if [[ "$server" == sipedge && -n "${h0:-}" && -n "${h1:-}" ]]; then
		alloc=$(fmt_int "$(calc "($h1 - $h0) / $n")")
		set_result "$server" memory-alloc "$alloc" "Go heap_bytes from /api/v1/status"
	fi
	local fails=""
	if ((ok < c)); then fails="; $((c - ok)) of $c registrations failed"; fi
	set_result "$server" memory "$bpr" "$label, settled, over $ok registrations$fails"
	stop_server
}

# ----------------------------------------------------------------- summary --
write_summary() {
	local f="$OUT/summary.md" k s kv sv ratio
	local kver sver
	kver=$("$KAMAILIO" -v 2>/dev/null | awk '/^version:/ { print $3; exit }' || true)
	sver=$("$SE_BIN" version 2>/dev/null | head -1 || true)
	{
		echo "## Performance"
		echo
		echo "SIPp $("$SIPP" -v 2>/dev/null | awk '/SIPp v/ { sub(/-.*/, "", $2); print $2; exit }') and the server under test on one machine" \
			"($NCPU cores, $(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo), shared by SIPp and the server), UDP on 127.0.0.1."
		echo "A rate passes when fewer than ${FAIL_PCT}% of calls fail, SIPp reaches ${RATE_TOLERANCE} of the target rate," \
			"and no backlog builds up (all calls end within the ${STEP_SECONDS}s step + ${GRACE_S}s); the figure is the highest passing rate."
		echo
		echo "| Metric | Kamailio ${kver:-5.6} | sipedge ${sver#sipedge } | sipedge / Kamailio |"
		echo "|---|---:|---:|---:|"
		for k in register register-auth calls memory memory-alloc; do
			kv=$(get_result kamailio "$k")
			sv=$(get_result sipedge "$k")
			ratio="–"
			if [[ "$kv" =~ ^[0-9]+$ && "$sv" =~ ^[0-9]+$ && "$kv" -gt 0 ]]; then ratio="$(calc "$sv / $kv" | awk '{ printf "%.2f×", $1 }')"; fi
			case "$k" in
			register) s="REGISTER/s, no auth" ;;
			register-auth) s="REGISTER/s, digest MD5 (401 + authenticated REGISTER)" ;;
			calls) s="calls/s (INVITE/200/ACK, ${CALL_HOLD_MS} ms, BYE/200 through the proxy)" ;;
			memory) s="memory per registration, bytes of RSS (lower is better)" ;;
			memory-alloc) s="memory per registration, bytes in the allocator (shm used / Go heap)" ;;
			esac
			echo "| $s | ${kv:-–} | ${sv:-–} | $ratio |"
		done
		echo
		echo "Notes:"
		for s in kamailio sipedge; do
			for k in register register-auth calls memory memory-alloc; do
				kv=$(get_note "$s" "$k")
				[[ -n "$kv" ]] && echo "- $s $k: $kv"
			done
		done
		echo "- Kamailio: usrloc in memory, HA1 from an in-memory htable, 1 UDP worker for REGISTERs and 2 for calls (its best settings on this machine); see bench/README.md."
		echo "- One SIPp UAC process unless noted; one SIPp UAS for the calls test."
	} >"$f"
	out ""
	out "---------------------------------------------------------------- summary"
	cat "$f" | tee -a "$RUN_LOG"
	log "summary written to bench/out/summary.md; SIPp statistics in bench/out/stats/, logs in bench/out/logs/"
}

# -------------------------------------------------------------------- main --
if [[ "$TARGET" == summary ]]; then
	write_summary
	exit 0
fi
command -v "$SIPP" >/dev/null || die "sipp not found ($SIPP)"
servers=()
case "$TARGET" in
kamailio) servers=(kamailio) ;;
sipedge) servers=(sipedge) ;;
both)
	if kamailio_available; then servers=(kamailio sipedge); else
		log "Kamailio is not installed; measuring sipedge only"
		servers=(sipedge)
	fi
	;;
esac
tests=()
case "$TEST" in
all) tests=(register register-auth calls memory) ;;
*) tests=("$TEST") ;;
esac

log "bench: servers=${servers[*]} tests=${tests[*]} step=${STEP_SECONDS}s sipp_procs=$SIPP_PROCS log=$RUN_LOG"
prepare_users
for server in "${servers[@]}"; do
	if [[ "$server" == kamailio ]]; then
		kamailio_available || die "kamailio not installed ($KAMAILIO)"
	else
		build_sipedge
		prepare_sipedge_users
	fi
	for t in "${tests[@]}"; do
		case "$t" in
		register) test_register "$server" ;;
		register-auth) test_register_auth "$server" ;;
		calls) test_calls "$server" ;;
		memory) test_memory "$server" ;;
		esac
	done
done
write_summary
