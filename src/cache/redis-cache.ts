import { createClient, defineScript, ErrorReply, RESP_TYPES } from 'redis'
import type { Logger } from 'pino'
import { resilientClientOptions, withDeadline } from './redis-connection.js'
import { checkRedisConfiguration } from './redis-configuration.js'
import { GenerationalCache, generationSlackSeconds, type CachedValue, type CacheHealth, type Lookup } from './response-cache.js'

/*
 * Keys, under the configured prefix P (every one of them may disappear at any moment: eviction, TTL,
 * DEL, FLUSHDB; none of them may come back with an older value: see "Redis settings" in the README):
 *   P epoch                     E, a TIME-based number (microseconds), made afresh whenever it is
 *                               missing, or by an instance that could not write an invalidation.
 *                               For a few seconds after E nothing is read or stored ("settling"), so
 *                               that instances still reconnecting with an invalidation they could not
 *                               write have time to move everyone to a newer epoch first
 *   P E:scope:gen               the scope's generation G; a reader that finds it missing creates it
 *                               from TIME, so a lost generation is replaced by a number above every
 *                               one used before for the scope, and nothing stored before is read again
 *   P E:scope:v:variant         "G <value>": the cached value, stamped with the generation it was
 *                               loaded in; it counts only while G is still the scope's generation
 *
 * A read is one MGET of the three keys (atomic, so the stamp is compared with the generation of the
 * same instant), from an epoch this instance has seen settled. Anything else (a new or missing epoch,
 * a missing generation) goes through the lookup script, which settles, creates and reports.
 *
 * Redis full (maxmemory reached, nothing to evict): Redis refuses commands that need memory but runs
 * those that free it. A write that cannot move a generation forward deletes it instead, and a reader
 * that cannot create a missing generation (or epoch) does not use the cache for that scope. Either
 * way no value stored before the write is reachable, and Redis never goes above maxmemory for us.
 * The scripts carry no shebang on purpose: flagged scripts are refused whole while Redis is full,
 * unflagged ones run and get the refusal per command (redis.pcall), so they can fall back to DEL.
 */
const settlingMicroseconds = 3_000_000

const helpers = `
local function now() local t = redis.call('TIME') return tonumber(t[1]) * 1000000 + tonumber(t[2]) end
local function str(n) return string.format('%.0f', n) end
local function refused(reply) return type(reply) == 'table' and reply.err ~= nil end
`

/**
 * Epoch and generation null when the cache must not be used now (epoch null alone: not yet settled);
 * refused 1 when that is because Redis is full.
 */
type LookupReply = [epoch: string | null, generation: string | null, stamped: string | null, refused: number]

const lookupScript = defineScript({
  NUMBER_OF_KEYS: 0,
  SCRIPT: `${helpers}
local prefix, epochTtl, genTtl, scope, variant = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local t = now()
local e = redis.call('GET', prefix .. 'epoch')
if not e then
  if refused(redis.pcall('SET', prefix .. 'epoch', str(t), 'EX', epochTtl)) then return { false, false, false, 1 } end
  return { false, false, false, 0 }
end
if t < tonumber(e) + ${settlingMicroseconds} then return { false, false, false, 0 } end
local base = prefix .. e .. ':' .. scope .. ':'
local gen = redis.call('GET', base .. 'gen')
if not gen then
  gen = str(t)
  if refused(redis.pcall('SET', base .. 'gen', gen, 'EX', genTtl)) then return { e, false, false, 1 } end
  return { e, gen, false, 0 }
end
return { e, gen, redis.call('GET', base .. 'v:' .. variant), 0 }`,
  parseCommand(parser, prefix: string, epochTtl: number, generationTtl: number, scope: string, variant: string) {
    parser.push(prefix, String(epochTtl), String(generationTtl), scope, variant)
  },
  transformReply: (reply: unknown) => reply as LookupReply,
})

/**
 * Moves each scope's generation past every number it had (at least to TIME). A missing epoch or
 * generation needs nothing: the reader that recreates it starts above everything stored so far.
 * Replies how many generations it deleted because Redis was full (once refused, it only deletes:
 * after a first write Redis would let the script use memory past maxmemory).
 */
