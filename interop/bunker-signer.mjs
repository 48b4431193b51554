// nostr-tools' BunkerSigner against an enclaved signer.
// Usage: node bunker-signer.mjs <bunker-url-1> <bunker-url-2> <user-pubkey-hex>
// Each bunker URL carries its own single-use secret. Prints one line per
// step; exits 0 when every step passed, 1 on the first failure, 2 when a
// call takes longer than the timeout (a silent signer).
import WebSocket from 'ws'
import { useWebSocketImplementation, SimplePool } from 'nostr-tools/pool'
import { BunkerSigner, parseBunkerInput } from 'nostr-tools/nip46'
import { generateSecretKey, getPublicKey, verifyEvent } from 'nostr-tools/pure'
import * as nip44 from 'nostr-tools/nip44'
import * as nip04 from 'nostr-tools/nip04'
import { check, refusedWith, run, timed as timedOut } from './lib.mjs'

useWebSocketImplementation(WebSocket)

const CALL_TIMEOUT_MS = 10_000
const [url1, url2, userPubkey] = process.argv.slice(2)
if (!url1 || !url2 || !/^[0-9a-f]{64}$/.test(userPubkey ?? '')) {
  console.error('usage: node bunker-signer.mjs <bunker-url-1> <bunker-url-2> <user-pubkey-hex>')
  process.exit(2)
}

const timed = (what, promise) => timedOut(what, promise, CALL_TIMEOUT_MS)

const rejects = (what, promise, needle) => refusedWith(timed, what, promise, needle)

const pool = new SimplePool()
const signers = []
function signer(sk, bp) {
  const s = BunkerSigner.fromBunker(sk, bp, { pool })
  signers.push(s)
  return s
}

async function main() {
  const bp1 = await parseBunkerInput(url1)
  const bp2 = await parseBunkerInput(url2)
  check(bp1 && bp2 && bp1.secret && bp2.secret, 'bunker URLs parse with a secret')

  // connect, plain
  const sk1 = generateSecretKey()
  const plain = signer(sk1, bp1)
  await timed('connect', plain.connect())
  console.log('ok connect')
  check((await timed('getPublicKey', plain.getPublicKey())) === userPubkey, 'getPublicKey is the user key')

  // the same app again, as after a restart: it still holds the spent secret
  await timed('reconnect', signer(sk1, bp1).connect())
  console.log('ok the same app reconnects with its spent secret')

  // a second client reusing the spent secret
  await rejects('connect with a spent secret', signer(generateSecretKey(), bp1).connect(), 'already used')

  // a client that never connected
  const stranger = signer(generateSecretKey(), { ...bp1, secret: null })
  await rejects('get_public_key without connect', stranger.sendRequest('get_public_key', []), 'unauthorized')

  // connect with metadata
  const bunker = signer(generateSecretKey(), bp2)
  await timed('connect with metadata', bunker.connect({ name: 'enclaved interop', url: 'https://example.com' }))
  console.log('ok connect with metadata')
  await timed('ping', bunker.ping())
  console.log('ok ping')

  // signEvent with a template without pubkey
  const template = { kind: 1, content: 'signed in an enclave', tags: [['t', 'enclaved'], ['client', 'interop', '']], created_at: Math.floor(Date.now() / 1000) - 7 }
  const event = await timed('signEvent', bunker.signEvent(template))
  check(verifyEvent(event), 'signEvent returns a valid signed event')
  check(event.pubkey === userPubkey, 'the event is signed by the user key')
  check(event.kind === template.kind && event.content === template.content && event.created_at === template.created_at
    && JSON.stringify(event.tags) === JSON.stringify(template.tags), 'kind, tags, content and created_at are unchanged')

  // NIP-44 and NIP-04 round trips with a third party
  const peer = generateSecretKey()
  const peerPub = getPublicKey(peer)
  const sealed = await timed('nip44Encrypt', bunker.nip44Encrypt(peerPub, 'hello over nip44'))
  check(nip44.decrypt(sealed, nip44.getConversationKey(peer, userPubkey)) === 'hello over nip44', 'nip44Encrypt is readable by the peer')
  const fromPeer = nip44.encrypt('reply over nip44', nip44.getConversationKey(peer, userPubkey))
  check((await timed('nip44Decrypt', bunker.nip44Decrypt(peerPub, fromPeer))) === 'reply over nip44', 'nip44Decrypt reads the peer')
  const old = await timed('nip04Encrypt', bunker.nip04Encrypt(peerPub, 'hello over nip04'))
  check((await nip04.decrypt(peer, userPubkey, old)) === 'hello over nip04', 'nip04Encrypt is readable by the peer')
  const oldFromPeer = await nip04.encrypt(peer, userPubkey, 'reply over nip04')
  check((await timed('nip04Decrypt', bunker.nip04Decrypt(peerPub, oldFromPeer))) === 'reply over nip04', 'nip04Decrypt reads the peer')

  // switch_relays: the relays the key listens on, as JSON
  const relays = JSON.parse(await timed('switch_relays', bunker.sendRequest('switch_relays', [])))
  check(Array.isArray(relays) && relays.length === bp2.relays.length && relays.every(r => bp2.relays.includes(r)), `switch_relays lists the key's relays ${JSON.stringify(relays)}`)
  check((await timed('switchRelays', bunker.switchRelays())) === false, 'switchRelays keeps the same relays')

  // an unknown method is answered with an error, not silence
  await rejects('an unknown method', bunker.sendRequest('frobnicate', ['x']), 'unknown method')

  // logout ends the session
  await timed('logout', plain.logout())
  console.log('ok logout')
  const after = signer(sk1, { ...bp1, secret: null })
  await rejects('get_public_key after logout', after.sendRequest('get_public_key', []), 'unauthorized')
}

run('nostr-tools BunkerSigner', async () => {
  try {
    await main()
  } finally {
    for (const s of signers) await s.close().catch(() => {})
    pool.destroy()
  }
}, 120_000)
