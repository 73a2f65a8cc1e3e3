"""Run groups of one-shot commands in alternating rounds; print medians and ratios.

Usage: python3 oneshot_run.py SPEC.json
SPEC: {"rounds": N, "groups": [{"title": ..., "base": NAME, "clients": [{"name", "argv",
"env", "expect"}...]}...], "skipped": {NAME: reason}}. Within a round every client of a group
runs once, the starting client rotating from round to round, so that drift in machine load
falls on all of them alike. Each run's wall time is from spawn to exit; its peak RSS is the
command's own (see spawn_measured). A run counts only if it exits 0 and its stdout
matches the regular expression `expect`.
"""

import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time


TIME = "/usr/bin/time"


def spawn(argv, env):
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.monotonic()
        proc = subprocess.Popen(argv, stdout=out, stderr=err, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        elapsed = time.monotonic() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return {
            "exit": proc.returncode,
            "out": out.read().decode(errors="replace"),
            "err": err.read().decode(errors="replace"),
            "seconds": elapsed,
            "rss_kib": usage.ru_maxrss,
        }


def spawn_measured(client):
    """Two runs: a bare one for wall time, then one under /usr/bin/time -f %M for peak RSS.
    A child forked from this Python reports Python's own RSS as its high-water mark (it
    survives exec), so for memory the command is started from the small `time` process; its
    extra fork and exec stay out of the wall time. Without /usr/bin/time, wait4's figure (an
    upper bound) is used."""
    env = dict(os.environ, **client.get("env", {}))
    timed = spawn(client["argv"], env)
    if timed["exit"] != 0 or not os.access(TIME, os.X_OK):
        return timed
    with tempfile.NamedTemporaryFile(mode="r") as rss:
        sized = spawn([TIME, "-f", "%M", "-o", rss.name] + client["argv"], env)
        reported = rss.read().split()
    if sized["exit"] != 0:
        return sized
    if reported and reported[-1].isdigit():
        timed["rss_kib"] = int(reported[-1])
    return timed


def main():
    with open(sys.argv[1]) as f:
        spec = json.load(f)
    rounds = spec["rounds"]
    for group in spec["groups"]:
        clients = group["clients"]
        results = {c["name"]: [] for c in clients}
        failures = {c["name"]: None for c in clients}
        for r in range(rounds):
            order = clients[r % len(clients):] + clients[: r % len(clients)]
            for c in order:
                if failures[c["name"]] is not None:
                    continue
                res = spawn_measured(c)
                if res["exit"] != 0 or not re.search(c["expect"], res["out"]):
                    tail = (res["err"].strip() or res["out"].strip()).splitlines()[-1:]
                    failures[c["name"]] = f"exit {res['exit']}: {' '.join(tail)[:160]}"
                    continue
                results[c["name"]].append(res)
        print(f"\n{group['title']} (medians of {rounds} alternating runs)")
        print(f"{'client':<16}{'wall ms':>9}{'× ' + group['base']:>12}{'peak RSS MB':>13}"
              f"{'× ' + group['base']:>12}")
        base = results[group["base"]]
        base_ms = statistics.median(x["seconds"] for x in base) * 1000 if base else None
        base_mb = statistics.median(x["rss_kib"] for x in base) / 1024 if base else None
        for c in clients:
            name = c["name"]
            if failures[name] is not None:
                print(f"{name:<16}  failed: {failures[name]}")
                continue
            ms = statistics.median(x["seconds"] for x in results[name]) * 1000
            mb = statistics.median(x["rss_kib"] for x in results[name]) / 1024
            ratio_ms = f"{ms / base_ms:.2f}" if base_ms else "-"
            ratio_mb = f"{mb / base_mb:.2f}" if base_mb else "-"
            print(f"{name:<16}{ms:>9.1f}{ratio_ms:>12}{mb:>13.1f}{ratio_mb:>12}")
        for name, why in spec.get("skipped", {}).items():
            if group.get("sdks"):
                print(f"{name:<16}  skipped: {why}")


if __name__ == "__main__":
    main()
