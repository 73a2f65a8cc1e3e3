"""Drive the emulator with the official Python SDK (b24pysdk): webhook calls, batch with
$result references, as_list over every user, OAuth refresh.

Usage: python b24pysdk_suite.py CONFIG_JSON
CONFIG_JSON: {"origin": "https://HOST:PORT", "host": "HOST:PORT", "user_id": N, "secret": "…",
              "oauth": {"access_token", "refresh_token", "client_id", "client_secret"}}
The SDK always speaks https: REQUESTS_CA_BUNDLE must name the emulator's CA. Prints one JSON
line for the calling test to check.
"""

import json
import sys
from datetime import datetime, timedelta, timezone

from b24pysdk import BitrixApp, BitrixToken, BitrixWebhook, Client
from b24pysdk.api.requesters.bitrix_oauth_requester import BitrixOAuthRequester
from b24pysdk.api.requests.bitrix_api_request import BitrixAPIRequest

# The SDK types ATTACH as a dict (system.add takes nothing else): the {"BLOCKS": […]} form.
ATTACH = {"BLOCKS": [{"MESSAGE": "sent by b24pysdk"}]}


def webhook_part(cfg):
    hook = f"{cfg['user_id']}/{cfg['secret']}"
    webhook = BitrixWebhook(domain=cfg["host"], webhook_token=hook)
    client = Client(webhook)
    out = {}
    out["personal"] = client.im.notify.personal.add(
        user_id=1, message="py personal", attach=ATTACH, tag="PY_TAG"
    ).result
    out["system"] = client.im.notify.system.add(
        user_id=1, message="py system", attach=ATTACH, tag="PY_SYS"
    ).result
    got = client.im.notify.get(limit=50).result
    out["got_ids"] = sorted(n["id"] for n in got["notifications"])
    out["read"] = client.im.notify.read(out["personal"]).result
    out["delete"] = client.im.notify.delete(bitrix_id=out["system"]).result
    # A later command takes the recipient from an earlier one's result. The typed
    # personal.add wants an int user_id, so that command is the SDK's generic request.
    send = BitrixAPIRequest(
        bitrix_token=webhook,
        api_method="im.notify.personal.add",
        params={"USER_ID": "$result[who][0][ID]", "MESSAGE": "batch ref"},
    )
    batch = client.call_batch(
        {"who": client.user.get(filter={"ID": 7}), "send": send},
        halt=True,
    ).result
    out["batch_send"] = batch.result["send"]
    out["users"] = [int(u["ID"]) for u in client.user.get().as_list().result]
    return out


def oauth_part(cfg):
    o = cfg["oauth"]
    # The SDK refreshes at a fixed host (oauth.bitrix24.tech); here that is the emulator.
    BitrixOAuthRequester._OAUTH_TOKEN_URL = f"{cfg['origin']}/oauth/token/"
    app = BitrixApp(client_id=o["client_id"], client_secret=o["client_secret"])
    # The SDK believes the token has an hour left; the portal answers expired_token, so the
    # SDK refreshes and retries the call once.
    token = BitrixToken(
        domain=cfg["host"],
        auth_token=o["access_token"],
        refresh_token=o["refresh_token"],
        expires=datetime.now(timezone.utc) + timedelta(hours=1),
        expires_in=3600,
        bitrix_app=app,
    )
    client = Client(token)
    sent = client.im.notify.system.add(
        user_id=2, message="py oauth", attach=ATTACH, tag="PY_OAUTH"
    ).result
    return {"sent": sent}


def main() -> None:
    cfg = json.loads(sys.argv[1])
    out = webhook_part(cfg)
    out["oauth"] = oauth_part(cfg)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
