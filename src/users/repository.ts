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

  /** `name` undefined: planned for its values at every call, never from a plan cached for the statement. */
  private async rows(name: string | undefined, text: string, values: unknown[]): Promise<User[]> {
    const query = name !== undefined && this.database.preparesStatements ? { name, text, values } : { text, values }
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
  async list({ limit, after = 0, email, q }: ListQuery): Promise<UserPage> {
    const values: unknown[] = [after, limit + 1]
    const filters: string[] = []
    if (email !== undefined) {
      values.push(email)
      filters.push(`lower(email) = $${values.length}`)
    }
    if (q !== undefined) {
      // Served by the trigram indexes of migrations/002_users-search.sql; q's own % _ \ match literally.
      values.push(`%${q.replace(/[\\%_]/g, '\\$&')}%`)
      filters.push(`(name ILIKE $${values.length} OR email ILIKE $${values.length})`)
    }
    // A prepared search switches to PostgreSQL's generic plan after five runs: not knowing the pattern,
    // it walks the primary key and filters every row (3 s at 1,000,000 users, against 2 ms for a plan
    // made for the pattern, which the trigram indexes serve). So a search is not prepared.
    const name = q !== undefined ? undefined : email !== undefined ? 'users.list-by-email' : 'users.list'
    const users = await this.rows(
      name,
      `SELECT ${columns} FROM users WHERE id > $1${filters.map((filter) => ` AND ${filter}`).join('')} ORDER BY id LIMIT $2`,
      values,
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
