#!/usr/bin/env bash
# One portal bucket shared by N machines through one redis-server (--limit-store).
#
# N = 1, 3 and 8 "hosts" (oint processes with state directories of their own, so no state
# file is shared) send a fixed total of notifications, one `oint notify send` each, to one
# emulator draining RATE a second with a burst of BURST, all through one redis-server started
# here on a port chosen at run time. For each N it prints the wall time, the theoretical
# minimum (the burst at once, the rest at the drain rate), their ratio, the 503s
# (QUERY_LIMIT_EXCEEDED) the emulator answered, lost and duplicated notifications counted from
# the emulator's state, and Redis round trips per request (the commands clients sent, from
# INFO commandstats, the commands the Lua script runs inside not counted).
#
# Usage: bench/shared.sh [TOTAL]     (default 120; a multiple of 24 splits evenly)
#        PROFILE=debug bench/shared.sh   to use the debug binaries instead of building release
set -euo pipefail
cd "$(dirname "$0")/.."
TOTAL="${1:-120}"
RATE=20
BURST=10
PROFILE="${PROFILE:-release}"
work="$(mktemp -d)"
pids=()
# Every process started here is stopped on the way out, on failure and on Ctrl-C too.
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if [ "$PROFILE" = release ]; then
  cargo build --quiet --release --locked -p oint -p bitrix24-emulator
fi
OINT="target/$PROFILE/oint"
EMULATOR="target/$PROFILE/b24-emulator"

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --protected-mode no \
  > "$work/redis.out" 2>&1 &
pids+=($!)
for _ in $(seq 100); do
  redis-cli -p "$port" ping > /dev/null 2>&1 && break
  sleep 0.05
done

# Starts an emulator in this shell (not a subshell), so that its pid is known; sets $base.
start_emulator() {
  : > "$work/emu.out"
  "$EMULATOR" --listen 127.0.0.1:0 --webhook 1:bench --rate "$RATE" --burst "$BURST" \
    > "$work/emu.out" 2>/dev/null &
  pids+=($!)
  for _ in $(seq 100); do
    [ -s "$work/emu.out" ] && break
    sleep 0.05
  done
  base=$(head -1 "$work/emu.out" | sed 's/^listening on //')
}

stop_emulator() {
  kill "${pids[-1]}" 2>/dev/null || true
  wait "${pids[-1]}" 2>/dev/null || true
}

# Lost, duplicated, 503s and requests, from the emulator's own state.
count() {
  python3 - "$1" "$2" "$TOTAL" <<'PY'
import json, sys, urllib.request
base, hosts, total = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
notes = json.load(urllib.request.urlopen(base + "/_emulator/notifications"))
reqs = json.load(urllib.request.urlopen(base + "/_emulator/requests"))
seen = {}
for note in notes:
    seen[note["message"]] = seen.get(note["message"], 0) + 1
wanted = [f"h{h}-{i}" for h in range(hosts) for i in range(total // hosts)]
lost = sum(1 for w in wanted if w not in seen)
dup = sum(c - 1 for c in seen.values() if c > 1)
refused = sum(1 for r in reqs if r["status"] == 503 or r.get("error") == "QUERY_LIMIT_EXCEEDED")
print(json.dumps({"lost": lost, "duplicated": dup, "refused": refused, "requests": len(reqs)}))
PY
}

rows=()
for hosts in 1 3 8; do
  start_emulator
  url="$base/rest/1/bench/"
  per=$((TOTAL / hosts))
  redis-cli -p "$port" config resetstat > /dev/null
  started=$(date +%s.%N)
  host_pids=()
  for h in $(seq 0 $((hosts - 1))); do
    (
      for i in $(seq 0 $((per - 1))); do
        OINT_STATE_DIR="$work/state-$hosts-$h" OINT_CONFIG=/nonexistent "$OINT" \
          --rate "$RATE" --burst "$BURST" --limit-store "redis://127.0.0.1:$port/0" \
          notify send --url "$url" --user 2 --text "h$h-$i" --output plain > /dev/null 2>> "$work/errors" || true
      done
    ) &
    host_pids+=($!)
    pids+=($!)
  done
  for pid in "${host_pids[@]}"; do wait "$pid"; done
  ended=$(date +%s.%N)
  # Which commands they were, as "name=calls,…".
  stats=$(redis-cli -p "$port" info commandstats | sed -n 's/^cmdstat_\([a-z|]*\):calls=\([0-9]*\).*/\1=\2/p' | tr '\n' ',' | tr -d '\r')
  rows+=("$hosts $started $ended ${stats%,} $(count "$base" "$hosts")")
  stop_emulator
  # The next run starts with an empty bucket.
  redis-cli -p "$port" flushall > /dev/null
  sleep 1
done

python3 - "$TOTAL" "$RATE" "$BURST" "${rows[@]}" <<'PY'
import json, sys
total, rate, burst = int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
minimum = max(0, total - burst) / rate
print(f"{total} notifications, one `oint notify send` each, burst {burst}, drain {rate:g}/s: "
      f"theoretical minimum {minimum:.2f} s")
print(f"{'hosts':>5}{'seconds':>9}{'minimum':>9}{'ratio':>8}{'503s':>6}{'lost':>6}{'dup':>5}{'round trips/request':>21}  (commands, scripts' included)")
for row in sys.argv[4:]:
    hosts, started, ended, stats, counts = row.split(" ", 4)
    counts = json.loads(counts)
    seconds = float(ended) - float(started)
    calls = {k: int(v) for k, v in (kv.split("=") for kv in stats.split(",") if kv)}
    # Round trips are the commands a client sent; TIME, HMGET, HGET (the shared operating
    # figures), HSET and EXPIRE run inside the scripts, INFO and CONFIG are this script's own.
    inside = {"time", "hmget", "hget", "hset", "expire", "info", "config|resetstat"}
    trips = sum(v for k, v in calls.items() if k not in inside)
    per_request = trips / max(counts["requests"], 1)
    print(f"{hosts:>5}{seconds:>9.2f}{minimum:>9.2f}{seconds / minimum:>8.3f}{counts['refused']:>6}"
          f"{counts['lost']:>6}{counts['duplicated']:>5}{per_request:>21.2f}  {stats}")
print("targets: ratio <= 1.05, zero 503s, zero lost, zero duplicated")
PY
