/**
 * Property-based fuzzing of every endpoint over real HTTP. Whatever a client sends: no 5xx, no crash,
 * no hang, every error is problem+json without internals, and the database holds exactly the changes
 * that were acknowledged, with its invariants intact.
 *
 * A fixed seed and a bounded number of runs by default; `npm run fuzz` runs longer
 * (FUZZ_RUNS=<runs>, FUZZ_SEED=<seed> to replay a failure).
 */
import assert from 'node:assert/strict'
import { Agent } from 'node:http'
import { after, before, describe, it } from 'node:test'
import fc from 'fast-check'
import type pg from 'pg'
import { freshStore, startApp, type BackendStore, type RunningApp } from './support/app.js'
import { exchange, parseResponses, send, type RawAnswer, type RawRequest } from './support/raw-http.js'

const runs = Number(process.env.FUZZ_RUNS ?? 3000)
const seed = Number(process.env.FUZZ_SEED ?? 20261123)
const token = 'fuzz-token-0123456789abcdef'
const answerWithinMs = 5000

// ---- what a hostile client sends ----

const sqlFragments = [
  "' OR '1'='1",
  "'; DROP TABLE users; --",
  '1; SELECT pg_sleep(10)',
  "1' UNION SELECT usename, passwd FROM pg_shadow --",
  '$1',
  '\\',
  '%',
  '_',
  'NULL',
]
const awkwardCharacters = ['\u0000', '\u0007', '\u001b', '\u007f', '\ud800', '\udfff', '\u2028', '\ufeff', '\u202e', '\u00e9', '😀', ' ', '@', '.', '"', '\\']

const hostileString = fc.oneof(
  fc.string({ unit: 'binary', maxLength: 40 }),
  fc.constantFrom(...sqlFragments),
  fc.string({ unit: fc.constantFrom(...awkwardCharacters, 'a', 'B'), maxLength: 30 }),
  fc.integer({ min: 95, max: 30_000 }).map((length) => 'x'.repeat(length)),
)

/** Few enough addresses that creates and changes collide, in any case and padding. */
const plainEmail = fc.oneof(fc.constantFrom('ada@example.com', 'x@y.co'), fc.nat(150).map((n) => `user${n}@example.com`))
const email = fc.oneof(
  {
    weight: 4,
    arbitrary: fc
      .tuple(plainEmail, fc.constantFrom('', ' ', '\t'), fc.boolean())
      .map(([address, pad, upper]) => `${pad}${upper ? address.toUpperCase() : address}${pad}`),
  },
  { weight: 2, arbitrary: fc.emailAddress() },
  { weight: 2, arbitrary: hostileString },
)
const name = fc.oneof(
  { weight: 2, arbitrary: fc.string({ unit: 'grapheme', minLength: 1, maxLength: 100 }) },
  { weight: 2, arbitrary: fc.constantFrom('Ada', ' Bob ', '李小龙', 'Zoë') },
  { weight: 1, arbitrary: hostileString },
)
const outOfRange = fc.constantFrom(2 ** 31, 2 ** 31 - 1, -1, 0, 2 ** 53 + 1, 1e308, -0, 1.5, Number.MAX_SAFE_INTEGER)
const anyValue: fc.Arbitrary<unknown> = fc.oneof(fc.jsonValue({ maxDepth: 3 }), outOfRange, hostileString)

/** JSON text written by hand, so keys such as `__proto__` and repeated keys reach the server as sent. */
const objectText = (entries: [string, unknown][]) =>
  `{${entries.map(([key, value]) => `${JSON.stringify(key)}:${JSON.stringify(value) ?? 'null'}`).join(',')}}`

const userBodyText = fc
  .tuple(
    fc.option(fc.oneof({ weight: 4, arbitrary: name }, { weight: 1, arbitrary: anyValue }), { nil: undefined, freq: 8 }),
    fc.option(fc.oneof({ weight: 4, arbitrary: email }, { weight: 1, arbitrary: anyValue }), { nil: undefined, freq: 8 }),
    fc.oneof(
      { weight: 4, arbitrary: fc.constant([]) },
      {
        weight: 1,
        arbitrary: fc.array(
          fc.tuple(fc.oneof(fc.constantFrom('__proto__', 'constructor', 'prototype', 'id', 'created_at', 'name'), fc.string()), anyValue),
          { minLength: 1, maxLength: 2 },
        ),
      },
    ),
  )
  .map(([userName, userEmail, extra]) => {
    const entries: [string, unknown][] = []
    if (userName !== undefined) entries.push(['name', userName])
    if (userEmail !== undefined) entries.push(['email', userEmail])
    return objectText([...entries, ...(extra as [string, unknown][])])
  })

