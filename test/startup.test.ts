/**
 * Issue 9, item 8: what the built server (`npm run build` first) says and does when its database
 * cannot be used at start.
 */
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { describe, it } from 'node:test'
import { freePort, projectRoot } from './support/process.js'
import { serverUrl } from './support/postgres.js'

/** Runs `node dist/server.js` until it exits (killed after 30 s): its exit code and output. */
async function startServer(env: NodeJS.ProcessEnv): Promise<{ code: number | null; output: string }> {
  const child = spawn(process.execPath, ['dist/server.js'], {
    cwd: projectRoot,
    env: { PATH: process.env.PATH, NODE_ENV: 'production', LOG_LEVEL: 'info', PORT: String(await freePort()), ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let output = ''
  child.stdout.on('data', (chunk) => (output += chunk))
  child.stderr.on('data', (chunk) => (output += chunk))
  const killer = setTimeout(() => child.kill('SIGKILL'), 30_000)
  const [code] = await once(child, 'exit')
  clearTimeout(killer)
  return { code: code as number | null, output }
}

/** Exit code 1 and one fatal JSON line that says where and what, with no password and no stack trace. */
function assertOneClearLine(result: { code: number | null; output: string }, ...expected: RegExp[]): void {
  assert.equal(result.code, 1, result.output)
  const lines = result.output.trim().split('\n')
  assert.equal(lines.length, 1, result.output)
  const line = JSON.parse(lines[0]!) as { level: number; msg: string }
  assert.equal(line.level, 60, 'logged as fatal')
  for (const pattern of expected) assert.match(line.msg, pattern)
  assert.doesNotMatch(result.output, /s3cret|\n\s+at |node_modules/)
}

describe('a database that cannot be used at start', () => {
  it('makes the server exit 1 with one line naming host, port, database and what failed', async () => {
    const port = await freePort()
    const result = await startServer({ DATABASE_URL: `postgres://users:s3cret@127.0.0.1:${port}/usersdb` })
    assertOneClearLine(result, new RegExp(`PostgreSQL at 127\\.0\\.0\\.1:${port}/usersdb as users`), /ECONNREFUSED/)
  })

  it('says so for a database that does not exist, and from the primary of several workers', async () => {
    const url = new URL(serverUrl)
    url.pathname = '/fullstack_missing_database'
    const result = await startServer({ DATABASE_URL: url.toString(), WEB_CONCURRENCY: '2', CACHE_ENABLED: 'false' })
    assertOneClearLine(result, /\/fullstack_missing_database/, /database "fullstack_missing_database" does not exist/)
  })
})
