import type { FastifyInstance } from 'fastify'
import { HttpProblem } from './problem.js'

const strictUtf8 = new TextDecoder('utf-8', { fatal: true })

/** Whether arrays and objects in a JSON text nest deeper than `maxDepth`, found in one pass without parsing. */
export function nestsDeeperThan(text: string, maxDepth: number): boolean {
  let depth = 0
  let inString = false
  for (let index = 0; index < text.length; index++) {
    const char = text.charCodeAt(index)
    if (inString) {
      if (char === 0x5c) index++
      else if (char === 0x22) inString = false
    } else if (char === 0x22) {
      inString = true
    } else if (char === 0x7b || char === 0x5b) {
      if (++depth > maxDepth) return true
    } else if (char === 0x7d || char === 0x5d) {
      depth--
    }
  }
  return false
}

/**
 * JSON bodies must be valid UTF-8 (a replacement character would silently change what is stored) and
 * nest at most `maxDepth` levels, checked before the parser sees them; then Fastify's own parser runs,
 * which refuses `__proto__` and `constructor.prototype` keys.
 */
export function useJsonBodyParser(app: FastifyInstance, maxDepth: number): void {
  const parse = app.getDefaultJsonParser('error', 'error')
  app.removeContentTypeParser('application/json')
  app.addContentTypeParser('application/json', { parseAs: 'buffer' }, (request, body: Buffer, done) => {
    let text: string
    try {
      text = strictUtf8.decode(body)
    } catch {
      done(new HttpProblem(400, 'The body is not valid UTF-8.', '/problems/malformed-json'), undefined)
      return
    }
    if (nestsDeeperThan(text, maxDepth)) {
      done(new HttpProblem(400, `The body nests deeper than ${maxDepth} levels.`, '/problems/body-too-deep'), undefined)
      return
    }
    parse(request, text, done)
  })
}