const utf8 = (text: string) => new TextEncoder().encode(text)

/** Percent-encodes the UTF-8 bytes of every character `keep` refuses (lone surrogates become U+FFFD). */
const percentEncode = (text: string, keep = /^[A-Za-z0-9._~-]$/) =>
  [...text]
    .map((char) => (keep.test(char) ? char : [...Buffer.from(char)].map((byte) => `%${byte.toString(16).padStart(2, '0')}`).join('')))
    .join('')

const mutated = (text: fc.Arbitrary<string>) =>
  fc.tuple(text, fc.nat(), fc.constantFrom('cut', 'insert', 'replace'), fc.string({ unit: 'binary', minLength: 1, maxLength: 3 }))
    .map(([source, at, how, piece]) => {
      const index = source.length === 0 ? 0 : at % source.length
      if (how === 'cut') return source.slice(0, index)
      return source.slice(0, index) + piece + source.slice(how === 'insert' ? index : index + 1)
    })

const body: fc.Arbitrary<Uint8Array | undefined> = fc.oneof(
  { weight: 6, arbitrary: userBodyText.map(utf8) },
  { weight: 2, arbitrary: mutated(userBodyText).map(utf8) },
  { weight: 1, arbitrary: fc.json({ maxDepth: 4 }).map(utf8) },
  { weight: 1, arbitrary: fc.uint8Array({ maxLength: 64 }) },
  {
    weight: 1,
    arbitrary: fc.uint8Array({ minLength: 1, maxLength: 4 }).map((bytes) =>
      Buffer.concat([utf8('{"name":"bad'), Buffer.from(bytes.map((byte) => byte | 0x80)), utf8('","email":"bad@example.com"}')]),
    ),
  },
  {
    weight: 1,
    arbitrary: fc.tuple(fc.integer({ min: 2, max: 20_000 }), fc.constantFrom('[', '{"a":')).map(([depth, open]) =>
      utf8(open.repeat(depth) + '1' + (open === '[' ? ']' : '}').repeat(depth)),
    ),
  },
  { weight: 1, arbitrary: fc.constant(undefined) },
)

const idSegment = fc.oneof(
  { weight: 4, arbitrary: fc.integer({ min: 1, max: 40 }).map(String) },
  {
    weight: 1,
    arbitrary: fc.constantFrom('0', '-1', '2147483647', '2147483648', '99999999999', '1e3', '0x10', '1.5', '%201', '01', 'NaN', 'null'),
  },
  { weight: 1, arbitrary: hostileString.map((text) => percentEncode(text)) },
)

/** Percent-encodes what Node's client would refuse to send, and leaves in some broken escapes. */
const rawPathText = fc.string({ unit: 'binary', maxLength: 60 }).map((text) => percentEncode(text, /^[\x21-\x7e]$/))
const latin1Bytes = fc.string({ unit: fc.integer({ min: 0x80, max: 0xff }).map((code) => String.fromCharCode(code)), maxLength: 6 })

const path = fc.oneof(
  { weight: 4, arbitrary: fc.constant('/users') },
  { weight: 6, arbitrary: idSegment.map((id) => `/users/${id}`) },
  {
    weight: 1,
    arbitrary: fc.constantFrom('/healthz', '/readyz', '/docs', '/docs/json', '/openapi.json', '/docs/static/index.css', '/', '//users', '/users/', '/users/1/x'),
  },
  { weight: 1, arbitrary: rawPathText.map((text) => `/${text}`) },
  { weight: 1, arbitrary: fc.tuple(fc.constantFrom('/users/', '/'), latin1Bytes).map(([prefix, bytes]) => prefix + bytes) },
  {
    weight: 1,
    arbitrary: fc.constantFrom(
      '/users/%',
      '/users/%zz',
      '/users/%c3%28',
      '/%2e%2e/%2e%2e/etc/passwd',
      '/docs/static/../../package.json',
      '/docs/static/nope',
      `/users/${'9'.repeat(200)}`,
    ),
  },
)

const queryValue = fc.oneof(fc.integer({ min: -5, max: 2000 }).map(String), email, hostileString, outOfRange.map(String))
const query = fc.oneof(
  { weight: 3, arbitrary: fc.constant('') },
  {
    weight: 3,
    arbitrary: fc
      .array(fc.tuple(fc.oneof(fc.constantFrom('limit', 'after', 'email', '__proto__', 'constructor[prototype][x]', 'limit[]'), fc.string({ maxLength: 8 })), queryValue), {
        minLength: 1,
        maxLength: 4,
      })
      .map((pairs) => `?${pairs.map(([key, value]) => `${percentEncode(key)}=${percentEncode(value)}`).join('&')}`),
  },
  { weight: 1, arbitrary: rawPathText.map((text) => `?${text}`) },
)

