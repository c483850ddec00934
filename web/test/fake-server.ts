import { vi } from 'vitest'
import type { User } from '../src/api/client'

interface Refusal {
  status: number
  detail: string
  headers?: Record<string, string>
  errors?: { in: string; pointer: string; detail: string }[]
}

const problem = ({ status, detail, headers, errors }: Refusal) =>
  new Response(JSON.stringify({ type: 'about:blank', title: 'Refused', status, detail, errors }), {
    status,
    headers: { 'content-type': 'application/problem+json', ...headers },
  })

/**
 * The users API in memory, answering the page's fetch calls the way the server does (keyset pages
 * with a Link header, 409 for a taken email, 401 without the token when one is set).
 */
export function fakeServer({ token }: { token?: string } = {}) {
  const users: User[] = []
  const requests: { method: string; url: URL; authorization: string | null; body: unknown }[] = []
  const refusals: Refusal[] = []
  let hold: Promise<void> | undefined

  const add = (name: string, email: string) => {
    const now = new Date().toISOString()
    const user = { id: (users.at(-1)?.id ?? 0) + 1, name, email, created_at: now, updated_at: now }
    users.push(user)
    return user
  }

  const answer = async (method: string, url: URL, body: unknown, authorization: string | null): Promise<Response> => {
    const write = method !== 'GET'
    if (write && token !== undefined && authorization !== `Bearer ${token}`) {
      return problem({ status: 401, detail: 'The bearer token is not valid.' })
    }
    const refusal = write ? refusals.shift() : undefined
    if (refusal) return problem(refusal)
    if (url.pathname === '/users' && method === 'GET') {
      const limit = Number(url.searchParams.get('limit'))
      const after = Number(url.searchParams.get('after') ?? 0)
      const q = url.searchParams.get('q')?.toLowerCase()
      const matching = users.filter(
        (user) => user.id > after && (!q || user.name.toLowerCase().includes(q) || user.email.includes(q)),
      )
      const page = matching.slice(0, limit)
      const headers = new Headers({ 'content-type': 'application/json' })
      if (matching.length > limit) headers.set('link', `</users?limit=${limit}&after=${page.at(-1)!.id}>; rel="next"`)
      return new Response(JSON.stringify(page), { headers })
    }
    const { name, email } = (body ?? {}) as { name: string; email: string }
    if (method === 'POST' || method === 'PUT') {
      const id = Number(url.pathname.split('/')[2])
      if (users.some((user) => user.email === email.toLowerCase() && user.id !== id)) {
        return problem({ status: 409, detail: 'Another user already has this email address.' })
      }
    }
    if (method === 'POST') return Response.json(add(name, email.toLowerCase()), { status: 201 })
    const index = users.findIndex((user) => user.id === Number(url.pathname.split('/')[2]))
    if (index < 0) return problem({ status: 404, detail: 'No such user.' })
    if (method === 'PUT') {
      users[index] = { ...users[index]!, name, email: email.toLowerCase() }
      return Response.json(users[index])
    }
    users.splice(index, 1)
    return new Response(null, { status: 204 })
  }

  vi.stubGlobal('fetch', async (request: Request) => {
    const url = new URL(request.url)
    const text = await request.text()
    const body = text ? JSON.parse(text) : undefined
    const authorization = request.headers.get('authorization')
    requests.push({ method: request.method, url, authorization, body })
    if (hold && request.method !== 'GET') await hold
    return answer(request.method, url, body, authorization)
  })

  return {
    users,
    requests,
    add,
    writes: () => requests.filter((request) => request.method !== 'GET'),
    /** The next write is answered with this problem. */
    refuseNext: (refusal: Refusal) => refusals.push(refusal),
    /** Writes wait until the returned function is called. */
    holdWrites() {
      let release!: () => void
      hold = new Promise((resolve) => (release = resolve))
      return () => {
        hold = undefined
        release()
      }
    },
  }
}
