import { readdir, readFile } from 'node:fs/promises'

/** User + system CPU of a process so far, in milliseconds (clock ticks are 10 ms on Linux). */
export async function cpuMs(pid: number): Promise<number> {
  const fields = (await readFile(`/proc/${pid}/stat`, 'utf8')).split(') ')[1]!.split(' ')
  return (Number(fields[11]) + Number(fields[12])) * 10
}

export async function residentMb(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8')
  return Number(/^VmRSS:\s+(\d+) kB/m.exec(status)![1]) / 1024
}

/** The processes whose parent is `pid`. */
async function childrenOf(pid: number): Promise<number[]> {
  const children: number[] = []
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue
    const stat = await readFile(`/proc/${entry}/stat`, 'utf8').catch(() => '')
    if (Number(stat.split(') ')[1]?.split(' ')[1]) === pid) children.push(Number(entry))
  }
  return children
}

/**
 * CPU time of a process and of its children (Redis alone; PostgreSQL's postmaster and its backends
 * and workers), by process id. A process that exits before the second reading drops out of the difference.
 */
export async function treeCpuMs(pid: number): Promise<Map<number, number>> {
  const usage = new Map<number, number>()
  for (const process of [pid, ...(await childrenOf(pid))]) {
    const ms = await cpuMs(process).catch(() => undefined)
    if (ms !== undefined) usage.set(process, ms)
  }
  return usage
}

/** CPU spent between two readings of treeCpuMs; a process started in between counts from zero. */
export function treeCpuMsBetween(before: Map<number, number>, after: Map<number, number>): number {
  let total = 0
  for (const [process, ms] of after) total += ms - (before.get(process) ?? 0)
  return total
}
