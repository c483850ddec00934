import { createClient, defineScript } from 'redis'
import type { Logger } from 'pino'
import { resilientClientOptions, withDeadline } from './redis-connection.js'
import { GenerationalCache, generationSlackSeconds, type CacheHealth } from './response-cache.js'

/*
 * Keys, under the configured prefix P:
 *   P epoch                     E, a fresh TIME-based number whenever it is missing (Redis restarted)
 *                               or an instance that could not write an invalidation moves everyone on
 *   P settling                  present for a few seconds after E changes: nothing is read or stored
 *                               meanwhile, so instances still reconnecting with an invalidation they
 *                               could not write have time to move everyone to a newer epoch first
 *   P E:scope:gen               the scope's generation G; missing means 0; when created it starts from
 *                               TIME, so a generation number is never reused for a scope
 *   P E:scope:G:variant         the cached value
 */
const settlingMs = 3000

const currentEpoch = `
local function now() local t = redis.call('TIME') return t[1] .. string.format('%06d', t[2]) end
local function settle(prefix) redis.call('SET', prefix .. 'settling', '1', 'PX', ${settlingMs}) end
local function epoch(prefix, ttl)
  local e = redis.call('GET', prefix .. 'epoch')
  if not e then
    e = now()
    redis.call('SET', prefix .. 'epoch', e, 'EX', ttl)
    settle(prefix)
  end
  return e
end
`

const lookupScript = defineScript({
  NUMBER_OF_KEYS: 0,
  SCRIPT: `${currentEpoch}
local prefix, ttl, scope, variant = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local base = prefix .. epoch(prefix, ttl) .. ':' .. scope .. ':'
if redis.call('EXISTS', prefix .. 'settling') == 1 then return { false, false } end
local key = base .. (redis.call('GET', base .. 'gen') or '0') .. ':' .. variant
return { key, redis.call('GET', key) }`,
  parseCommand(parser, prefix: string, epochTtl: number, scope: string, variant: string) {
    parser.push(prefix, String(epochTtl), scope, variant)
  },
  transformReply: (reply: unknown) => reply,
})

const invalidateScript = defineScript({
  NUMBER_OF_KEYS: 0,
  SCRIPT: `${currentEpoch}
local prefix, ttl, genTtl = ARGV[1], ARGV[2], ARGV[3]
local e = epoch(prefix, ttl)
for i = 4, #ARGV do
  local gen = prefix .. e .. ':' .. ARGV[i] .. ':gen'
  if redis.call('EXISTS', gen) == 1 then redis.call('INCR', gen) else redis.call('SET', gen, now()) end
  redis.call('EXPIRE', gen, genTtl)
end
return 1`,
  parseCommand(parser, prefix: string, epochTtl: number, generationTtl: number, scopes: string[]) {
    parser.push(prefix, String(epochTtl), String(generationTtl), ...scopes)
  },
  transformReply: (reply: unknown) => reply as number,
})

const newEpochScript = defineScript({
  NUMBER_OF_KEYS: 0,
  SCRIPT: `${currentEpoch}
local e = now()
local old = redis.call('GET', ARGV[1] .. 'epoch')
if old and tonumber(old) >= tonumber(e) then e = string.format('%.0f', tonumber(old) + 1) end
redis.call('SET', ARGV[1] .. 'epoch', e, 'EX', ARGV[2])
settle(ARGV[1])
return e`,
  parseCommand(parser, prefix: string, epochTtl: number) {
    parser.push(prefix, String(epochTtl))
  },
  transformReply: (reply: unknown) => reply as string,
})

export interface RedisCacheOptions {
  url: string
  prefix: string
  ttlSeconds: number
  timeoutMs: number
}

const epochTtlSeconds = 7 * 24 * 3600

