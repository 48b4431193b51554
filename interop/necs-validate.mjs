// nostr-enclaves' Validator, the NECS reference validator, on instance
// events (kind 63793 or 13793) in files.
// Usage: node necs-validate.mjs [--release REF HEX[,HEX…]] EVENT.json…
// With --release, the events must also carry release signatures (kind
// 63794) of the attested PCR0/1/2, with `r` REF, by each HEX pubkey.
// Prints `valid FILE` or `invalid FILE: REASON` per file; exits 0 when
// every file is valid, 1 otherwise, 2 on bad usage.
import { readFileSync } from 'node:fs'
import { Validator } from 'nostr-enclaves'

const args = process.argv.slice(2)
const options = { allowExpired: false }
if (args[0] === '--release') {
  const [, ref, signers] = args.splice(0, 3)
  if (!ref || !/^[0-9a-f]{64}(,[0-9a-f]{64})*$/.test(signers ?? '')) {
    console.error('usage: node necs-validate.mjs [--release REF HEX[,HEX…]] EVENT.json…')
    process.exit(2)
  }
  options.expectedRelease = { ref, signerPubkeys: signers.split(',') }
}
if (!args.length) {
  console.error('usage: node necs-validate.mjs [--release REF HEX[,HEX…]] EVENT.json…')
  process.exit(2)
}

// validateInstance logs why it returns false; keep that on stderr.
console.log = (...a) => console.error(...a)
let failed = 0
for (const file of args) {
  try {
    const event = JSON.parse(readFileSync(file, 'utf8'))
    // true: valid and as expected; false: valid but not as expected.
    const ok = await new Validator(options).validateInstance(event)
    if (ok) {
      process.stdout.write(`valid ${file} (kind ${event.kind})\n`)
    } else {
      failed++
      process.stdout.write(`invalid ${file}: not the expected release\n`)
    }
  } catch (e) {
    failed++
    process.stdout.write(`invalid ${file}: ${e?.message ?? e}\n`)
  }
}
process.exit(failed ? 1 : 0)
