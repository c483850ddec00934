import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { connect } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { serverUrl } from './postgres.js'
import { freePort, startBackground, type BackgroundProcess } from './process.js'

export const pgbouncerBinary = process.env.PGBOUNCER_BIN ?? '/usr/sbin/pgbouncer'

export interface PgBouncer {
  /** The URL of `database` through the pooler. */
  url(database: string): string
  stop(): Promise<void>
}

const accepts = (port: number) =>
  new Promise<boolean>((resolve) => {
    const socket = connect(port, '127.0.0.1')
    socket.once('connect', () => {
      socket.destroy()
      resolve(true)
    })
    socket.once('error', () => resolve(false))
  })

/**
 * PgBouncer in transaction mode, the way CloudNativePG's Pooler runs it, in front of the test
 * server. Few server connections per database, so that client sessions really do share them.
 * It refuses to run as root, so it then drops to the postgres user.
 */
export async function startPgBouncer(options: { poolSize?: number } = {}): Promise<PgBouncer> {
  const server = new URL(serverUrl)
  const port = await freePort()
  const dir = await mkdtemp(join(tmpdir(), 'fullstack-pgbouncer-'))
  await chmod(dir, 0o755)
  const target = [
    `host=${server.hostname}`,
    `port=${server.port || 5432}`,
    `user=${decodeURIComponent(server.username || 'postgres')}`,
    ...(server.password ? [`password=${decodeURIComponent(server.password)}`] : []),
  ].join(' ')
  const config = join(dir, 'pgbouncer.ini')
  await writeFile(
    config,
    [
      '[databases]',
      `* = ${target}`,
      '[pgbouncer]',
      'listen_addr = 127.0.0.1',
      `listen_port = ${port}`,
      'unix_socket_dir =',
      'auth_type = any',
      'pool_mode = transaction',
      `default_pool_size = ${options.poolSize ?? 4}`,
      'max_client_conn = 500',
      // As the production Pooler: PostgreSQL applies these to the role instead (README).
      'ignore_startup_parameters = extra_float_digits,options,statement_timeout,idle_in_transaction_session_timeout',
      'server_reset_query =',
      'log_connections = 0',
      'log_disconnections = 0',
      '',
    ].join('\n'),
    { mode: 0o644 },
  )
  const argv = [pgbouncerBinary, ...(process.getuid?.() === 0 ? ['-u', 'postgres'] : []), config]
  let bouncer: BackgroundProcess
  try {
    bouncer = await startBackground(argv, { ready: () => accepts(port) })
  } catch (error) {
    await rm(dir, { recursive: true, force: true })
    const missing = (error as Error).message.includes('could not start')
    throw new Error(
      missing ? `${pgbouncerBinary} is missing: apt-get install pgbouncer (bash .ci/run does)` : (error as Error).message,
      { cause: error },
    )
  }
  return {
    url: (database) => `postgres://${server.username || 'postgres'}@127.0.0.1:${port}/${database}`,
    async stop() {
      await bouncer.stop()
      await rm(dir, { recursive: true, force: true })
    },
  }
}
