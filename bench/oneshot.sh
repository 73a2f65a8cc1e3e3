#!/usr/bin/env bash
# One notification, one process: oint next to curl (HTTP and HTTPS) and next to the SDKs
# (HTTPS), measured side by side in one run.
#
# Every client sends one im.notify.personal.add to a local emulator and exits; the table shows
# medians over alternating runs of wall time (spawn to exit) and peak RSS, and their ratios.
# Certificates are verified everywhere: each client is pointed at the emulator's generated CA
# (curl --cacert, SSL_CERT_FILE for oint and fast-bitrix24, REQUESTS_CA_BUNDLE for b24pysdk,
# NODE_EXTRA_CA_CERTS for b24jssdk). The SDKs are installed into a throwaway directory; one
# that fails to install is reported and skipped.
#
# Usage: bench/oneshot.sh [ROUNDS]          (default 15)
#        OINT_BEFORE=/path/to/older/oint bench/oneshot.sh   adds that build to the HTTPS rows
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS="${1:-15}"
work="$(mktemp -d)"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

cargo build --quiet --release --locked -p oint -p bitrix24-emulator

# Starts an emulator in this shell (so that its pid is ours to stop) and sets $base.
start_emulator() {
  local name="$1"
  shift
  # No rate limit to speak of: the runs would otherwise wait for the bucket.
  target/release/b24-emulator --listen 127.0.0.1:0 --webhook 1:bench --rate 1000 --burst 1000 "$@" \
    > "$work/$name.out" 2> "$work/$name.err" &
  pids+=($!)
  for _ in $(seq 200); do
    [ -s "$work/$name.out" ] && break
    sleep 0.05
  done
  base=$(head -1 "$work/$name.out" | sed 's/^listening on //')
  [ -n "$base" ] || { echo "the emulator did not start: $(cat "$work/$name.err")" >&2; exit 1; }
}
start_emulator plain
http_base=$base
start_emulator tls --tls "$work/tls"
https_base=$base
ca="$work/tls/ca.pem"
hostport=${https_base#https://}

skipped=()
py_sdk() { # name, pip requirement
  python3 -m venv "$work/venv-$1" &&
    "$work/venv-$1/bin/pip" install --quiet --disable-pip-version-check "$2" > "$work/pip-$1.log" 2>&1
}
have_b24pysdk=1 have_fast=1 have_js=1
py_sdk b24pysdk "b24pysdk==1.3.2" || { have_b24pysdk=0; skipped+=("b24pysdk=pip install b24pysdk==1.3.2 failed: $(tail -1 "$work/pip-b24pysdk.log" 2>/dev/null)"); }
py_sdk fast "fast-bitrix24==1.8.14" || { have_fast=0; skipped+=("fast-bitrix24=pip install fast-bitrix24==1.8.14 failed: $(tail -1 "$work/pip-fast.log" 2>/dev/null)"); }
mkdir -p "$work/js"
if command -v npm > /dev/null &&
  (cd "$work/js" && npm install --silent --no-audit --no-fund "@bitrix24/b24jssdk@2.2.0" > "$work/npm.log" 2>&1); then
  cp bench/oneshot_b24jssdk.mjs "$work/js/"
else
  have_js=0
  skipped+=("b24jssdk=npm install @bitrix24/b24jssdk@2.2.0 failed: $(tail -1 "$work/npm.log" 2>/dev/null || echo 'no npm')")
fi

OINT="$PWD/target/release/oint"
export OINT_CONFIG=/nonexistent OINT_STATE_DIR="$work/state"
python3 - "$work/spec.json" "$ROUNDS" "$OINT" "$http_base" "$https_base" "$hostport" "$ca" "$work" \
  "$have_b24pysdk" "$have_fast" "$have_js" "${skipped[@]}" <<'PY'
import json, os, sys
out, rounds, oint, http, https, hostport, ca, work = sys.argv[1:9]
have_py, have_fast, have_js = (x == "1" for x in sys.argv[9:12])
skipped = dict(s.split("=", 1) for s in sys.argv[12:])
before = os.environ.get("OINT_BEFORE")
body = json.dumps({"USER_ID": 1, "MESSAGE": "oneshot curl"})

def curl(base, tls):
    argv = ["curl", "-sS", "--fail-with-body", "-H", "Content-Type: application/json",
            "--data", body, f"{base}/rest/1/bench/im.notify.personal.add.json"]
    return {"name": "curl", "argv": argv + (["--cacert", ca] if tls else []), "expect": r'"result": ?\d+'}

def oint_client(base, tls, binary=oint, name="oint"):
    argv = [binary, "bitrix24", "CreatePersonalNotification", "--url", f"{base}/rest/1/bench/",
            "--user", "1", "--text", "oneshot oint"]
    return {"name": name, "argv": argv, "env": {"SSL_CERT_FILE": ca} if tls else {},
            "expect": r'"result": ?\d+'}

sdks = [oint_client(https, True)]
if have_py:
    sdks.append({"name": "b24pysdk", "argv": [f"{work}/venv-b24pysdk/bin/python", "bench/oneshot_b24pysdk.py",
                 hostport, "1/bench"], "env": {"REQUESTS_CA_BUNDLE": ca}, "expect": r"^\d+\s*$"})
if have_fast:
    sdks.append({"name": "fast-bitrix24", "argv": [f"{work}/venv-fast/bin/python", "bench/oneshot_fast_bitrix24.py",
                 f"{https}/rest/1/bench/"], "env": {"SSL_CERT_FILE": ca}, "expect": r"^\d+\s*$"})
if have_js:
    sdks.append({"name": "b24jssdk", "argv": ["node", f"{work}/js/oneshot_b24jssdk.mjs", f"{https}/rest/1/bench"],
                 "env": {"NODE_EXTRA_CA_CERTS": ca}, "expect": r"^\d+\s*$"})
spec = {"rounds": int(rounds), "skipped": skipped, "groups": [
    {"title": "HTTP: oint vs curl", "base": "curl", "clients": [curl(http, False), oint_client(http, False)]},
    {"title": "HTTPS: oint vs curl", "base": "curl", "clients": [curl(https, True), oint_client(https, True)]
     + ([oint_client(https, True, before, "oint (before)")] if before else [])},
    {"title": "HTTPS: the SDKs vs oint", "base": "oint", "sdks": True, "clients": sdks},
]}
json.dump(spec, open(out, "w"))
PY
echo "one im.notify.personal.add per process, emulator on loopback; $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg)"
python3 bench/oneshot_run.py "$work/spec.json"
echo
echo "targets: HTTPS oint ≤ 1.5× curl in wall time and ≤ 1.0× in peak RSS; every SDK ≥ 20× oint"
