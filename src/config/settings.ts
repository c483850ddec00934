import { Type, type Static } from 'typebox'
import { Value } from 'typebox/value'

const positiveInteger = (defaultValue: number) => Type.Integer({ minimum: 1, default: defaultValue })
const oneOf = <const Values extends string[]>(values: Values, defaultValue: Values[number]) =>
  Type.Enum(values, { default: defaultValue })

const SettingsSchema = Type.Object({
  NODE_ENV: oneOf(['development', 'production', 'test'], 'development'),
  HOST: Type.String({ minLength: 1, default: '127.0.0.1' }),
  PORT: Type.Integer({ minimum: 0, maximum: 65535, default: 5000 }),
  LOG_LEVEL: oneOf(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'], 'info'),
  DATABASE_URL: Type.Optional(Type.String({ pattern: '^postgres(ql)?://' })),
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
  SHUTDOWN_GRACE_MS: positiveInteger(10000),
})

type RawSettings = Static<typeof SettingsSchema>

export interface Settings {
  env: RawSettings['NODE_ENV']
  host: string
  port: number
  logLevel: string
  database: {
    url: string | undefined
    dataDir: string
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
    shutdownGraceMs: number
  }
}

export class SettingsError extends Error {
  override name = 'SettingsError'
}

export function loadSettings(env: NodeJS.ProcessEnv = process.env): Settings {
  const known = Object.fromEntries(
    Object.keys(SettingsSchema.properties)
      .filter((key) => env[key] !== undefined && env[key] !== '')
      .map((key) => [key, env[key]]),
  )
  const candidate = Value.Convert(SettingsSchema, Value.Default(SettingsSchema, known))
  if (!Value.Check(SettingsSchema, candidate)) {
    const problems = new Map<string, string>()
    for (const error of Value.Errors(SettingsSchema, candidate)) {
      const variable = error.instancePath.slice(1)
      if (!problems.has(variable)) problems.set(variable, `${variable}=${JSON.stringify(known[variable])}: ${error.message}`)
    }
    throw new SettingsError(`Invalid configuration:\n  ${[...problems.values()].join('\n  ')}`)
  }
  const raw = candidate as RawSettings
  return {
    env: raw.NODE_ENV,
    host: raw.HOST,
    port: raw.PORT,
    logLevel: raw.LOG_LEVEL,
    database: {
      url: raw.DATABASE_URL,
      dataDir: raw.DATA_DIR,
      poolMax: raw.DATABASE_POOL_MAX,
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
      shutdownGraceMs: raw.SHUTDOWN_GRACE_MS,
    },
  }
}
