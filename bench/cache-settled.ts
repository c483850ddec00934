/**
 * A Redis cache whose epoch is new serves nothing for its first seconds (src/cache/redis-cache.ts,
 * "settling"): a cached scenario filled then would measure misses. Waits until a read is a hit,
 * as the API's own counter (GET /metrics, cache_lookups_total) says.
 */
const hitsLine = /^cache_lookups_total\{result="hit"\} (\d+)/m

async function hits(url: string): Promise<number> {
  return Number(hitsLine.exec(await (await fetch(`${url}/metrics`)).text())?.[1] ?? 0)
}

export async function cacheSettled(url: string, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  const before = await hits(url)
  for (;;) {
    await (await fetch(`${url}/users/1`)).arrayBuffer()
    await (await fetch(`${url}/users/1`)).arrayBuffer()
    if ((await hits(url)) > before) return
    if (Date.now() > deadline) throw new Error(`the API's cache served no hit within ${timeoutMs} ms`)
    await new Promise((resolve) => setTimeout(resolve, 200))
  }
}