const invalidateScript = defineScript({
  NUMBER_OF_KEYS: 0,
  SCRIPT: `${helpers}
local prefix, genTtl = ARGV[1], ARGV[2]
local e = redis.call('GET', prefix .. 'epoch')
if not e then return 0 end
local t, deleted = now(), 0
for i = 3, #ARGV do
  local key = prefix .. e .. ':' .. ARGV[i] .. ':gen'
  local gen = redis.call('GET', key)
  if gen and (deleted > 0 or refused(redis.pcall('SET', key, str(math.max(tonumber(gen) + 1, t)), 'EX', genTtl))) then
    redis.call('DEL', key)
    deleted = deleted + 1
  end
end
return deleted`,
  parseCommand(parser, prefix: string, generationTtl: number, scopes: string[]) {
    parser.push(prefix, String(generationTtl), ...scopes)
  },
  transformReply: (reply: unknown) => reply as number,
})

const newEpochScript = defineScript({
  NUMBER_OF_KEYS: 0,
  SCRIPT: `${helpers}
local key = ARGV[1] .. 'epoch'
local old = redis.call('GET', key)
local e = now()
if old and tonumber(old) >= e then e = tonumber(old) + 1 end
if refused(redis.pcall('SET', key, str(e), 'EX', ARGV[2])) then redis.call('DEL', key) end
return 1`,
  parseCommand(parser, prefix: string, epochTtl: number) {
    parser.push(prefix, String(epochTtl))
  },
  transformReply: (reply: unknown) => reply as number,
})

export interface RedisCacheOptions {
  url: string
  prefix: string
  ttlSeconds: number
  timeoutMs: number
}

const epochTtlSeconds = 7 * 24 * 3600
/** While Redis stays full, saying so once a minute is enough. */
const fullReportIntervalMs = 60_000

const isOutOfMemory = (error: unknown) => error instanceof ErrorReply && error.message.startsWith('OOM')

/** Where a value loaded in generation `generation` is stored. */
interface RedisSlot {
  key: string
  generation: string
}

/** `stamped` is "<generation> <value>": the value when the generation is `generation`. */
function valueOf(stamped: CachedValue | null, generation: string): CachedValue | undefined {
  const length = generation.length
  if (typeof stamped === 'string') {
    return stamped.charCodeAt(length) === 0x20 && stamped.startsWith(generation) ? stamped.slice(length + 1) : undefined
  }
  if (stamped === null || stamped[length] !== 0x20 || stamped.toString('latin1', 0, length) !== generation) return undefined
  return stamped.subarray(length + 1)
}

/**
 * The shared backend. Redis being down, restarting or slow never fails a request: reads go to the
 * database, writes are acknowledged. After any failed or late command the instance stops reading
 * from Redis until a probe answers in time. An invalidation that failed leaves it `dirty`: the probe
 * then moves every instance to a new epoch, so nothing cached before that write can be served.
 * Redis being full is not a failure: what it refuses to store is read from the database.
 */
export class RedisCache extends GenerationalCache<RedisSlot> {
  readonly backend = 'redis'
  private readonly client
  /** The same connection, bulk strings as Buffers: for large values. */
  private readonly bufferClient
  /** The last epoch a lookup found settled: reads under it need no script. */
  private settledEpoch: string | undefined
  private suspended = false
  private dirty = false
  private reported: CacheHealth = 'ok'
  private recoveryTimer: NodeJS.Timeout | undefined
  private connecting: Promise<unknown> | undefined
  private configurationChecked = false
  private refusedForMemory = 0
  private fullReportedAt = -Infinity
  /** The invalidation in flight, and the scopes of the writes that committed since, sent together when it returns. */
  private invalidating: Promise<void> | undefined
  private nextInvalidation: { scopes: Set<string>; sent: Promise<void> } | undefined

