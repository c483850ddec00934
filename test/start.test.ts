import assert from 'node:assert/strict'
import { spawn, spawnSync } from 'node:child_process'
import { once } from 'node:events'
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs'
import { connect } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import { freePort, projectRoot } from './support/process.js'
import { createTestDatabase, type TestDatabase } from './support/postgres.js'

/** The processes started by `pid`, their children, and so on (Linux /proc). */
function descendants(pid: number): number[] {
  const path = `/proc/${pid}/task/${pid}/children`
  if (!existsSync(path)) return []
  const children = readFileSync(path, 'utf8').split(' ').filter(Boolean).map(Number)
  return children.flatMap((child) => [child, ...descendants(child)])
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

function portAccepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1')
    socket.once('connect', () => {
      socket.destroy()
      resolve(true)
    })
    socket.once('error', () => resolve(false))
  })
}

async function npmStart(databaseUrl: string) {
  const port = await freePort()
  const child = spawn('npm', ['start'], {
    cwd: projectRoot,
    env: { PATH: process.env.PATH, HOME: process.env.HOME, PORT: String(port), DATABASE_URL: databaseUrl, LOG_LEVEL: 'warn' },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let output = ''
  child.stdout.on('data', (chunk) => (output += chunk))
  child.stderr.on('data', (chunk) => (output += chunk))
  const exited = once(child, 'exit')
  const deadline = Date.now() + 60_000
  for (;;) {
    if (child.exitCode !== null) throw new Error(`npm start exited with ${child.exitCode}:\n${output}`)
    if (Date.now() > deadline) throw new Error(`npm start did not answer /readyz:\n${output}`)
    if (await fetch(`http://127.0.0.1:${port}/readyz`).then((answer) => answer.ok, () => false)) break
    await sleep(100)
  }
  return { child, port, exited, output: () => output }
}

describe('npm start', () => {
  let database: TestDatabase
  before(async () => {
    database = await createTestDatabase()
  })
  after(async () => {
    await database?.drop()
  })

  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    it(`stops the server when the npm process gets ${signal}, leaving no process and a closed port`, async () => {
      const started = await npmStart(database.url)
      const processes = descendants(started.child.pid!)
      assert.ok(processes.length > 0, 'npm started the server')
      started.child.kill(signal)
      const stopped = await Promise.race([started.exited.then(([code]) => ({ code })), sleep(30_000, undefined, { ref: false })])
      const left = processes.filter(isAlive)
      for (const pid of [started.child.pid!, ...left]) if (isAlive(pid)) process.kill(pid, 'SIGKILL')
      assert.ok(stopped, `npm start was still running 30 s after ${signal}:\n${started.output()}`)
      assert.equal(stopped.code, 0, started.output())
      assert.deepEqual(left, [], `processes left after ${signal}:\n${started.output()}`)
      assert.equal(await portAccepts(started.port), false, 'the port is closed')
      // dist/ was built by `npm test` (or `npm ci`): starting did not compile again.
      assert.doesNotMatch(started.output(), /compiling|tsc/)
    })
  }
})

describe('scripts/build-if-stale.js', () => {
  const project = mkdtempSync(join(tmpdir(), 'build-if-stale-'))
  const run = (...args: string[]) => spawnSync(process.execPath, ['scripts/build-if-stale.js', ...args], { cwd: project, encoding: 'utf8' })

  before(() => {
    mkdirSync(join(project, 'scripts'))
    mkdirSync(join(project, 'src'))
    copyFileSync(join(projectRoot, 'scripts/build-if-stale.js'), join(project, 'scripts/build-if-stale.js'))
    const build = 'tsc -p tsconfig.build.json && touch dist/pglite-seed.tar.gz && mkdir -p dist/web && touch dist/web/index.html'
    writeFileSync(join(project, 'package.json'), JSON.stringify({ type: 'module', scripts: { build } }))
    writeFileSync(join(project, 'tsconfig.json'), '{"compilerOptions":{"module":"NodeNext","strict":true,"types":[],"lib":["ES2023"],"skipLibCheck":true}}')
    writeFileSync(
      join(project, 'tsconfig.build.json'),
      '{"extends":"./tsconfig.json","compilerOptions":{"rootDir":"src","outDir":"dist"},"include":["src"]}',
    )
    writeFileSync(join(project, 'src/server.ts'), 'export const answer: number = 42\n')
  })
  after(() => rmSync(project, { recursive: true, force: true }))

  it('without the compiler (npm ci --omit=dev): --optional succeeds and says so, without it the start fails', () => {
    const optional = run('--optional')
    assert.equal(optional.status, 0, optional.stderr)
    assert.match(optional.stderr, /TypeScript is not installed/)
    const required = run()
    assert.equal(required.status, 1)
    assert.match(required.stderr, /run `npm ci`/)
  })

  it('compiles when dist/ is missing or older than a source, and only then', () => {
    symlinkSync(join(projectRoot, 'node_modules'), join(project, 'node_modules'))
    const first = run()
    assert.equal(first.status, 0, first.stderr)
    assert.match(first.stderr, /compiling/)
    assert.match(readFileSync(join(project, 'dist/server.js'), 'utf8'), /42/)

    const fresh = run()
    assert.equal(fresh.status, 0, fresh.stderr)
    assert.equal(fresh.stderr, '')

    writeFileSync(join(project, 'src/server.ts'), 'export const answer: number = 43\n')
    const future = new Date(Date.now() + 60_000)
    utimesSync(join(project, 'src/server.ts'), future, future)
    const changed = run()
    assert.equal(changed.status, 0, changed.stderr)
    assert.match(changed.stderr, /compiling/)
    assert.match(readFileSync(join(project, 'dist/server.js'), 'utf8'), /43/)
  })
})
