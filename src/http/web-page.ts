import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import fastifyStatic from '@fastify/static'
import type { FastifyInstance, FastifyRequest } from 'fastify'

/** Where `npm run build` puts the page (web/), the same from src/http and dist/http. */
export const webRoot = fileURLToPath(new URL('../../dist/web/', import.meta.url))

/** The page runs its own bundled script and stylesheet only: no inline or eval script, no inline style. */
export const pageContentSecurityPolicy = [
  "default-src 'self'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "object-src 'none'",
  "base-uri 'none'",
  "form-action 'self'",
  "frame-ancestors 'none'",
].join('; ')

const immutable = 'public, max-age=31536000, immutable'

/** The page and its assets hold no data, so they load without the token even when reads need one. */
export function isWebPageRequest(request: FastifyRequest): boolean {
  const url = request.routeOptions.url
  return url === '/' || url === '/index.html' || url?.startsWith('/assets/') === true
}

/**
 * Serves the built page at `/` and its assets under /assets/. Asset names carry a content hash, so
 * they are cached for a year; index.html is revalidated (ETag) on every load. Brotli and gzip
 * copies were made at build time.
 */
export async function registerWebPage(app: FastifyInstance, root = webRoot): Promise<void> {
  if (!existsSync(join(root, 'index.html'))) {
    app.log.warn({ root }, 'the web page is not built (npm run build): / answers 404')
    return
  }
  const assets = join(root, 'assets')
  await app.register(async (page) => {
    page.addHook('onRequest', (_request, reply, done) => {
      reply.header('content-security-policy', pageContentSecurityPolicy)
      done()
    })
    await page.register(fastifyStatic, {
      root,
      wildcard: false,
      index: false,
      globIgnore: ['**/*.br', '**/*.gz'],
      preCompressed: true,
      cacheControl: false,
      setHeaders(reply, path) {
        reply.header('cache-control', path.startsWith(assets) ? immutable : 'no-cache')
      },
    })
    page.get('/', { schema: { hide: true } }, (_request, reply) => reply.sendFile('index.html'))
  })
}
