import type { Logger } from 'pino'

/** What the check needs of a node-redis client. */
interface InspectableRedis {
  info(): Promise<unknown>
  configGet(parameters: string[]): Promise<Record<string, string>>
}

/** Every policy only ever deletes keys, and the cache stays correct whatever it deletes. */
const evictionPolicies = new Set([
  'noeviction',
  'allkeys-lru',
  'allkeys-lfu',
  'allkeys-random',
  'volatile-lru',
  'volatile-lfu',
  'volatile-random',
  'volatile-ttl',
])

function infoFields(text: string): Map<string, string> {
  const fields = new Map<string, string>()
  for (const line of text.split('\r\n')) {
    const colon = line.indexOf(':')
    if (colon > 0 && !line.startsWith('#')) fields.set(line.slice(0, colon), line.slice(colon + 1))
  }
  return fields
}

/**
 * Logs one line at start: the Redis settings that matter to the cache, and which of them it does not
 * support (README, "Cache"). CONFIG GET is often refused on managed Redis: INFO tells most of it.
 */
export async function checkRedisConfiguration(client: InspectableRedis, logger: Logger): Promise<void> {
  const info = infoFields(String(await client.info()))
  const version = info.get('redis_version') ?? 'unknown'
  const policy = info.get('maxmemory_policy') ?? 'unknown'
  const redis = { version, maxmemory: Number(info.get('maxmemory') ?? 0), maxmemoryPolicy: policy }
  const unsupported: string[] = []

  if (Number(version.split('.')[0]) < 7) unsupported.push(`Redis ${version} (the cache is tested with Redis 7)`)
  if (info.get('cluster_enabled') === '1') unsupported.push('Redis Cluster (the cache scripts use keys of several slots)')
  if (info.get('role') !== 'master') unsupported.push(`role ${info.get('role')} (the cache must write to the primary)`)
  if (!evictionPolicies.has(policy)) unsupported.push(`maxmemory-policy ${policy}`)

  let persistence: string
  try {
    const config = await client.configGet(['save', 'appendonly', 'appendfsync'])
    if (config.appendonly === 'yes') persistence = `AOF, appendfsync ${config.appendfsync}`
    else persistence = config.save ? `RDB snapshots (save "${config.save}")` : 'none'
    if (persistence !== 'none' && persistence !== 'AOF, appendfsync always') {
      unsupported.push(`persistence ${persistence} (after a crash Redis restores keys older than later writes)`)
    }
  } catch {
    persistence = 'unknown (CONFIG GET refused)'
  }

  if (unsupported.length === 0) {
    logger.info({ redis: { ...redis, persistence } }, 'cache: Redis configuration supported')
  } else {
    logger.warn(
      { redis: { ...redis, persistence }, unsupported },
      `cache: Redis configuration not supported, cached reads may be stale: ${unsupported.join('; ')}`,
    )
  }
}
