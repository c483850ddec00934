import { lstat, open, readFile, unlink } from 'node:fs/promises'
import { hostname } from 'node:os'
import { join } from 'node:path'
import type { Logger } from 'pino'

/** The lock file's name inside DATA_DIR (PGlite keeps a postmaster.pid of its own there). */
export const lockFileName = 'server.lock'

/** Another live process has the embedded database directory open. */
export class DataDirInUse extends Error {
  override name = 'DataDirInUse'
  constructor(
    readonly dataDir: string,
    readonly owner: { pid: number; host: string },
  ) {
    const where = owner.host === hostname() ? '' : ` on host ${owner.host}`
    super(
      `DATA_DIR ${dataDir} is in use by another server (pid ${owner.pid}${where}); stop it, or set DATA_DIR to ` +
        `another directory (the lock is ${join(dataDir, lockFileName)})`,
    )
  }
}

interface Owner {
  pid: number
  host: string
  /** When the process started (Linux: clock ticks after boot) and which boot: a reused pid has other values. */
  startedAt?: string
  bootId?: string
}

const bootId = () => readFile('/proc/sys/kernel/random/boot_id', 'utf8').then((id) => id.trim(), () => undefined)

/** Field 22 of /proc/<pid>/stat; the command name before it may hold spaces and parentheses. */
async function startTime(pid: number): Promise<string | undefined> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => undefined)
  return stat?.slice(stat.lastIndexOf(')') + 2).split(' ')[19]
}

async function myself(): Promise<Owner> {
  return { pid: process.pid, host: hostname(), startedAt: await startTime(process.pid), bootId: await bootId() }
}

function parseOwner(text: string): Owner | undefined {
  try {
    const owner = JSON.parse(text) as Partial<Owner>
    return Number.isInteger(owner.pid) && typeof owner.host === 'string' ? (owner as Owner) : undefined
  } catch {
    return undefined
  }
}

/** Whether the lock's owner still runs: its pid is alive and, where Linux tells, is the same process. */
async function isRunning(owner: Owner): Promise<boolean> {
  // Another machine's processes cannot be checked (a directory shared over the network).
  if (owner.host !== hostname()) return true
  // A process with this very pid wrote it before this one existed (a container's pid 1 after a restart).
  if (owner.pid === process.pid) return false
  try {
    process.kill(owner.pid, 0)
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ESRCH') return false
  }
  if (owner.bootId !== undefined && owner.bootId !== (await bootId())) return false
  const started = await startTime(owner.pid)
  return owner.startedAt === undefined || started === undefined || started === owner.startedAt
}

const held = new Set<string>()

/** A lock file being written has no content for a moment; one that stays empty this long was abandoned. */
const unfinishedLockMs = 2000

/**
 * Takes DATA_DIR for this process, as PostgreSQL's postmaster.pid does: the lock file is created
 * with O_EXCL (one process wins), holds the owner's pid and start time, and a lock whose process is
 * gone (SIGKILL, crash, reboot, or a pid reused by another program) is removed and taken. Returns
 * the function that gives the directory back.
 */
export async function lockDataDir(dataDir: string, logger: Logger): Promise<() => Promise<void>> {
  const path = join(dataDir, lockFileName)
  const me = await myself()
  if (held.has(path)) throw new DataDirInUse(dataDir, me)
  const content = `${JSON.stringify(me)}\n`
  for (let attempt = 0; attempt < 50; attempt++) {
    try {
      const file = await open(path, 'wx')
      try {
        await file.writeFile(content)
        await file.sync()
      } finally {
        await file.close()
      }
      held.add(path)
      return async () => {
        held.delete(path)
        const current = await readFile(path, 'utf8').catch(() => undefined)
        if (current === content) await unlink(path)
      }
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error
    }
    const existing = await lstat(path).catch(() => undefined)
    if (!existing) continue
    const owner = parseOwner(await readFile(path, 'utf8').catch(() => ''))
    if (owner && (await isRunning(owner))) throw new DataDirInUse(dataDir, owner)
    if (!owner && Date.now() - existing.mtimeMs < unfinishedLockMs) {
      await new Promise((resolve) => setTimeout(resolve, 100))
      continue
    }
    // Removed only if it is still the file just judged: another starter may have replaced it meanwhile.
    const now = await lstat(path).catch(() => undefined)
    if (now?.ino === existing.ino && now.mtimeMs === existing.mtimeMs) {
      await unlink(path).catch(() => {})
      logger.warn({ dataDir, stalePid: owner?.pid }, 'removed the lock of a server that is no longer running')
    }
  }
  throw new Error(`could not take the lock ${path}`)
}
