#!/usr/bin/env bash
# Requests per second of the emulator next to a trivial axum handler, measured in one run.
# Usage: bench/emulator-throughput.sh [--requests N] [--concurrency C] [--rounds R]
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo run --quiet --release --locked -p bitrix24-emulator --example throughput -- "$@"
