/**
 * Issue 9, item 3: one embedded (PGlite) database directory, one server. Real processes of the built
 * server (`npm run build` first; `npm test` does).
 */
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { existsSync } from 'node:fs'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { hostname, tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { PGlite } from '@electric-sql/pglite'
import { request } from './support/http.js'
import { freePort, projectRoot, startServerProcess, type ServerProcess } from './support/process.js'

/** Starts a server that should refuse to run: its exit code and output, or a failure if it got ready. */
async function startRefused(env: NodeJS.ProcessEnv): Promise<{ code: number | null; output: string }> {
  const port = await freePort()
  const child = spawn(process.execPath, ['dist/server.js'], {
    cwd: projectRoot,
    env: { PATH: process.env.PATH, NODE_ENV: 'production', API_WRITES_OPEN: 'true', LOG_LEVEL: 'info', ...env, PORT: String(port) },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let output = ''
  child.stdout.on('data', (chunk) => (output += chunk))
  child.stderr.on('data', (chunk) => (output += chunk))
  const exited = once(child, 'exit')
  for (const deadline = Date.now() + 30_000; child.exitCode === null; ) {
    const ready = await fetch(`http://127.0.0.1:${port}/readyz`).then((answer) => answer.ok, () => false)
    if (ready || Date.now() > deadline) {
      child.kill('SIGKILL')
      await exited
      assert.fail(`the second server ${ready ? 'started' : 'neither refused nor started'}:\n${output}`)
    }
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
  return { code: child.exitCode, output }
}

describe('one server per DATA_DIR', () => {
  let dataDir: string
  let server: ServerProcess | undefined
  const lockFile = () => join(dataDir, 'server.lock')
  // PGlite answers its first connection slowly on a loaded machine; the lock is what is tested here.
  const env = () => ({ DATA_DIR: dataDir, RATE_LIMIT_MAX: '0', DATABASE_CONNECT_TIMEOUT_MS: '20000' })
  const create = async (email: string) => {
    const answer = await request(server!.url, 'POST', '/users', { json: { name: 'Kept', email } })
    assert.equal(answer.status, 201, answer.text)
  }
  const emails = async () => ((await request(server!.url, 'GET', '/users')).body as { email: string }[]).map((user) => user.email)

  before(async () => {
    dataDir = await mkdtemp(join(tmpdir(), 'fullstack-datadir-'))
    // A new PGlite directory takes its initdb first, which alone can outlast a start's deadline on a
    // loaded machine: do it here, without one.
    await (await PGlite.create(dataDir)).close()
  })
  after(async () => {
    await server?.stop('SIGKILL')
    await rm(dataDir, { recursive: true, force: true })
  })

  it('refuses a second server on a directory in use, in one line naming it and the first server’s pid', async () => {
    server = await startServerProcess(env())
    await create('first@example.com')
    const second = await startRefused(env())
    assert.equal(second.code, 1, second.output)
    const lines = second.output.trim().split('\n')
    assert.equal(lines.length, 1, second.output)
    assert.match(lines[0]!, new RegExp(`DATA_DIR ${dataDir} is in use by another server \\(pid ${server.child.pid}\\)`))
    assert.doesNotMatch(second.output, /\n\s+at /, 'a stack trace')
    // The first server is untouched.
    await create('second@example.com')
  })

  it('starts over the lock of a server that was killed with SIGKILL, with every acknowledged write', async () => {
    await server!.stop('SIGKILL')
    const stale = JSON.parse(await readFile(lockFile(), 'utf8')) as { pid: number }
    assert.equal(stale.pid, server!.child.pid)
    server = await startServerProcess(env())
    assert.deepEqual(await emails(), ['first@example.com', 'second@example.com'])
    assert.equal(await server.stop(), 0)
    assert.equal(existsSync(lockFile()), false, 'a clean stop leaves no lock behind')
  })

  it('starts over a lock whose pid now belongs to another process, and refuses one whose process runs', async () => {
    // This test process is alive, but it is not the process that wrote the lock: its start time differs.
    await writeFile(lockFile(), JSON.stringify({ pid: process.pid, host: hostname(), startedAt: '1' }))
    server = await startServerProcess(env())
    assert.equal(await server.stop(), 0)
    // Without a start time to compare (a lock written where /proc is missing), a live pid holds the lock.
    await writeFile(lockFile(), JSON.stringify({ pid: process.pid, host: hostname() }))
    const refused = await startRefused(env())
    assert.equal(refused.code, 1, refused.output)
    assert.match(refused.output, new RegExp(`in use by another server \\(pid ${process.pid}\\)`))
  })
})
