/** The web page's and the search's part of the benchmark (issue 10), kept apart from the API scenarios. */
import { request } from 'node:http'
import type { Traffic } from './load.js'

export const firstLoadBudgetBytes = 150_000

/** A search at the deep table size: a handful of matches among 1,000,000, found through the trigram indexes. */
export const searchPath = '/users?limit=100&q=12345'
export const searchTraffic: Traffic = { kind: 'get', path: searchPath }

/** Bytes on the wire (body as sent, brotli when offered) for one GET. */
function transferredBytes(url: string): Promise<{ bytes: number; body: Buffer; encoding: string }> {
  return new Promise((resolve, reject) => {
    request(url, { headers: { 'accept-encoding': 'br, gzip' } }, (response) => {
      const chunks: Buffer[] = []
      response.on('data', (chunk: Buffer) => chunks.push(chunk))
      response.on('end', () => {
        if (response.statusCode !== 200) return reject(new Error(`${url} answered ${response.statusCode}`))
        const body = Buffer.concat(chunks)
        resolve({ bytes: body.length, body, encoding: String(response.headers['content-encoding'] ?? 'identity') })
      })
    })
      .on('error', reject)
      .end()
  })
}

/** HTML + JS + CSS of a first visit to `/`, compressed as a browser receives them. */
export async function firstLoad(baseUrl: string): Promise<{ bytes: number; files: string[] }> {
  const page = await transferredBytes(`${baseUrl}/`)
  const { brotliDecompressSync, gunzipSync } = await import('node:zlib')
  const decode = { br: brotliDecompressSync, gzip: gunzipSync }[page.encoding] ?? ((body: Buffer) => body)
  const html = decode(page.body).toString('utf8')
  const assets = [...html.matchAll(/(?:src|href)="(\/assets\/[^"]+)"/g)].map((match) => match[1]!)
  let bytes = page.bytes
  const files = [`/ ${page.bytes} B ${page.encoding}`]
  for (const asset of assets) {
    const answer = await transferredBytes(`${baseUrl}${asset}`)
    bytes += answer.bytes
    files.push(`${asset} ${answer.bytes} B ${answer.encoding}`)
  }
  return { bytes, files }
}
