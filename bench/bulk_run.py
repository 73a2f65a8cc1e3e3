"""Run one command and report its wall time and the peak memory of the processes it started."""

import json
import resource
import subprocess
import sys
import time

started = time.monotonic()
done = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
elapsed = time.monotonic() - started
peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
tail = done.stderr.strip().splitlines()[-1:] if done.stderr else []
print(json.dumps({"seconds": elapsed, "peak_rss_kib": peak_kib, "exit": done.returncode, "last_line": tail}))
