"""Drive the emulator with the official Python SDK (b24pysdk): send a notification, read it back.

Usage: python b24pysdk_roundtrip.py HOST:PORT USER_ID/SECRET
The emulator must serve HTTPS (--tls DIR) and REQUESTS_CA_BUNDLE must point at DIR/ca.pem:
the SDK always speaks https. Prints one JSON line for the calling test to check.
"""

import json
import sys

from b24pysdk import BitrixWebhook, Client


def main() -> None:
    domain, webhook = sys.argv[1], sys.argv[2]
    client = Client(BitrixWebhook(domain=domain, webhook_token=webhook))
    sent = client.im.notify.personal.add(
        user_id=1,
        message="Hello from b24pysdk",
        # The SDK takes ATTACH as a dict or a string; the portal decodes a JSON string.
        attach=json.dumps([{"MESSAGE": "sent by the official Python SDK"}]),
    ).result
    page = client.im.notify.get(limit=10).result
    found = [n for n in page["notifications"] if n["id"] == sent]
    print(json.dumps({"sent": sent, "found": found, "total_count": page.get("total_count")}))


if __name__ == "__main__":
    main()
