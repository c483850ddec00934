/** Every security knob of the README, over HTTP: API token, rate limits, headers, CORS and docs. */
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import { startApp, type RunningApp } from './support/app.js'
import { assertProblem, request } from './support/http.js'
import { createTestDatabase, type TestDatabase } from './support/postgres.js'

const token = 'test-token-5b1e0c8d2f9a4e71'

let database: TestDatabase
before(async () => {
  database = await createTestDatabase()
})
after(() => database?.drop())

/** Runs `body` against an app started with `env` (plus the test database), then closes it. */
async function withApp(env: NodeJS.ProcessEnv, body: (server: RunningApp) => Promise<void>): Promise<void> {
  const server = await startApp({ DATABASE_URL: database.url, RATE_LIMIT_MAX: '0', ...env })
  try {
    await body(server)
  } finally {
    await server.close()
  }
}

const bearer = (value: string) => ({ authorization: `Bearer ${value}` })
let emails = 0
const newUser = () => ({ name: 'Guarded', email: `guarded${++emails}@example.com` })

describe('API token', () => {
  it('protects every write with a bearer token, compared in full, and leaves reads open', () =>
    withApp({ API_TOKEN: token }, async ({ url }) => {
      const user = newUser()
      const missing = assertProblem(await request(url, 'POST', '/users', { json: user }), 401)
      assert.equal(missing.type, '/problems/unauthorized')
      const refusals = [
        { authorization: `Basic ${token}` },
        { authorization: 'Bearer' },
        bearer(`${token}x`),
        bearer(token.slice(0, -1)),
        bearer(token.toUpperCase()),
      ]
      for (const headers of refusals) {
        const answer = await request(url, 'POST', '/users', { json: user, headers })
        assertProblem(answer, 401)
        assert.match(answer.headers.get('www-authenticate') ?? '', /^Bearer realm="users"/)
      }
      const wrong = await request(url, 'POST', '/users', { json: user, headers: bearer('not-the-token-at-all') })
      assert.equal(wrong.headers.get('www-authenticate'), 'Bearer realm="users", error="invalid_token"')
      assert.equal((await request(url, 'POST', '/users', { json: user })).headers.get('www-authenticate'), 'Bearer realm="users"')
      assert.deepEqual((await request(url, 'GET', `/users?email=${user.email}`)).body, [], 'a refused write changed nothing')

      const created = await request(url, 'POST', '/users', { json: user, headers: { authorization: `bearer ${token}` } })
      assert.equal(created.status, 201)
      const path = `/users/${created.body.id}`
      for (const [method, json] of [['PUT', newUser()], ['PATCH', { name: 'Changed' }], ['DELETE', undefined]] as const) {
        assertProblem(await request(url, method, path, { json }), 401)
        assert.ok((await request(url, method, path, { json, headers: bearer(token) })).status < 300, method)
      }
      for (const read of ['/users', '/healthz', '/readyz', '/openapi.json']) {
        assert.equal((await request(url, 'GET', read)).status, 200, read)
      }
    }))

  it('protects reads too with API_TOKEN_READS=true, but never the health checks', () =>
    withApp({ API_TOKEN: token, API_TOKEN_READS: 'true' }, async ({ url }) => {
      for (const read of ['/users', '/users/1', '/openapi.json', '/nowhere']) assertProblem(await request(url, 'GET', read), 401)
      assert.equal((await request(url, 'GET', '/users', { headers: bearer(token) })).status, 200)
      for (const probe of ['/healthz', '/readyz']) assert.equal((await request(url, 'GET', probe)).status, 200, probe)
    }))

  it('warns at start in production when writes are open to anyone, and only then', async () => {
    const warnings = async (env: NodeJS.ProcessEnv) => {
      let log = ''
      const destination = { write: (line: string) => (log += line) }
      const server = await startApp({ DATABASE_URL: database.url, LOG_LEVEL: 'warn', ...env }, { log: destination })
      await server.close()
      return log
    }
    assert.match(await warnings({ NODE_ENV: 'production' }), /"level":40.*API_TOKEN is not set/)
    assert.doesNotMatch(await warnings({ NODE_ENV: 'production', API_TOKEN: token }), /API_TOKEN/)
    assert.doesNotMatch(await warnings({ NODE_ENV: 'development' }), /API_TOKEN/)
  })
})

