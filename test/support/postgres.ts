import { randomBytes } from 'node:crypto'
import pg from 'pg'

export const serverUrl = process.env.TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres'

export interface TestDatabase {
  url: string
  drop(): Promise<void>
}

async function admin<T>(work: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: serverUrl, connectionTimeoutMillis: 3000 })
  try {
    await client.connect()
  } catch (error) {
    throw new Error(
      `PostgreSQL is unreachable at ${serverUrl} (${(error as Error).message}). Start it with ` +
        `'pg_ctlcluster 15 main start' or point TEST_DATABASE_URL at a server that accepts CREATE DATABASE.`,
      { cause: error },
    )
  }
  try {
    return await work(client)
  } finally {
    await client.end()
  }
}

/** A database of its own for one test file, dropped afterwards. */
export async function createTestDatabase(owner?: TestRole): Promise<TestDatabase> {
  const name = `fullstack_test_${randomBytes(6).toString('hex')}`
  await admin((client) => client.query(`CREATE DATABASE ${name}${owner ? ` OWNER ${owner.name}` : ''}`))
  const url = new URL(serverUrl)
  url.pathname = `/${name}`
  if (owner) {
    url.username = owner.name
    url.password = owner.password
  }
  return {
    url: url.toString(),
    drop: () => admin((client) => client.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`)).then(() => {}),
  }
}

export interface TestRole {
  name: string
  password: string
  drop(): Promise<void>
}

/** A login role with a password, like the compose stack's POSTGRES_USER; drop its databases first. */
export async function createTestRole(): Promise<TestRole> {
  const name = `fullstack_role_${randomBytes(6).toString('hex')}`
  const password = randomBytes(12).toString('hex')
  await admin((client) => client.query(`CREATE ROLE ${name} LOGIN PASSWORD '${password}'`))
  return {
    name,
    password,
    drop: () => admin((client) => client.query(`DROP ROLE IF EXISTS ${name}`)).then(() => {}),
  }
}

/** One client of `url` for `work`, closed afterwards. */
export async function withClient<T>(url: string, work: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: url })
  await client.connect()
  try {
    return await work(client)
  } finally {
    await client.end()
  }
}
