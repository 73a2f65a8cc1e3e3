#!/usr/bin/env python3
"""Writes the seed corpus under fuzz/corpus/TARGET/ from the inputs the tests use.

Run from anywhere: `python3 fuzz/make-corpus.py`. The output is committed; rerun this after
changing a seed list. `SECRET` in a seed stands for a secret: the targets replace it with a
marker and check that the marker never shows in output.
"""
import hashlib
import json
import pathlib
import shutil

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent
OUT = HERE / "corpus"


def write(target, seeds):
    d = OUT / target
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    for seed in seeds:
        data = seed if isinstance(seed, bytes) else seed.encode()
        (d / hashlib.sha1(data).hexdigest()[:16]).write_bytes(data)


def single_quoted(text):
    return text.replace("'", "\\'").replace('"', "'")


corpus = json.loads((ROOT / "crates/bitrix24/tests/data/attach-corpus.json").read_text())
attaches = [json.dumps(c["attach"], ensure_ascii=False) for c in corpus["cases"]]
blocks = attaches + [single_quoted(a) for a in attaches[:20]] + [
    "[{'IMAGE':{'NAME':'Image1','LINK':'https://example.com/picture.jpg'}},{'FILE':{'NAME':'File1.docx','LINK':'https://example.com/document.docx'}}]",
    "[{'MESSAGE':'it\\'s \"quoted\"'}]",
    "[]",
    "{\"BLOCKS\": [{\"MESSAGE\": \"x\"}], \"COLOR\": \"#ff0000\"}",
]
write("blocks", blocks)

urls = [
    "https://www.b24-ar17wx.bitrix24.by/rest/1/SECRET/",
    "  https://www.b24-ar17wx.bitrix24.by/rest/1/SECRET/  ",
    "b24-ar17wx.bitrix24.by/rest/1/SECRET/",
    "HTTPS://WWW.Portal.Bitrix24.com/rest/7/SECRET",
    "http://127.0.0.1:8080/rest/1/SECRET",
    "http://[::1]:9/rest/1/SECRET/",
    "http://localhost:9/\0SECRET",
    "portal.example.com:8443/crm/rest/3/SECRET",
    "https://portal.bitrix24.com/rest/1/SECRET/profile.json",
    "https://portal.bitrix24.com/rest/1/",
    "https:///rest/1/SECRET",
    "https://bad host/rest/1/SECRET",
    "http://portal.lan/rest/1/SECRET",
    "portal.bitrix24.com\0SECRET",
    "https://b24-ar17wx.bitrix24.by/rest/\0SECRET",
    "https://portal.bitrix24.com/rest/1/abc/\0SECRET",
    "https://user:SECRET@portal.bitrix24.com/rest/1/abc/",
    "htp://portal.bitrix24.com/rest/1/SECRET/",
    "http:/portal.bitrix24.com/rest/1/SECRET/",
    "ftp://portal.bitrix24.com/rest/1/SECRET/",
    "https://xn--80ak6aa92e.com/rest/1/SECRET/",
    "https://пример.рф/rest/1/SECRET/",
    "sandbox",
    "https://portal.bitrix24.com:99999/rest/1/SECRET/",
    "https://portal.bitrix24.com/rest/1/SECRET/?x=1#frag",
    "",
]
# The url target's first byte picks the environment (odd: OAuth app settings are set).
write("url", urls + ["\x00" + u for u in urls[:8]] + ["\x01" + u for u in urls])

configs = [
    'default_portal = "work"\n[portals.work]\nurl = "https://portal.bitrix24.com/rest/1/SECRET/"\n[portals.app]\nurl = "portal.bitrix24.com"\ntoken_file = "~/.config/oint/app.token"\n',
    'default_portal = "a"\n[portals.a]\nurl = "a.bitrix24.com"\ntoken = "SECRET"\n[portals.b]\nurl = "https://b.bitrix24.com/rest/1/s/"\n',
    '[portals.p]\nurl = "x.bitrix24.com"\ntoken = "SECRET"\n',
    '[portals.p]\nurl = "x"\ntokn = "SECRET"\n',
    '[portals.work]\nurl = "x.bitrix24.com"\ntoken_env = "SECRET"\nplan = "enterprise"\nrate = 2.0\nburst = 50\n',
    '[portals.work]\nurl = "x.bitrix24.com"\nrate = "SECRET"\n',
    '[portals.work]\nurl = "x.bitrix24.com"\nrate = 1e300\nburst = -1\n',
    'default_portal = "https://portal.bitrix24.com/rest/1/SECRET/"\n[portals.work]\nurl = "x"\n',
    '[portals."https://portal.bitrix24.com/rest/1/SECRET/"]\nurl = "x"\n',
    '[portals.work]\nurl = "x.bitrix24.com"\nclient_id = "local.app"\nclient_secret = "SECRET"\nrefresh_token = "SECRET"\noauth_url = "http://127.0.0.1:9/oauth/token/"\ntoken_store = "~/tokens.json"\n',
    '[portals.work]\nurl = "x.bitrix24.com"\nclient_id = "local.app"\nclient_secret_file = "~/secret"\n',
    '[portals.work]\nurl = "sandbox"\n',
    'portals = 1\n',
    '',
]
# The config target's first byte: bit 0 adds --portal work, bit 1 adds --url.
write("config", [m + c for m in ("\x00", "\x01", "\x03") for c in configs])

