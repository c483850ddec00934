import { createHash, timingSafeEqual } from 'node:crypto'
import type { IncomingMessage, ServerResponse } from 'node:http'
import cors from '@fastify/cors'
import rateLimit from '@fastify/rate-limit'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import helmet, { type HelmetOptions } from 'helmet'
import type { Logger } from 'pino'
import type { Settings } from '../config/settings.js'
import { healthPaths } from './health.js'
import { HttpProblem } from './problem.js'
import { redisRateLimitCounters } from './rate-limit-store.js'
import { isWebPageRequest } from './web-page.js'

export const writeMethods = new Set(['POST', 'PUT', 'PATCH', 'DELETE'])
const realm = 'Bearer realm="users"'

const sha256 = (text: string) => createHash('sha256').update(text).digest()
const isHealthCheck = (request: FastifyRequest) => healthPaths.has(request.routeOptions.url ?? '')

/**
 * Bearer-token check for writes, and for reads too when `readsToo`. Both sides are hashed first so
 * `timingSafeEqual` compares equal lengths and the time taken says nothing about the token.
 */
function requireToken(app: FastifyInstance, token: string, readsToo: boolean): void {
  const expected = sha256(token)
  const needsToken = (request: FastifyRequest) =>
    writeMethods.has(request.method) ||
    (readsToo && request.method !== 'OPTIONS' && !isHealthCheck(request) && !isWebPageRequest(request))

  app.addHook('onRequest', (request, _reply, done) => {
    if (!needsToken(request)) return done()
    const presented = /^bearer +(\S+) *$/i.exec(request.headers.authorization ?? '')?.[1]
    if (presented === undefined) {
      return done(
        new HttpProblem(401, 'This request needs an `Authorization: Bearer <token>` header.', '/problems/unauthorized', {
          'www-authenticate': realm,
        }),
      )
    }
    if (!timingSafeEqual(sha256(presented), expected)) {
      return done(
        new HttpProblem(401, 'The bearer token is not valid.', '/problems/unauthorized', {
          'www-authenticate': `${realm}, error="invalid_token"`,
        }),
      )
    }
    done()
  })
}

/**
 * Helmet's headers depend on its options only, so they are worked out once, by running its
 * middleware against a response that records them. (@fastify/helmet rebuilds the middleware and
 * parses the CSP again on every request: a tenth of the cost of a cached read.)
 */
function helmetHeaders(options: HelmetOptions): Record<string, string> {
  const headers = new Map<string, string>()
  const recorder = {
    setHeader: (name: string, value: string) => void headers.set(name.toLowerCase(), value),
    removeHeader: (name: string) => void headers.delete(name.toLowerCase()),
  }
  helmet(options)({} as IncomingMessage, recorder as unknown as ServerResponse, () => {})
  return Object.fromEntries(headers)
}

/**
 * What a browser renders as a document: the web page and the Swagger UI. They get helmet's defaults (the page
 * narrows its CSP further); the service is reached over plain HTTP (behind a TLS proxy or not), so the CSP does not
 * upgrade requests, which would break /docs.
 */
const documentHeaders = Object.entries(helmetHeaders({ contentSecurityPolicy: { directives: { 'upgrade-insecure-requests': null } } }))
const isDocument = (request: FastifyRequest) => isWebPageRequest(request) || request.routeOptions.url?.startsWith('/docs') === true

/**
 * Every other answer is JSON (or problem+json), which no browser renders: the headers of OWASP's REST Security
 * Cheat Sheet, with a CSP that lets it load nothing and be framed nowhere. helmet's document-only headers (COOP,
 * Origin-Agent-Cluster, X-DNS-Prefetch-Control, X-Download-Options, X-Permitted-Cross-Domain-Policies,
 * X-XSS-Protection) have nothing to act on there; without them a cached user's answer is a third smaller.
 */
const apiHeaders = Object.entries(
  helmetHeaders({
    contentSecurityPolicy: { useDefaults: false, directives: { 'default-src': ["'none'"], 'frame-ancestors': ["'none'"] } },
    crossOriginOpenerPolicy: false,
    originAgentCluster: false,
    xDnsPrefetchControl: false,
    xDownloadOptions: false,
    xFrameOptions: { action: 'deny' },
    xPermittedCrossDomainPolicies: false,
    xXssProtection: false,
  }),
)

/** The request id and security headers, CORS, per-client rate limits and the API token: every request passes here first. */
export async function registerSecurity(app: FastifyInstance, settings: Settings): Promise<void> {
  const { apiToken, apiTokenReads, rateLimit: limit, corsOrigins } = settings.security

  // One synchronous hook, not one per concern: every request runs it. It also gives the request id
  // back, so that no other hook is needed for it.
  app.addHook('onRequest', (request, reply, done) => {
    reply.header('x-request-id', request.id)
    for (const [name, value] of isDocument(request) ? documentHeaders : apiHeaders) reply.header(name, value)
    // HTTP/1.1 requests must say which host they are for (RFC 9112, section 3.2). Node checks this
    // itself when `requireHostHeader` is on, but answers with an empty body; the app is built with it off.
    if (request.raw.httpVersion === '1.1' && request.headers.host === undefined) {
      return done(new HttpProblem(400, 'An HTTP/1.1 request needs a Host header.', '/problems/missing-host'))
    }
    done()
  })

  if (corsOrigins.length > 0) {
    await app.register(cors, {
      origin: corsOrigins,
      methods: ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE'],
      allowedHeaders: ['authorization', 'content-type', 'if-none-match', 'x-request-id'],
      exposedHeaders: ['etag', 'link', 'location', 'retry-after', 'x-request-id'],
      maxAge: 600,
    })
  }

  if (limit.max > 0) {
    const { redisUrl, prefix, timeoutMs } = settings.cache
    const counters = redisUrl && redisRateLimitCounters(redisUrl, `${prefix}rate:`, timeoutMs, app.log as Logger)
    if (counters) app.addHook('onClose', () => counters.close())
    await app.register(rateLimit, {
      global: false,
      max: limit.max,
      timeWindow: limit.windowMs,
      ...(counters ? { store: counters.Store, skipOnError: true } : {}),
      allowList: isHealthCheck,
      errorResponseBuilder: (_request, context) =>
        new HttpProblem(context.statusCode, `Too many requests; try again in ${context.after}.`, '/problems/rate-limited', {
          'retry-after': String(Math.max(1, Math.ceil(context.ttl / 1000))),
        }),
    })
    // One hook at the root also counts requests for routes that do not exist.
    app.addHook('onRequest', app.rateLimit())
  }

  if (apiToken !== undefined) requireToken(app, apiToken, apiTokenReads)
  else if (settings.env === 'production') {
    app.log.warn('API_TOKEN is not set: anyone who can reach this server can create, change and delete users')
  }
}
