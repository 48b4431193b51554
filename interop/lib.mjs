// What the interop scripts share: every client call has a timeout (a
// silent signer fails the run with exit 2), and each check prints a line.

/** `promise`, or a rejection marked `silent` after `ms`. */
export function timed(what, promise, ms) {
  return Promise.race([
    promise,
    new Promise((_, reject) =>
      setTimeout(() => reject(Object.assign(new Error(`${what}: no reply within ${ms} ms`), { silent: true })), ms),
    ),
  ])
}

/** Throws unless `cond`; prints `ok <what>`. */
export function check(cond, what) {
  if (!cond) throw new Error(`check failed: ${what}`)
  console.log(`ok ${what}`)
}

/** Runs `main` with an overall deadline; exits 0 on success, 1 on a failed check, 2 on silence. */
export function run(name, main, overallMs) {
  const overall = setTimeout(() => {
    console.error('FAIL: the whole run took too long')
    process.exit(2)
  }, overallMs)
  main()
    .then(() => {
      clearTimeout(overall)
      console.log(`PASS ${name}`)
      process.exit(0)
    })
    .catch(e => {
      console.error(`FAIL: ${e?.message ?? e}`)
      process.exit(e?.silent ? 2 : 1)
    })
}

/**
 * Awaits `promise` (with `timed`), which must be rejected with an error
 * containing `needle`; a silent signer stays a failure of its own.
 */
export async function refusedWith(timed, what, promise, needle) {
  try {
    await timed(what, promise)
  } catch (e) {
    if (e.silent) throw e
    const message = String(e?.message ?? e)
    check(message.includes(needle), `${what} is refused (${message})`)
    return
  }
  throw new Error(`check failed: ${what} was accepted`)
}
