#!/usr/bin/env bash
# Runs every sipedge test: vet, unit and in-process tests (with -race), short
# fuzz runs of every parser, the web dashboard in headless Chromium, and the
# network-namespace NAT lab with SIPp and baresip phones.
# Installs what it needs with apt-get when missing (run as root on Debian).
#
#   test/all.sh                 everything
#   SKIP_LAB=1 test/all.sh      no lab (no root needed)
#   SKIP_BROWSER=1 test/all.sh  no dashboard tests in Chromium
#   FUZZTIME=30s test/all.sh    longer fuzzing
set -euo pipefail
cd "$(dirname "$0")/.."

export PATH="$PATH:/usr/local/go/bin:/usr/sbin:/sbin"
FUZZTIME="${FUZZTIME:-5s}"

need_pkgs=()
command -v go >/dev/null || { echo "Go is required (https://go.dev/dl/)" >&2; exit 1; }
if [ "${SKIP_LAB:-0}" != 1 ]; then
  command -v sipp >/dev/null      || need_pkgs+=(sip-tester)
  command -v ip >/dev/null        || need_pkgs+=(iproute2)
  command -v iptables >/dev/null  || need_pkgs+=(iptables)
  command -v conntrack >/dev/null || need_pkgs+=(conntrack)
  command -v baresip >/dev/null   || need_pkgs+=(baresip-core)
  command -v stun >/dev/null      || need_pkgs+=(stun-client)
  command -v stund >/dev/null     || need_pkgs+=(stun-server)
  # miniupnpd for TestLabEdgeBehindRouter (sipedge behind a UPnP/NAT-PMP/PCP
  # router); this package ships no service, nothing starts on install.
  command -v miniupnpd >/dev/null || need_pkgs+=(miniupnpd-iptables)
  command -v iptables-legacy >/dev/null || need_pkgs+=(iptables)
fi
if [ "${SKIP_BROWSER:-0}" != 1 ]; then
  command -v chromium >/dev/null || need_pkgs+=(chromium)
fi
if [ ${#need_pkgs[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "== installing ${need_pkgs[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_pkgs[@]}" >/dev/null
  else
    echo "tests need ${need_pkgs[*]} (run as root, or SKIP_LAB=1 / SKIP_BROWSER=1)" >&2; exit 1
  fi
fi

echo "== gofmt"
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$unformatted" ]; then echo "not gofmt-ed:"; echo "$unformatted"; exit 1; fi

echo "== go vet"
go vet ./...
go vet -tags lab ./test/lab/
go vet -tags browser ./test/browser/

echo "== unit and in-process tests (race detector)"
# As root the in-kernel fast path (eBPF, relay/kernfwd) must load: its tests
# fail instead of skipping.
if [ "$(id -u)" = 0 ]; then export SIPEDGE_REQUIRE_BPF="${SIPEDGE_REQUIRE_BPF:-1}"; fi
go test -race -count=1 ./...

echo "== fuzz smoke ($FUZZTIME per target)"
for pkg in $(go list ./...); do
  dir=$(go list -f '{{.Dir}}' "$pkg")
  for target in $(grep -hoE '^func (Fuzz[A-Za-z0-9_]+)' "$dir"/*_test.go 2>/dev/null | awk '{print $2}' | sort -u); do
    echo "-- $pkg $target"
    log=$(mktemp)
    if ! go test -run='^$' -fuzz="^${target}\$" -fuzztime="$FUZZTIME" "$pkg" >"$log" 2>&1; then
      tail -30 "$log"
      # A real crasher is saved under testdata/fuzz and replayed on the next
      # run, so it fails again; only a failure that leaves none (the fuzzing
      # engine itself hiccuping) gets one retry.
      if [ -n "$(git status --porcelain -- "$dir/testdata/fuzz/$target" 2>/dev/null)" ]; then
        echo "fuzz crasher saved in $dir/testdata/fuzz/$target"; exit 1
      fi
      echo "-- retrying $target once (no crasher was saved)"
      go test -run='^$' -fuzz="^${target}\$" -fuzztime="$FUZZTIME" "$pkg" >"$log" 2>&1 || { tail -30 "$log"; exit 1; }
    fi
    rm -f "$log"
  done
done

if [ "${SKIP_BROWSER:-0}" != 1 ]; then
  echo "== web dashboard in headless Chromium (screenshots in test/browser/out/)"
  SIPEDGE_REQUIRE_BROWSER=1 go test -tags browser -count=1 -timeout 5m ./test/browser/
fi

if [ "${SKIP_LAB:-0}" != 1 ]; then
  echo "== NAT lab (network namespaces, iptables NAT, SIPp)"
  go test -tags lab -count=1 -timeout 20m -v ./test/lab/ 2>&1 | tee /tmp/sipedge-lab.log | grep -E '^(=== RUN|--- |PASS|FAIL|ok|\s+\S+_test.go)' || true
  # The verdict is go test's own exit status.
  if ! grep -qE '^ok\s' /tmp/sipedge-lab.log; then
    echo "NAT lab FAILED (full log: /tmp/sipedge-lab.log)"; tail -50 /tmp/sipedge-lab.log; exit 1
  fi
fi
echo "== all tests passed"