// In memory here (no REDIS_URL); with counters in Redis: test/rate-limit-redis.test.ts.
describe('rate limiting', () => {
  it('answers 429 with Retry-After past RATE_LIMIT_MAX per window, unknown routes included, health checks exempt', () =>
    withApp({ RATE_LIMIT_MAX: '3', RATE_LIMIT_WINDOW: '1 minute' }, async ({ url }) => {
      for (let i = 0; i < 3; i++) {
        const answer = await request(url, 'GET', '/users')
        assert.equal(answer.status, 200)
        assert.equal(answer.headers.get('x-ratelimit-remaining'), String(2 - i))
      }
      for (const path of ['/users', '/users/1', '/nowhere']) {
        const limited = await request(url, 'GET', path)
        assert.equal(assertProblem(limited, 429).type, '/problems/rate-limited')
        const retryAfter = Number(limited.headers.get('retry-after'))
        assert.ok(Number.isInteger(retryAfter) && retryAfter >= 1 && retryAfter <= 60, `Retry-After: ${retryAfter}`)
      }
      for (let i = 0; i < 5; i++) {
        assert.equal((await request(url, 'GET', '/healthz')).status, 200)
        assert.equal((await request(url, 'GET', '/readyz')).status, 200)
      }
    }))

  it('lets a client in again once its window has passed', () =>
    withApp({ RATE_LIMIT_MAX: '1', RATE_LIMIT_WINDOW: '1s' }, async ({ url }) => {
      assert.equal((await request(url, 'GET', '/users')).status, 200)
      const limited = await request(url, 'GET', '/users')
      assertProblem(limited, 429)
      await sleep(Number(limited.headers.get('retry-after')) * 1000 + 100)
      assert.equal((await request(url, 'GET', '/users')).status, 200)
    }))

  it('counts by the connection’s address unless TRUST_PROXY names the proxy', async () => {
    const from = (address: string) => ({ headers: { 'x-forwarded-for': address } })
    await withApp({ RATE_LIMIT_MAX: '2' }, async ({ url }) => {
      assert.equal((await request(url, 'GET', '/users', from('203.0.113.1'))).status, 200)
      assert.equal((await request(url, 'GET', '/users', from('203.0.113.2'))).status, 200)
      assertProblem(await request(url, 'GET', '/users', from('203.0.113.3')), 429)
    })
    await withApp({ RATE_LIMIT_MAX: '2', TRUST_PROXY: '127.0.0.1' }, async ({ url }) => {
      for (let i = 0; i < 2; i++) assert.equal((await request(url, 'GET', '/users', from('203.0.113.1'))).status, 200)
      assertProblem(await request(url, 'GET', '/users', from('203.0.113.1')), 429)
      assert.equal((await request(url, 'GET', '/users', from('203.0.113.2'))).status, 200)
    })
  })

  it('is off with RATE_LIMIT_MAX=0', () =>
    withApp({ RATE_LIMIT_MAX: '0' }, async ({ url }) => {
      const answers = await Promise.all(Array.from({ length: 30 }, () => request(url, 'GET', '/users')))
      assert.deepEqual(answers.map((answer) => answer.status), answers.map(() => 200))
      assert.equal(answers[0]!.headers.get('x-ratelimit-limit'), null)
    }))
})

