import assert from 'node:assert/strict'

export interface Answer {
  status: number
  headers: Headers
  body: any // eslint-disable-line @typescript-eslint/no-explicit-any -- JSON from the server, asserted by each test
  text: string
}

export async function request(
  baseUrl: string,
  method: string,
  path: string,
  options: { json?: unknown; body?: string; headers?: Record<string, string> } = {},
): Promise<Answer> {
  const headers: Record<string, string> = { ...options.headers }
  let body = options.body
  if (options.json !== undefined) {
    headers['content-type'] ??= 'application/json'
    body = JSON.stringify(options.json)
  }
  const response = await fetch(new URL(path, baseUrl), { method, headers, body })
  const text = await response.text()
  const type = response.headers.get('content-type') ?? ''
  return { status: response.status, headers: response.headers, text, body: type.includes('json') ? JSON.parse(text) : text }
}

/** Asserts an RFC 9457 answer with the given status, and returns its body. */
export function assertProblem(answer: Answer, status: number) {
  assert.equal(answer.status, status, answer.text)
  assert.match(answer.headers.get('content-type') ?? '', /^application\/problem\+json/)
  assert.equal(answer.body.status, status)
  assert.equal(typeof answer.body.title, 'string')
  assert.equal(typeof answer.body.type, 'string')
  assert.equal(typeof answer.body.detail, 'string')
  return answer.body
}
