/** Limits on what a client may send and how slowly, and the checks on their settings. */
import assert from 'node:assert/strict'
import { connect } from 'node:net'
import { availableParallelism } from 'node:os'
import { after, before, describe, it } from 'node:test'
import { loadSettings, refuseOpenWritesInProduction, SettingsError } from '../src/config/settings.js'
import { duplicateKey } from '../src/http/json-body.js'
import { startApp, type RunningApp } from './support/app.js'
import { assertProblem, request, type Answer } from './support/http.js'
import { createTestDatabase, type TestDatabase } from './support/postgres.js'
import { exchange, parseResponses, type RawAnswer } from './support/raw-http.js'

let database: TestDatabase
before(async () => {
  database = await createTestDatabase()
})
after(() => database?.drop())

async function withApp(env: NodeJS.ProcessEnv, body: (server: RunningApp) => Promise<void>): Promise<void> {
  const server = await startApp({ DATABASE_URL: database.url, RATE_LIMIT_MAX: '0', ...env })
  try {
    await body(server)
  } finally {
    await server.close()
  }
}

const postJson = (url: string, body: string | Uint8Array) =>
  fetch(`${url}/users`, { method: 'POST', headers: { 'content-type': 'application/json' }, body })
const answer = async (response: Response): Promise<Answer> => ({
  status: response.status,
  headers: response.headers,
  text: '',
  body: await response.json(),
})

describe('request bodies', () => {
  it('refuse JSON nested deeper than BODY_MAX_DEPTH before parsing it, however deep', () =>
    withApp({ BODY_MAX_DEPTH: '3', BODY_LIMIT_BYTES: String(4 * 1024 * 1024) }, async ({ url }) => {
      const nested = (depth: number) => '{"a":'.repeat(depth - 1) + '[1]' + '}'.repeat(depth - 1)
      assert.equal(assertProblem(await answer(await postJson(url, nested(3))), 400).type, '/problems/validation')
      assert.equal(assertProblem(await answer(await postJson(url, nested(4))), 400).type, '/problems/body-too-deep')
      const abyss = '['.repeat(1_000_000) + ']'.repeat(1_000_000)
      assert.equal(assertProblem(await answer(await postJson(url, abyss)), 400).type, '/problems/body-too-deep')
      const inString = JSON.stringify({ name: '[[[[{{{{', email: 'brackets@example.com' })
      assert.equal((await postJson(url, inString)).status, 201, 'brackets inside strings do not count')
      assert.equal((await request(url, 'GET', '/healthz')).status, 200)
    }))

  it('must be valid UTF-8: bytes that are not are refused, not replaced', () =>
    withApp({}, async ({ url }) => {
      const invalid = Buffer.concat([Buffer.from('{"name":"Bad '), Buffer.from([0xc3, 0x28]), Buffer.from('","email":"utf8@example.com"}')])
      const problem = assertProblem(await answer(await postJson(url, invalid)), 400)
      assert.equal(problem.detail, 'The body is not valid UTF-8.')
      const valid = Buffer.from(JSON.stringify({ name: 'Zoë 李', email: 'utf8@example.com' }))
      assert.equal((await answer(await postJson(url, valid))).body.name, 'Zoë 李')
    }))
})

/**
 * Writes a whole request on a fresh connection before reading anything, as a client busy uploading
 * does: an answer the server sent early is read only if the connection was not reset meanwhile.
 */
function uploadThenRead(baseUrl: string, head: string, body: Buffer[]): Promise<RawAnswer | string> {
  const { hostname, port } = new URL(baseUrl)
  return new Promise((resolve) => {
    const socket = connect(Number(port), hostname)
    socket.pause()
    const received: Buffer[] = []
    let failure = ''
    socket.on('data', (chunk: Buffer) => received.push(chunk))
    socket.on('error', (error: NodeJS.ErrnoException) => (failure ||= error.code ?? error.message))
    socket.on('close', () => resolve(parseResponses(Buffer.concat(received))[0] ?? (failure || 'closed without an answer')))
    socket.write(head)
    for (const chunk of body) socket.write(chunk)
    socket.end(() => socket.resume())
  })
}

const chunked = (chunks: Buffer[]) => [
  ...chunks.map((chunk) => Buffer.concat([Buffer.from(`${chunk.length.toString(16)}\r\n`), chunk, Buffer.from('\r\n')])),
  Buffer.from('0\r\n\r\n'),
]

