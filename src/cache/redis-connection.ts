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

interface Deadline {
  at: number
  /** Removed once the command has answered. */
  reject?: (error: Error) => void
}

/**
 * The commands waiting for an answer under one timeout, oldest first, so deadlines come in order:
 * one timer, armed for the oldest command still waiting, serves all of them, instead of a timer, a
 * race and a `finally` per command. The timer never holds the process open. Redis answers a
 * connection's commands in order, so answered commands leave from the front at once: the queue holds
 * those in flight, not every command of the last `timeoutMs` (thousands, which every minor garbage
 * collection would copy until they are old enough to be promoted).
 */
class DeadlineQueue {
  private readonly waiting: Deadline[] = []
  private timer: NodeJS.Timeout | undefined

  constructor(private readonly timeoutMs: number) {}

  add(reject: (error: Error) => void): Deadline {
    const deadline: Deadline = { at: performance.now() + this.timeoutMs, reject }
    this.waiting.push(deadline)
    this.timer ??= setTimeout(this.expire, this.timeoutMs).unref()
    return deadline
  }

  answered(deadline: Deadline): void {
    deadline.reject = undefined
    const waiting = this.waiting
    while (waiting.length > 0 && waiting[0]!.reject === undefined) waiting.shift()
  }

  private readonly expire = () => {
    const now = performance.now()
    let ended = 0
    for (const deadline of this.waiting) {
      if (deadline.reject && deadline.at > now) break
      ended++
      deadline.reject?.(new RedisTimeoutError(`no answer within ${this.timeoutMs} ms`))
    }
    this.waiting.splice(0, ended)
    const oldest = this.waiting[0]
    this.timer = oldest && setTimeout(this.expire, Math.ceil(oldest.at - now)).unref()
  }
}

const deadlineQueues = new Map<number, DeadlineQueue>()

/** node-redis's own command timeout does not end a command already written to a stalled server. */
export function withDeadline<T>(work: () => Promise<T>, timeoutMs: number): Promise<T> {
  let queue = deadlineQueues.get(timeoutMs)
  if (!queue) deadlineQueues.set(timeoutMs, (queue = new DeadlineQueue(timeoutMs)))
  const deadlines = queue
  return new Promise<T>((resolve, reject) => {
    const deadline = deadlines.add(reject)
    work().then(
      (value) => {
        deadlines.answered(deadline)
        resolve(value)
      },
      (error: unknown) => {
        deadlines.answered(deadline)
        reject(error)
      },
    )
  })
}