# The alerts target's first byte: bit 0 Grafana, bit 1 per group, bit 2 Markdown, bit 3 no tags.
fixtures = ROOT / "crates/oint/tests/fixtures"
alertmanager = (fixtures / "alertmanager-v4.json").read_text()
grafana = (fixtures / "grafana-v1.json").read_text()
write("alerts", [m + alertmanager for m in ("\x00", "\x02", "\x04", "\x08")]
      + [m + grafana for m in ("\x01", "\x03", "\x05")]
      + ["\x00" + json.dumps(dict(json.loads(alertmanager), truncatedAlerts=3, alerts=json.loads(alertmanager)["alerts"][:1]))])

jsonl = [
    '{"user": 2, "text": "ok 1"}\n{"user": 0, "text": "x"}\n{"user": 2, "text": "ok 2"}\nnot json\n{"user": 2, "text": "x", "attach": [{"IMAGE": {"LINK": "ftp://x"}}]}\n',
    '{"user": 2, "text": "row 1", "tag": "row-1", "sub_tag": "s", "system": true}\n\n{"user": "3", "text": "row 2", "system": "yes"}\r\n',
    '{"user": 2, "text": "x", "attach": "[{\\"MESSAGE\\": \\"hi\\"}]"}\n[1, 2]\n"text"\n{"user": 2}',
    '{"user": 18446744073709551616, "text": "big"}\n{"user": 1.5, "text": "frac"}\n{"usr": 1, "text": "typo"}\n',
]
write("bulk_jsonl", jsonl)

csvs = [
    'user,text,tag,system,attach\n2,Hello,,false,\n3,"Line one\nline two",,yes,"[{""MESSAGE"":""x""}]"\n99,To nobody,,,\n0,bad,,,\n',
    'user,text,tag,system,attach\n10,Hello,t1,false,\n11,"Multi\nline",,yes,"[{""MESSAGE"":""x""}]"\n',
    'User , TEXT,sub_tag\n2,hi,s\n2,too,many,fields\n2\n',
    'text\nno user column\n',
    'user,text\r\n2,"unterminated\r\n',
]
write("bulk_csv", csvs)

journals = [
    '@{"sending":[1,2,3]}\n{"row":1,"outcome":"delivered","id":9}\n{"row":2,"outcome":"failed","error":"E","description":"d"}\n',
    '@{"sending":[4,5]}\n{"row":4,"outcome":"unknown"}\n{"row":5,"outcome":"not_sent","error":"N","description":"d"}\n',
    '@{"row": 1000000000000000, "outcome": "delivered"}\n{"row": 4, "outc',
    '@{"sending":[2]}\n{"row":2,"outcome":"deliv',
    '{"journal":1,"input":"other"}\n',
    'shopping list\n',
    '@',
]
write("journal", journals)

write("emu_json", [
    '{"USER_ID": 2, "MESSAGE": "hi", "ATTACH": [{"MESSAGE": "x"}]}',
    '{"cmd": {"a": "im.notify.personal.add?USER_ID=2&MESSAGE=m"}, "halt": 0}',
    '{"auth": "tok", "USER_ID": "2", "MESSAGE": "x", "TAG": "t"}',
    "[{'MESSAGE':'hi',}]",
    "{MESSAGE: 'bare key', LIST: [1, 2, 3,],}",
    '[1, 2',
    '"just a string"',
])

forms = [
    "USER_ID=2&MESSAGE=hi&ATTACH[0][MESSAGE]=hello&ATTACH[1][DELIMITER][SIZE]=100",
    "cmd[a]=im.notify.personal.add%3FUSER_ID%3D2%26MESSAGE%3Dhi%2526there%2Byou&halt=0",
    "halt=false&cmd[a]=im.notify.personal.add&cmd[b]=im.notify.personal.add%3FUSER_ID%3D2%26MESSAGE%3Dy",
    "a[]=1&a[]=2&a[x][]=3&b.c=4&d e=5&f[=6&g[h=7]&i[j]k=8",
    "A1" + "[a]" * 70 + "=1",
    "x[9223372036854775807]=1&x[]=2&x[-1]=3&x[01]=4",
]
multipart = (
    "--XyZzy7\r\nContent-Disposition: form-data; name=\"USER_ID\"\r\n\r\n2\r\n"
    "--XyZzy7\r\nContent-Disposition: form-data; name=\"ATTACH[0][MESSAGE]\"\r\n\r\nhi\r\n"
    "--XyZzy7\r\nContent-Disposition: form-data; name=\"f\"; filename=\"a.txt\"\r\n\r\nfile\r\n"
    "--XyZzy7--\r\n"
)
write("emu_form", ["\x00" + f for f in forms] + ["\x01" + multipart] + ["\x02" + f.replace("&", "\n") for f in forms[:4]])

write("emu_batch", [
    "im.notify.personal.add?USER_ID=2&MESSAGE=m&ATTACH[0][MESSAGE]=hello&ATTACH[1][DELIMITER][SIZE]=100",
    "im.notify.personal.add?USER_ID=$result[a][ID]&MESSAGE=$result[a][LIST][1] and $result[n]",
    "im.notify.personal.add?MESSAGE=$result[a][NAME][-1]$result[a][NAME][ 2 ]&$result[a]=k&auth=x&start=5",
    "BATCH?cmd[0]=x",
    "download",
    "profile#frag?x=1",
    '{"a": {"ID": "9"}}\0im.notify.system.add?USER_ID=$result[a][ID]&MESSAGE=$next[a]$total[a]$error[a]$time[a]',
    '["im.notify"]',
    "0",
])
