import assert from 'node:assert/strict'
import type pg from 'pg'

/** What one request of a load run got, and when. */
export interface Outcome {
  operation: string
  startedAt: number
  endedAt: number
  /** The HTTP status, or 0 when no answer came (connection error or the client's own deadline). */
  status: number
  contentType: string
  retryAfter: string | null
  body: string
  error?: string
}

const clientDeadlineMs = 10_000

export async function timedRequest(
  baseUrl: string,
  operation: string,
  method: string,
  path: string,
  json?: unknown,
): Promise<Outcome & { json?: any }> { // eslint-disable-line @typescript-eslint/no-explicit-any -- the API's JSON
  const startedAt = Date.now()
  try {
    const response = await fetch(new URL(path, baseUrl), {
      method,
      headers: json === undefined ? {} : { 'content-type': 'application/json' },
      body: json === undefined ? undefined : JSON.stringify(json),
      signal: AbortSignal.timeout(clientDeadlineMs),
    })
    const body = await response.text()
    const contentType = response.headers.get('content-type') ?? ''
    return {
      operation,
      startedAt,
      endedAt: Date.now(),
      status: response.status,
      contentType,
      retryAfter: response.headers.get('retry-after'),
      body,
      json: contentType.includes('json') && body ? JSON.parse(body) : undefined,
    }
  } catch (error) {
    const cause = (error as { cause?: { code?: string } }).cause?.code
    return {
      operation,
      startedAt,
      endedAt: Date.now(),
      status: 0,
      contentType: '',
      retryAfter: null,
      body: '',
      error: cause ?? (error as Error).name,
    }
  }
}

interface TrackedUser {
  id: number
  email: string
  /** The name the last acknowledged change set, then the names of later changes whose outcome is unknown. */
  names: string[]
  deleted: 'no' | 'yes' | 'maybe'
}

/**
 * Drives creates, reads, changes and deletes from `workers` clients, each on users of its own, and
 * remembers which writes were acknowledged so the database can be checked against them afterwards.
 */
export class WriteLoad {
  readonly outcomes: Outcome[] = []
  private readonly users: TrackedUser[] = []
  private readonly unacknowledgedEmails = new Set<string>()
  private running = true
  private readonly done: Promise<unknown>

  constructor(
    private readonly baseUrl: string,
    workers: number,
    private readonly tag: string,
  ) {
    this.done = Promise.all(Array.from({ length: workers }, (_, worker) => this.work(worker)))
  }

  private async send(operation: string, method: string, path: string, json?: unknown) {
    const outcome = await timedRequest(this.baseUrl, operation, method, path, json)
    this.outcomes.push(outcome)
    return outcome
  }

  private async work(worker: number): Promise<void> {
    const mine: TrackedUser[] = []
    for (let step = 0; this.running; step++) {
      const email = `${this.tag}-${worker}-${step}@faults.example.com`
      const created = await this.send('create', 'POST', '/users', { name: `w${worker} s${step}`, email })
      if (created.status === 201) {
        const user: TrackedUser = { id: created.json.id, email, names: [created.json.name], deleted: 'no' }
        mine.push(user)
        this.users.push(user)
      } else {
        this.unacknowledgedEmails.add(email)
      }
      const live = mine.filter((user) => user.deleted === 'no')
      const target = live[step % Math.max(1, live.length)]
      if (!target) continue

      const name = `w${worker} s${step} renamed`
      const changed = await this.send('change', 'PATCH', `/users/${target.id}`, { name })
      if (changed.status === 200) target.names = [name]
      else target.names.push(name)

      const read = await this.send('read', 'GET', `/users/${target.id}`)
      if (read.status === 200) assert.ok(target.names.includes(read.json.name), `read ${read.json.name} for ${target.names}`)
      await this.send('list', 'GET', `/users?limit=5&after=${Math.max(0, target.id - 3)}`)

      if (step % 4 === 3) {
        const deleted = await this.send('delete', 'DELETE', `/users/${target.id}`)
        target.deleted = deleted.status === 204 ? 'yes' : 'maybe'
      }
    }
  }

  async stop(): Promise<Outcome[]> {
    this.running = false
    await this.done
    return this.outcomes
  }

  /** Every acknowledged write is in the database, nothing is duplicated, and no row comes from nowhere. */
  async assertDatabaseMatches(client: pg.Client): Promise<void> {
    const rows = new Map<number, { id: number; email: string; name: string }>()
    const result = await client.query<{ id: number; email: string; name: string }>(
      `SELECT id, email, name FROM users WHERE email LIKE $1`,
      [`${this.tag}-%`],
    )
    for (const row of result.rows) rows.set(row.id, row)
    const duplicates = await client.query(`SELECT lower(email) FROM users GROUP BY 1 HAVING count(*) > 1`)
    assert.deepEqual(duplicates.rows, [], 'duplicated emails')

    const acknowledgedEmails = new Set(this.users.map((user) => user.email))
    for (const user of this.users) {
      const row = rows.get(user.id)
      if (user.deleted === 'yes') assert.equal(row, undefined, `user ${user.id} was deleted with 204 but is still there`)
      if (user.deleted === 'no') {
        assert.ok(row, `user ${user.id} (${user.email}) was created with 201 but is missing`)
        assert.equal(row.email, user.email)
        assert.ok(user.names.includes(row.name), `user ${user.id} is named ${row.name}, acknowledged ${user.names[0]}`)
      }
    }
    for (const row of rows.values()) {
      assert.ok(
        acknowledgedEmails.has(row.email) || this.unacknowledgedEmails.has(row.email),
        `row ${row.id} (${row.email}) was never sent`,
      )
    }
  }
}
