// A client-initiated connection: the app makes a nostrconnect:// URI,
// prints it (`URI <uri>` on its own line, for the test to hand to
// `verifier key nostrconnect`), waits for the signer's connect response,
// then signs kind 1 and is refused kind 0 (the test grants sign_event:1).
// Usage: node nostrconnect.mjs <nostr-tools|ndk> <relay-url> <user-pubkey-hex>
import WebSocket from 'ws'
import { useWebSocketImplementation, SimplePool } from 'nostr-tools/pool'
import { BunkerSigner } from 'nostr-tools/nip46'
import { generateSecretKey, getPublicKey, verifyEvent } from 'nostr-tools/pure'
import NDK, { NDKEvent, NDKNip46Signer, NDKPrivateKeySigner } from '@nostr-dev-kit/ndk'
import { check, refusedWith, run, timed as timedOut } from './lib.mjs'

useWebSocketImplementation(WebSocket)
globalThis.WebSocket = WebSocket

const CONNECT_TIMEOUT_MS = 60_000
const CALL_TIMEOUT_MS = 10_000
const [client, relay, userPubkey] = process.argv.slice(2)
if (!['nostr-tools', 'ndk'].includes(client) || !relay || !/^[0-9a-f]{64}$/.test(userPubkey ?? '')) {
  console.error('usage: node nostrconnect.mjs <nostr-tools|ndk> <relay-url> <user-pubkey-hex>')
  process.exit(2)
}
const timed = (what, promise, ms = CALL_TIMEOUT_MS) => timedOut(what, promise, ms)
const template = kind => ({ kind, content: `nostrconnect kind ${kind}`, tags: [], created_at: Math.floor(Date.now() / 1000) })

async function connect() {
  if (client === 'nostr-tools') {
    const sk = generateSecretKey()
    const secret = Math.random().toString(36).slice(2)
    const uri = `nostrconnect://${getPublicKey(sk)}?relay=${encodeURIComponent(relay)}&secret=${secret}` +
      `&perms=${encodeURIComponent('sign_event:1,sign_event:0')}&name=${encodeURIComponent('interop app')}`
    // An app shows its URI once it listens: the connect response is
    // ephemeral (kind 24133), so one sent before the app's REQ reached the
    // relay is never delivered. fromURI subscribes at once on a relay that
    // is already connected; the timer lets its REQ go out first.
    const pool = new SimplePool()
    await timed('relay connection', pool.ensureRelay(relay))
    const connecting = timed('fromURI', BunkerSigner.fromURI(sk, uri, { pool }), CONNECT_TIMEOUT_MS)
    await new Promise(resolve => setTimeout(resolve, 0))
    console.log(`URI ${uri}`)
    const signer = await connecting
    return {
      pubkey: () => signer.getPublicKey(),
      sign: kind => signer.signEvent(template(kind)),
      close: async () => { await signer.close().catch(() => {}); pool.destroy() },
    }
  }
  const ndk = new NDK({ explicitRelayUrls: [relay] })
  await timed('relay connection', ndk.connect(5000))
  const signer = NDKNip46Signer.nostrconnect(ndk, relay, NDKPrivateKeySigner.generate(), { name: 'interop ndk' })
  // Listening (NDK resolves this at EOSE) before the URI is shown.
  await timed('subscription', signer.startListening())
  console.log(`URI ${signer.nostrConnectUri}`)
  const user = await timed('blockUntilReady', signer.blockUntilReady(), CONNECT_TIMEOUT_MS)
  return {
    pubkey: async () => user.pubkey,
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
    check((await timed('the signer key', signer.pubkey())) === userPubkey, 'the connection is to the user key')
    const signed = await timed('sign kind 1', signer.sign(1))
    check(verifyEvent(signed) && signed.pubkey === userPubkey && signed.kind === 1, 'kind 1 is signed')
    await refusedWith(timed, 'sign kind 0', signer.sign(0), 'forbidden: sign_event of kind 0')
  } finally {
    await signer.close()
  }
}

run(`${client} nostrconnect`, main, 120_000)
