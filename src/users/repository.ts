import type { Database } from '../database/database.js'
import { Conflict, UniqueViolation } from '../database/errors.js'
import type { ListQuery, NewUser, User, UserChanges } from './schemas.js'

const columns = 'id, name, email, created_at, updated_at'

/** Another user has the email (the unique index on lower(email) said so). */
export class EmailTaken extends Conflict {
  override name = 'EmailTaken'
  constructor(options?: ErrorOptions) {
    super('Another user already has this email address.', 'email-taken', options)
  }
}

export interface UserPage {
  users: User[]
  hasMore: boolean
}

export class UsersRepository {
  constructor(private readonly database: Database) {}

  private async rows(name: string, text: string, values: unknown[]): Promise<User[]> {
    const query = this.database.preparesStatements ? { name, text, values } : { text, values }
    try {
      return await this.database.query<User>(query)
    } catch (error) {
      if (error instanceof UniqueViolation && error.constraint === 'users_email_lower_key') {
        throw new EmailTaken({ cause: error })
      }
      throw error
    }
  }

  async create(user: NewUser): Promise<User> {
    const [created] = await this.rows(
      'users.create',
      `INSERT INTO users (name, email) VALUES ($1, $2) RETURNING ${columns}`,
      [user.name, user.email],
    )
    return created!
  }

  async find(id: number): Promise<User | undefined> {
    const [user] = await this.rows('users.find', `SELECT ${columns} FROM users WHERE id = $1`, [id])
    return user
  }

  /** Keyset pagination: the cost of a page does not depend on how deep it is. */
  async list({ limit, after = 0, email }: ListQuery): Promise<UserPage> {
    const users =
      email === undefined
        ? await this.rows(
            'users.list',
            `SELECT ${columns} FROM users WHERE id > $1 ORDER BY id LIMIT $2`,
            [after, limit + 1],
          )
        : await this.rows(
            'users.list-by-email',
            `SELECT ${columns} FROM users WHERE lower(email) = $1 AND id > $2 ORDER BY id LIMIT $3`,
            [email, after, limit + 1],
          )
    const hasMore = users.length > limit
    if (hasMore) users.pop()
    return { users, hasMore }
  }

  async replace(id: number, user: NewUser): Promise<User | undefined> {
    const [updated] = await this.rows(
      'users.replace',
      `UPDATE users SET name = $2, email = $3, updated_at = now() WHERE id = $1 RETURNING ${columns}`,
      [id, user.name, user.email],
    )
    return updated
  }

  async update(id: number, changes: UserChanges): Promise<User | undefined> {
    const [updated] = await this.rows(
      'users.update',
      `UPDATE users SET name = COALESCE($2, name), email = COALESCE($3, email), updated_at = now()
       WHERE id = $1 RETURNING ${columns}`,
      [id, changes.name ?? null, changes.email ?? null],
    )
    return updated
  }

  async remove(id: number): Promise<boolean> {
    const deleted = await this.rows('users.remove', 'DELETE FROM users WHERE id = $1 RETURNING id', [id])
    return deleted.length > 0
  }
}
