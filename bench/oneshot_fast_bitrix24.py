"""One personal notification with fast-bitrix24; prints its id.

Usage: python oneshot_fast_bitrix24.py WEBHOOK_URL   (SSL_CERT_FILE: the CA)
"""

import sys

from fast_bitrix24 import Bitrix

bx = Bitrix(sys.argv[1], verbose=False)
print(bx.call("im.notify.personal.add", {"USER_ID": 1, "MESSAGE": "oneshot fast-bitrix24"}))
