import type { FastifyRateLimitStore, FastifyRateLimitStoreCtor } from '@fastify/rate-limit'
import type { Logger } from 'pino'
import { createClient, defineScript } from 'redis'
import { resilientClientOptions, withDeadline } from '../cache/redis-connection.js'

/*
 * One fixed window per client and route namespace, as @fastify/rate-limit's own RedisStore counts
 * (store/RedisStore.js), in one atomic script that counts `count` requests at once (see
 * RedisCounters.count): the first request of a window sets its expiry; past `max`,
 * `continueExceeding` restarts the window and `exponentialBackoff` doubles it at each further
 * request. A counter found without an expiry (never left by this script) gets one, so no client can
 * stay limited for ever. Returns the count after the last request and the time left in the window
 * as the first one found it; the expiry left is the one the last request sets.
 * Expiries go to PEXPIRE formatted as integers ('%.0f'): Lua numbers are doubles, which redis.call
 * writes in exponent form past 14 digits, and PEXPIRE refuses.
 */
const countScript = defineScript({
  NUMBER_OF_KEYS: 1,
  SCRIPT: `
local window, max, count = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[5])
local continueExceeding, exponentialBackoff = ARGV[3] == '1', ARGV[4] == '1'
local current = redis.call('INCRBY', KEYS[1], count)
local windowTtl = window
local expiry
if current - count == 0 then
  expiry = window
else
  windowTtl = redis.call('PTTL', KEYS[1])
  if windowTtl < 0 then
    windowTtl = window
    expiry = window
  end
end
if continueExceeding and current > max then
  expiry = window
elseif exponentialBackoff and current > max then
  expiry = math.min(window * 2 ^ (current - max - 1), 2 ^ 53 - 1)
end
if expiry then redis.call('PEXPIRE', KEYS[1], string.format('%.0f', expiry)) end
return { current, windowTtl }`,
  parseCommand(parser, key: string, windowMs: number, max: number, continueExceeding: boolean, exponentialBackoff: boolean, count: number) {
    parser.pushKey(key)
    parser.push(String(windowMs), String(max), continueExceeding ? '1' : '0', exponentialBackoff ? '1' : '0', String(count))
  },
  transformReply(reply: unknown) {
    const [current, windowTtl] = reply as [number, number]
    return { current, windowTtl }
  },
})

/** The counter and the time left in its window, without counting: { 0, 0 } when there is none. */
const readScript = defineScript({
  NUMBER_OF_KEYS: 1,
  SCRIPT: `
local current = redis.call('GET', KEYS[1])
if not current then return { 0, 0 } end
local ttl = redis.call('PTTL', KEYS[1])
return { tonumber(current), math.max(ttl, 0) }`,
  parseCommand(parser, key: string) {
    parser.pushKey(key)
  },
  transformReply(reply: unknown) {
    const [current, ttl] = reply as [number, number]
    return { current, ttl }
  },
})

export class RateLimitCountersUnavailable extends Error {
  override name = 'RateLimitCountersUnavailable'
}

type Counted = { current: number; ttl: number }
type Callback = (error: Error | null, result?: Counted) => void

/** How one key is counted: the plugin's window and limit for it, and the store's options. */
interface CountRule {
  windowMs: number
  max: number
  continueExceeding: boolean
  exponentialBackoff: boolean
}

/**
 * What the request that made the count `current` is told, as if counted alone: a restarted or
 * doubled window past `max`, else what was left of the window when its batch was counted.
 */
function countedAs(current: number, windowTtl: number, { windowMs, max, continueExceeding, exponentialBackoff }: CountRule): Counted {
  if (current <= max) return { current, ttl: windowTtl }
  if (continueExceeding) return { current, ttl: windowMs }
  if (exponentialBackoff) return { current, ttl: Math.min(windowMs * 2 ** (current - max - 1), 2 ** 53 - 1) }
  return { current, ttl: windowTtl }
}

/** How soon a Redis that failed or answered late is asked again (a PING) before counting resumes. */
const probeDelayMs = 250

/**
 * The connection shared by every store of one app. It never holds a request up: while Redis is
 * disconnected, or after a command failed or came later than `timeoutMs` until a PING answers in
 * time again, counting fails at once and the plugin lets the request through (`skipOnError`).
 * Each change of state is logged once.
 */
class RedisCounters {
  private readonly client
  private readonly connecting: Promise<unknown>
  private suspended = false
  private available = true
  private probeTimer: NodeJS.Timeout | undefined
  private closed = false

  constructor(
    url: string,
    readonly keyPrefix: string,
    private readonly timeoutMs: number,
    private readonly logger: Logger,
  ) {
    this.client = createClient({ ...resilientClientOptions(url, timeoutMs), scripts: { count: countScript, read: readScript } })
    this.client.on('error', (error: Error) => this.report(error))
    this.client.on('ready', () => void this.probe())
    this.connecting = this.client.connect().catch((error: Error) => this.report(error))
  }

  private usable(): boolean {
    return this.client.isReady && !this.suspended
  }

  private report(error?: Error): void {
    const now = this.usable()
    if (now === this.available) return
    this.available = now
    if (now) this.logger.info('rate-limit counters available again')
    else this.logger.warn({ err: error }, 'rate-limit counters unavailable: requests are not limited until Redis is back')
  }

  private scheduleProbe(): void {
    if (this.closed) return
    this.probeTimer ??= setTimeout(() => void this.probe(), probeDelayMs)
  }

  private async probe(): Promise<void> {
    clearTimeout(this.probeTimer)
    this.probeTimer = undefined
    if (this.client.isReady) {
      try {
        await withDeadline(() => this.client.ping(), this.timeoutMs)
        this.suspended = false
        return this.report()
      } catch {
        // Still away or slow: ask again.
      }
    }
    this.scheduleProbe()
  }