const method = fc.oneof(
  { weight: 12, arbitrary: fc.constantFrom('GET', 'POST', 'PUT', 'PATCH', 'DELETE') },
  { weight: 1, arbitrary: fc.constantFrom('HEAD', 'OPTIONS', 'TRACE', 'PROPFIND', 'QUERY') },
  { weight: 1, arbitrary: fc.stringMatching(/^[A-Za-z]{1,10}$/) },
)

const headerValue = fc.string({
  unit: fc.oneof(fc.integer({ min: 0x20, max: 0x7e }), fc.constant(0x09), fc.integer({ min: 0x80, max: 0xff })).map((code) => String.fromCharCode(code)),
  maxLength: 40,
})
const headerName = fc.stringMatching(/^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,20}$/).filter(
  (header) => !['content-length', 'transfer-encoding', 'host', 'connection', 'expect', 'upgrade', 'keep-alive', 'te', 'trailer'].includes(header.toLowerCase()),
)
const contentType = fc.oneof(
  { weight: 8, arbitrary: fc.constant('application/json') },
  {
    weight: 3,
    arbitrary: fc.constantFrom(
      'application/json; charset=utf-8',
      'APPLICATION/JSON',
      'application/json; charset=latin1',
      'application/json;;',
      'text/plain',
      'application/x-www-form-urlencoded',
      'multipart/form-data; boundary=x',
      'application/problem+json',
      '',
    ),
  },
  { weight: 1, arbitrary: headerValue },
)
const authorization = fc.oneof(
  { weight: 8, arbitrary: fc.constant(`Bearer ${token}`) },
  { weight: 1, arbitrary: fc.constantFrom('', 'Bearer', 'Bearer wrong-token-0123456789', `Basic ${token}`, `bearer  ${token}`, `Bearer ${token}x`) },
  { weight: 1, arbitrary: headerValue },
)

const withoutBodyForReads = ({ method, body, ...rest }: RawRequest): RawRequest => ({
  method,
  ...rest,
  body: method === 'GET' || method === 'HEAD' ? undefined : body,
})

/** Anything at all: methods, paths, queries, headers and bodies. */
const hostileRequest: fc.Arbitrary<RawRequest> = fc
  .record({
    method,
    path,
    query,
    body,
    contentType: fc.option(contentType, { nil: undefined, freq: 10 }),
    authorization: fc.option(authorization, { nil: undefined, freq: 10 }),
    extra: fc.dictionary(
      fc.oneof(fc.constantFrom('accept', 'origin', 'x-forwarded-for', 'x-request-id', 'if-none-match', 'accept-encoding', 'cookie'), headerName),
      headerValue,
      { maxKeys: 3 },
    ),
  })
  .map(({ method, path, query, body, contentType, authorization, extra }) => {
    const headers: Record<string, string> = { ...extra }
    if (contentType !== undefined) headers['content-type'] = contentType
    if (authorization !== undefined) headers.authorization = authorization
    return withoutBodyForReads({ method, path: path + query, headers, body })
  })

/**
 * Well-formed requests to the users routes with awkward values: these reach the database. `:existing<n>`
 * in a path stands for the n-th user the table holds when the request is sent (or n, if it is empty).
 */
const plausibleRequest: fc.Arbitrary<RawRequest> = fc
  .record({
    method: fc.constantFrom('GET', 'POST', 'POST', 'PUT', 'PATCH', 'DELETE'),
    id: fc.nat(1000),
    query: fc.oneof({ weight: 3, arbitrary: fc.constant('') }, { weight: 1, arbitrary: query }),
    body: userBodyText.map(utf8),
  })
  .map(({ method, id, query, body }) =>
    withoutBodyForReads({
      method,
      path: (method === 'POST' || (method === 'GET' && id % 2) ? '/users' : `/users/:existing${id}`) + query,
      headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
      body,
    }),
  )

const request = fc.oneof({ weight: 3, arbitrary: plausibleRequest }, { weight: 2, arbitrary: hostileRequest })

