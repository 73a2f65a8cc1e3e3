#!/usr/bin/env bash
# oint serve under load: N /notify posts at a concurrency, delivered to a local emulator at the
# portal's pace, one run.
#
# The emulator and the relay both use the standard plan (burst 50, drain 2 requests/s) unless
# RATE/BURST say otherwise. Prints the accept latency (p50, p99), the 503s the clients got,
# the time from the first post to the last delivery against the theoretical minimum
# (ceil(N/50) batches, the burst, the drain), the 503s the emulator sent, notifications lost
# and duplicated (counted in the emulator's state) and the relay's peak RSS.
#
# Usage: bench/relay.sh [N] [CONCURRENCY]      (default 10000 32; RATE=2 BURST=50)
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-10000}"
CONCURRENCY="${2:-32}"
RATE="${RATE:-2}"
BURST="${BURST:-50}"
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

cargo build --quiet --release --locked -p oint -p bitrix24-emulator

target/release/b24-emulator --listen 127.0.0.1:0 --webhook 1:bench --rate "$RATE" --burst "$BURST" \
  > "$work/emu.out" 2>/dev/null &
pids+=($!)
for _ in $(seq 100); do
  [ -s "$work/emu.out" ] && break
  sleep 0.05
done
base=$(head -1 "$work/emu.out" | sed 's/^listening on //')

run=$(OINT_STATE_DIR="$work/state" OINT_CONFIG=/nonexistent python3 bench/relay_run.py "$N" "$CONCURRENCY" \
  target/release/oint --rate "$RATE" --burst "$BURST" serve --url "$base/rest/1/bench/" \
  --listen 127.0.0.1:0 --queue "$work/queue.sqlite3")

python3 - "$base" "$N" "$RATE" "$BURST" "$CONCURRENCY" "$run" <<'PY'
import json, math, sys, urllib.request
base, n, rate, burst, concurrency = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
run = json.loads(sys.argv[6])
notes = json.load(urllib.request.urlopen(base + "/_emulator/notifications"))
reqs = json.load(urllib.request.urlopen(base + "/_emulator/requests"))
seen = {}
for note in notes:
    seen[note["message"]] = seen.get(note["message"], 0) + 1
lost = sum(1 for i in range(n) if f"row {i}" not in seen)
dup = sum(c - 1 for c in seen.values() if c > 1)
portal_503 = sum(1 for r in reqs if r["status"] == 503)
batches = math.ceil(n / 50)
minimum = max(0, batches - burst) / rate
print(f"{n} posts at concurrency {concurrency}; {batches} batches, burst {burst}, drain {rate:g}/s: theoretical minimum {minimum:.2f} s")
print(f"accept latency p50 {run['p50_ms']:.2f} ms, p99 {run['p99_ms']:.2f} ms; all {run['accepted']} accepted in {run['accepted_in']:.2f} s; {run['refused']} x 503 to clients")
ratio = run["delivered_in"] / minimum if minimum else float("nan")
print(f"delivered all in {run['delivered_in']:.2f} s = {ratio:.3f} x the minimum; portal 503s {portal_503}; lost {lost}; duplicated {dup}; "
      f"relay peak RSS {run['peak_rss_kib'] / 1024:.1f} MB; relay exit {run['exit']}")
print("targets: ratio <= 1.05, 0 x 503, 0 lost, 0 duplicated, peak RSS <= 40 MB")
PY
