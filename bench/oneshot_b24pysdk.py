"""One personal notification with the official Python SDK (b24pysdk); prints its id.

Usage: python oneshot_b24pysdk.py HOST:PORT USER_ID/SECRET   (REQUESTS_CA_BUNDLE: the CA)
"""

import sys

from b24pysdk import BitrixWebhook, Client

client = Client(BitrixWebhook(domain=sys.argv[1], webhook_token=sys.argv[2]))
print(client.im.notify.personal.add(user_id=1, message="oneshot b24pysdk").result)
