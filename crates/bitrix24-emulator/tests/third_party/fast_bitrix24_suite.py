"""Drive the emulator with fast_bitrix24 (PyPI): webhook calls, batch, get_all, OAuth refresh.

Usage: python fast_bitrix24_suite.py CONFIG_JSON
CONFIG_JSON: {"origin": "https://HOST:PORT", "user_id": N, "secret": "…",
              "oauth": {"access_token", "refresh_token", "client_id", "client_secret"}}
Over https, SSL_CERT_FILE must name the emulator's CA (aiohttp and urllib use the default
OpenSSL context).
Prints one JSON line of what the SDK answered; the calling test checks the emulator's state.
"""

import asyncio
import json
import sys
import urllib.parse
import urllib.request

from fast_bitrix24 import Bitrix, BitrixAsync

ATTACH = [{"MESSAGE": "sent by fast_bitrix24"}]


def webhook_part(base, hook):
    b = Bitrix(f"{base}/rest/{hook}/", verbose=False)
    out = {}
    # call() sends even one item as a batch command: the webhook path and batch both run here.
    out["personal"] = b.call(
        "im.notify.personal.add",
        {"USER_ID": 1, "MESSAGE": "fast personal", "ATTACH": ATTACH, "TAG": "FAST_TAG"},
    )
    out["system"] = b.call(
        "im.notify.system.add",
        {"USER_ID": 1, "MESSAGE": "fast system", "ATTACH": ATTACH, "TAG": "FAST_SYS"},
    )
    # raw=True: one plain request, the answer as the portal sent it (no batch unwrapping).
    got = b.call("im.notify.get", {"LIMIT": 50}, raw=True)
    out["got_ids"] = sorted(n["id"] for n in got["result"]["notifications"])
    out["read"] = b.call("im.notify.read", {"ID": out["personal"]}, raw=True)["result"]
    out["delete"] = b.call("im.notify.delete", {"ID": out["system"]}, raw=True)["result"]
    # A later command takes the recipient from an earlier one's result.
    batch = b.call_batch(
        {
            "halt": 0,
            "cmd": {
                "who": "user.get?ID=7",
                "send": "im.notify.personal.add?USER_ID=$result[who][0][ID]&MESSAGE=batch%20ref",
            },
        }
    )
    out["batch_send"] = batch["send"]
    users = b.get_all("user.get")
    out["users"] = [int(u["ID"]) for u in users]
    return out


def oauth_part(base, oauth):
    """The app's token_func is the SDK's hook for refreshing: it runs first, then after a 401."""
    state = {"calls": 0, "refresh": oauth["refresh_token"]}

    async def token_func():
        state["calls"] += 1
        if state["calls"] == 1:
            return oauth["access_token"]  # already expired at the portal
        query = urllib.parse.urlencode(
            {
                "grant_type": "refresh_token",
                "client_id": oauth["client_id"],
                "client_secret": oauth["client_secret"],
                "refresh_token": state["refresh"],
            }
        )
        loop = asyncio.get_running_loop()
        body = await loop.run_in_executor(
            None, lambda: urllib.request.urlopen(f"{base}/oauth/token/?{query}").read()
        )
        answer = json.loads(body)
        state["refresh"] = answer["refresh_token"]
        return answer["access_token"]

    async def run():
        b = BitrixAsync(f"{base}/rest/", token_func=token_func, verbose=False)
        sent = await b.call(
            "im.notify.system.add",
            {"USER_ID": 2, "MESSAGE": "fast oauth", "ATTACH": ATTACH, "TAG": "FAST_OAUTH"},
            raw=True,
        )
        return {"sent": sent["result"], "token_calls": state["calls"]}

    return asyncio.run(run())


def main() -> None:
    cfg = json.loads(sys.argv[1])
    out = webhook_part(cfg["origin"], f"{cfg['user_id']}/{cfg['secret']}")
    out["oauth"] = oauth_part(cfg["origin"], cfg["oauth"])
    print(json.dumps(out))


if __name__ == "__main__":
    main()
