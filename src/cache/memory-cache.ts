import { LRUCache } from 'lru-cache'
import { GenerationalCache, type CacheHealth } from './response-cache.js'

/**
 * The in-process backend, for a single instance without Redis. Same protocol as Redis: a scope
 * without a generation (never read, or evicted) gets a new one from a counter that never repeats,
 * so losing a generation never makes an older entry reachable.
 */
export class MemoryCache extends GenerationalCache<string> {
  readonly backend = 'memory'
  private readonly entries: LRUCache<string, string>
  private readonly generations: LRUCache<string, number>
  private clock = 0

  constructor(ttlSeconds: number, maxEntries: number) {
    super()
    this.entries = new LRUCache({ max: maxEntries, ttl: ttlSeconds * 1000 })
    this.generations = new LRUCache({ max: maxEntries })
  }

  protected async lookup(scope: string, variant: string) {
    let generation = this.generations.get(scope)
    if (generation === undefined) this.generations.set(scope, (generation = ++this.clock))
    const key = `${scope}:${generation}:${variant}`
    return { slot: key, value: this.entries.get(key), readAt: Date.now() }
  }

  protected slotId(key: string): string {
    return key
  }

  protected store(key: string, value: string): void {
    this.entries.set(key, value)
  }

  async invalidate(scopes: string[]): Promise<void> {
    for (const scope of scopes) this.generations.delete(scope)
  }

  health(): CacheHealth {
    return 'ok'
  }

  async close(): Promise<void> {
    this.entries.clear()
    this.generations.clear()
  }
}
