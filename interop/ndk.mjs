// NDK's NDKNip46Signer against an enclaved signer (NDK sends connect with
// an empty first parameter).
// Usage: node ndk.mjs <bunker-url> <user-pubkey-hex>
import WebSocket from 'ws'
import NDK, { NDKEvent, NDKNip46Signer, NDKPrivateKeySigner } from '@nostr-dev-kit/ndk'
import { verifyEvent } from 'nostr-tools/pure'

globalThis.WebSocket = WebSocket

const CALL_TIMEOUT_MS = 15_000
const [url, userPubkey] = process.argv.slice(2)
if (!url || !/^[0-9a-f]{64}$/.test(userPubkey ?? '')) {
  console.error('usage: node ndk.mjs <bunker-url> <user-pubkey-hex>')
  process.exit(2)
}

function timed(what, promise) {
  return Promise.race([
    promise,
    new Promise((_, reject) =>
      setTimeout(() => reject(Object.assign(new Error(`${what}: no reply within ${CALL_TIMEOUT_MS} ms`), { silent: true })), CALL_TIMEOUT_MS),
    ),
  ])
}

function check(cond, what) {
  if (!cond) throw new Error(`check failed: ${what}`)
  console.log(`ok ${what}`)
}

async function main() {
  const relays = new URL(url.replace('bunker://', 'http://')).searchParams.getAll('relay')
  const ndk = new NDK({ explicitRelayUrls: relays })
  await timed('relay connection', ndk.connect(5000))
  const signer = NDKNip46Signer.bunker(ndk, url, NDKPrivateKeySigner.generate())
  const user = await timed('blockUntilReady', signer.blockUntilReady())
  check(user.pubkey === userPubkey, 'blockUntilReady returns the user')
  const event = new NDKEvent(ndk, { kind: 1, content: 'signed through NDK', tags: [['t', 'ndk']], created_at: Math.floor(Date.now() / 1000) })
  await timed('sign', event.sign(signer))
  const raw = event.rawEvent()
  check(verifyEvent(raw) && raw.pubkey === userPubkey && raw.content === 'signed through NDK', 'sign returns a valid event by the user key')
}

const overall = setTimeout(() => {
  console.error('FAIL: the whole run took too long')
  process.exit(2)
}, 60_000)

main()
  .then(() => {
    clearTimeout(overall)
    console.log('PASS NDK NDKNip46Signer')
    process.exit(0)
  })
  .catch(e => {
    console.error(`FAIL: ${e?.message ?? e}`)
    process.exit(e?.silent ? 2 : 1)
  })
