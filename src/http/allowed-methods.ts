import type { FastifyInstance } from 'fastify'
import FindMyWay from 'find-my-way'

/** Router options of the app, shared with the lookup below so both read a path the same way. */
export const routerOptions = { ignoreTrailingSlash: true }

/**
 * Records the methods of every route as it is added, to tell a known path asked with a method it
 * does not answer (405) from an unknown path (404). Catch-all routes (CORS preflight `*`) are left out.
 * Call before any route is registered.
 */
export function trackAllowedMethods(app: FastifyInstance): (path: string) => string[] {
  const paths = FindMyWay<FindMyWay.HTTPVersion.V1>(routerOptions)
  const methodsByUrl = new Map<string, Set<string>>()
  app.addHook('onRoute', (route) => {
    if (route.url === '*' || route.url === '/*') return
    let methods = methodsByUrl.get(route.url)
    if (!methods) {
      methods = new Set()
      methodsByUrl.set(route.url, methods)
      paths.on('GET', route.url, () => {}, methods)
    }
    for (const method of [route.method].flat()) methods.add(method)
    if (methods.has('GET') && route.exposeHeadRoute !== false) methods.add('HEAD')
  })
  return (path) => [...((paths.find('GET', path)?.store as Set<string> | undefined) ?? [])]
}
