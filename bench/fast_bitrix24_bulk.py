"""Send N notifications with fast-bitrix24 and report wall time and peak memory.

Usage: python fast_bitrix24_bulk.py WEBHOOK_URL N RATE BURST
fast-bitrix24 packs the items into batches of 50 itself; it is given the same rate and burst
as the portal so that the comparison is about the client, not its defaults.
"""

import json
import resource
import sys
import time

from fast_bitrix24 import Bitrix


def main() -> None:
    url, n, rate, burst = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
    bx = Bitrix(url, verbose=False, request_pool_size=burst, requests_per_second=rate, ssl=False)
    items = [{"USER_ID": 2 + i % 4, "MESSAGE": f"row {i}"} for i in range(n)]
    started = time.monotonic()
    error = None
    try:
        bx.call("im.notify.personal.add", items)
    except Exception as e:  # a failed run is still a row in the table
        error = f"{type(e).__name__}: {e}"[:200]
    elapsed = time.monotonic() - started
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"seconds": elapsed, "peak_rss_kib": peak_kib, "error": error}))


if __name__ == "__main__":
    main()