/**
 * The shared backend. Redis being down, restarting or slow never fails a request: reads go to the
 * database, writes are acknowledged. After any failed or late command the instance stops reading
 * from Redis until a probe answers in time. An invalidation that failed leaves it `dirty`: the probe
 * then moves every instance to a new epoch, so nothing cached before that write can be served.
 */
export class RedisCache extends GenerationalCache {
  readonly backend = 'redis'
  private readonly client
  private suspended = false
  private dirty = false
  private reported: CacheHealth = 'ok'
  private recoveryTimer: NodeJS.Timeout | undefined
  private connecting: Promise<unknown> | undefined

  constructor(
    private readonly options: RedisCacheOptions,
    private readonly logger: Logger,
  ) {
    super()
    this.client = createClient({
      ...resilientClientOptions(options.url, options.timeoutMs),
      scripts: { lookup: lookupScript, invalidate: invalidateScript, newEpoch: newEpochScript },
    })
    this.client.on('error', (error: Error) => this.report(error))
    this.client.on('ready', () => void this.recover())
  }

  /** Connects in the background: the API serves from the database until Redis answers. */
  start(): void {
    this.connecting = this.client.connect().catch((error: Error) => this.report(error))
  }

  private command<T>(run: () => Promise<T>): Promise<T> {
    return withDeadline(run, this.options.timeoutMs)
  }

  private failed(error: unknown): void {
    this.stats.errors++
    this.suspended = true
    this.report(error as Error)
    this.scheduleRecovery()
  }

  private report(error?: Error): void {
    const now = this.health()
    if (now === this.reported) return
    this.reported = now
    if (now === 'ok') this.logger.info('cache available again')
    else this.logger.warn({ err: error }, 'cache degraded: serving from the database until Redis is back')
  }

  private scheduleRecovery(): void {
    this.recoveryTimer ??= setTimeout(() => {
      this.recoveryTimer = undefined
      void this.recover()
    }, 500)
  }

  private async recover(): Promise<void> {
    if (!this.client.isReady) return this.scheduleRecovery()
    try {
      if (this.dirty) await this.command(() => this.client.newEpoch(this.options.prefix, epochTtlSeconds))
      else await this.command(() => this.client.ping())
      this.dirty = false
      this.suspended = false
      this.report()
    } catch {
      this.stats.errors++
      this.scheduleRecovery()
    }
  }

  protected async lookup(scope: string, variant: string) {
    if (this.suspended || this.dirty || !this.client.isReady) return undefined
    try {
      const reply = await this.command(() => this.client.lookup(this.options.prefix, epochTtlSeconds, scope, variant))
      const [key, value] = reply as [string | null, string | null]
      if (key === null) return undefined
      return { key, value: value ?? undefined, readAt: Date.now() }
    } catch (error) {
      this.failed(error)
      return undefined
    }
  }

  protected store(key: string, value: string): void {
    const expiration = { type: 'EX', value: this.options.ttlSeconds } as const
    this.command(() => this.client.set(key, value, { expiration })).catch((error) => this.failed(error))
  }

  /** Sent even while suspended: if Redis takes it late, it still applies it before later commands. */
  async invalidate(scopes: string[]): Promise<void> {
    try {
      const generationTtl = this.options.ttlSeconds + generationSlackSeconds
      await this.command(() => this.client.invalidate(this.options.prefix, epochTtlSeconds, generationTtl, scopes))
    } catch (error) {
      this.dirty = true
      this.failed(error)
    }
  }

  health(): CacheHealth {
    return this.client.isReady && !this.suspended && !this.dirty ? 'ok' : 'degraded'
  }

  async close(): Promise<void> {
    clearTimeout(this.recoveryTimer)
    // Destroying a client while its first connection is being set up leaves that socket open.
    await this.command(() => this.connecting ?? Promise.resolve()).catch(() => {})
    if (this.client.isReady) await this.command(() => this.client.close()).catch(() => this.client.destroy())
    else if (this.client.isOpen) this.client.destroy()
  }
}