/** Whole requests as bytes on the wire, from almost right to nothing like HTTP. */
const rawRequestText = fc
  .record({
    method: fc.oneof(method, fc.constantFrom('GET', 'POST')),
    target: fc.oneof(path, fc.constantFrom('*', 'http://evil.example.com/users', 'users', '')),
    version: fc.constantFrom('HTTP/1.1', 'HTTP/1.1', 'HTTP/1.0', 'HTTP/2.0', 'HTTP/9', 'http/1.1', ''),
    headers: fc.array(
      fc.oneof(
        fc.constantFrom(
          'Host: localhost',
          'Content-Type: application/json',
          'Transfer-Encoding: chunked',
          'Transfer-Encoding: gzip, chunked',
          'Content-Length: 5',
          'Content-Length: -1',
          'Content-Length: 99999999999999999999',
          'Content-Length: 1, 2',
          `Authorization: Bearer ${token}`,
          'Connection: keep-alive',
          'Expect: 100-continue',
          'Upgrade: websocket',
          ' folded: header',
          'No-Colon-Header',
          'X: \u0000',
        ),
        fc.tuple(headerName, headerValue).map(([header, value]) => `${header}: ${value}`),
      ),
      { maxLength: 6 },
    ),
    body: fc.oneof(userBodyText, fc.constantFrom('', '5\r\nhello\r\n0\r\n\r\n', 'zz\r\nx\r\n', '0\r\n\r\nGET /users HTTP/1.1\r\n\r\n')),
  })
  .map(({ method, target, version, headers, body }) =>
    Buffer.from(`${method} ${target} ${version}\r\n${headers.join('\r\n')}\r\n\r\n${body}`, 'latin1'),
  )

const rawBytes: fc.Arbitrary<Uint8Array> = fc.oneof(
  { weight: 3, arbitrary: rawRequestText },
  {
    weight: 2,
    arbitrary: fc.tuple(rawRequestText, fc.nat(), fc.uint8Array({ minLength: 1, maxLength: 4 })).map(([bytes, at, noise]) => {
      const index = at % (bytes.length + 1)
      return Buffer.concat([bytes.subarray(0, index), noise, bytes.subarray(index + noise.length)])
    }),
  },
  { weight: 1, arbitrary: fc.uint8Array({ minLength: 1, maxLength: 200 }) },
)

// ---- what must hold ----

const describeRequest = ({ method, path, headers, body }: RawRequest) => {
  const text = body === undefined ? '' : JSON.stringify(Buffer.from(body).toString('latin1'))
  return `${method} ${path} ${JSON.stringify(headers)} ${text.length > 300 ? `${text.slice(0, 300)}… (${body!.length} bytes)` : text}`
}

/** fast-check's report, with the failing input written so a person can read it. */
const report =
  <Input extends [unknown]>(describe: (input: Input[0]) => string) =>
  (details: fc.RunDetails<Input>): void => {
    if (!details.failed) return
    const input = details.counterexample ? describe(details.counterexample[0]) : '(none)'
    const replay = `FUZZ_SEED=${details.seed}, path ${details.counterexamplePath}`
    throw new Error(`${details.errorInstance}\nafter ${details.numRuns} runs (${replay}), on:\n  ${input}`)
  }

