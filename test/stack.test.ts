// The compose.yaml topology run as local processes, since no Docker engine runs here: PostgreSQL
// (the machine's server, a database and role of the test's own), Redis (redis-server started with
// the cache service's command), the API started as the image starts it (`node dist/server.js` in a
// copy of the runtime stage's /app, with the image's and web's environment), and Adminer from
// Debian's package served by `php -S`. Each service waits for the
// healthchecks compose.yaml defines, as `depends_on: condition: service_healthy` does.
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import { mkdir, mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import type { Browser } from 'playwright-core'
import { chromiumPath, launchChromium } from './support/chromium.js'
import { healthcheckArgv, interpolateAll, readCompose, type Healthcheck } from './support/compose.js'
import { imageEnv } from './support/dockerfile.js'
import { assembleRuntimeApp, type RuntimeApp } from './support/image.js'
import { createTestDatabase, createTestRole, serverUrl, type TestDatabase, type TestRole } from './support/postgres.js'
import {
  freePort,
  projectRoot,
  run,
  shell,
  startBackground,
  startServerProcess,
  type BackgroundProcess,
  type ServerProcess,
} from './support/process.js'

const adminerRoot = '/usr/share/adminer' // Debian's adminer: the compiled adminer.php lives here
const screenshotPath = join(projectRoot, 'test-results', 'adminer-users.png')
/** The brief's curl commands name port 5000, which compose.yaml publishes; web listens on a free port instead. */
const briefCommand = (command: string, port: number) => shell(command.replaceAll('localhost:5000', `localhost:${port}`))

function requireStackTools(): void {
  const missing: string[] = []
  if (!existsSync(join(adminerRoot, 'adminer.php'))) missing.push('adminer')
  if (!existsSync(chromiumPath)) missing.push('chromium')
  const phpModules = spawnSync('php', ['-m'], { encoding: 'utf8' }).stdout ?? ''
  if (!/^pgsql$/m.test(phpModules)) missing.push('php-cli', 'php-pgsql')
  if (spawnSync('redis-server', ['--version']).status !== 0) missing.push('redis-server')
  if (missing.length > 0) {
    throw new Error(
      `The stack test needs ${missing.join(', ')}. Run 'bash .ci/run', or 'apt-get install -y ` +
        `--no-install-recommends chromium adminer php-cli php-pgsql php-cgi'.`,
    )
  }
}

/** A compose URL (`postgres://…@db:5432/usersdb`) pointed at the process that plays that service. */
function toLocal(composeUrl: string, services: Record<string, { host: string; path?: string }>): string {
  const url = new URL(composeUrl)
  const local = services[url.host]
  assert.ok(local, `no local process plays ${url.host}`)
  url.host = local.host
  if (local.path) url.pathname = local.path
  return url.toString()
}

const healthcheckPasses = async (
  check: Healthcheck,
  env: NodeJS.ProcessEnv,
  options: { rewrite?: (line: string) => string; cwd?: string } = {},
) => {
  const argv = healthcheckArgv(check.test).map(options.rewrite ?? ((line) => line))
  return (await run(argv, { env: { PATH: process.env.PATH, ...env }, cwd: options.cwd })).code === 0
}

describe('the compose stack, run as processes', { timeout: 180_000 }, () => {
  const compose = readCompose()
  const postgresServer = new URL(serverUrl)
  const postgresHost = `${postgresServer.hostname}:${postgresServer.port || '5432'}`
  let role: TestRole
  let database: TestDatabase
  let databaseName: string
  let redisPort: number
  let redisDir: string
  let services: ReturnType<typeof readCompose>['services']
  let dbEnv: Record<string, string>
  let webEnv: Record<string, string>
  let cache: BackgroundProcess
  let app: RuntimeApp
  let web: ServerProcess
  let adminer: BackgroundProcess
  let adminerUrl: string
  let browser: Browser

  // The healthcheck lines address the container itself; here each service is a local process.
  const localDb = (line: string) => line.replace('-h 127.0.0.1', `-h ${postgresServer.hostname} -p ${postgresServer.port || '5432'}`)
  const localCache = (line: string) => line.replace('redis-cli', `redis-cli -p ${redisPort}`)

  before(async () => {
    requireStackTools()
    const build = spawnSync('npm', ['run', '--silent', 'build'], { cwd: projectRoot, encoding: 'utf8' })
    assert.equal(build.status, 0, build.stdout + build.stderr)
    app = await assembleRuntimeApp()

    // Adminer refuses passwordless logins, so the stack's POSTGRES_USER is a role with a password.
    role = await createTestRole()
    database = await createTestDatabase(role)
    databaseName = new URL(database.url).pathname.slice(1)
    // API_WRITES_OPEN as .env.example sets it: the brief's curl commands send no token.
    const dotEnv = { POSTGRES_USER: role.name, POSTGRES_PASSWORD: role.password, REDIS_PASSWORD: 'stack-test-redis-password', API_WRITES_OPEN: 'true' }
    services = interpolateAll(compose, dotEnv).services
    dbEnv = { ...services.db!.environment, POSTGRES_DB: databaseName }
    assert.ok(await healthcheckPasses(services.db!.healthcheck!, dbEnv, { rewrite: localDb }), 'db is healthy')

    redisPort = await freePort()
    redisDir = await mkdtemp(join(tmpdir(), 'fullstack-redis-'))
    cache = await startBackground([...services.cache!.command!, '--port', String(redisPort), '--bind', '127.0.0.1', '--dir', redisDir], {
      ready: () => healthcheckPasses(services.cache!.healthcheck!, services.cache!.environment!, { rewrite: localCache }),
    })

    webEnv = { ...imageEnv(), ...services.web!.environment }
    webEnv.DATABASE_URL = toLocal(webEnv.DATABASE_URL!, { 'db:5432': { host: postgresHost, path: `/${databaseName}` } })
    webEnv.REDIS_URL = toLocal(webEnv.REDIS_URL!, { 'cache:6379': { host: `127.0.0.1:${redisPort}` } })
    assert.equal(webEnv.PORT, '5000')
    webEnv.PORT = String(await freePort())
    web = await startServerProcess(webEnv, { port: Number(webEnv.PORT), cwd: app.dir })

    const adminerPort = await freePort()
    adminerUrl = `http://127.0.0.1:${adminerPort}/adminer.php`
    adminer = await startBackground(['php', '-S', `127.0.0.1:${adminerPort}`, '-t', adminerRoot], {
      ready: () => fetch(adminerUrl).then((answer) => answer.ok, () => false),
    })

    // Each Playwright launch gets a fresh, temporary user-data-dir.
    browser = await launchChromium()
  })

  after(async () => {
    await browser?.close()
    await adminer?.stop()
    await web?.stop()
    await app?.dispose()
    await cache?.stop()
    if (redisDir) await rm(redisDir, { recursive: true, force: true })
    await database?.drop()
    await role?.drop()
  })

  it('answers the brief’s curl commands', async () => {
    const brief = (command: string) => briefCommand(command, Number(webEnv.PORT))
    const created = await brief(
      `curl -s -w '\\n%{http_code}' -X POST http://localhost:5000/users -H "Content-Type: application/json" -d '{"name":"Yassine","email":"yassine@example.com"}'`,
    )
    const [createdBody, createdStatus] = created.stdout.split('\n')
    assert.equal(createdStatus, '201', created.stdout)
    const user = JSON.parse(createdBody!)
    assert.deepEqual([user.id, user.name, user.email], [1, 'Yassine', 'yassine@example.com'])

    const listed = await brief(`curl -s -w '\\n%{http_code}' http://localhost:5000/users`)
    assert.deepEqual(listed.stdout.split('\n'), [JSON.stringify([user]), '200'])
    const read = await brief(`curl -s -w '\\n%{http_code}' http://localhost:5000/users/1`)
    assert.deepEqual(read.stdout.split('\n'), [JSON.stringify(user), '200'])
  })

  it('passes the healthchecks compose.yaml defines, which fail when their service cannot answer', async () => {
    assert.ok(await healthcheckPasses(services.db!.healthcheck!, dbEnv, { rewrite: localDb }))
    const closedPort = await freePort()
    const closedDb = (line: string) => line.replace('-h 127.0.0.1', `-h 127.0.0.1 -p ${closedPort}`)
    assert.ok(!(await healthcheckPasses(services.db!.healthcheck!, dbEnv, { rewrite: closedDb })))

    const cacheEnv = services.cache!.environment!
    assert.ok(await healthcheckPasses(services.cache!.healthcheck!, cacheEnv, { rewrite: localCache }))
    const wrongPassword = { ...cacheEnv, REDISCLI_AUTH: 'not-the-password' }
    assert.ok(!(await healthcheckPasses(services.cache!.healthcheck!, wrongPassword, { rewrite: localCache })), 'NOAUTH is unhealthy')

    assert.ok(await healthcheckPasses(services.web!.healthcheck!, webEnv, { cwd: app.dir }))
    assert.ok(!(await healthcheckPasses(services.web!.healthcheck!, { ...webEnv, PORT: String(closedPort) }, { cwd: app.dir })))
  })

  it('shows the users created through the API in Adminer’s users table', async () => {
    for (const [name, email] of [
      ['Ada Lovelace', 'ada@example.com'],
      ['Grace Hopper', 'grace@example.com'],
    ]) {
      const answer = await fetch(`${web.url}/users`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ name, email }),
      })
      assert.equal(answer.status, 201)
    }
    const users = (await (await fetch(`${web.url}/users`)).json()) as { id: number; name: string; email: string }[]
    assert.ok(users.length >= 2)

    const page = await browser.newPage({ viewport: { width: 1280, height: 720 } })
    try {
      // The README's login: System PostgreSQL, Server db (here the local server), user and password
      // from .env, database usersdb (here the test's database).
      await page.goto(adminerUrl)
      await page.selectOption('select[name="auth[driver]"]', 'pgsql')
      await page.fill('input[name="auth[server]"]', postgresHost)
      await page.fill('input[name="auth[username]"]', role.name)
      await page.fill('input[name="auth[password]"]', role.password)
      await page.fill('input[name="auth[db]"]', databaseName)
      await page.click('input[type="submit"][value="Login"]')
      await page.waitForURL(/[?&]ns=public/)
      assert.deepEqual(await page.locator('.error').allTextContents(), [])

      await page.getByRole('link', { name: 'users', exact: true }).first().click()
      await page.getByRole('link', { name: 'Select data' }).first().click()
      await page.waitForURL(/[?&]select=users/)
      const header = (await page.locator('#table thead tr').first().locator('th, td').allInnerTexts()).map((text) => text.trim())
      const shown = []
      for (const row of await page.locator('#table tbody tr').all()) {
        const cells = (await row.locator('th, td').allInnerTexts()).map((text) => text.trim())
        const cell = (name: string) => cells[header.indexOf(name)]
        shown.push({ id: Number(cell('id')), name: cell('name'), email: cell('email') })
      }
      assert.deepEqual(
        shown.sort((a, b) => a.id - b.id),
        users.map(({ id, name, email }) => ({ id, name, email })),
      )

      await mkdir(join(projectRoot, 'test-results'), { recursive: true })
      await page.screenshot({ path: screenshotPath, fullPage: true })
      assert.ok(existsSync(screenshotPath))
    } finally {
      await page.close()
    }
  })
})
