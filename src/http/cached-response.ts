import { hash } from 'node:crypto'
import type { FastifyReply, FastifyRequest } from 'fastify'
import type { CachedValue } from '../cache/response-cache.js'

/*
 * A response stored as one string, sent as it is on every hit:
 *   <strong ETag, 24 characters><Link header or nothing>\n<JSON body>
 */
const etagLength = 24

export function encodeResponse(body: string, link = ''): string {
  const text = `${link}\n${body}`
  return `"${hash('sha256', text, 'base64url').slice(0, etagLength - 2)}"${text}`
}

/** RFC 9110 If-None-Match, with its weak comparison. */
function matchesIfNoneMatch(header: string | undefined, etag: string): boolean {
  if (header === undefined) return false
  if (header.trim() === '*') return true
  return header.split(',').some((tag) => tag.trim().replace(/^W\//, '') === etag)
}

/** The encoded response as a string, or as the UTF-8 bytes of one (a large value read from Redis). */
export function sendEncodedResponse(request: FastifyRequest, reply: FastifyReply, encoded: CachedValue): FastifyReply {
  const text = typeof encoded === 'string'
  const newline = text ? encoded.indexOf('\n', etagLength) : encoded.indexOf(0x0a, etagLength)
  const slice = (start: number, end?: number) => (text ? encoded.slice(start, end) : encoded.toString('utf8', start, end))
  const etag = slice(0, etagLength)
  reply.header('etag', etag)
  if (newline > etagLength) reply.header('link', slice(etagLength, newline))
  if (matchesIfNoneMatch(request.headers['if-none-match'], etag)) return reply.code(304).send()
  return reply.type('application/json; charset=utf-8').send(text ? encoded.slice(newline + 1) : encoded.subarray(newline + 1))
}
