// One personal notification with the official JS SDK (b24jssdk); prints its id.
// Usage: node oneshot_b24jssdk.mjs WEBHOOK_URL   (NODE_EXTRA_CA_CERTS: the CA)
// Run from a directory whose node_modules holds @bitrix24/b24jssdk.
import { B24Hook } from '@bitrix24/b24jssdk'

const b24 = B24Hook.fromWebhookUrl(process.argv[2])
const res = await b24.actions.v2.call.make({
  method: 'im.notify.personal.add',
  params: { USER_ID: 1, MESSAGE: 'oneshot b24jssdk' },
})
console.log(res.getData().result)
