import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { Validator } from '@seriousme/openapi-schema-validator'
import { startApp, type RunningApp } from './support/app.js'
import { request } from './support/http.js'
import { createTestDatabase, type TestDatabase } from './support/postgres.js'

const token = 'openapi-test-token-0123456789'
const writes = new Set(['post', 'put', 'patch', 'delete'])

interface Operation {
  tags?: string[]
  security?: Record<string, string[]>[]
  responses: Record<string, unknown>
}
interface OpenApi {
  paths: Record<string, Record<string, Operation>>
  components: { schemas: Record<string, unknown>; securitySchemes?: Record<string, { type: string; scheme: string }> }
  tags: { name: string }[]
}

/** Every (method, path) the app routes, read from Fastify's route tree, in OpenAPI's path syntax. */
function routedOperations(server: RunningApp): string[] {
  const parents: string[] = []
  return server.app
    .printRoutes({ commonPrefix: false })
    .split('\n')
    .flatMap((line) => {
      const [, indent, segment, methods] = /^([│├└─ ]*)(\S+) \(([A-Z, ]+)\)$/.exec(line) ?? []
      if (indent === undefined) return []
      const depth = indent.length / 4
      const path = (parents[depth - 1] ?? '') + segment
      parents[depth] = path
      return methods!.split(', ').map((method) => `${method} ${path.replace(/:(\w+)/g, '{$1}')}`)
    })
}

const operations = (doc: OpenApi) =>
  Object.entries(doc.paths).flatMap(([path, byMethod]) => Object.keys(byMethod).map((method) => [method, path, byMethod[method]!] as const))

describe('OpenAPI document', () => {
  let database: TestDatabase
  const servers: RunningApp[] = []
  const documentOf = async (env: NodeJS.ProcessEnv) => {
    const server = await startApp({ DATABASE_URL: database.url, ...env })
    servers.push(server)
    const answer = await request(server.url, 'GET', '/openapi.json', { headers: { authorization: `Bearer ${token}` } })
    assert.equal(answer.status, 200, answer.text)
    return { server, doc: answer.body as OpenApi }
  }

  before(async () => {
    database = await createTestDatabase()
  })
  after(async () => {
    for (const server of servers) await server.close()
    await database?.drop()
  })

  it('is valid OpenAPI 3.1, names its shared schemas, and lists every route the server answers', async () => {
    const { server, doc } = await documentOf({ API_TOKEN: token })
    const validator = new Validator()
    const result = await validator.validate(structuredClone(doc) as unknown as Record<string, unknown>)
    assert.deepEqual(result.errors, undefined)
    assert.equal(result.valid, true)
    assert.equal(validator.version, '3.1')
    validator.resolveRefs()

    const names = Object.keys(doc.components.schemas)
    for (const name of ['Problem', 'User', 'UserList', 'NewUser', 'UserChanges']) assert.ok(names.includes(name), name)
    assert.deepEqual(names.filter((name) => /^def-/.test(name)), [])

    const documented = new Set(operations(doc).map(([method, path]) => `${method.toUpperCase()} ${path}`))
    // Not API operations: the documentation itself, and the web page with its assets (served at / from dist/web).
    const notApi = / \/(docs|openapi\.json)\b|^GET \/(index\.html|assets\/.*)?$/
    const undocumented = routedOperations(server).filter(
      (operation) => !/^(HEAD|OPTIONS) /.test(operation) && !notApi.test(operation) && !documented.has(operation),
    )
    assert.deepEqual(undocumented, [])
    for (const operation of documented) assert.ok(routedOperations(server).includes(operation), `${operation} is not routed`)

    const used = new Set(operations(doc).flatMap(([, , operation]) => operation.tags ?? []))
    assert.deepEqual(doc.tags.map((tag) => tag.name).filter((name) => !used.has(name)), [], 'tags without an operation')
    assert.ok(used.has('operations'), '/metrics is documented')
  })

  it('declares bearer auth on exactly the operations that need the token', async () => {
    const { doc } = await documentOf({ API_TOKEN: token })
    assert.deepEqual(doc.components.securitySchemes, { bearer: { type: 'http', scheme: 'bearer', description: 'The API_TOKEN' } })
    for (const [method, path, operation] of operations(doc)) {
      assert.deepEqual(operation.security, writes.has(method) ? [{ bearer: [] }] : undefined, `${method} ${path}`)
      if (writes.has(method)) assert.ok(operation.responses['401'], `${method} ${path} documents 401`)
    }

    const { doc: readsToo } = await documentOf({ API_TOKEN: token, API_TOKEN_READS: 'true' })
    for (const [method, path, operation] of operations(readsToo)) {
      const open = path === '/healthz' || path === '/readyz'
      assert.deepEqual(operation.security, open ? undefined : [{ bearer: [] }], `${method} ${path}`)
    }

    const { doc: open } = await documentOf({})
    assert.equal(open.components.securitySchemes, undefined)
    assert.deepEqual(operations(open).filter(([, , operation]) => operation.security), [])
  })

  it('leaves out the operations tag when /metrics is off, and /docs explores /openapi.json', async () => {
    const { server, doc } = await documentOf({ METRICS_ENABLED: 'false' })
    assert.deepEqual(doc.tags.map((tag) => tag.name), ['users', 'health'])
    const initializer = await request(server.url, 'GET', '/docs/static/swagger-initializer.js')
    assert.equal(initializer.status, 200)
    assert.match(initializer.text, /"url":"\/openapi\.json"/)
  })
})
