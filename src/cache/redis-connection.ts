/** Reconnection attempts are at most this far apart (plus jitter) while Redis is away. */
const reconnectDelayMaxMs = 1000

/**
 * node-redis client options for a Redis that must never hold a request up: no offline queue (a
 * command fails at once while disconnected), a bounded queue, and reconnection with capped backoff.
 * Callers put their own deadline on each command (withDeadline): node-redis's own 5 s timeout would
 * keep an AbortSignal and its timer alive for 5 s after every command, tens of MB at a few
 * thousand requests per second.
 */
export function resilientClientOptions(url: string, timeoutMs: number) {
  return {
    url,
    disableOfflineQueue: true,
    commandsQueueMaxLength: 10_000,
    commandOptions: { timeout: 0 },
    socket: {
      connectTimeout: Math.max(timeoutMs, 1000),
      reconnectStrategy: (retries: number) => Math.min(50 * 2 ** retries, reconnectDelayMaxMs) + Math.floor(Math.random() * 100),
    },
  }
}

export class RedisTimeoutError extends Error {
  override name = 'RedisTimeoutError'
}

/** node-redis's own command timeout does not end a command already written to a stalled server. */
export function withDeadline<T>(work: () => Promise<T>, timeoutMs: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new RedisTimeoutError(`no answer within ${timeoutMs} ms`)), timeoutMs)
  })
  return Promise.race([work(), late]).finally(() => clearTimeout(timer))
}
