import createClient from 'openapi-fetch'
import type { paths } from './schema'

/** Shapes by path, not by schema name: the names in the OpenAPI document may change. */
export type User = paths['/users/{id}']['get']['responses'][200]['content']['application/json']
export type NewUser = NonNullable<paths['/users']['post']['requestBody']>['content']['application/json']

export interface UsersPage {
  users: User[]
  /** The `after` cursor of the next page, from the `Link` header; undefined on the last page. */
  nextAfter: number | undefined
}

/** What the page reads from a problem+json answer; other fields are ignored. */
interface ProblemBody {
  detail?: unknown
  errors?: { pointer?: unknown; detail?: unknown }[]
}

/** A request the server refused, with its problem `detail` and, for 429 and 503, when to try again. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly fieldErrors: string[] = [],
    readonly retryAfterSeconds?: number,
  ) {
    super(message)
  }
}

const tokenKey = 'users-api-token'

/** The API token lives for this browser tab's session only, never in localStorage. */
export const apiToken = {
  read: () => sessionStorage.getItem(tokenKey),
  save: (token: string) => sessionStorage.setItem(tokenKey, token),
}

function toApiError(response: Response, body: unknown): ApiError {
  const problem = (typeof body === 'object' && body !== null ? body : {}) as ProblemBody
  const detail = typeof problem.detail === 'string' ? problem.detail : `The server answered ${response.status}.`
  const fieldErrors = Array.isArray(problem.errors)
    ? problem.errors.map(({ pointer, detail }) => `${String(pointer ?? '').replace(/^\//, '') || 'request'}: ${String(detail)}`)
    : []
  const retryAfter = Number.parseInt(response.headers.get('retry-after') ?? '', 10)
  return new ApiError(response.status, detail, fieldErrors, Number.isFinite(retryAfter) ? retryAfter : undefined)
}

function nextAfter(link: string | null): number | undefined {
  const next = link?.match(/<([^>]+)>;\s*rel="next"/)?.[1]
  const after = next && new URL(next, 'http://link.invalid').searchParams.get('after')
  return after ? Number(after) : undefined
}

export type UsersApi = ReturnType<typeof createUsersApi>

export function createUsersApi(baseUrl = window.location.origin) {
  const client = createClient<paths>({ baseUrl })
  client.use({
    onRequest({ request }) {
      const token = apiToken.read()
      if (token) request.headers.set('authorization', `Bearer ${token}`)
      return request
    },
  })

  const check = <T>({ data, error, response }: { data?: T; error?: unknown; response: Response }): T => {
    if (!response.ok) throw toApiError(response, error)
    return data as T
  }

  return {
    async listUsers(query: { limit: number; after?: number; q?: string }): Promise<UsersPage> {
      // no-cache: the browser revalidates with If-None-Match, and an unchanged page costs a 304.
      const answer = await client.GET('/users', { params: { query }, cache: 'no-cache' })
      return { users: check(answer), nextAfter: nextAfter(answer.response.headers.get('link')) }
    },
    async createUser(user: NewUser): Promise<User> {
      return check(await client.POST('/users', { body: user }))
    },
    async replaceUser(id: number, user: NewUser): Promise<User> {
      return check(await client.PUT('/users/{id}', { params: { path: { id } }, body: user }))
    },
    async deleteUser(id: number): Promise<void> {
      check(await client.DELETE('/users/{id}', { params: { path: { id } } }))
    },
  }
}
