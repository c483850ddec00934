/**
 * The API's cache as its own counters (GET /metrics, cache_lookups_total) report it. A Redis cache
 * whose epoch is new serves nothing for its first seconds (src/cache/redis-cache.ts, "settling"):
 * a cached scenario filled then would measure misses.
 */
export type CacheLookups = Record<'hit' | 'miss' | 'error', number>

export async function cacheLookups(url: string): Promise<CacheLookups> {
  const text = await (await fetch(`${url}/metrics`)).text()
  const count = (result: string) => Number(new RegExp(`^cache_lookups_total\\{result="${result}"\\} (\\d+)`, 'm').exec(text)?.[1] ?? 0)
  return { hit: count('hit'), miss: count('miss'), error: count('error') }
}

/** Waits until a read is a hit. */
export async function cacheSettled(url: string, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  const before = (await cacheLookups(url)).hit
  for (;;) {
    await (await fetch(`${url}/users/1`)).arrayBuffer()
    await (await fetch(`${url}/users/1`)).arrayBuffer()
    if ((await cacheLookups(url)).hit > before) return
    if (Date.now() > deadline) throw new Error(`the API's cache served no hit within ${timeoutMs} ms`)
    await new Promise((resolve) => setTimeout(resolve, 200))
  }
}
