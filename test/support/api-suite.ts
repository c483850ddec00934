import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { freshStore, startApp, type Backend, type BackendStore, type RunningApp } from './app.js'
import { assertProblem, request } from './http.js'

/** The whole users API contract, run once per storage backend (or a store of the caller's, on it). */
export function apiSuite(backend: Backend, custom?: { name: string; store: () => Promise<BackendStore> }): void {
  describe(`users API on ${custom?.name ?? backend}`, () => {
    let store: BackendStore
    let server: RunningApp
    const call = (method: string, path: string, options?: Parameters<typeof request>[3]) =>
      request(server.url, method, path, options)
    const create = async (name: string, email: string) => {
      const answer = await call('POST', '/users', { json: { name, email } })
      assert.equal(answer.status, 201, answer.text)
      return answer.body
    }

    before(async () => {
      store = await (custom ? custom.store() : freshStore(backend))
      server = await startApp(store.env)
    })
    after(async () => {
      await server?.close()
      await store?.dispose()
    })

    it('creates a user with trimmed name, lower-cased email, timestamps and a Location', async () => {
      const answer = await call('POST', '/users', { json: { name: '  Ada Lovelace ', email: ' Ada@Example.COM ' } })
      assert.equal(answer.status, 201)
      assert.equal(answer.headers.get('location'), `/users/${answer.body.id}`)
      assert.deepEqual(Object.keys(answer.body).sort(), ['created_at', 'email', 'id', 'name', 'updated_at'])
      assert.equal(answer.body.name, 'Ada Lovelace')
      assert.equal(answer.body.email, 'ada@example.com')
      assert.ok(Number.isInteger(answer.body.id) && answer.body.id > 0)
      assert.ok(!Number.isNaN(Date.parse(answer.body.created_at)))
      const read = await call('GET', answer.headers.get('location')!)
      assert.equal(read.status, 200)
      assert.deepEqual(read.body, answer.body)
    })

    it('accepts names in any script up to 100 characters', async () => {
      const name = '李'.repeat(99) + '😀'
      const user = await create(name, 'unicode@example.com')
      assert.equal(user.name, name)
      assertProblem(await call('POST', '/users', { json: { name: name + 'x', email: 'long@example.com' } }), 400)
    })

    it('refuses a duplicate email whatever its case, with 409', async () => {
      await create('First', 'taken@example.com')
      const problem = assertProblem(
        await call('POST', '/users', { json: { name: 'Second', email: 'TAKEN@example.com' } }),
        409,
      )
      assert.equal(problem.type, '/problems/email-taken')
    })

    it('lets exactly one of many concurrent creates with one email win', async () => {
      const answers = await Promise.all(
        Array.from({ length: 16 }, (_, i) =>
          call('POST', '/users', { json: { name: `Racer ${i}`, email: i % 2 ? 'RACE@example.com' : 'race@example.com' } }),
        ),
      )
      const statuses = answers.map((answer) => answer.status).sort()
      assert.deepEqual(statuses, [201, ...Array(15).fill(409)])
      const listed = await call('GET', '/users?email=race@example.com')
      assert.equal(listed.body.length, 1)
    })

    it('reads one user, 404 for a missing one, 400 for ids that are not whole numbers from 1 to 2147483647', async () => {
      const user = await create('Reader', 'reader@example.com')
      assert.deepEqual((await call('GET', `/users/${user.id}`)).body, user)
      assertProblem(await call('GET', '/users/2147483647'), 404)
      for (const id of ['abc', '0', '-1', '2147483648', '1.5', '1e3', '%00']) {
        const problem = assertProblem(await call('GET', `/users/${id}`), 400)
        assert.equal(problem.errors[0].in, 'params')
      }
    })

    it('replaces with PUT and changes one field with PATCH', async () => {
      const user = await create('Before', 'before@example.com')
      const replaced = await call('PUT', `/users/${user.id}`, { json: { name: 'After', email: 'After@example.com' } })
      assert.equal(replaced.status, 200)
      assert.equal(replaced.body.name, 'After')
      assert.equal(replaced.body.email, 'after@example.com')
      assert.equal(replaced.body.created_at, user.created_at)
      assert.ok(Date.parse(replaced.body.updated_at) >= Date.parse(user.updated_at))

      const patched = await call('PATCH', `/users/${user.id}`, { json: { name: ' Patched ' } })
      assert.equal(patched.status, 200)
      assert.equal(patched.body.name, 'Patched')
      assert.equal(patched.body.email, 'after@example.com')
      assert.deepEqual((await call('GET', `/users/${user.id}`)).body, patched.body)

      assertProblem(await call('PUT', `/users/${user.id}`, { json: { name: 'Only name' } }), 400)
      assertProblem(await call('PATCH', `/users/${user.id}`, { json: {} }), 400)
      assertProblem(await call('PUT', '/users/999999', { json: { name: 'x', email: 'x@example.com' } }), 404)
      assertProblem(await call('PATCH', '/users/999999', { json: { name: 'x' } }), 404)
    })

    it('answers 409 when PUT or PATCH takes another user’s email, and changes nothing', async () => {
      const owner = await create('Owner', 'owner@example.com')
      const other = await create('Other', 'other@example.com')
      assertProblem(await call('PATCH', `/users/${other.id}`, { json: { email: 'OWNER@example.com' } }), 409)
      assertProblem(await call('PUT', `/users/${other.id}`, { json: { name: 'New', email: 'owner@example.com' } }), 409)
      assert.deepEqual((await call('GET', `/users/${other.id}`)).body, other)
      assert.deepEqual((await call('GET', `/users/${owner.id}`)).body, owner)
      const same = await call('PATCH', `/users/${owner.id}`, { json: { email: 'Owner@Example.com' } })
      assert.equal(same.status, 200, 'a user may keep its own email')
    })

    it('deletes with 204, then 404', async () => {
      const user = await create('Leaving', 'leaving@example.com')
      const deleted = await call('DELETE', `/users/${user.id}`)
      assert.equal(deleted.status, 204)
      assert.equal(deleted.text, '')
      assertProblem(await call('GET', `/users/${user.id}`), 404)
      assertProblem(await call('DELETE', `/users/${user.id}`), 404)
      await create('Reuses email', 'leaving@example.com')
    })

    it('lists users by id in bounded pages linked by rel="next"', async () => {
      for (let i = 0; i < 5; i++) await create(`Pager ${i}`, `pager${i}@example.com`)
      const all = (await call('GET', '/users?limit=1000')).body as { id: number }[]
      const ids = all.map((user) => user.id)
      assert.deepEqual(ids, [...ids].sort((a, b) => a - b))

      const seen: number[] = []
      let next: string | undefined = '/users?limit=2'
      while (next) {
        const page = await call('GET', next)
        assert.equal(page.status, 200)
        assert.ok(page.body.length <= 2)
        seen.push(...page.body.map((user: { id: number }) => user.id))
        next = page.headers.get('link')?.match(/^<([^>]+)>; rel="next"$/)?.[1]
      }
      assert.deepEqual(seen, ids)

      const defaultPage = await call('GET', '/users')
      assert.ok(Array.isArray(defaultPage.body))
      const afterFirst = await call('GET', `/users?after=${ids[0]}&limit=1`)
      assert.deepEqual(afterFirst.body.map((user: { id: number }) => user.id), [ids[1]])
      assert.equal((await call('GET', `/users?after=${ids.at(-1)}`)).body.length, 0)
      assert.equal((await call('GET', `/users?limit=1000`)).headers.get('link'), null)

      const byEmail = await call('GET', '/users?email=%20PAGER3@example.com')
      assert.deepEqual(byEmail.body.map((user: { email: string }) => user.email), ['pager3@example.com'])
      assert.deepEqual((await call('GET', '/users?email=nobody@example.com')).body, [])

      for (const query of ['limit=0', 'limit=1001', 'limit=x', 'after=-1', 'after=x', 'unknown=1', 'email=a%00b']) {
        assertProblem(await call('GET', `/users?${query}`), 400)
      }
    })

    it('searches names and emails by any part, any case, in linked pages, with % and _ taken literally', async () => {
      const finds = async (path: string) =>
        ((await call('GET', path)).body as { email: string }[]).map((user) => user.email).sort()
      await create('Grace Hopper', 'grace@navy.example')
      await create('Hopper Fan', 'fan@example.com')
      await create('Someone', 'HOPPER.mail@example.com')
      await create('100% Real_Name', 'percent@example.com')
      assert.deepEqual(await finds('/users?q=hOpPeR'), ['fan@example.com', 'grace@navy.example', 'hopper.mail@example.com'])
      assert.deepEqual(await finds('/users?q=%20navy.EX%20'), ['grace@navy.example'])
      assert.deepEqual(await finds('/users?q=0%25%20R'), ['percent@example.com'])
      assert.deepEqual(await finds('/users?q=l_N'), ['percent@example.com'])
      assert.deepEqual(await finds('/users?q=_'), ['percent@example.com'])
      assert.deepEqual(await finds('/users?q=%25'), ['percent@example.com'])
      assert.deepEqual(await finds('/users?q=%5C'), [])
      assert.deepEqual(await finds('/users?q=hopper&email=fan@example.com'), ['fan@example.com'])

      const seen: string[] = []
      let next: string | undefined = '/users?q=HOPPER&limit=2'
      while (next) {
        const page = await call('GET', next)
        assert.equal(page.status, 200)
        seen.push(...page.body.map((user: { email: string }) => user.email))
        next = page.headers.get('link')?.match(/^<([^>]+)>; rel="next"$/)?.[1]
        if (next) assert.match(next, /[?&]q=HOPPER(&|$)/)
      }
      assert.deepEqual(seen.sort(), ['fan@example.com', 'grace@navy.example', 'hopper.mail@example.com'])

      const cached = await call('GET', '/users?q=hopper')
      await create('Late Hopper', 'late@example.com')
      const fresh = await call('GET', '/users?q=hopper', { headers: { 'if-none-match': cached.headers.get('etag')! } })
      assert.equal(fresh.status, 200, 'a create moves every search page on')
      assert.ok(fresh.body.some((user: { email: string }) => user.email === 'late@example.com'))

      for (const query of ['q=', `q=${'a'.repeat(101)}`, 'q=a%00b', 'q=a%09b']) {
        assertProblem(await call('GET', `/users?${query}`), 400)
      }
    })

    it('serves q from the trigram indexes', async () => {
      const client = await server.database.pool.connect()
      try {
        await client.query('BEGIN')
        // A test table is small enough to read whole; at 1,000,000 users the planner picks these indexes itself.
        await client.query('SET LOCAL enable_seqscan = off')
        await client.query('SET LOCAL enable_indexscan = off')
        const plan = await client.query(`EXPLAIN SELECT id FROM users WHERE name ILIKE '%hopper%' OR email ILIKE '%hopper%'`)
        const text = plan.rows.map((row) => row['QUERY PLAN']).join('\n')
        assert.match(text, /users_name_trgm/)
        assert.match(text, /users_email_trgm/)
      } finally {
        await client.query('ROLLBACK')
        client.release()
      }
    })

    it('says what is wrong with each bad body, field by field', async () => {
      const cases: [unknown, string[]][] = [
        [{ email: 'a@example.com' }, ['/name']],
        [{ name: 'A' }, ['/email']],
        [{ name: 'A', email: 'a@example.com', admin: true }, ['/admin']],
        [{ name: '   ', email: 'a@example.com' }, ['/name']],
        [{ name: 'A', email: 'not an email' }, ['/email']],
        [{ name: 'A', email: `${'a'.repeat(250)}@example.com` }, ['/email']],
        [{ name: 123, email: 'a@example.com' }, ['/name']],
        [{ name: 'A\u0000B', email: 'a@example.com' }, ['/name']],
        [{ name: 'Tab\tbed', email: 'a@example.com' }, ['/name']],
        [{ name: '\ud800', email: 'a@example.com' }, ['/name']],
        [{ name: null, email: null }, ['/name', '/email']],
        [[], ['']],
        ['text', ['']],
      ]
      for (const [json, pointers] of cases) {
        const problem = assertProblem(await call('POST', '/users', { json }), 400)
        assert.equal(problem.type, '/problems/validation', JSON.stringify(json))
        assert.deepEqual(problem.errors.map((error: { pointer: string }) => error.pointer).sort(), pointers.sort())
      }
    })

    it('refuses malformed JSON, wrong media types, prototype keys and oversized bodies', async () => {
      assertProblem(await call('POST', '/users', { body: '{"name": "A",', headers: { 'content-type': 'application/json' } }), 400)
      assertProblem(await call('POST', '/users', { body: '', headers: { 'content-type': 'application/json' } }), 400)
      assertProblem(await call('POST', '/users', { body: 'name=A', headers: { 'content-type': 'text/plain' } }), 415)
      assertProblem(
        await call('POST', '/users', { body: 'name=A', headers: { 'content-type': 'application/x-www-form-urlencoded' } }),
        415,
      )
      assertProblem(await call('POST', '/users'), 400)
      assertProblem(
        await call('POST', '/users', {
          body: '{"__proto__": {"admin": true}, "name": "A", "email": "proto@example.com"}',
          headers: { 'content-type': 'application/json' },
        }),
        400,
      )
      const huge = await call('POST', '/users', { json: { name: 'A'.repeat(20_000), email: 'big@example.com' } })
      assertProblem(huge, 413)
      assert.equal((await call('GET', '/users?email=big@example.com')).body.length, 0)
    })

    it('answers unknown routes and methods with a problem', async () => {
      assertProblem(await call('GET', '/nowhere'), 404)
      assertProblem(await call('POST', '/users/1'), 405)
    })

    it('keeps an incoming X-Request-Id and makes one otherwise', async () => {
      const kept = await call('GET', '/healthz', { headers: { 'x-request-id': 'trace-123' } })
      assert.equal(kept.headers.get('x-request-id'), 'trace-123')
      const made = await call('GET', '/healthz', { headers: { 'x-request-id': 'bad id\twith spaces' } })
      assert.match(made.headers.get('x-request-id') ?? '', /^[0-9a-f-]{36}$/)
    })

    it('reports health, readiness and an OpenAPI 3.1 document with interactive docs', async () => {
      assert.deepEqual((await call('GET', '/healthz')).body, { status: 'ok' })
      assert.deepEqual((await call('GET', '/readyz')).body, {
        status: 'ready',
        database: backend,
        cache: { backend: 'memory', status: 'ok' },
      })
      const openapi = await call('GET', '/openapi.json')
      assert.equal(openapi.body.openapi, '3.1.0')
      for (const path of ['/users', '/users/{id}']) assert.ok(openapi.body.paths[path], path)
      const docs = await fetch(new URL('/docs', server.url))
      assert.equal(docs.status, 200)
      assert.match(await docs.text(), /swagger/i)
    })
  })
}
