import { randomUUID } from 'node:crypto'
import type { IncomingMessage } from 'node:http'
import { LogController, type FastifyReply, type FastifyRequest } from 'fastify'
import { pino, type DestinationStream, type Logger, type LoggerOptions } from 'pino'

const acceptedRequestId = /^[\w.:@-]{1,128}$/

/** Keeps a caller's X-Request-Id when it is a plain token, so one id follows a request across services. */
export function requestId(request: IncomingMessage): string {
  const incoming = request.headers['x-request-id']
  return typeof incoming === 'string' && acceptedRequestId.test(incoming) ? incoming : randomUUID()
}

/** Only a query string with one of these can have an `email` parameter (its name may be percent-encoded). */
const mayNameEmail = /mail|%/i

/** A parameter's name as the query-string parser reads it; as written when it is not valid percent-encoding. */
function decodedName(name: string): string {
  try {
    return decodeURIComponent(name.replaceAll('+', ' '))
  } catch {
    return name
  }
}

/** Emails are personal data: they stay out of the logs, query strings included. */
export function withoutPersonalData(url: string): string {
  const start = url.indexOf('?')
  if (start === -1) return url
  const query = url.slice(start + 1)
  if (!mayNameEmail.test(query)) return url
  const parameters = query.split('&').map((parameter) => {
    const separator = parameter.indexOf('=')
    if (separator === -1) return parameter
    const name = parameter.slice(0, separator)
    return decodedName(name).toLowerCase() === 'email' ? `${name}=[redacted]` : parameter
  })
  return `${url.slice(0, start + 1)}${parameters.join('&')}`
}

/** JSON lines on stdout, or on `destination` (tests read what was logged); one write may hold several lines. */
export function createLogger(level: string, destination?: DestinationStream): Logger {
  const options: LoggerOptions = {
    level,
    redact: { paths: ['req.headers.authorization', 'req.headers.cookie'], censor: '[redacted]' },
    serializers: {
      req: (request: FastifyRequest) => ({
        method: request.method,
        url: withoutPersonalData(request.url),
        remoteAddress: request.ip,
      }),
    },
  }
  // Asynchronous stdout: a write no longer blocks each request; pino flushes what is pending when the
  // process exits.
  return pino(options, destination ?? pino.destination({ dest: 1, sync: false }))
}

const { chindingsSym, streamSym } = pino.symbols
const infoLevel = pino.levels.values.info!
const flushAfterMs = 10
const flushAtLength = 64 * 1024

/**
 * One access-log line per request, when it completes, instead of Fastify's two. The line of a request
 * that succeeded always has the same shape, so it is written as pino would write it, without pino's
 * generic path (serializers, redaction of fields it never has, stringifying nested objects): about 6 %
 * of the busy time of a cached read. The request's own logger still gives the
 * bindings (pid, hostname, reqId) and the level check; the lines go to the app logger's destination.
 *
 * The lines go to the destination together, `flushAfterMs` after the first of them (sooner once
 * `flushAtLength` characters wait; at once before an error line and when the app closes). Line by
 * line, sonic-boom measured (so copied) all the lines still waiting for its previous write each time
 * one was added: under load a tenth of what a cached list read allocated. A write costs about the
 * same whatever its size (a hand-off to libuv's thread pool, a pipe write that wakes the log
 * collector): a write every 10 ms instead of every turn of the event loop took a cached read's CPU
 * to 96–97 % of what it was (bench/results/2026-11-26-compare.md).
 */
export class AccessLog extends LogController {
  private lines = ''
  private flushTimer: NodeJS.Timeout | undefined
  /** Where the app's logger, and so every request's, writes. */
  private readonly destination: DestinationStream
  private readonly flushLater = () => this.flush()

  constructor(logger: Logger) {
    super()
    this.destination = (logger as unknown as Record<symbol, DestinationStream>)[streamSym]!
  }

  override incomingRequest(): void {}

  override requestCompleted(error: Error | null | undefined, request: FastifyRequest, reply: FastifyReply): void {
    const log = reply.log as Logger
    if (error) {
      this.flush()
      const line = { req: request, res: { statusCode: reply.statusCode }, responseTime: reply.elapsedTime }
      return void log.error({ ...line, err: error }, 'request errored')
    }
    if (!log.isLevelEnabled('info')) return
    if (this.lines === '') this.flushTimer = setTimeout(this.flushLater, flushAfterMs)
    const req = `{"method":${JSON.stringify(request.method)},"url":${JSON.stringify(withoutPersonalData(request.url))},"remoteAddress":${JSON.stringify(request.ip)}}`
    const bindings = (log as unknown as Record<symbol, string>)[chindingsSym]
    this.lines +=
      `{"level":${infoLevel},"time":${Date.now()}${bindings},"req":${req},"res":{"statusCode":${reply.statusCode}},` +
      `"responseTime":${reply.elapsedTime},"msg":"request completed"}\n`
    if (this.lines.length >= flushAtLength) this.flush()
  }

  /** Hands the lines not written yet to the destination (the app calls it when it closes). */
  flush(): void {
    if (this.lines === '') return
    clearTimeout(this.flushTimer)
    this.destination.write(this.lines)
    this.lines = ''
  }
}
