/** The access log's line, written without pino's generic path, is the line pino itself would write. */
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import { createLogger } from '../src/telemetry/logger.js'
import { startApp, type RunningApp } from './support/app.js'
import { request } from './support/http.js'
import { createTestDatabase, type TestDatabase } from './support/postgres.js'

describe('the access log', () => {
  let database: TestDatabase
  let server: RunningApp
  /** What the destination was given, write by write; a write holds whole lines, maybe several. */
  const writes: string[] = []
  const completed = () =>
    writes
      .join('')
      .split('\n')
      .filter((line) => line.includes('"request completed"'))
      .map((line) => `${line}\n`)
  /** The access log writes its lines a few milliseconds after their requests completed. */
  const completedLines = async (count: number) => {
    for (let waited = 0; completed().length < count && waited < 5000; waited += 10) await sleep(10)
    return completed()
  }
  before(async () => {
    database = await createTestDatabase()
    server = await startApp({ DATABASE_URL: database.url, LOG_LEVEL: 'info', RATE_LIMIT_MAX: '0' }, { log: { write: (chunk: string) => void writes.push(chunk) } })
  })
  after(async () => {
    await server?.close()
    await database?.drop()
  })

  it('writes one line per request, as pino would, emails redacted', async () => {
    const paths = [
      '/users?limit=2&email=Secret%40Example.com',
      '/users/999',
      '/users/"quoted"\\path',
      '/users?%65mail=Hidden%40Example.com&limit=1',
      '/users?limit=1&EMAIL=Other%40Example.com&q=mail',
    ]
    writes.length = 0
    for (const path of paths) await request(server.url, 'GET', path)
    const written = await completedLines(paths.length)
    assert.equal(written.length, paths.length, written.join(''))

    const reference: string[] = []
    const pinoItself = createLogger('info', { write: (line: string) => void reference.push(line) })
    for (const line of written) {
      const { reqId, req, res, responseTime } = JSON.parse(line)
      const request = { method: req.method, url: req.url, ip: req.remoteAddress }
      pinoItself.child({ reqId }).info({ req: request, res, responseTime }, 'request completed')
    }
    const withoutTime = (line: string) => line.replace(/"time":\d+/, '"time":0')
    assert.deepEqual(written.map(withoutTime), reference.map(withoutTime))
    assert.deepEqual(Object.keys(JSON.parse(written[0]!)), ['level', 'time', 'pid', 'hostname', 'reqId', 'req', 'res', 'responseTime', 'msg'])
    assert.match(written[0]!, /"url":"\/users\?limit=2&email=\[redacted\]"/)
    assert.match(written[3]!, /"url":"\/users\?%65mail=\[redacted\]&limit=1"/)
    assert.match(written[4]!, /"url":"\/users\?limit=1&EMAIL=\[redacted\]&q=mail"/)
    assert.doesNotMatch(written.join(''), /secret|hidden|other/i)
  })

  it('writes the line of every concurrent request whole and once', async () => {
    writes.length = 0
    const ids = Array.from({ length: 200 }, (_, index) => `concurrent-${index}`)
    await Promise.all(ids.map((id) => request(server.url, 'GET', '/users/1', { headers: { 'x-request-id': id } })))
    const logged = (await completedLines(ids.length)).map((line) => JSON.parse(line).reqId as string)
    assert.ok(writes.every((chunk) => chunk.endsWith('\n')), 'a write ends in the middle of a line')
    assert.deepEqual(logged.toSorted(), ids.toSorted())
  })
})
