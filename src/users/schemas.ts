import { Type, type Static } from 'typebox'

/** No control characters and no unpaired UTF-16 surrogates (they cannot be stored as UTF-8). */
const printable = '^[^\\u0000-\\u001f\\u007f\\ud800-\\udfff]*$'

export const UserId = Type.Integer({ minimum: 1, maximum: 2147483647, description: 'A positive 32-bit integer' })
const Name = Type.String({ minLength: 1, maxLength: 100, pattern: printable, description: 'Trimmed, 1 to 100 characters' })
const Email = Type.String({
  format: 'email',
  maxLength: 254,
  description: 'Trimmed and stored lower-cased; unique regardless of case',
})
const Timestamp = Type.Unsafe<Date | string>(Type.String({ format: 'date-time' }))

export const User = Type.Object(
  {
    id: UserId,
    name: Type.String(),
    email: Type.String(),
    created_at: Timestamp,
    updated_at: Timestamp,
  },
  { additionalProperties: false },
)

export const UserList = Type.Array(User)

export const NewUser = Type.Object({ name: Name, email: Email }, { additionalProperties: false })

export const UserChanges = Type.Object(
  { name: Type.Optional(Name), email: Type.Optional(Email) },
  { additionalProperties: false, minProperties: 1 },
)

export const UserParams = Type.Object({ id: UserId }, { additionalProperties: false })

export const maxPageSize = 1000

export const ListQuery = Type.Object(
  {
    limit: Type.Integer({ minimum: 1, maximum: maxPageSize, default: 100 }),
    after: Type.Optional(
      Type.Integer({ minimum: 0, maximum: 2147483647, description: 'Return users whose id is greater than this' }),
    ),
    email: Type.Optional(Type.String({ maxLength: 254, pattern: printable, description: 'Exact match, any case' })),
    q: Type.Optional(
      Type.String({
        minLength: 1,
        maxLength: 100,
        pattern: printable,
        description: 'Users whose name or email contains this text, any case',
      }),
    ),
  },
  { additionalProperties: false },
)

export type User = Static<typeof User>
export type NewUser = Static<typeof NewUser>
export type UserChanges = Static<typeof UserChanges>
export type ListQuery = Static<typeof ListQuery>
