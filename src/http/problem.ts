import { STATUS_CODES } from 'node:http'
import type { FastifyReply } from 'fastify'
import { Type, type Static } from 'typebox'

export const FieldError = Type.Object({
  in: Type.String({ description: 'body, querystring, params or headers' }),
  pointer: Type.String({ description: 'JSON pointer to the offending field' }),
  detail: Type.String(),
})

export const Problem = Type.Object(
  {
    type: Type.String(),
    title: Type.String(),
    status: Type.Integer(),
    detail: Type.String(),
    instance: Type.Optional(Type.String()),
    errors: Type.Optional(Type.Array(FieldError)),
  },
  { $id: 'Problem', description: 'RFC 9457 problem details' },
)

export type Problem = Static<typeof Problem>
export type FieldError = Static<typeof FieldError>

/** An error whose status and text are meant for the client. */
export class HttpProblem extends Error {
  constructor(
    readonly status: number,
    detail: string,
    readonly type = 'about:blank',
    readonly headers: Record<string, string> = {},
    readonly errors?: FieldError[],
  ) {
    super(detail)
  }
}

export const notFound = (detail: string) => new HttpProblem(404, detail)

export const validationProblem = (errors: FieldError[]) =>
  new HttpProblem(
    400,
    errors.map((error) => `${error.in}${error.pointer} ${error.detail}`).join('; '),
    '/problems/validation',
    {},
    errors,
  )

export function sendProblem(reply: FastifyReply, problem: HttpProblem): FastifyReply {
  const body: Problem = {
    type: problem.type,
    title: STATUS_CODES[problem.status] ?? 'Error',
    status: problem.status,
    detail: problem.message,
    instance: reply.request.url.split('?')[0],
    ...(problem.errors ? { errors: problem.errors } : {}),
  }
  return reply.code(problem.status).headers(problem.headers).type('application/problem+json').send(body)
}
