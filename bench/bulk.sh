#!/usr/bin/env bash
# Bulk notifications at the portal's speed limit: oint next to fast-bitrix24, one run.
#
# 10,000 notifications to a local emulator with the standard plan's burst of 50 and the drain
# rate scaled up to 20/s, so that a run takes seconds. For each client it prints wall time
# over the theoretical minimum (burst, drain and ceil(N/50) batches), the 503s the emulator
# saw, lost and duplicated notifications counted from the emulator's state, and peak RSS.
# fast-bitrix24 is installed into a throwaway virtualenv.
#
# Usage: bench/bulk.sh [N]          (default 10000)
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-10000}"
RATE=20
BURST=50
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
python3 -m venv "$work/venv"
"$work/venv/bin/pip" install --quiet --disable-pip-version-check "fast-bitrix24==1.8.14"

python3 -c "
import json
with open('$work/rows.jsonl', 'w') as f:
    for i in range($N):
        f.write(json.dumps({'user': 2 + i % 4, 'text': f'row {i}'}) + '\n')
"

# Starts an emulator in this shell, not in a $(...) subshell, so that its pid is known and
# stopped; sets $base.
start_emulator() {
  : > "$work/emu.out"
  target/release/b24-emulator --listen 127.0.0.1:0 --webhook 1:bench --rate "$RATE" --burst "$BURST" \
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

# Lost, duplicated and 503s, from the emulator's own state.
count() {
  python3 - "$1" "$N" <<'PY'
import json, sys, urllib.request
base, n = sys.argv[1], int(sys.argv[2])
notes = json.load(urllib.request.urlopen(base + "/_emulator/notifications"))
reqs = json.load(urllib.request.urlopen(base + "/_emulator/requests"))
seen = {}
for note in notes:
    seen[note["message"]] = seen.get(note["message"], 0) + 1
lost = sum(1 for i in range(n) if f"row {i}" not in seen)
dup = sum(c - 1 for c in seen.values() if c > 1)
print(json.dumps({"lost": lost, "duplicated": dup, "503s": sum(1 for r in reqs if r["status"] == 503), "requests": len(reqs)}))
PY
}

start_emulator
oint_run=$(OINT_STATE_DIR="$work/state" OINT_CONFIG=/nonexistent python3 bench/bulk_run.py \
  target/release/oint --rate "$RATE" --burst "$BURST" notify bulk --url "$base/rest/1/bench/" --input "$work/rows.jsonl")
oint_counts=$(count "$base")
stop_emulator

start_emulator
fb_run=$("$work/venv/bin/python" bench/fast_bitrix24_bulk.py "$base/rest/1/bench/" "$N" "$RATE" "$BURST" 2>/dev/null)
fb_counts=$(count "$base")

# Memory as the input grows: check (--dry-run reads and checks every row, sends nothing)
# 1,000,000 rows next to the N-row file.
python3 -c "
import json
with open('$work/million.jsonl', 'w') as f:
    for i in range(1_000_000):
        f.write(json.dumps({'user': 2 + i % 4, 'text': f'row {i}'}) + '\\n')
"
small=$(OINT_CONFIG=/nonexistent python3 bench/bulk_run.py target/release/oint notify bulk --url "$base/rest/1/bench/" --input "$work/rows.jsonl" --dry-run)
million=$(OINT_CONFIG=/nonexistent python3 bench/bulk_run.py target/release/oint notify bulk --url "$base/rest/1/bench/" --input "$work/million.jsonl" --dry-run)

python3 - "$N" "$RATE" "$BURST" "$oint_run" "$oint_counts" "$fb_run" "$fb_counts" "$small" "$million" <<'PY'
import json, math, sys
n, rate, burst = int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
batches = math.ceil(n / 50)
minimum = max(0, batches - burst) / rate
print(f"{n} notifications, {batches} batches, burst {burst}, drain {rate:g}/s: theoretical minimum {minimum:.2f} s")
print(f"{'client':<14}{'seconds':>9}{'ratio':>8}{'503s':>7}{'lost':>7}{'dup':>6}{'peak RSS':>11}  note")
for name, run, counts in [("oint", sys.argv[4], sys.argv[5]), ("fast-bitrix24", sys.argv[6], sys.argv[7])]:
    run, counts = json.loads(run), json.loads(counts)
    ratio = run["seconds"] / minimum if minimum else float("nan")
    note = run.get("error") or (run.get("last_line") or [""])[0]
    print(f"{name:<14}{run['seconds']:>9.2f}{ratio:>8.3f}{counts['503s']:>7}{counts['lost']:>7}{counts['duplicated']:>6}"
          f"{run['peak_rss_kib'] / 1024:>9.1f}MB  {note}")
print("targets for oint: ratio <= 1.05, zero 503s, zero lost, zero duplicated, peak RSS <= 30 MB")
small, million = json.loads(sys.argv[8]), json.loads(sys.argv[9])
print(f"checking every row (--dry-run): {n} rows peak RSS {small['peak_rss_kib'] / 1024:.1f} MB, "
      f"1,000,000 rows peak RSS {million['peak_rss_kib'] / 1024:.1f} MB in {million['seconds']:.1f} s")
PY
