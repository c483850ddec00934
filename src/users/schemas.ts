import { Type, type Static, type TSchema } from 'typebox'

/**
 * No control characters: C0 and DEL, and the bidirectional embeddings, overrides and isolates
 * (U+202A-U+202E, U+2066-U+2069) that make a name display as something else (`\u202Egnp.exe`
 * shows as `exe.png`). No unpaired UTF-16 surrogates either (they cannot be stored as UTF-8).
 */
const printable = '^[^\\u0000-\\u001f\\u007f\\u202a-\\u202e\\u2066-\\u2069\\ud800-\\udfff]*$'

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
  { $id: 'User', additionalProperties: false },
)

/** A reference to a shared schema (added with `addSchema`), typed as that schema: OpenAPI names it by its `$id`. */
export const ref = <T extends TSchema>(schema: T) => Type.Unsafe<Static<T>>({ $ref: `${(schema as { $id?: string }).$id}#` })

export const UserList = Type.Array(ref(User), { $id: 'UserList' })

export const NewUser = Type.Object({ name: Name, email: Email }, { $id: 'NewUser', additionalProperties: false })

export const UserChanges = Type.Object(
  { name: Type.Optional(Name), email: Type.Optional(Email) },
  { $id: 'UserChanges', additionalProperties: false, minProperties: 1 },
)

/** Added to the app once, referred to by `ref` in the routes. */
export const sharedUserSchemas = [User, UserList, NewUser, UserChanges]

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
