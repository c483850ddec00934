/**
 * What Node, Redis and PostgreSQL allow on this machine, without the API: bare `node:http` servers
 * that do only the one I/O a scenario needs. `node --import tsx bench/ceilings.ts <kind> <port>`
 * with BENCH_DATABASE_URL, BENCH_REDIS_URL and BENCH_REDIS_KEY; prints `ready` once it listens.
 * BENCH_RESPONSE_HEADERS (a JSON object) gives the headers to answer with, instead of a content type
 * alone: the API's own, so that the load generator reads the same answers from both.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import Fastify from 'fastify'
import pg from 'pg'
import { createClient } from 'redis'

type CeilingKind = 'http' | 'redis-get' | 'fastify-redis-get' | 'pg-select' | 'pg-insert' | 'pg-update'

/** One user as the API answers it. */
const sampleUser = {
  id: 4711,
  name: 'Bench User',
  email: 'bench-user-4711@bench.example.com',
  created_at: '2026-01-01T00:00:00.000Z',
  updated_at: '2026-01-01T00:00:00.000Z',
}

const columns = 'id, name, email, created_at, updated_at'

type Handler = (request: IncomingMessage, body: string) => Promise<string>

function readBody(request: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    let body = ''
    request.setEncoding('utf8')
    request.on('data', (chunk: string) => (body += chunk))
    request.on('end', () => resolve(body))
    request.on('error', reject)
  })
}

const idOf = (request: IncomingMessage) => Number(/\/users\/(\d+)/.exec(request.url ?? '')?.[1])

async function handlerFor(kind: CeilingKind): Promise<Handler> {
  if (kind === 'http') {
    const body = JSON.stringify(sampleUser)
    return async () => body
  }
  if (kind === 'redis-get' || kind === 'fastify-redis-get') {
    // Without node-redis's default per-command timeout, as the API runs it (src/cache/redis-connection.ts).
    const client = createClient({ url: process.env.BENCH_REDIS_URL, commandOptions: { timeout: 0 } })
    await client.connect()
    const key = process.env.BENCH_REDIS_KEY!
    return async () => (await client.get(key)) ?? ''
  }
  // The API's default pool size, with named (prepared) statements as the API uses.
  const pool = new pg.Pool({ connectionString: process.env.BENCH_DATABASE_URL, max: 10 })
  const one = async (name: string, text: string, values: unknown[]) =>
    JSON.stringify((await pool.query({ name, text, values })).rows[0] ?? null)
  if (kind === 'pg-select') {
    return (request) => one('select', `SELECT ${columns} FROM users WHERE id = $1`, [idOf(request)])
  }
  if (kind === 'pg-insert') {
    return (_request, body) => {
      const { name, email } = JSON.parse(body) as { name: string; email: string }
      return one('insert', `INSERT INTO users (name, email) VALUES ($1, $2) RETURNING ${columns}`, [name, `ceiling-${email}`])
    }
  }
  return (request, body) => {
    const { name } = JSON.parse(body) as { name: string }
    return one('update', `UPDATE users SET name = $2, updated_at = now() WHERE id = $1 RETURNING ${columns}`, [idOf(request), name])
  }
}

const [kind, port] = process.argv.slice(2) as [CeilingKind, string]
const responseHeaders = JSON.parse(process.env.BENCH_RESPONSE_HEADERS ?? '{"content-type":"application/json"}') as Record<string, string>
const handle = await handlerFor(kind)

/** The same Redis GET behind bare Fastify (no hooks, no logger): what the framework itself costs. */
async function listenFastify(): Promise<() => Promise<unknown>> {
  const app = Fastify()
  const reply = async (request: { raw: IncomingMessage }) => handle(request.raw, '')
  for (const url of ['/', '/users', '/users/:id']) {
    app.get(url, (request, response) => reply(request).then((payload) => response.headers(responseHeaders).send(payload)))
  }
  await app.listen({ port: Number(port), host: '127.0.0.1' })
  return () => app.close()
}

async function listenNodeHttp(): Promise<() => Promise<unknown>> {
  const server = createServer((request: IncomingMessage, response: ServerResponse) => {
    // A GET has no body to read: the Redis and SELECT ceilings answer at once, as Fastify does.
    const body = request.method === 'GET' ? Promise.resolve('') : readBody(request)
    body
      .then((text) => handle(request, text))
      .then(
        // With its length known, as Fastify sends it: without, Node sends the body chunked, which costs both sides more.
        (payload) => response.writeHead(200, { ...responseHeaders, 'content-length': Buffer.byteLength(payload) }).end(payload),
        () => response.writeHead(500).end(),
      )
  })
  await new Promise<void>((resolve) => server.listen(Number(port), '127.0.0.1', resolve))
  return () => new Promise((resolve) => server.close(resolve))
}

const close = await (kind === 'fastify-redis-get' ? listenFastify() : listenNodeHttp())
process.stdout.write('ready\n')
// Exits normally on SIGTERM, so that `node --cpu-prof` writes its profile (bench/profile.ts).
process.on('SIGTERM', () => void close().then(() => process.exit(0)))
