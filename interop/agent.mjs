// One app through nostr-tools' BunkerSigner, with a client key kept by the
// caller, as an agent that keeps its connection across a signer's restart.
// Usage: node agent.mjs <connect|sign|refused> <bunker-url> <client-sk-hex> <user-pubkey-hex> [needle]
//   connect  spends the URL's secret, then signs a kind 1 note;
//   sign     signs a kind 1 note on the connection made before (no connect);
//   refused  asks the same and expects a refusal containing <needle>.
// Exits 0 when it went as asked, 1 on a failed check, 2 on silence.
import WebSocket from 'ws'
import { useWebSocketImplementation, SimplePool } from 'nostr-tools/pool'
import { BunkerSigner, parseBunkerInput } from 'nostr-tools/nip46'
import { verifyEvent } from 'nostr-tools/pure'
import { hexToBytes } from 'nostr-tools/utils'
import { check, refusedWith, run, timed as timedOut } from './lib.mjs'

useWebSocketImplementation(WebSocket)

const CALL_TIMEOUT_MS = 10_000
const [mode, url, clientSk, userPubkey, needle] = process.argv.slice(2)
if (!['connect', 'sign', 'refused'].includes(mode) || !url || !/^[0-9a-f]{64}$/.test(clientSk ?? '')
  || !/^[0-9a-f]{64}$/.test(userPubkey ?? '') || (mode === 'refused' && !needle)) {
  console.error('usage: node agent.mjs <connect|sign|refused> <bunker-url> <client-sk-hex> <user-pubkey-hex> [needle]')
  process.exit(2)
}
const timed = (what, promise) => timedOut(what, promise, CALL_TIMEOUT_MS)
const pool = new SimplePool()

async function main() {
  const signer = BunkerSigner.fromBunker(hexToBytes(clientSk), await parseBunkerInput(url), { pool })
  if (mode === 'connect') {
    await timed('connect', signer.connect())
    console.log('ok connect')
  }
  const template = { kind: 1, content: `agent ${mode}`, tags: [], created_at: Math.floor(Date.now() / 1000) }
  if (mode === 'refused') {
    await refusedWith(timed, 'signEvent', signer.signEvent(template), needle)
  } else {
    const event = await timed('signEvent', signer.signEvent(template))
    check(verifyEvent(event) && event.pubkey === userPubkey, 'the note is signed by the user key')
  }
  await signer.close().catch(() => {})
  pool.destroy()
}

run(`agent ${mode}`, main, 30_000)
