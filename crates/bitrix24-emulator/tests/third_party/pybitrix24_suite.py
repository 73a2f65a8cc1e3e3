"""Drive the emulator with pybitrix24 (PyPI): webhook calls, batch, OAuth refresh.

Usage: python pybitrix24_suite.py CONFIG_JSON
CONFIG_JSON: {"host": "HOST:PORT", "user_id": N, "secret": "…",
              "oauth": {"access_token", "refresh_token", "client_id", "client_secret"}}
The SDK always speaks https (its URL templates say so): the emulator must serve TLS and
SSL_CERT_FILE must name its CA. Prints one JSON line for the calling test to check.

pybitrix24 has no fetch-all-pages helper, so paging is not exercised here.
"""

import json
import sys

from pybitrix24 import Bitrix24

ATTACH = [{"MESSAGE": "sent by pybitrix24"}]


def ok(answer):
    if "error" in answer:
        raise SystemExit(f"the portal refused: {answer['error']}: {answer.get('error_description')}")
    return answer["result"]


def webhook_part(cfg):
    bx = Bitrix24(cfg["host"], user_id=cfg["user_id"])
    code = cfg["secret"]
    out = {}
    out["personal"] = ok(
        bx.call_webhook(
            code,
            "im.notify.personal.add",
            {"USER_ID": 1, "MESSAGE": "pyb personal", "ATTACH": ATTACH, "TAG": "PYB_TAG"},
        )
    )
    out["system"] = ok(
        bx.call_webhook(
            code,
            "im.notify.system.add",
            {"USER_ID": 1, "MESSAGE": "pyb system", "ATTACH": ATTACH, "TAG": "PYB_SYS"},
        )
    )
    got = ok(bx.call_webhook(code, "im.notify.get", {"LIMIT": 50}))
    out["got_ids"] = sorted(n["id"] for n in got["notifications"])
    out["read"] = ok(bx.call_webhook(code, "im.notify.read", {"ID": out["personal"]}))
    out["delete"] = ok(bx.call_webhook(code, "im.notify.delete", {"ID": out["system"]}))
    # A later command takes the recipient from an earlier one's result.
    batch = ok(
        bx.call_batch_webhook(
            code,
            {
                "who": ("user.get", {"ID": 7}),
                "send": (
                    "im.notify.personal.add",
                    {"USER_ID": "$result[who][0][ID]", "MESSAGE": "batch ref"},
                ),
            },
        )
    )
    out["batch_send"] = batch["result"]["send"]
    out["batch_errors"] = batch["result_error"]
    return out


def oauth_part(cfg):
    o = cfg["oauth"]
    bx = Bitrix24(cfg["host"], client_id=o["client_id"], client_secret=o["client_secret"])
    # The SDK gets tokens only through an authorization code (a browser step) or a refresh;
    # an app that stored its pair sets them like this.
    bx._access_token = o["access_token"]  # already expired at the portal
    bx._refresh_token = o["refresh_token"]
    params = {"USER_ID": 2, "MESSAGE": "pyb oauth", "ATTACH": ATTACH, "TAG": "PYB_OAUTH"}
    first = bx.call("im.notify.system.add", params)
    # The SDK does not retry by itself: the app sees expired_token and asks it to refresh.
    refreshed = False
    if first.get("error") == "expired_token":
        tokens = bx.refresh_tokens()
        refreshed = "access_token" in tokens
        first = bx.call("im.notify.system.add", params)
    return {"sent": ok(first), "refreshed": refreshed}


def main() -> None:
    cfg = json.loads(sys.argv[1])
    out = webhook_part(cfg)
    out["oauth"] = oauth_part(cfg)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
