import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import type { FastifyReply, FastifyRequest, HookHandlerDoneFunction } from 'fastify'
import { Type } from 'typebox'
import type { ResponseCache } from '../cache/response-cache.js'
import { encodeResponse, sendEncodedResponse } from '../http/cached-response.js'
import { wholeNumberRule } from '../http/error-handler.js'
import { notFound, validationProblem } from '../http/problem.js'
import type { UsersRepository } from './repository.js'
import { ListQuery, NewUser, ref, sharedUserSchemas, User, UserChanges, UserId, UserList, UserParams } from './schemas.js'

const problem = Type.Unsafe({ $ref: 'Problem#' })
const problems = (...statuses: number[]) => Object.fromEntries(statuses.map((status) => [status, problem]))

const userNotFound = (id: number) => notFound(`User ${id} does not exist.`)

const decimalId = /^[0-9]{1,10}$/

/**
 * Ids are written in decimal digits only (the validator would also read `1e3` or `0x10` as numbers).
 * Names and emails are compared and stored trimmed, emails lower-cased.
 */
function normalizeUserRequest(request: FastifyRequest, _reply: FastifyReply, done: HookHandlerDoneFunction): void {
  const { id } = request.params as { id?: string }
  if (id !== undefined && !decimalId.test(id)) {
    return done(validationProblem([{ in: 'params', pointer: '/id', detail: wholeNumberRule(UserId) }]))
  }
  const body = request.body
  if (typeof body === 'object' && body !== null && !Array.isArray(body)) {
    const fields = body as Record<string, unknown>
    if (typeof fields.name === 'string') fields.name = fields.name.trim()
    if (typeof fields.email === 'string') fields.email = fields.email.trim().toLowerCase()
  }
  done()
}

/** The query string of a page: the cache's variant and the next page's link. URLSearchParams only for the text filters. */
function pageQuery(query: ListQuery, after: number): string {
  const page = `limit=${query.limit}&after=${after}`
  if (query.email === undefined && query.q === undefined) return page
  const filters = new URLSearchParams()
  if (query.email !== undefined) filters.set('email', query.email)
  if (query.q !== undefined) filters.set('q', query.q)
  return `${page}&${filters}`
}

/** Cache scopes: every change moves the list pages and the changed user to new generations. */
const listScope = 'users'
const userScope = (id: number) => `user:${id}`

export interface UsersRoutesOptions {
  repository: UsersRepository
  cache: ResponseCache
}

export const usersRoutes: FastifyPluginAsyncTypebox<UsersRoutesOptions> = async (app, { repository, cache }) => {
  for (const schema of sharedUserSchemas) app.addSchema(schema)
  app.addHook('preValidation', normalizeUserRequest)

  const tags = ['users']

  app.post(
    '/users',
    {
      schema: {
        tags,
        summary: 'Create a user',
        body: ref(NewUser),
        response: { 201: ref(User), ...problems(400, 409, 413, 415) },
      },
    },
    async (request, reply) => {
      const user = await repository.create(request.body)
      await cache.invalidate([listScope])
      return reply.code(201).header('location', `/users/${user.id}`).send(user)
    },
  )

  app.get(
    '/users',
    {
      schema: {
        tags,
        summary: 'List users by id, a page at a time',
        description:
          'When more users follow, a `Link` header (RFC 8288) gives the next page. ' +
          '`q` keeps the users whose name or email contains it, any case; `email` the one with that email.',
        querystring: ListQuery,
        response: { 200: ref(UserList), ...problems(400) },
      },
    },
    async (request, reply) => {
      const { limit, after, email, q } = request.query
      const query: ListQuery = { limit, after, email: email?.trim().toLowerCase(), q: q?.trim() || undefined }
      const encoded = await cache.read(
        listScope,
        pageQuery(query, query.after ?? 0),
        async () => {
          const page = await repository.list(query)
          const last = page.users.at(-1)
          const link = page.hasMore && last ? `</users?${pageQuery(query, last.id)}>; rel="next"` : ''
          return encodeResponse(reply.serialize(page.users) as string, link)
        },
        { large: true },
      )
      return sendEncodedResponse(request, reply, encoded!)
    },
  )

  app.get(
    '/users/:id',
    {
      schema: { tags, summary: 'Read a user', params: UserParams, response: { 200: ref(User), ...problems(400, 404) } },
    },
    async (request, reply) => {
      const { id } = request.params
      const encoded = await cache.read(userScope(id), '', async () => {
        const user = await repository.find(id)
        return user && encodeResponse(reply.serialize(user) as string)
      })
      if (!encoded) throw userNotFound(id)
      return sendEncodedResponse(request, reply, encoded)
    },
  )

  const sendUpdated = async (reply: FastifyReply, id: number, user: User | undefined) => {
    if (!user) throw userNotFound(id)
    await cache.invalidate([userScope(id), listScope])
    return reply.send(user)
  }

  app.put(
    '/users/:id',
    {
      schema: {
        tags,
        summary: 'Replace a user’s name and email',
        params: UserParams,
        body: ref(NewUser),
        response: { 200: ref(User), ...problems(400, 404, 409, 413, 415) },
      },
    },
    async (request, reply) =>
      sendUpdated(reply, request.params.id, await repository.replace(request.params.id, request.body)),
  )

  app.patch(
    '/users/:id',
    {
      schema: {
        tags,
        summary: 'Change a user’s name, email or both',
        params: UserParams,
        body: ref(UserChanges),
        response: { 200: ref(User), ...problems(400, 404, 409, 413, 415) },
      },
    },
    async (request, reply) =>
      sendUpdated(reply, request.params.id, await repository.update(request.params.id, request.body)),
  )

  app.delete(
    '/users/:id',
    {
      schema: {
        tags,
        summary: 'Delete a user',
        params: UserParams,
        response: { 204: Type.Null({ description: 'Deleted' }), ...problems(400, 404) },
      },
    },
    async (request, reply) => {
      const { id } = request.params
      if (!(await repository.remove(id))) throw userNotFound(id)
      await cache.invalidate([userScope(id), listScope])
      return reply.code(204).send(null)
    },
  )
}