describe('security headers', () => {
  it('are on every API answer, errors included: nothing may load or frame them', () =>
    withApp({}, async ({ url }) => {
      for (const path of ['/users', '/nowhere', '/users/0', '/openapi.json']) {
        const { headers } = await request(url, 'GET', path)
        assert.equal(headers.get('x-content-type-options'), 'nosniff', path)
        assert.equal(headers.get('x-frame-options'), 'DENY', path)
        assert.equal(headers.get('referrer-policy'), 'no-referrer', path)
        assert.equal(headers.get('cross-origin-resource-policy'), 'same-origin', path)
        assert.match(headers.get('strict-transport-security') ?? '', /^max-age=\d+/, path)
        assert.equal(headers.get('content-security-policy'), "default-src 'none';frame-ancestors 'none'", path)
        for (const documentOnly of ['cross-origin-opener-policy', 'origin-agent-cluster', 'x-dns-prefetch-control', 'x-xss-protection']) {
          assert.equal(headers.get(documentOnly), null, `${path}: ${documentOnly}`)
        }
      }
    }))

  it('of documents (the Swagger UI) are helmet\'s, with a CSP that does not upgrade plain-HTTP requests', () =>
    withApp({}, async ({ url }) => {
      for (const path of ['/docs/', '/docs/static/swagger-ui.css']) {
        const { status, headers } = await request(url, 'GET', path)
        assert.equal(status, 200, path)
        assert.equal(headers.get('x-content-type-options'), 'nosniff', path)
        assert.equal(headers.get('x-frame-options'), 'SAMEORIGIN', path)
        assert.equal(headers.get('cross-origin-opener-policy'), 'same-origin', path)
        const csp = headers.get('content-security-policy') ?? ''
        assert.match(csp, /default-src 'self'/, path)
        assert.match(csp, /object-src 'none'/, path)
        assert.doesNotMatch(csp, /upgrade-insecure-requests/, path)
      }
    }))

  it('let the Swagger UI load everything it references under its CSP', () =>
    withApp({}, async ({ url }) => {
      const page = await fetch(`${url}/docs`)
      assert.equal(page.status, 200)
      const csp = page.headers.get('content-security-policy') ?? ''
      const html = await page.text()
      const scripts = [...html.matchAll(/<script([^>]*)>/g)].map((match) => match[1]!)
      assert.ok(scripts.length > 0)
      assert.ok(scripts.every((attributes) => /\bsrc="/.test(attributes)), 'inline scripts would need a hash in the CSP')
      assert.match(csp, /script-src 'self'/)
      assert.match(csp, /style-src [^;]*'unsafe-inline'/, 'Swagger UI sets inline styles')
      assert.match(csp, /img-src [^;]*data:/, 'Swagger UI draws its logo from a data: URL')
      const references = [...html.matchAll(/(?:src|href)="([^"]+)"/g)].map((match) => new URL(match[1]!, page.url))
      for (const reference of references) {
        assert.equal(reference.origin, new URL(url).origin, `${reference} is not same-origin`)
        assert.equal((await fetch(reference)).status, 200, String(reference))
      }
      assert.equal((await fetch(`${url}/docs/json`)).status, 200)
    }))

  it('turn /docs and /openapi.json off with DOCS_ENABLED=false', () =>
    withApp({ DOCS_ENABLED: 'false' }, async ({ url }) => {
      for (const path of ['/docs', '/docs/json', '/openapi.json']) assertProblem(await request(url, 'GET', path), 404)
      assert.equal((await request(url, 'GET', '/users')).status, 200)
    }))
})

describe('CORS', () => {
  const preflight = (url: string, origin: string) =>
    fetch(`${url}/users`, {
      method: 'OPTIONS',
      headers: { origin, 'access-control-request-method': 'POST', 'access-control-request-headers': 'authorization, content-type' },
    })

  it('is off unless CORS_ORIGINS lists origins', () =>
    withApp({}, async ({ url }) => {
      assert.equal((await preflight(url, 'https://app.example.com')).headers.get('access-control-allow-origin'), null)
      const read = await fetch(`${url}/users`, { headers: { origin: 'https://app.example.com' } })
      assert.equal(read.headers.get('access-control-allow-origin'), null)
    }))

  it('answers listed origins only, preflights without a token', () =>
    withApp({ CORS_ORIGINS: 'https://app.example.com, https://admin.example.com', API_TOKEN: token }, async ({ url }) => {
      const allowed = await preflight(url, 'https://app.example.com')
      assert.equal(allowed.status, 204)
      assert.equal(allowed.headers.get('access-control-allow-origin'), 'https://app.example.com')
      assert.match(allowed.headers.get('access-control-allow-methods') ?? '', /POST/)
      assert.match(allowed.headers.get('access-control-allow-headers') ?? '', /authorization/)
      const read = await fetch(`${url}/users`, { headers: { origin: 'https://admin.example.com' } })
      assert.equal(read.headers.get('access-control-allow-origin'), 'https://admin.example.com')
      assert.match(read.headers.get('access-control-expose-headers') ?? '', /location/)
      for (const origin of ['https://evil.example.com', 'https://app.example.com.evil.example.com', 'null']) {
        assert.equal((await preflight(url, origin)).headers.get('access-control-allow-origin'), null, origin)
      }
    }))
})
