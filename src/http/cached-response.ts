import { hash } from 'node:crypto'
import type { FastifyReply, FastifyRequest } from 'fastify'
import type { CachedValue } from '../cache/response-cache.js'

/*
 * A response stored as one string, whose body is sent as it is on every hit (as the bytes Redis
 * returned, for a large value):
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
  const newline = typeof encoded === 'string' ? encoded.indexOf('\n', etagLength) : encoded.indexOf(0x0a, etagLength)
  const head = typeof encoded === 'string' ? encoded.slice(0, newline) : encoded.toString('utf8', 0, newline)
  const etag = head.slice(0, etagLength)
  reply.header('etag', etag)
  if (head.length > etagLength) reply.header('link', head.slice(etagLength))
  if (matchesIfNoneMatch(request.headers['if-none-match'], etag)) return reply.code(304).send()
  const body = typeof encoded === 'string' ? encoded.slice(newline + 1) : encoded.subarray(newline + 1)
  return reply.type('application/json; charset=utf-8').send(body)
}
