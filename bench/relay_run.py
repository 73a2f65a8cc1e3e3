"""Drive one `oint serve` run: start it, post N notifications at a concurrency, wait until the
relay has delivered them all, stop it with SIGTERM, and report as JSON: accept latencies,
503s, time from the first accept to the last delivery, and the relay's peak RSS."""

import http.client
import json
import resource
import signal
import subprocess
import sys
import threading
import time
import urllib.request

n, concurrency, cmd = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3:]
relay = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
try:
    first = relay.stdout.readline().strip()
    if not first.startswith("listening on http://"):
        raise SystemExit(f"relay did not start: {first!r} {relay.stderr.read()}")
    host, port = first.removeprefix("listening on http://").rsplit(":", 1)

    latencies, refused, lock = [], [0], threading.Lock()
    next_row = [0]

    def worker():
        conn = http.client.HTTPConnection(host, int(port))
        while True:
            with lock:
                i = next_row[0]
                next_row[0] += 1
            if i >= n:
                conn.close()
                return
            body = json.dumps({"user": 2 + i % 4, "text": f"row {i}"})
            started = time.monotonic()
            conn.request("POST", "/notify", body, {"content-type": "application/json"})
            response = conn.getresponse()
            response.read()
            elapsed = time.monotonic() - started
            with lock:
                if response.status == 202:
                    latencies.append(elapsed)
                else:
                    refused[0] += 1

    started = time.monotonic()
    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    accepted_in = time.monotonic() - started

    def metric(name):
        text = urllib.request.urlopen(f"http://{host}:{port}/metrics").read().decode()
        for line in text.splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
        return 0.0

    while metric("oint_serve_delivered_total") + metric("oint_serve_failed_total") < len(latencies):
        time.sleep(0.02)
    delivered_in = time.monotonic() - started
    waits = metric("oint_serve_rate_limit_waits_total")
    relay.send_signal(signal.SIGTERM)
    relay.wait(timeout=120)
finally:
    if relay.poll() is None:
        relay.kill()
        relay.wait()

latencies.sort()
pick = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000 if latencies else float("nan")
print(json.dumps({
    "accepted": len(latencies), "refused": refused[0], "accepted_in": accepted_in,
    "delivered_in": delivered_in, "p50_ms": pick(0.50), "p99_ms": pick(0.99),
    "rate_limit_waits": waits, "exit": relay.returncode,
    "peak_rss_kib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,
}))
