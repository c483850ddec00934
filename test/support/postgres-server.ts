import { execFile, spawnSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import { appendFile, readFile, readdir, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { delimiter, join } from 'node:path'
import { promisify } from 'node:util'
import { freePort } from './process.js'

const run = promisify(execFile)

/** A PostgreSQL server of the test's own, on a free port, that the test may stop, freeze and restart. */
export interface PostgresServer {
  url: string
  /** `fast` ends sessions cleanly (as `docker stop` does), `immediate` is a crash. */
  stop(mode: 'fast' | 'immediate'): Promise<void>
  start(): Promise<void>
  /** Freezes every process of the server (SIGSTOP): connections stay open but nothing answers. */
  freeze(): Promise<void>
  thaw(): Promise<void>
  dispose(): Promise<void>
}

async function findBinaries(): Promise<string> {
  const versioned = await readdir('/usr/lib/postgresql').catch(() => [] as string[])
  const candidates = [
    process.env.PG_BIN_DIR,
    ...versioned.sort((a, b) => Number(b) - Number(a)).map((version) => `/usr/lib/postgresql/${version}/bin`),
    ...(process.env.PATH ?? '').split(delimiter),
  ]
  const found = candidates.find((dir) => dir && existsSync(join(dir, 'initdb')) && existsSync(join(dir, 'pg_ctl')))
  if (!found) {
    throw new Error(
      'The fault tests start their own PostgreSQL server but found no initdb and pg_ctl: install the server ' +
        '(apt-get install postgresql) or point PG_BIN_DIR at its bin directory.',
    )
  }
  return found
}

/** PostgreSQL refuses to run as root: as root, its commands run as the `postgres` OS user. */
const asServerUser = (command: string[]) =>
  process.getuid?.() === 0 ? ['runuser', '-u', 'postgres', '--', ...command] : command

async function exec(command: string[]): Promise<string> {
  const [file, ...args] = asServerUser(command)
  try {
    return (await run(file!, args, { encoding: 'utf8', timeout: 60_000 })).stdout
  } catch (error) {
    const { stdout, stderr } = error as { stdout?: string; stderr?: string }
    throw new Error(`${command.join(' ')} failed: ${stderr || stdout || (error as Error).message}`, { cause: error })
  }
}

export async function startPostgresServer(): Promise<PostgresServer> {
  const bin = await findBinaries()
  const dataDir = (await exec(['mktemp', '-d', join(tmpdir(), 'fullstack-pg-XXXXXX')])).trim()
  const port = await freePort()
  const pgCtl = (...args: string[]) => exec([join(bin, 'pg_ctl'), '-D', dataDir, ...args])

  await exec([join(bin, 'initdb'), '-D', dataDir, '-U', 'postgres', '--auth=trust', '--no-sync', '--no-locale', '-E', 'UTF8'])
  await appendFile(
    join(dataDir, 'postgresql.conf'),
    [
      `port = ${port}`,
      `listen_addresses = '127.0.0.1'`,
      `unix_socket_directories = ''`,
      'fsync = off',
      'full_page_writes = off',
      'max_connections = 40',
      'shared_buffers = 16MB',
    ].join('\n') + '\n',
  )

  let running = false
  const start = async () => {
    await pgCtl('start', '-w', '-t', '60', '-l', join(dataDir, 'server.log'))
    running = true
  }
  const stop = async (mode: 'fast' | 'immediate') => {
    running = false
    await pgCtl('stop', '-w', '-t', '60', '-m', mode)
  }
  // A test that dies half-way must not leave a server behind.
  const stopOnExit = () => {
    const [file, ...args] = asServerUser([join(bin, 'pg_ctl'), '-D', dataDir, 'stop', '-m', 'immediate'])
    if (running) spawnSync(file!, args)
  }
  process.once('exit', stopOnExit)

  const serverPids = async () => {
    const postmaster = Number((await readFile(join(dataDir, 'postmaster.pid'), 'utf8')).split('\n')[0])
    const children = await readFile(`/proc/${postmaster}/task/${postmaster}/children`, 'utf8')
    return [postmaster, ...children.split(' ').filter(Boolean).map(Number)]
  }
  const signalAll = async (signal: NodeJS.Signals) => {
    for (const pid of await serverPids()) process.kill(pid, signal)
  }

  await start()
  return {
    url: `postgres://postgres@127.0.0.1:${port}/postgres`,
    stop,
    start,
    freeze: () => signalAll('SIGSTOP'),
    thaw: () => signalAll('SIGCONT'),
    async dispose() {
      process.removeListener('exit', stopOnExit)
      if (running) await stop('immediate')
      await rm(dataDir, { recursive: true, force: true })
    },
  }
}
