import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { startApp, type RunningApp } from './support/app.js'
import { assertProblem, request } from './support/http.js'
import { createTestDatabase, type TestDatabase } from './support/postgres.js'

describe('HTTP manners', () => {
  let database: TestDatabase
  let server: RunningApp
  const call = (method: string, path: string, options?: Parameters<typeof request>[3]) => request(server.url, method, path, options)

  before(async () => {
    database = await createTestDatabase()
    server = await startApp({ DATABASE_URL: database.url })
  })
  after(async () => {
    await server?.close()
    await database?.drop()
  })

  it('answers a known path asked with a method it does not answer with 405 and Allow; unknown paths stay 404', async () => {
    const cases: [string, string, string][] = [
      ['DELETE', '/users', 'POST, GET, HEAD'],
      ['PUT', '/users/', 'POST, GET, HEAD'],
      ['POST', '/users/1', 'GET, HEAD, PUT, PATCH, DELETE'],
      ['POST', '/healthz', 'GET, HEAD'],
      ['DELETE', '/openapi.json', 'GET, HEAD'],
    ]
    for (const [method, path, allow] of cases) {
      const answer = await call(method, path)
      const problem = assertProblem(answer, 405)
      assert.equal(answer.headers.get('allow'), allow, `${method} ${path}`)
      assert.equal(problem.type, '/problems/method-not-allowed')
      assert.equal(problem.detail, `${path} does not answer ${method}; it answers ${allow}.`)
    }
    assertProblem(await call('GET', '/nowhere'), 404)
    assertProblem(await call('DELETE', '/users/1/more'), 404)
  })

  it('lists users at /users/ as at /users', async () => {
    const created = await call('POST', '/users', { json: { name: 'Slash', email: 'slash@example.com' } })
    assert.equal(created.status, 201, created.text)
    const slash = await call('GET', '/users/')
    assert.equal(slash.status, 200, slash.text)
    assert.deepEqual(slash.body, (await call('GET', '/users')).body)
    assert.deepEqual(slash.body.map((user: { id: number }) => user.id), [created.body.id])
  })

  it('says in one sentence what a user id must be, whatever is wrong with it', async () => {
    for (const id of ['0', '-1', 'abc', '2147483648', '1.5', '1e3']) {
      const problem = assertProblem(await call('GET', `/users/${id}`), 400)
      assert.equal(problem.detail, 'params/id must be a whole number from 1 to 2147483647', id)
      assert.deepEqual(problem.errors, [{ in: 'params', pointer: '/id', detail: 'must be a whole number from 1 to 2147483647' }], id)
    }
  })

  it('names the fields an empty PATCH must send, and reads like a sentence for other mistakes', async () => {
    const empty = assertProblem(await call('PATCH', '/users/1', { json: {} }), 400)
    assert.equal(empty.detail, 'body must contain at least one of name, email')
    assert.deepEqual(empty.errors, [{ in: 'body', pointer: '', detail: 'must contain at least one of name, email' }])

    const wrong = assertProblem(await call('POST', '/users', { json: { name: '', email: 3 } }), 400)
    assert.deepEqual(wrong.errors, [
      { in: 'body', pointer: '/name', detail: 'must not be empty' },
      { in: 'body', pointer: '/email', detail: 'must be a string' },
    ])
    const limit = assertProblem(await call('GET', '/users?limit=5000'), 400)
    assert.equal(limit.detail, 'querystring/limit must be a whole number from 1 to 1000')
    assert.equal(assertProblem(await call('POST', '/users', { json: [] }), 400).detail, 'body must be a JSON object')
  })

  it('tells a client that forgot the JSON content type (curl -d) which header to send', async () => {
    const answer = await call('POST', '/users', {
      body: '{"name":"Curl","email":"curl@example.com"}',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
    })
    const problem = assertProblem(answer, 415)
    assert.equal(problem.type, '/problems/unsupported-media-type')
    assert.match(problem.detail, /Content-Type: application\/json/)
  })
})
