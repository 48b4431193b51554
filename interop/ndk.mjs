// NDK's NDKNip46Signer against an enclaved signer (NDK sends connect with
// an empty first parameter).
// Usage: node ndk.mjs <bunker-url> <user-pubkey-hex>
import WebSocket from 'ws'
import NDK, { NDKEvent, NDKNip46Signer, NDKPrivateKeySigner } from '@nostr-dev-kit/ndk'
import { verifyEvent } from 'nostr-tools/pure'
import { check, run, timed as timedOut } from './lib.mjs'

globalThis.WebSocket = WebSocket

const CALL_TIMEOUT_MS = 15_000
const [url, userPubkey] = process.argv.slice(2)
if (!url || !/^[0-9a-f]{64}$/.test(userPubkey ?? '')) {
  console.error('usage: node ndk.mjs <bunker-url> <user-pubkey-hex>')
  process.exit(2)
}

const timed = (what, promise) => timedOut(what, promise, CALL_TIMEOUT_MS)

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

run('NDK NDKNip46Signer', main, 60_000)
