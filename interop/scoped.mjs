// A scoped app through a real client: it signs what it was granted, gets an
// error (not silence) for what it was not, and is rate-limited on the 6th
// signature within 10 s.
// Usage: node scoped.mjs <nostr-tools|ndk> <bunker-url> <user-pubkey-hex>
// The bunker URL must grant sign_event:1 with the default rates.
import WebSocket from 'ws'
import { useWebSocketImplementation, SimplePool } from 'nostr-tools/pool'
import { BunkerSigner, parseBunkerInput } from 'nostr-tools/nip46'
import { generateSecretKey, verifyEvent } from 'nostr-tools/pure'
import NDK, { NDKEvent, NDKNip46Signer, NDKPrivateKeySigner } from '@nostr-dev-kit/ndk'
import { check, refusedWith, run, timed as timedOut } from './lib.mjs'

useWebSocketImplementation(WebSocket)
globalThis.WebSocket = WebSocket

const CALL_TIMEOUT_MS = 10_000
const [client, url, userPubkey] = process.argv.slice(2)
if (!['nostr-tools', 'ndk'].includes(client) || !url || !/^[0-9a-f]{64}$/.test(userPubkey ?? '')) {
  console.error('usage: node scoped.mjs <nostr-tools|ndk> <bunker-url> <user-pubkey-hex>')
  process.exit(2)
}
const timed = (what, promise) => timedOut(what, promise, CALL_TIMEOUT_MS)
const template = kind => ({ kind, content: `scoped kind ${kind}`, tags: [], created_at: Math.floor(Date.now() / 1000) })

const refused = (what, promise, needle) => refusedWith(timed, what, promise, needle)

/** A signer with `sign(kind)` returning the signed event, and `close()`. */
async function connect() {
  if (client === 'nostr-tools') {
    const pool = new SimplePool()
    const signer = BunkerSigner.fromBunker(generateSecretKey(), await parseBunkerInput(url), { pool })
    await timed('connect', signer.connect())
    return {
      sign: kind => signer.signEvent(template(kind)),
      close: async () => { await signer.close().catch(() => {}); pool.destroy() },
    }
  }
  const relays = new URL(url.replace('bunker://', 'http://')).searchParams.getAll('relay')
  const ndk = new NDK({ explicitRelayUrls: relays })
  await timed('relay connection', ndk.connect(5000))
  const signer = NDKNip46Signer.bunker(ndk, url, NDKPrivateKeySigner.generate())
  await timed('blockUntilReady', signer.blockUntilReady())
  return {
    sign: async kind => {
      const event = new NDKEvent(ndk, template(kind))
      await event.sign(signer)
      return event.rawEvent()
    },
    close: async () => {},
  }
}

async function main() {
  const signer = await connect()
  try {
    const started = Date.now()
    const first = await timed('sign kind 1', signer.sign(1))
    check(verifyEvent(first) && first.pubkey === userPubkey && first.kind === 1, 'kind 1 is signed')
    await refused('sign kind 0', signer.sign(0), 'forbidden: sign_event of kind 0 is not granted to this app')
    for (let i = 2; i <= 5; i++) await timed(`sign kind 1 (#${i})`, signer.sign(1))
    check(Date.now() - started < 9_000, 'five signatures within 10 s')
    await refused('the 6th signature in 10 s', signer.sign(1), 'rate-limited: 5 per 10 s; retry in')
  } finally {
    await signer.close()
  }
}

run(`${client} scoped`, main, 60_000)