describe('ambiguous input', () => {
  const json = { 'content-type': 'application/json' }

  it('refuses a key repeated in one object, which JSON.parse would silently resolve to the last', () =>
    withApp({}, async ({ url }) => {
      const repeated = [
        '{"name":"Dup","email":"first@example.com","email":"second@example.com"}',
        '{"name":"Dup","email":"escaped@example.com","\\u006eame":"Other"}',
      ]
      for (const body of repeated) {
        const problem = assertProblem(await request(url, 'POST', '/users', { body, headers: json }), 400)
        assert.equal(problem.type, '/problems/malformed-json', body)
        assert.match(problem.detail, /duplicate key: "(email|name)"/, body)
      }
      const created = await request(url, 'POST', '/users', { json: { name: 'Once', email: 'once@example.com' } })
      assert.equal(created.status, 201)
      const patch = await request(url, 'PATCH', `/users/${created.body.id}`, { body: '{"name":"A","name":"B"}', headers: json })
      assert.equal(assertProblem(patch, 400).type, '/problems/malformed-json')
      for (const email of ['first@example.com', 'second@example.com', 'escaped@example.com']) {
        assert.deepEqual((await request(url, 'GET', `/users?email=${email}`)).body, [], email)
      }
      assert.equal(duplicateKey('{"a":{"b":1},"b":[{"a":1},{"a":2}],"c":"a"}'), undefined, 'the same key in different objects is fine')
      assert.equal(duplicateKey('[{"k":1,"k":2}]'), 'k')
    }))

  it('refuses bidirectional controls (U+202A-U+202E, U+2066-U+2069) in names and emails, not right-to-left scripts', () =>
    withApp({}, async ({ url }) => {
      const spoofing = ['\u202e', '\u202a', '\u202d', '\u2066', '\u2069']
      for (const [index, control] of spoofing.entries()) {
        const name = assertProblem(await request(url, 'POST', '/users', { json: { name: `${control}gnp.exe`, email: `bidi${index}@example.com` } }), 400)
        assert.deepEqual(name.errors.map((error: { pointer: string }) => error.pointer), ['/name'])
        const email = assertProblem(await request(url, 'POST', '/users', { json: { name: 'Bidi', email: `bidi${control}${index}@example.com` } }), 400)
        assert.deepEqual(email.errors.map((error: { pointer: string }) => error.pointer), ['/email'])
      }
      const created = await request(url, 'POST', '/users', { json: { name: 'שלום مرحبا', email: 'rtl@example.com' } })
      assert.equal(created.status, 201)
      assert.equal(created.body.name, 'שלום مرحبا')
      const renamed = await request(url, 'PATCH', `/users/${created.body.id}`, { json: { name: 'evil\u202etxt.exe' } })
      assert.equal(assertProblem(renamed, 400).type, '/problems/validation')
    }))
})

describe('bodies over BODY_LIMIT_BYTES', () => {
  const rounds = 5
  const fiveMegabytes = Buffer.alloc(5 * 1024 * 1024, 'a')
  const pieces = Array.from({ length: 100 }, () => Buffer.alloc(65 * 1024, 'a'))
  const assertTooLarge = (outcome: RawAnswer | string, how: string) => {
    assert.equal(typeof outcome === 'string' ? outcome : outcome.status, 413, how)
    assert.match((outcome as RawAnswer).headers['content-type'] ?? '', /^application\/problem\+json/, how)
  }
  // Through fetch, whose timing only loses the answer against a server in another process: test/lifecycle.test.ts.

  it('get 413 every time, never a reset, from a client that sends the whole body before it reads', () =>
    withApp({}, async ({ url }) => {
      const head = 'POST /users HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n'
      for (let round = 0; round < rounds; round++) {
        const sized = await uploadThenRead(url, `${head}Content-Length: ${fiveMegabytes.length}\r\n\r\n`, [fiveMegabytes])
        assertTooLarge(sized, `5 MB with Content-Length, round ${round}`)
        const streamed = await uploadThenRead(url, `${head}Transfer-Encoding: chunked\r\n\r\n`, chunked(pieces))
        assertTooLarge(streamed, `6.5 MB chunked, round ${round}`)
      }
      assert.equal((await request(url, 'GET', '/healthz')).status, 200)
    }))
})

describe('HTTP timeouts', () => {
  const env = {
    HTTP_HEADERS_TIMEOUT_MS: '300',
    HTTP_REQUEST_TIMEOUT_MS: '600',
    HTTP_KEEP_ALIVE_TIMEOUT_MS: '300',
    HTTP_IDLE_TIMEOUT_MS: '2000',
  }

  it('answer 408 in problem+json to a client whose headers, or body, do not arrive in time', () =>
    withApp(env, async ({ url }) => {
      const slowHeaders = await exchange(url, Buffer.from('GET /users HTTP/1.1\r\nHost: localhost\r\n'), 5000, false)
      const slowBody = await exchange(
        url,
        Buffer.from('POST /users HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"na'),
        5000,
        false,
      )
      for (const { data, closedByServer } of [slowHeaders, slowBody]) {
        assert.ok(closedByServer, 'the server closes the connection')
        const [timeout] = parseResponses(data)
        assert.equal(timeout?.status, 408, data.toString())
        assert.match(timeout.headers['content-type'] ?? '', /^application\/problem\+json/)
        assert.equal(JSON.parse(timeout.body).status, 408)
      }
    }))

  it('close keep-alive connections left idle', () =>
    withApp(env, async ({ url }) => {
      const { data, closedByServer } = await exchange(url, Buffer.from('GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n'), 5000, false)
      assert.equal(parseResponses(data)[0]?.status, 200)
      assert.ok(closedByServer, 'the server closes the idle connection')
    }))
})

