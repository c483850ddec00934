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
 * The first key that appears twice in one object of a JSON text, in one pass, or undefined. JSON.parse
 * keeps the last of them, so `{"email":"a@x","email":"b@y"}` would mean one thing to a proxy or log
 * reader that keeps the first and another here. A text that is not JSON gives nonsense here and is
 * refused by the parser next.
 */
export function duplicateKey(text: string): string | undefined {
  const keysOfOpenObjects: (Set<string> | undefined)[] = []
  let atKey = false
  for (let index = 0; index < text.length; index++) {
    const char = text.charCodeAt(index)
    if (char === 0x22) {
      let end = index + 1
      while (end < text.length && text.charCodeAt(end) !== 0x22) end += text.charCodeAt(end) === 0x5c ? 2 : 1
      const keys = keysOfOpenObjects.at(-1)
      if (atKey && keys) {
        let key: string
        try {
          key = JSON.parse(text.slice(index, end + 1)) as string
        } catch {
          return undefined
        }
        if (keys.has(key)) return key
        keys.add(key)
        atKey = false
      }
      index = end
    } else if (char === 0x7b) {
      keysOfOpenObjects.push(new Set())
      atKey = true
    } else if (char === 0x5b) {
      keysOfOpenObjects.push(undefined)
      atKey = false
    } else if (char === 0x7d || char === 0x5d) {
      keysOfOpenObjects.pop()
      atKey = false
    } else if (char === 0x2c) {
      atKey = keysOfOpenObjects.at(-1) !== undefined
    }
  }
  return undefined
}

/**
 * JSON bodies must be valid UTF-8 (a replacement character would silently change what is stored) and
 * nest at most `maxDepth` levels and name no key twice in one object, checked before the parser sees
 * them; then Fastify's own parser runs, which refuses `__proto__` and `constructor.prototype` keys.
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
    const repeated = duplicateKey(text)
    if (repeated !== undefined) {
      const shown = JSON.stringify(repeated.length > 64 ? `${repeated.slice(0, 64)}…` : repeated)
      done(new HttpProblem(400, `The body has a duplicate key: ${shown}.`, '/problems/malformed-json'), undefined)
      return
    }
    parse(request, text, done)
  })
}
