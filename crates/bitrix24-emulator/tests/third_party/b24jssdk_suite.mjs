// Drive the emulator with the official JS SDK (@bitrix24/b24jssdk, npm) under Node.js:
// webhook calls, batch with $result references, callList over every user, OAuth refresh.
//
// Usage: node b24jssdk_suite.mjs NODE_MODULES CONFIG_JSON
// NODE_MODULES: the node_modules directory the SDK was installed into (ESM resolves imports
// from the importing file, not from NODE_PATH, so the SDK's entry is imported by path).
// CONFIG_JSON: {"origin": "https://HOST:PORT", "user_id": N, "secret": "…",
//               "oauth": {"access_token", "refresh_token", "client_id", "client_secret", "member_id"}}
// The SDK's webhook client always speaks https: NODE_EXTRA_CA_CERTS must name the emulator's
// CA. Prints one JSON line for the calling test to check.

import { readFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { pathToFileURL } from 'node:url'

const [modules, config] = process.argv.slice(2)
const pkgDir = join(modules, '@bitrix24', 'b24jssdk')
const pkg = JSON.parse(readFileSync(join(pkgDir, 'package.json'), 'utf8'))
const { B24Hook, B24OAuth } = await import(pathToFileURL(join(pkgDir, pkg.exports['.'].import.default)).href)
const cfg = JSON.parse(config)

const ATTACH = [{ MESSAGE: 'sent by b24jssdk' }]

/** The result of a call, or a failure naming the portal's error. */
function ok(response, what) {
  if (!response.isSuccess) {
    throw new Error(`${what}: ${response.getErrorMessages().join('; ')}`)
  }
  return response.getData().result
}

async function webhookPart() {
  const b24 = new B24Hook({ b24Url: cfg.origin, userId: cfg.user_id, secret: cfg.secret })
  b24.offClientSideWarning()
  const call = async (method, params) => ok(await b24.actions.v2.call.make({ method, params }), method)
  const out = {}
  out.personal = await call('im.notify.personal.add', { USER_ID: 1, MESSAGE: 'js personal', ATTACH, TAG: 'JS_TAG' })
  out.system = await call('im.notify.system.add', { USER_ID: 1, MESSAGE: 'js system', ATTACH, TAG: 'JS_SYS' })
  const got = await call('im.notify.get', { LIMIT: 50 })
  out.got_ids = got.notifications.map(n => n.id).sort((a, b) => a - b)
  out.read = await call('im.notify.read', { ID: out.personal })
  out.delete = await call('im.notify.delete', { ID: out.system })
  // A later command takes the recipient from an earlier one's result.
  const batch = await b24.actions.v2.batch.make({
    calls: {
      who: { method: 'user.get', params: { ID: 7 } },
      send: { method: 'im.notify.personal.add', params: { USER_ID: '$result[who][0][ID]', MESSAGE: 'batch ref' } }
    },
    options: { isHaltOnError: true }
  })
  if (!batch.isSuccess) throw new Error(`batch: ${batch.getErrorMessages().join('; ')}`)
  out.batch_send = batch.getData().send
  // The SDK's fetch-all helper: pages by an ID cursor (filter >ID, start=-1).
  const users = await b24.actions.v2.callList.make({ method: 'user.get', params: {}, idKey: 'ID' })
  if (!users.isSuccess) throw new Error(`callList: ${users.getErrorMessages().join('; ')}`)
  out.users = users.getData().map(u => Number(u.ID))
  return out
}

async function oauthPart() {
  const o = cfg.oauth
  const now = Math.floor(Date.now() / 1000)
  // The SDK believes the token has an hour left; the portal says it has expired, so the
  // first call gets 401 expired_token, the SDK refreshes at serverEndpoint and retries.
  const b24 = new B24OAuth(
    {
      applicationToken: '',
      userId: 2,
      memberId: o.member_id,
      accessToken: o.access_token,
      refreshToken: o.refresh_token,
      expires: now + 3600,
      expiresIn: 3600,
      scope: 'im,user',
      domain: cfg.origin,
      clientEndpoint: `${cfg.origin}/rest/`,
      serverEndpoint: cfg.origin,
      status: 'L'
    },
    { clientId: o.client_id, clientSecret: o.client_secret }
  )
  b24.offClientSideWarning()
  let refreshed = 0
  b24.setCallbackRefreshAuth(async () => { refreshed += 1 })
  const params = { USER_ID: 2, MESSAGE: 'js oauth', ATTACH, TAG: 'JS_OAUTH' }
  const sent = ok(await b24.actions.v2.call.make({ method: 'im.notify.system.add', params }), 'oauth system.add')
  // After the refresh the SDK calls client_endpoint from the token answer.
  const again = ok(await b24.actions.v2.call.make({ method: 'im.notify.get', params: { LIMIT: 50 } }), 'oauth get')
  return { sent, refreshed, seen: again.notifications.map(n => n.id) }
}

const out = await webhookPart()
out.oauth = await oauthPart()
console.log(JSON.stringify(out))