describe('settings', () => {
  const refused = (env: NodeJS.ProcessEnv, variable: string) =>
    assert.throws(() => loadSettings(env), (error: Error) => error instanceof SettingsError && error.message.includes(variable))

  it('refuse unsafe or malformed security settings, naming the variable', () => {
    refused({ API_TOKEN: 'short' }, 'API_TOKEN')
    assert.throws(() => loadSettings({ API_TOKEN: 'secret' }), (error: Error) => !error.message.includes('secret'))
    refused({ API_TOKEN: 'has spaces in it, sixteen+' }, 'API_TOKEN')
    refused({ TRUST_PROXY: 'yes' }, 'TRUST_PROXY')
    refused({ TRUST_PROXY: '10.0.0.0/33' }, 'TRUST_PROXY')
    refused({ CORS_ORIGINS: 'https://app.example.com/path' }, 'CORS_ORIGINS')
    refused({ CORS_ORIGINS: '*' }, 'CORS_ORIGINS')
    refused({ RATE_LIMIT_WINDOW: 'fast' }, 'RATE_LIMIT_WINDOW')
    refused({ RATE_LIMIT_MAX: '-1' }, 'RATE_LIMIT_MAX')
    refused({ API_TOKEN_READS: 'maybe' }, 'API_TOKEN_READS')
    refused({ HTTP_HEADERS_TIMEOUT_MS: '20000', HTTP_REQUEST_TIMEOUT_MS: '10000' }, 'HTTP_HEADERS_TIMEOUT_MS')
    refused({ API_WRITES_OPEN: 'yes' }, 'API_WRITES_OPEN')
  })

  it('refuse to serve in production without API_TOKEN unless API_WRITES_OPEN=true opens writes on purpose', () => {
    const serving = (env: NodeJS.ProcessEnv) => refuseOpenWritesInProduction(loadSettings(env))
    const refusedToServe = (env: NodeJS.ProcessEnv) =>
      assert.throws(() => serving(env), (error: Error) => error instanceof SettingsError && /API_TOKEN.*API_WRITES_OPEN=true/.test(error.message))
    refusedToServe({ NODE_ENV: 'production' })
    refusedToServe({ NODE_ENV: 'production', API_TOKEN: '', API_WRITES_OPEN: 'false' })
    assert.doesNotThrow(() => serving({ NODE_ENV: 'production', API_TOKEN: 'a-token-of-sixteen+' }))
    assert.doesNotThrow(() => serving({ NODE_ENV: 'production', API_WRITES_OPEN: 'true' }))
    assert.doesNotThrow(() => serving({}))
  })

  it('refuse worker processes the backends cannot serve, and read WEB_CONCURRENCY=auto as the CPU count', () => {
    const servers = { DATABASE_URL: 'postgres://localhost/usersdb', REDIS_URL: 'redis://localhost:6379' }
    refused({ WEB_CONCURRENCY: '0' }, 'WEB_CONCURRENCY')
    refused({ WEB_CONCURRENCY: 'many' }, 'WEB_CONCURRENCY')
    refused({ WEB_CONCURRENCY: '2' }, 'WEB_CONCURRENCY')
    refused({ WEB_CONCURRENCY: '2', DATABASE_URL: servers.DATABASE_URL }, 'REDIS_URL')
    assert.equal(loadSettings({ WEB_CONCURRENCY: '2', DATABASE_URL: servers.DATABASE_URL, CACHE_ENABLED: 'false' }).workers, 2)
    assert.equal(loadSettings({ ...servers, WEB_CONCURRENCY: '3' }).workers, 3)
    assert.equal(loadSettings({ ...servers, WEB_CONCURRENCY: 'auto' }).workers, Math.min(availableParallelism(), 10))
  })

  it('read durations, proxies and origins', () => {
    const windowOf = (value: string) => loadSettings({ RATE_LIMIT_WINDOW: value }).security.rateLimit.windowMs
    assert.deepEqual(['500', '30s', '1 minute', '2m', '1h'].map(windowOf), [500, 30_000, 60_000, 120_000, 3_600_000])
    assert.equal(loadSettings({}).http.trustProxy, false)
    assert.equal(loadSettings({ TRUST_PROXY: 'true' }).http.trustProxy, true)
    assert.deepEqual(loadSettings({ TRUST_PROXY: '10.0.0.0/8, 127.0.0.1,loopback' }).http.trustProxy, [
      '10.0.0.0/8',
      '127.0.0.1',
      'loopback',
    ])
    assert.deepEqual(loadSettings({ CORS_ORIGINS: 'https://a.example.com,http://localhost:3000' }).security.corsOrigins, [
      'https://a.example.com',
      'http://localhost:3000',
    ])
    const defaults = loadSettings({})
    assert.equal(defaults.workers, 1)
    assert.equal(defaults.http.metricsEnabled, true)
    assert.equal(defaults.security.apiToken, undefined)
    assert.equal(defaults.security.rateLimit.max, 600)
    assert.equal(defaults.http.docsEnabled, true)
  })
})