const leaks = /\bat [\w.<>]+ \(|node_modules|\/src\/|\.ts:\d|SELECT |INSERT |UPDATE users|DELETE FROM|pg_|syntax error|stack/i

function assertWellBehaved(sent: RawRequest, answer: RawAnswer): void {
  const context = `${sent.method} ${sent.path} -> ${answer.status} ${answer.body.slice(0, 300)}`
  assert.ok(answer.status >= 200 && answer.status < 500, context)
  if (answer.status < 400) return
  assert.match(answer.headers['content-type'] ?? '', /^application\/problem\+json/, context)
  if (sent.method === 'HEAD' || answer.body === '') return
  const { instance, ...problem } = JSON.parse(answer.body)
  assert.equal(problem.status, answer.status, context)
  for (const field of ['type', 'title', 'detail']) assert.equal(typeof problem[field], 'string', context)
  const path = sent.path.split('?')[0]!
  if (instance !== undefined) assert.equal(instance, path, context)
  // The client's own URL may come back in the text; nothing of the server's insides may.
  assert.doesNotMatch(JSON.stringify(problem).replaceAll(path, ''), leaks, context)
}

interface StoredUser {
  id: number
  name: string
  email: string
  created_at: string
  updated_at: string
}

const asStored = (row: Record<string, unknown>): StoredUser => ({
  id: row.id as number,
  name: row.name as string,
  email: row.email as string,
  created_at: (row.created_at as Date).toISOString(),
  updated_at: (row.updated_at as Date).toISOString(),
})

for (const backend of ['postgres', 'pglite'] as const) {
  describe(`fuzzing every endpoint on ${backend}`, () => {
    let store: BackendStore
    let server: RunningApp
    const backendRuns = backend === 'postgres' ? runs : Math.ceil(runs / 5)

    before(async () => {
      store = await freshStore(backend)
      server = await startApp({ ...store.env, API_TOKEN: token, RATE_LIMIT_MAX: '0' })
    })
    after(async () => {
      await server?.close()
      await store?.dispose()
    })

    it('answers every request with a non-5xx, problem+json for errors, and changes only what it acknowledges', async () => {
      const { pool } = server.database
      const table = async () => {
        const { rows } = await pool.query('SELECT id, name, email, created_at, updated_at FROM users ORDER BY id')
        return new Map(rows.map(asStored).map((user) => [user.id, user]))
      }
      await fc.assert(
        fc.asyncProperty(fc.array(request, { minLength: 1, maxLength: 5 }), async (requests) => {
          // What the table must hold afterwards: what it held, plus the changes the API acknowledged.
          const expected = await table()
          let deletions = 0
          // One connection per run, kept alive between its requests, so a failing run replays alone.
          const agent = new Agent({ keepAlive: true, maxSockets: 1 })
          try {
            for (const template of requests) {
              const ids = [...expected.keys()]
              const path = template.path.replace(/:existing(\d+)/, (_, n) => String(ids[Number(n) % ids.length] ?? n))
              const sent = { ...template, path }
              const answer = await send(server.url, agent, sent, answerWithinMs)
              assertWellBehaved(sent, answer)
              if (sent.method === 'HEAD' || answer.status >= 300) continue
              if (sent.method === 'DELETE' && answer.status === 204) deletions++
              if (['POST', 'PUT', 'PATCH'].includes(sent.method)) {
                const user = JSON.parse(answer.body) as StoredUser
                expected.set(user.id, user)
              }
            }
          } finally {
            agent.destroy()
          }
          const actual = await table()
          const vanished = [...expected.keys()].filter((id) => !actual.has(id))
          assert.equal(vanished.length, deletions, 'rows deleted without a 204, or a 204 that deleted nothing')
          for (const id of vanished) expected.delete(id)
          const byId = (users: Map<number, StoredUser>) => [...users.values()].sort((a, b) => a.id - b.id)
          assert.deepEqual(byId(actual), byId(expected), 'the table differs from the acknowledged changes')
        }),
        { numRuns: backendRuns, seed, reporter: report((requests: RawRequest[]) => requests.map(describeRequest).join('\n  ')) },
      )
      await assertInvariants(pool)
    })
  })
}

describe('fuzzing the HTTP parser with raw bytes', () => {
  let store: BackendStore
  let server: RunningApp
  before(async () => {
    store = await freshStore('postgres')
    server = await startApp({ ...store.env, API_TOKEN: token, RATE_LIMIT_MAX: '0' })
  })
  after(async () => {
    await server?.close()
    await store?.dispose()
  })

  it('answers what it can read with a non-5xx, errors as problem+json, and keeps serving', async () => {
    await fc.assert(
      fc.asyncProperty(rawBytes, async (bytes) => {
        const { data } = await exchange(server.url, bytes, answerWithinMs)
        const context = JSON.stringify(Buffer.from(bytes).toString('latin1').slice(0, 300))
        for (const answer of parseResponses(data)) {
          assert.ok(answer.status >= 100 && answer.status < 500, `${answer.status} for ${context}`)
          if (answer.status >= 400) assert.match(answer.headers['content-type'] ?? '', /^application\/problem\+json/, context)
        }
        const health = await fetch(`${server.url}/healthz`)
        assert.equal(health.status, 200, `not serving after ${context}`)
      }),
      {
        numRuns: Math.ceil(runs / 5),
        seed,
        reporter: report((bytes: Uint8Array) => JSON.stringify(Buffer.from(bytes).toString('latin1'))),
      },
    )
  })
})

async function assertInvariants(database: pg.Pool): Promise<void> {
  const broken = await database.query(`
    SELECT id FROM users
    WHERE email <> lower(btrim(email)) OR name <> btrim(name) OR name ~ '[[:cntrl:]]'
       OR char_length(name) NOT BETWEEN 1 AND 100 OR char_length(email) > 254 OR position('@' in email) = 0
       OR updated_at < created_at`)
  assert.deepEqual(broken.rows, [], 'rows that the API would not have accepted')
  const duplicates = await database.query('SELECT lower(email) FROM users GROUP BY 1 HAVING count(*) > 1')
  assert.deepEqual(duplicates.rows, [], 'emails stored twice')
}
