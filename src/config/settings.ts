import { isIP } from 'node:net'
import { availableParallelism } from 'node:os'
import { Type, type Static } from 'typebox'
import { Value } from 'typebox/value'

const positiveInteger = (defaultValue: number) => Type.Integer({ minimum: 1, default: defaultValue })
const oneOf = <const Values extends string[]>(values: Values, defaultValue: Values[number]) =>
  Type.Enum(values, { default: defaultValue })

/** A positive amount of milliseconds, or of seconds, minutes or hours with a unit: `500`, `30s`, `1 minute`. */
const duration = /^([1-9]\d*)\s*(ms|s|sec|seconds?|m|min|minutes?|h|hours?)?$/

const SettingsSchema = Type.Object({
  NODE_ENV: oneOf(['development', 'production', 'test'], 'development'),
  HOST: Type.String({ minLength: 1, default: '127.0.0.1' }),
  WEB_CONCURRENCY: Type.String({ pattern: '^(auto|[1-9][0-9]{0,2})$', default: '1' }),
  PORT: Type.Integer({ minimum: 0, maximum: 65535, default: 5000 }),
  LOG_LEVEL: oneOf(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'], 'info'),
  DATABASE_URL: Type.Optional(Type.String({ pattern: '^postgres(ql)?://' })),
  DATABASE_MIGRATION_URL: Type.Optional(Type.String({ pattern: '^postgres(ql)?://' })),
  DATABASE_PREPARED_STATEMENTS: Type.Boolean({ default: true }),
  DATA_DIR: Type.String({ minLength: 1, default: './data' }),
  DATABASE_POOL_MAX: positiveInteger(10),
  DATABASE_CONNECT_TIMEOUT_MS: positiveInteger(2000),
  DATABASE_STATEMENT_TIMEOUT_MS: positiveInteger(5000),
  REDIS_URL: Type.Optional(Type.String({ pattern: '^rediss?://' })),
  CACHE_ENABLED: Type.Boolean({ default: true }),
  CACHE_PREFIX: Type.String({ default: 'users-api:' }),
  CACHE_TTL_SECONDS: positiveInteger(300),
  CACHE_TIMEOUT_MS: positiveInteger(250),
  CACHE_MAX_ENTRIES: positiveInteger(10000),
  BODY_LIMIT_BYTES: positiveInteger(16384),
  BODY_MAX_DEPTH: positiveInteger(32),
  SHUTDOWN_DELAY_MS: Type.Integer({ minimum: 0, default: 0 }),
  SHUTDOWN_GRACE_MS: positiveInteger(10000),
  HTTP_HEADERS_TIMEOUT_MS: positiveInteger(10000),
  HTTP_REQUEST_TIMEOUT_MS: positiveInteger(30000),
  HTTP_KEEP_ALIVE_TIMEOUT_MS: positiveInteger(72000),
  HTTP_IDLE_TIMEOUT_MS: positiveInteger(120000),
  TRUST_PROXY: Type.String({ minLength: 1, default: 'false' }),
  API_TOKEN: Type.Optional(Type.String({ pattern: '^[\\x21-\\x7e]{16,}$' })),
  API_TOKEN_READS: Type.Boolean({ default: false }),
  API_WRITES_OPEN: Type.Boolean({ default: false }),
  RATE_LIMIT_MAX: Type.Integer({ minimum: 0, default: 600 }),
  RATE_LIMIT_WINDOW: Type.String({ pattern: duration.source, default: '1m' }),
  CORS_ORIGINS: Type.Optional(Type.String()),
  DOCS_ENABLED: Type.Boolean({ default: true }),
  METRICS_ENABLED: Type.Boolean({ default: true }),
})

type RawSettings = Static<typeof SettingsSchema>

/** Fastify's `trustProxy`: off, on (any peer is a proxy), or the proxies' addresses. */
export type TrustProxy = boolean | string[]

export interface Settings {
  env: RawSettings['NODE_ENV']
  host: string
  port: number
  /** Worker processes serving the port (node:cluster); 1 serves from this process. */
  workers: number
  logLevel: string
  database: {
    url: string | undefined
    /** A direct connection for migrations when `url` goes through a transaction-mode pooler. */
    migrationUrl?: string
    /** Named prepared statements (default true): false behind a pooler that cannot keep them (PgBouncer before 1.21). */
    preparedStatements?: boolean
    dataDir: string
    /** Connections of this process's pool: DATABASE_POOL_MAX shared among the workers. */
    poolMax: number
    connectTimeoutMs: number
    statementTimeoutMs: number
  }
  cache: {
    enabled: boolean
    redisUrl: string | undefined
    prefix: string
    ttlSeconds: number
    timeoutMs: number
    maxEntries: number
  }
  http: {
    bodyLimitBytes: number
    bodyMaxDepth: number
    /** How long the server keeps serving after SIGTERM, with /readyz at 503, before it stops accepting. */
    shutdownDelayMs: number
    shutdownGraceMs: number
    headersTimeoutMs: number
    requestTimeoutMs: number
    keepAliveTimeoutMs: number
    idleTimeoutMs: number
    trustProxy: TrustProxy
    docsEnabled: boolean
    metricsEnabled: boolean
  }
  security: {
    apiToken: string | undefined
    apiTokenReads: boolean
    /** Without API_TOKEN, anyone may write: accepted in production only when this says so. */
    writesOpen: boolean
    rateLimit: { max: number; windowMs: number }
    corsOrigins: string[]
  }
}

export class SettingsError extends Error {
  override name = 'SettingsError'
}

/** Never repeated in an error message: the logs that receive it are not a place for credentials. */
const secrets = new Set(['API_TOKEN', 'DATABASE_URL', 'DATABASE_MIGRATION_URL'])

const proxyKeywords = new Set(['loopback', 'linklocal', 'uniquelocal'])

function isProxyAddress(entry: string): boolean {
  const [address = '', prefix, ...rest] = entry.split('/')
  const version = isIP(address)
  if (rest.length > 0 || version === 0) return proxyKeywords.has(entry)
  return prefix === undefined || (/^\d{1,3}$/.test(prefix) && Number(prefix) <= (version === 4 ? 32 : 128))
}

const list = (value: string) =>
  value
    .split(',')
    .map((item) => item.trim())
    .filter((item) => item !== '')

function parseTrustProxy(value: string): TrustProxy | undefined {
  if (value === 'true' || value === 'false') return value === 'true'
  const addresses = list(value)
  return addresses.length > 0 && addresses.every(isProxyAddress) ? addresses : undefined
}

function parseOrigins(value: string): string[] | undefined {
  const origins = list(value)
  const isOrigin = (origin: string) => URL.canParse(origin) && new URL(origin).origin === origin
  return origins.every(isOrigin) ? origins : undefined
}

function parseDuration(value: string): number {
  const [, amount, unit = 'ms'] = duration.exec(value)!
  const unitMs = unit === 'ms' ? 1 : { s: 1000, m: 60_000, h: 3_600_000 }[unit[0] as 's' | 'm' | 'h']
  return Number(amount) * unitMs
}

export function loadSettings(env: NodeJS.ProcessEnv = process.env): Settings {
  const known = Object.fromEntries(
    Object.keys(SettingsSchema.properties)
      .filter((key) => env[key] !== undefined && env[key] !== '')
      .map((key) => [key, env[key]]),
  )
  const problems = new Map<string, string>()
  const complain = (variable: string, message: string) => {
    const shown = secrets.has(variable) ? '[redacted]' : JSON.stringify(known[variable])
    if (!problems.has(variable)) problems.set(variable, `${variable}=${shown}: ${message}`)
  }
  const candidate = Value.Convert(SettingsSchema, Value.Default(SettingsSchema, known))
  if (!Value.Check(SettingsSchema, candidate)) {
    for (const error of Value.Errors(SettingsSchema, candidate)) {
      const variable = error.instancePath.slice(1)
      complain(variable, variable === 'API_TOKEN' ? 'must be at least 16 visible ASCII characters' : error.message)
    }
    throw new SettingsError(`Invalid configuration:\n  ${[...problems.values()].join('\n  ')}`)
  }
  const raw = candidate as RawSettings
  const trustProxy = parseTrustProxy(raw.TRUST_PROXY)
  if (trustProxy === undefined) {
    complain('TRUST_PROXY', 'must be true, false, or a comma-separated list of proxy addresses or CIDRs')
  }
  const corsOrigins = raw.CORS_ORIGINS === undefined ? [] : parseOrigins(raw.CORS_ORIGINS)
  if (corsOrigins === undefined) {
    complain('CORS_ORIGINS', 'must be a comma-separated list of origins such as https://app.example.com')
  }
  if (raw.HTTP_HEADERS_TIMEOUT_MS > raw.HTTP_REQUEST_TIMEOUT_MS) {
    complain('HTTP_HEADERS_TIMEOUT_MS', 'must not exceed HTTP_REQUEST_TIMEOUT_MS')
  }
  if (raw.DATABASE_MIGRATION_URL !== undefined && raw.DATABASE_URL === undefined) {
    complain('DATABASE_MIGRATION_URL', 'needs DATABASE_URL: the embedded database migrates in process')
  }
  // `auto` takes one worker per CPU, but never more workers than the instance has connections.
  const workers =
    raw.WEB_CONCURRENCY === 'auto'
      ? Math.min(availableParallelism(), raw.DATABASE_POOL_MAX)
      : Number(raw.WEB_CONCURRENCY)
  if (workers > 1 && raw.DATABASE_URL === undefined) {
    complain('WEB_CONCURRENCY', 'above 1 needs DATABASE_URL: the embedded database lives in one process')
  } else if (workers > 1 && raw.CACHE_ENABLED && raw.REDIS_URL === undefined) {
    complain('WEB_CONCURRENCY', 'above 1 needs REDIS_URL (or CACHE_ENABLED=false): an in-process cache would not see the other workers\' writes')
  }
  // DATABASE_POOL_MAX is what the whole instance may open, so that WEB_CONCURRENCY=auto on a large
  // host cannot multiply it past PostgreSQL's max_connections.
  const poolPerWorker = Math.floor(raw.DATABASE_POOL_MAX / workers)
  if (poolPerWorker < 1) {
    complain(
      'DATABASE_POOL_MAX',
      `is the instance's total and cannot give each of ${workers} workers (WEB_CONCURRENCY=${raw.WEB_CONCURRENCY}) a ` +
        'connection: raise it (within PostgreSQL\'s max_connections) or lower WEB_CONCURRENCY',
    )
  }
  if (problems.size > 0) throw new SettingsError(`Invalid configuration:\n  ${[...problems.values()].join('\n  ')}`)
  return {
    env: raw.NODE_ENV,
    host: raw.HOST,
    port: raw.PORT,
    workers,
    logLevel: raw.LOG_LEVEL,
    database: {
      url: raw.DATABASE_URL,
      migrationUrl: raw.DATABASE_MIGRATION_URL,
      preparedStatements: raw.DATABASE_PREPARED_STATEMENTS,
      dataDir: raw.DATA_DIR,
      poolMax: poolPerWorker,
      connectTimeoutMs: raw.DATABASE_CONNECT_TIMEOUT_MS,
      statementTimeoutMs: raw.DATABASE_STATEMENT_TIMEOUT_MS,
    },
    cache: {
      enabled: raw.CACHE_ENABLED,
      redisUrl: raw.REDIS_URL,
      prefix: raw.CACHE_PREFIX,
      ttlSeconds: raw.CACHE_TTL_SECONDS,
      timeoutMs: raw.CACHE_TIMEOUT_MS,
      maxEntries: raw.CACHE_MAX_ENTRIES,
    },
    http: {
      bodyLimitBytes: raw.BODY_LIMIT_BYTES,
      bodyMaxDepth: raw.BODY_MAX_DEPTH,
      shutdownDelayMs: raw.SHUTDOWN_DELAY_MS,
      shutdownGraceMs: raw.SHUTDOWN_GRACE_MS,
      headersTimeoutMs: raw.HTTP_HEADERS_TIMEOUT_MS,
      requestTimeoutMs: raw.HTTP_REQUEST_TIMEOUT_MS,
      keepAliveTimeoutMs: raw.HTTP_KEEP_ALIVE_TIMEOUT_MS,
      idleTimeoutMs: raw.HTTP_IDLE_TIMEOUT_MS,
      trustProxy: trustProxy!,
      docsEnabled: raw.DOCS_ENABLED,
      metricsEnabled: raw.METRICS_ENABLED,
    },
    security: {
      apiToken: raw.API_TOKEN,
      apiTokenReads: raw.API_TOKEN_READS,
      writesOpen: raw.API_WRITES_OPEN,
      rateLimit: { max: raw.RATE_LIMIT_MAX, windowMs: parseDuration(raw.RATE_LIMIT_WINDOW) },
      corsOrigins: corsOrigins!,
    },
  }
}

/** A server in production must not leave writes open to anyone by omission. */
export function refuseOpenWritesInProduction(settings: Settings): void {
  if (settings.env === 'production' && settings.security.apiToken === undefined && !settings.security.writesOpen) {
    throw new SettingsError(
      'Refusing to start: NODE_ENV=production without API_TOKEN lets anyone write; set API_TOKEN, or API_WRITES_OPEN=true to allow that on purpose.',
    )
  }
}
