import assert from 'node:assert/strict'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { availableParallelism, tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import { parseEnv } from 'node:util'
import { DCLinter } from 'dclint'
import { stringify } from 'yaml'
import {
  composePath,
  interpolate,
  interpolateAll,
  MissingVariableError,
  parsePort,
  readCompose,
  variableReferences,
} from './support/compose.js'
import { loadSettings, refuseOpenWritesInProduction } from '../src/config/settings.js'
import { imageEnv } from './support/dockerfile.js'
import { projectRoot } from './support/process.js'

const secrets = ['POSTGRES_USER', 'POSTGRES_PASSWORD', 'REDIS_PASSWORD']
const sampleEnv = { POSTGRES_USER: 'sample-user', POSTGRES_PASSWORD: 'sample-password', REDIS_PASSWORD: 'sample-redis' }
const requiredReference = /^\$\{[A-Z_]+:\?[^}]+\}$/
/** An optional secret (API_TOKEN): from .env or nothing, never a literal default. */
const optionalReference = /^\$\{[A-Z_]+:-\}$/

/** The settings `.env.example` documents, also those shown commented out (`# NODE_ENV=production`). */
async function documentedSettings(): Promise<string[]> {
  const text = await readFile(join(projectRoot, '.env.example'), 'utf8')
  return [...text.matchAll(/^(?:# )?([A-Z][A-Z0-9_]*)=/gm)].map((match) => match[1]!)
}
/** What the stack sets for web itself: the listen address and port of the image, the built URLs, no embedded database. */
const setByTheStack = ['HOST', 'PORT', 'DATA_DIR', 'DATABASE_URL', 'REDIS_URL']

function lint(path: string) {
  const linter = new DCLinter({ rules: {}, quiet: true, debug: false, exclude: [] })
  const [result] = linter.lintFiles([path], false)
  return result!.messages.map((message: { line: number; rule: string; message: string }) => `${message.line}: ${message.rule}: ${message.message}`)
}

describe('compose.yaml', () => {
  const compose = readCompose()
  const { adminer, cache, db, web } = compose.services

  it('is valid for the compose-spec schema and clean for every dclint rule', () => {
    assert.deepEqual(lint(composePath), [])
  })

  it('would be refused by the schema check if it were wrong', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'fullstack-compose-'))
    try {
      const broken = readCompose()
      broken.services.web!.healthcheck = { ...broken.services.web!.healthcheck!, intervall: '5s' } as never
      await writeFile(join(dir, 'compose.yaml'), stringify(broken))
      const messages = lint(join(dir, 'compose.yaml'))
      assert.equal(messages.length, 1)
      assert.match(messages[0]!, /invalid-schema.*healthcheck/)
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })

  it('follows the Compose specification: a project name, no `version:`', () => {
    assert.equal(compose.version, undefined)
    assert.equal(compose.name, 'fullstack-app')
    assert.deepEqual(Object.keys(compose).sort(), ['name', 'services', 'volumes'])
  })

  it('runs web, db, cache and adminer from the expected images', () => {
    assert.deepEqual(Object.keys(compose.services).sort(), ['adminer', 'cache', 'db', 'web'])
    assert.deepEqual(web!.build, { context: '.' })
    assert.equal(web!.image, undefined, 'web is built from the Dockerfile')
    assert.equal(db!.image, 'postgres:15')
    assert.equal(cache!.image, 'redis:7-alpine')
    assert.match(adminer!.image!, /^adminer:\d+\.\d+\.\d+$/, 'adminer pinned to a release')
  })

  it('publishes only web on all interfaces; adminer on loopback; db and cache not at all', () => {
    assert.deepEqual(web!.ports!.map(parsePort), [{ hostIp: undefined, published: '5000', target: '5000' }])
    assert.deepEqual(adminer!.ports!.map(parsePort), [{ hostIp: '127.0.0.1', published: '8080', target: '8080' }])
    assert.equal(db!.ports, undefined)
    assert.equal(cache!.ports, undefined)
    for (const [name, service] of Object.entries(compose.services)) {
      if (name === 'web') continue
      for (const binding of (service.ports ?? []).map(parsePort)) assert.equal(binding.hostIp, '127.0.0.1', name)
      assert.equal(service.network_mode, undefined, name)
    }
  })

  it('starts web after healthy db and cache, adminer after a healthy db', () => {
    assert.deepEqual(web!.depends_on, { cache: { condition: 'service_healthy' }, db: { condition: 'service_healthy' } })
    assert.deepEqual(adminer!.depends_on, { db: { condition: 'service_healthy' } })
    assert.equal(adminer!.environment!.ADMINER_DEFAULT_SERVER, 'db')
    assert.equal(web!.restart, 'unless-stopped')
    for (const dependency of ['db', 'cache']) assert.ok(compose.services[dependency]!.healthcheck, dependency)
  })

  it('checks the health of db with pg_isready, cache with an authenticated PING and web with /readyz', () => {
    const checks = Object.fromEntries(Object.entries(compose.services).map(([name, service]) => [name, service.healthcheck]))
    assert.match(String(checks.db!.test), /pg_isready -h 127\.0\.0\.1 -U "\$\$\{POSTGRES_USER\}" -d "\$\$\{POSTGRES_DB\}"/)
    assert.ok(checks.db!.start_period, 'db has a start_period for its first initialisation')
    assert.match(String(checks.cache!.test), /redis-cli ping \| grep -q PONG/)
    assert.equal(interpolate(cache!.environment!.REDISCLI_AUTH!, sampleEnv), sampleEnv.REDIS_PASSWORD)
    assert.deepEqual(checks.web!.test, ['CMD', 'node', 'dist/healthcheck.js'])
    for (const name of ['db', 'cache', 'web']) {
      for (const field of ['interval', 'timeout', 'retries', 'start_period'] as const) {
        assert.ok(checks[name]![field] !== undefined, `${name}.healthcheck.${field}`)
      }
    }
  })

  it('keeps PostgreSQL data in the named volume postgres_data', () => {
    assert.deepEqual(Object.keys(compose.volumes!), ['postgres_data'])
    assert.deepEqual(db!.volumes, ['postgres_data:/var/lib/postgresql/data'])
    for (const name of ['web', 'cache', 'adminer']) assert.equal(compose.services[name]!.volumes, undefined, name)
  })

  it('points web at db and cache with the credentials the db and cache services get', () => {
    const resolved = interpolateAll(compose, sampleEnv).services
    assert.equal(resolved.db!.environment!.POSTGRES_DB, 'usersdb')
    const database = new URL(resolved.web!.environment!.DATABASE_URL!)
    assert.equal(database.protocol, 'postgres:')
    assert.equal(`${database.hostname}:${database.port}${database.pathname}`, 'db:5432/usersdb')
    assert.equal(database.username, resolved.db!.environment!.POSTGRES_USER)
    assert.equal(database.password, resolved.db!.environment!.POSTGRES_PASSWORD)

    const redis = new URL(resolved.web!.environment!.REDIS_URL!)
    assert.equal(`${redis.protocol}//${redis.hostname}:${redis.port}`, 'redis://cache:6379')
    const command = resolved.cache!.command!
    assert.equal(command[0], 'redis-server')
    assert.equal(redis.password, command[command.indexOf('--requirepass') + 1])
    assert.equal(redis.password, sampleEnv.REDIS_PASSWORD)
  })

  it('stops `docker compose up` with a message naming any missing or empty secret', () => {
    assert.doesNotThrow(() => interpolateAll(compose, sampleEnv))
    for (const secret of secrets) {
      for (const value of [undefined, '']) {
        assert.throws(
          () => interpolateAll(compose, { ...sampleEnv, [secret]: value }),
          (error) => error instanceof MissingVariableError && error.message.includes(`${secret} is missing`) && error.message.includes('.env'),
          secret,
        )
      }
    }
  })

  it('holds no literal secret: every password, credential and URL password is a required variable, the optional API_TOKEN an empty one', async () => {
    const text = await readFile(composePath, 'utf8')
    const references = variableReferences(text)
    for (const secret of secrets) assert.deepEqual(references.get(secret), { required: true, hasDefault: false }, secret)

    const offenders: string[] = []
    const visit = (node: unknown, path: string, key: string) => {
      if (typeof node === 'string') {
        if (/PASSWORD|SECRET|TOKEN|AUTH|_USER$/i.test(key) && !requiredReference.test(node) && !optionalReference.test(node)) {
          offenders.push(path)
        }
        const credentials = /^[a-z]+:\/\/([^@/]*)@/.exec(node)?.[1]
        if (credentials !== undefined) {
          const [user, password] = credentials.split(/:(?=\$\{)/)
          if (password === undefined || !requiredReference.test(password)) offenders.push(`${path} (URL password)`)
          if (user && !requiredReference.test(user)) offenders.push(`${path} (URL user)`)
        }
      } else if (Array.isArray(node)) {
        node.forEach((item, index) => {
          const flag = String(node[index - 1] ?? '')
          visit(item, `${path}[${index}]`, /^--?[\w-]*(pass|auth|secret|token)/i.test(flag) ? 'PASSWORD' : key)
        })
      } else if (node && typeof node === 'object') {
        for (const [childKey, value] of Object.entries(node)) visit(value, `${path}.${childKey}`, childKey)
      }
    }
    visit(compose, '', '')
    assert.deepEqual(offenders, [])
  })
})

describe('web’s settings', () => {
  const compose = readCompose()

  it('reach web from .env: every setting .env.example documents, except what the stack sets itself', async () => {
    const documented = await documentedSettings()
    const dotEnv: Record<string, string> = { ...Object.fromEntries(documented.map((name) => [name, `from-env-${name}`])), ...sampleEnv }
    const web = interpolateAll(compose, dotEnv).services.web!.environment!
    const missing = documented.filter((name) => !secrets.includes(name) && !setByTheStack.includes(name) && web[name] !== dotEnv[name])
    assert.deepEqual(missing, [], 'settings set in .env that web does not get')
    for (const name of ['HOST', 'PORT', 'DATA_DIR']) assert.equal(web[name], undefined, `${name} is the image's`)
    assert.match(web.DATABASE_URL!, /@db:5432\/usersdb$/)
    assert.match(web.REDIS_URL!, /@cache:6379$/)
    assert.ok(documented.includes('SHUTDOWN_DELAY_MS') && documented.includes('API_WRITES_OPEN'), 'the list is read')
  })

  it('leave the service’s and the image’s defaults alone when .env does not set them', () => {
    const web = interpolateAll(compose, sampleEnv).services.web!.environment!
    const settings = loadSettings({ ...imageEnv(), ...web, API_WRITES_OPEN: 'true' })
    assert.deepEqual([settings.env, settings.host, settings.port, settings.workers], ['production', '0.0.0.0', 5000, availableParallelism()])
    assert.deepEqual(settings, loadSettings({ ...imageEnv(), DATABASE_URL: web.DATABASE_URL, REDIS_URL: web.REDIS_URL, API_WRITES_OPEN: 'true' }))
    assert.throws(
      () => refuseOpenWritesInProduction(loadSettings({ ...imageEnv(), ...web })),
      /API_TOKEN/,
      'without API_TOKEN or API_WRITES_OPEN=true in .env, web refuses to start',
    )
  })

  it('from a copy of .env.example make a valid production configuration', async () => {
    const example = parseEnv(await readFile(join(projectRoot, '.env.example'), 'utf8')) as Record<string, string>
    const web = interpolateAll(compose, example).services.web!.environment!
    const settings = loadSettings({ ...imageEnv(), ...web })
    assert.doesNotThrow(() => refuseOpenWritesInProduction(settings))
    assert.deepEqual([settings.env, settings.host, settings.port], ['production', '0.0.0.0', 5000])
  })
})

describe('.env.example', () => {
  it('defines every variable compose.yaml reads, with placeholders marked to be changed', async () => {
    const example = parseEnv(await readFile(join(projectRoot, '.env.example'), 'utf8'))
    const text = await readFile(composePath, 'utf8')
    for (const [name, { hasDefault }] of variableReferences(text)) {
      if (hasDefault) continue
      assert.ok(example[name], `${name} has a value in .env.example`)
    }
    for (const secret of ['POSTGRES_PASSWORD', 'REDIS_PASSWORD']) assert.match(example[secret]!, /change-me/, secret)
    assert.doesNotThrow(() => interpolateAll(readCompose(), example), 'cp .env.example .env is enough to start the stack')
  })
})
