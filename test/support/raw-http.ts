import { request as httpRequest, type Agent } from 'node:http'
import { connect } from 'node:net'

export interface RawAnswer {
  status: number
  headers: Record<string, string>
  body: string
}

export interface RawRequest {
  method: string
  /** Sent as written: the caller keeps it to the bytes Node's client accepts (0x21 to 0xff). */
  path: string
  headers: Record<string, string>
  body?: Uint8Array
}

/** One request through node:http, which sends methods, paths, headers and bytes that fetch would refuse. */
export function send(baseUrl: string, agent: Agent, { method, path, headers, body }: RawRequest, timeoutMs: number) {
  const { hostname, port } = new URL(baseUrl)
  return new Promise<RawAnswer>((resolve, reject) => {
    const length = body === undefined ? {} : { 'content-length': String(body.length) }
    const outgoing = httpRequest({ host: hostname, port, method, path, headers: { ...headers, ...length }, agent }, (response) => {
      const chunks: Buffer[] = []
      response.on('data', (chunk: Buffer) => chunks.push(chunk))
      response.on('error', reject)
      response.on('end', () => {
        const flat: Record<string, string> = {}
        for (const [name, value] of Object.entries(response.headers)) flat[name] = String(value)
        resolve({ status: response.statusCode!, headers: flat, body: Buffer.concat(chunks).toString('utf8') })
      })
    })
    outgoing.setTimeout(timeoutMs, () => outgoing.destroy(new Error(`no answer within ${timeoutMs} ms`)))
    outgoing.on('error', reject)
    outgoing.end(body)
  })
}

/** Reads the HTTP/1.1 responses in what a server wrote back, as far as they are complete. */
export function parseResponses(data: Buffer): RawAnswer[] {
  const answers: RawAnswer[] = []
  let offset = 0
  while (offset < data.length) {
    const headEnd = data.indexOf('\r\n\r\n', offset)
    if (headEnd === -1) break
    const [statusLine = '', ...lines] = data.subarray(offset, headEnd).toString('latin1').split('\r\n')
    const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(statusLine)?.[1] ?? Number.NaN)
    const headers: Record<string, string> = {}
    for (const line of lines) {
      const colon = line.indexOf(':')
      headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim()
    }
    const length = Number(headers['content-length'] ?? 0)
    const body = data.subarray(headEnd + 4, headEnd + 4 + length).toString('utf8')
    answers.push({ status, headers, body })
    offset = headEnd + 4 + length
  }
  return answers
}

/**
 * Writes bytes on a fresh connection, optionally ends the sending side, and collects what comes back
 * until the server closes the connection or `timeoutMs` passes.
 */
export function exchange(baseUrl: string, bytes: Uint8Array, timeoutMs: number, endAfterWriting = true) {
  const { hostname, port } = new URL(baseUrl)
  return new Promise<{ data: Buffer; closedByServer: boolean }>((resolve) => {
    const socket = connect(Number(port), hostname)
    const chunks: Buffer[] = []
    const timer = setTimeout(() => {
      socket.destroy()
      resolve({ data: Buffer.concat(chunks), closedByServer: false })
    }, timeoutMs)
    socket.on('data', (chunk: Buffer) => chunks.push(chunk))
    socket.on('error', () => {})
    socket.on('close', () => {
      clearTimeout(timer)
      resolve({ data: Buffer.concat(chunks), closedByServer: true })
    })
    socket.write(bytes)
    if (endAfterWriting) socket.end()
  })
}