  private failed(error: Error): void {
    this.suspended = true
    this.report(error)
    this.scheduleProbe()
  }

  /** Runs one script with the deadline, or fails at once while Redis is unusable. */
  run(command: (client: typeof this.client) => Promise<Counted>, callback: Callback): void {
    // Not logged from here: a request may come while the first connection is still being set up.
    if (!this.usable()) return callback(new RateLimitCountersUnavailable('Redis is unavailable'))
    withDeadline(() => command(this.client), this.timeoutMs).then(
      (counted) => callback(null, counted),
      (error: Error) => {
        this.failed(error)
        callback(error)
      },
    )
  }

  /** Per key and rule with a count in flight: the requests that came since, counted next, together. */
  private readonly queued = new Map<string, Callback[]>()

  /**
   * Counts one request, exactly as if alone, but at most one command per key is in flight: requests
   * for a key that come while its count is under way wait for it, and are then counted with one
   * INCRBY. A busy client (every request of a load test comes from one address) costs Redis one
   * script call per round trip instead of one per request; a quiet one waits for nothing.
   */
  count(key: string, rule: CountRule, callback: Callback): void {
    if (!this.usable()) return callback(new RateLimitCountersUnavailable('Redis is unavailable'))
    const batch = `${rule.windowMs}:${rule.max}:${Number(rule.continueExceeding)}${Number(rule.exponentialBackoff)}:${key}`
    const waiting = this.queued.get(batch)
    if (waiting) return void waiting.push(callback)
    this.queued.set(batch, [])
    this.countTogether(key, batch, rule, [callback])
  }

  private countTogether(key: string, batch: string, rule: CountRule, callbacks: Callback[]): void {
    const { windowMs, max, continueExceeding, exponentialBackoff } = rule
    const count = callbacks.length
    // Async, so that even a client that throws at once answers every waiting request.
    withDeadline(async () => this.client.count(key, windowMs, max, continueExceeding, exponentialBackoff, count), this.timeoutMs).then(
      ({ current, windowTtl }) => {
        callbacks.forEach((callback, i) => callback(null, countedAs(current - count + 1 + i, windowTtl, rule)))
        this.countNext(key, batch, rule)
      },
      (error: Error) => {
        this.failed(error)
        for (const callback of callbacks) callback(error)
        this.countNext(key, batch, rule)
      },
    )
  }

  private countNext(key: string, batch: string, rule: CountRule): void {
    const waiting = this.queued.get(batch)!
    if (waiting.length === 0) return void this.queued.delete(batch)
    if (!this.usable()) {
      this.queued.delete(batch)
      const error = new RateLimitCountersUnavailable('Redis is unavailable')
      for (const callback of waiting) callback(error)
      return
    }
    this.queued.set(batch, [])
    this.countTogether(key, batch, rule, waiting)
  }

  async close(): Promise<void> {
    this.closed = true
    clearTimeout(this.probeTimer)
    // Destroying a client while its first connection is being set up leaves that socket open.
    await withDeadline(() => this.connecting, this.timeoutMs).catch(() => {})
    if (this.client.isReady) await withDeadline(() => this.client.close(), this.timeoutMs).catch(() => this.client.destroy())
    else if (this.client.isOpen) this.client.destroy()
  }
}

/** What the plugin passes to a store: its global options, or a route's merged with them. */
interface StoreOptions {
  continueExceeding?: boolean
  exponentialBackoff?: boolean
  routeInfo?: { method?: string | string[]; url?: string }
}

/** @fastify/rate-limit's store contract (incr, read, child) over the shared counters. */
class RedisRateLimitStore implements FastifyRateLimitStore {
  private readonly continueExceeding: boolean
  private readonly exponentialBackoff: boolean

  constructor(
    private readonly counters: RedisCounters,
    private readonly keyPrefix: string,
    options: StoreOptions,
  ) {
    this.continueExceeding = options.continueExceeding === true
    this.exponentialBackoff = options.exponentialBackoff === true
  }

  incr(key: string, callback: Callback, timeWindow: number, max: number): void {
    const { continueExceeding, exponentialBackoff } = this
    this.counters.count(`${this.keyPrefix}${key}`, { windowMs: timeWindow, max, continueExceeding, exponentialBackoff }, callback)
  }

  read(key: string, callback: Callback): void {
    this.counters.run((client) => client.read(`${this.keyPrefix}${key}`), callback)
  }

  /**
   * A route with a rate-limit config of its own counts apart, under its method and URL (as
   * RedisStore does). The plugin passes its options merged with the route's, not the route options
   * its types declare.
   */
  child(routeOptions: object): RedisRateLimitStore {
    const options = routeOptions as StoreOptions
    const { method = '', url = '' } = options.routeInfo ?? {}
    return new RedisRateLimitStore(this.counters, `${this.keyPrefix}${String(method)}${url}-`, options)
  }
}

export interface RedisRateLimitCounters {
  /** The store class @fastify/rate-limit instantiates (with its global options). */
  Store: FastifyRateLimitStoreCtor
  close(): Promise<void>
}

/**
 * Rate-limit counters in Redis under `keyPrefix`, shared by every instance and worker process.
 * Connects in the background; `close` ends the connection.
 */
export function redisRateLimitCounters(url: string, keyPrefix: string, timeoutMs: number, logger: Logger): RedisRateLimitCounters {
  const counters = new RedisCounters(url, keyPrefix, timeoutMs, logger)
  return {
    Store: class extends RedisRateLimitStore {
      constructor(options: StoreOptions) {
        super(counters, counters.keyPrefix, options)
      }
    },
    close: () => counters.close(),
  }
}
