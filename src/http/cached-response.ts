import { hash } from 'node:crypto'
import type { FastifyReply, FastifyRequest } from 'fastify'

/*
 * A response stored as one buffer, its body sent as it is on every hit (no decoding, no encoding):
 *   <strong ETag, 24 characters><Link header or nothing>\n<JSON body, UTF-8>
 */
const etagLength = 24
const newline = 0x0a
const etagPlaceholder = ' '.repeat(etagLength)

/** One UTF-8 encoding of link and body; the ETag, a digest of both, is written over the leading placeholder. */
export function encodeResponse(body: string, link = ''): Buffer {
  const encoded = Buffer.from(`${etagPlaceholder}${link}\n${body}`)
  const digest = hash('sha256', encoded.subarray(etagLength), 'base64url').slice(0, etagLength - 2)
  encoded.write(`"${digest}"`, 0, 'latin1')
  return encoded
}

/** RFC 9110 If-None-Match, with its weak comparison. */
function matchesIfNoneMatch(header: string | undefined, etag: string): boolean {
  if (header === undefined) return false
  if (header.trim() === '*') return true
  return header.split(',').some((tag) => tag.trim().replace(/^W\//, '') === etag)
}

export function sendEncodedResponse(request: FastifyRequest, reply: FastifyReply, encoded: Buffer): FastifyReply {
  const etag = encoded.toString('latin1', 0, etagLength)
  const bodyStart = encoded.indexOf(newline, etagLength) + 1
  reply.header('etag', etag)
  if (bodyStart > etagLength + 1) reply.header('link', encoded.toString('utf8', etagLength, bodyStart - 1))
  if (matchesIfNoneMatch(request.headers['if-none-match'], etag)) return reply.code(304).send()
  return reply.type('application/json; charset=utf-8').send(encoded.subarray(bodyStart))
}
