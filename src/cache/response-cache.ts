/** Hit, miss and error counts, read by tests and metrics. */
export interface CacheStats {
  hits: number
  misses: number
  errors: number
}

export type CacheHealth = 'ok' | 'degraded' | 'off'

/** A cached value: a string, or a Buffer when read from Redis with `large`. */
export type CachedValue = string | Buffer

export interface ReadOptions {
  /**
   * The value is large (a page of users): Redis hands it over as a Buffer. A Buffer's bytes live
   * outside V8's heap, so the garbage collector does not copy them while requests wait.
   */
  large?: boolean
}

/**
 * A read-through cache of serialized responses that never returns data older than a completed
 * `invalidate`. Entries live under a generation per scope (and, in Redis, an epoch): invalidating
 * a scope moves it to a new generation, so a reader that loaded old data before the write can only
 * store it under a generation nobody reads any more.
 */
export interface ResponseCache {
  readonly backend: 'redis' | 'memory' | 'off'
  readonly stats: CacheStats
  /**
   * The cached value of `scope`/`variant`, else `load()`'s result, stored unless undefined.
   * Never throws for cache failures: it falls back to `load()`.
   */
  read(scope: string, variant: string, load: () => Promise<string | undefined>, options?: ReadOptions): Promise<CachedValue | undefined>
  /** Called after a committed change and before it is acknowledged. Never throws. */
  invalidate(scopes: string[]): Promise<void>
  health(): CacheHealth
  close(): Promise<void>
}

/** A value loaded later than this after its generation was read is not stored. */
export const fillDeadlineMs = 10_000
/** Generations outlive every entry stored under them, so a generation number never comes back. */
export const generationSlackSeconds = 60

export interface Lookup<Slot> {
  /** Where a value loaded now is stored, in the generation it was read in. */
  slot: Slot
  value: CachedValue | undefined
  readAt: number
}

/** Shared by the backends: the hit/miss path, one load per key at a time, and the fill deadline. */
export abstract class GenerationalCache<Slot> implements ResponseCache {
  abstract readonly backend: 'redis' | 'memory'
  readonly stats: CacheStats = { hits: 0, misses: 0, errors: 0 }
  private readonly loading = new Map<string, Promise<string | undefined>>()

  /** Scope/variant in its current generation, and its value; undefined when the cache cannot be trusted now. */
  protected abstract lookup(scope: string, variant: string, large: boolean): Promise<Lookup<Slot> | undefined>
  protected abstract store(slot: Slot, value: string): void
  /** Names a slot (scope/variant in one generation): concurrent misses of one slot make one load. */
  protected abstract slotId(slot: Slot): string
  abstract invalidate(scopes: string[]): Promise<void>
  abstract health(): CacheHealth
  abstract close(): Promise<void>

  async read(
    scope: string,
    variant: string,
    load: () => Promise<string | undefined>,
    { large = false }: ReadOptions = {},
  ): Promise<CachedValue | undefined> {
    const found = await this.lookup(scope, variant, large)
    if (!found) return load()
    if (found.value !== undefined) {
      this.stats.hits++
      return found.value
    }
    this.stats.misses++
    const id = this.slotId(found.slot)
    const pending = this.loading.get(id)
    if (pending) return pending
    const loaded = load().finally(() => this.loading.delete(id))
    this.loading.set(id, loaded)
    const value = await loaded
    if (value !== undefined && Date.now() - found.readAt < fillDeadlineMs) this.store(found.slot, value)
    return value
  }
}

export class NoCache implements ResponseCache {
  readonly backend = 'off'
  readonly stats: CacheStats = { hits: 0, misses: 0, errors: 0 }
  read(_scope: string, _variant: string, load: () => Promise<string | undefined>) {
    return load()
  }
  async invalidate() {}
  health(): CacheHealth {
    return 'off'
  }
  async close() {}
}