  constructor(
    private readonly options: RedisCacheOptions,
    private readonly logger: Logger,
  ) {
    super()
    this.client = createClient({
      ...resilientClientOptions(options.url, options.timeoutMs),
      scripts: { lookup: lookupScript, invalidate: invalidateScript, newEpoch: newEpochScript },
    })
    this.bufferClient = this.client.withTypeMapping({ [RESP_TYPES.BLOB_STRING]: Buffer })
    this.client.on('error', (error: Error) => this.report(error))
    this.client.on('ready', () => {
      void this.recover()
      if (this.configurationChecked) return
      this.configurationChecked = true
      void this.command(() => checkRedisConfiguration(this.client, this.logger)).catch(() => {})
    })
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

  /** Redis refused to store something because it is full: logged at most once a minute. */
  private full(refusals = 1): void {
    this.refusedForMemory += refusals
    if (Date.now() - this.fullReportedAt < fullReportIntervalMs) return
    this.fullReportedAt = Date.now()
    this.logger.warn(
      { refusals: this.refusedForMemory },
      'cache: Redis is full (maxmemory reached, nothing it may evict): what it refuses to store is read from the database',
    )
    this.refusedForMemory = 0
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

  /** The epoch, the scope's generation and the stamped value, in one MGET. */
  private async readKeys(keys: string[], large: boolean): Promise<[string | null, string | null, CachedValue | null]> {
    if (!large) return (await this.command(() => this.client.mGet(keys))) as [string | null, string | null, string | null]
    const [current, generation, stamped] = (await this.command(() => this.bufferClient.mGet(keys))) as (Buffer | null)[]
    return [current?.toString('latin1') ?? null, generation?.toString('latin1') ?? null, stamped ?? null]
  }

  protected async lookup(scope: string, variant: string, large: boolean): Promise<Lookup<RedisSlot> | undefined> {
    if (this.suspended || this.dirty || !this.client.isReady) return undefined
    try {
      const { prefix } = this.options
      const epoch = this.settledEpoch
      if (epoch !== undefined) {
        const base = this.scopeKeys(epoch, scope)
        const [current, generation, stamped] = await this.readKeys([`${prefix}epoch`, `${base}gen`, `${base}v:${variant}`], large)
        if (generation && current === epoch) return this.found(base, variant, generation, stamped)
      }
      const [current, generation, stamped, refused] = (await this.command(() =>
        this.client.lookup(prefix, epochTtlSeconds, this.generationTtl, scope, variant),
      )) as LookupReply
      if (current) this.settledEpoch = current
      if (!generation) {
        if (refused) this.full()
        return undefined
      }
      return this.found(this.scopeKeys(current!, scope), variant, generation, stamped)
    } catch (error) {
      this.failed(error)
      return undefined
    }
  }

  /** What the keys of `scope` under `epoch` begin with. */
  private scopeKeys(epoch: string, scope: string): string {
    return `${this.options.prefix}${epoch}:${scope}:`
  }

  private found(base: string, variant: string, generation: string, stamped: CachedValue | null): Lookup<RedisSlot> {
    return { slot: { key: `${base}v:${variant}`, generation }, value: valueOf(stamped, generation), readAt: Date.now() }
  }

  protected slotId({ key, generation }: RedisSlot): string {
    return `${key} ${generation}`
  }

  protected store({ key, generation }: RedisSlot, value: string): void {
    const expiration = { type: 'EX', value: this.options.ttlSeconds } as const
    this.command(() => this.client.set(key, `${generation} ${value}`, { expiration })).catch((error) =>
      isOutOfMemory(error) ? this.full() : this.failed(error),
    )
  }

  /**
   * At most one invalidation is in flight: the writes that commit while it is under way are invalidated together by
   * the next one, sent when it returns (it may have left before they committed, so they cannot count on it). Each
   * write is acknowledged only after a script sent after its commit has run, as if it had sent its own; a burst of
   * writes costs Redis one script per round trip instead of one per write, and a lone write waits for nothing.
   */
  invalidate(scopes: string[]): Promise<void> {
    if (this.invalidating === undefined) return this.sendInvalidation(scopes)
    let next = this.nextInvalidation
    if (next === undefined) {
      const batch = new Set<string>()
      const sent = this.invalidating.then(() => this.sendInvalidation([...batch]))
      next = this.nextInvalidation = { scopes: batch, sent }
    }
    for (const scope of scopes) next.scopes.add(scope)
    return next.sent
  }

  /** Sent even while suspended: if Redis takes it late, it still applies it before later commands. Never rejects. */
  private sendInvalidation(scopes: string[]): Promise<void> {
    this.nextInvalidation = undefined
    const sent = this.command(() => this.client.invalidate(this.options.prefix, this.generationTtl, scopes)).then(
      (deleted) => {
        if (deleted > 0) this.full(deleted)
      },
      (error: unknown) => {
        this.dirty = true
        this.failed(error)
      },
    )
    const settled: Promise<void> = sent.finally(() => {
      if (this.invalidating === settled && this.nextInvalidation === undefined) this.invalidating = undefined
    })
    this.invalidating = settled
    return sent
  }

  private get generationTtl(): number {
    return this.options.ttlSeconds + generationSlackSeconds
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
