import { performance } from 'node:perf_hooks'

/**
 * Readers and writers on a few users through several instances. Each writer PATCHes its user's name
 * to v1, v2, … in order; a read that started after vN was acknowledged and returns an older version
 * is a stale read.
 */
export interface LoadReport {
  reads: number
  writes: number
  failures: string[]
  staleReads: string[]
}

interface Version {
  user: number
  version: number
}

const versionOf = (name: string) => Number(/^v(\d+)$/.exec(name)?.[1] ?? 0)

export async function readWriteLoad(options: {
  urls: string[]
  userIds: number[]
  writesPerUser: number
  readers: number
  /** A pause between a writer's writes, so that reads interleave with them. */
  writePauseMs?: number
  /** Runs alongside the load, e.g. to stop Redis. */
  meanwhile?: () => Promise<void>
}): Promise<LoadReport> {
  const { urls, userIds } = options
  const acknowledged = new Map<number, number[]>(userIds.map((id) => [id, [0]]))
  const report: LoadReport = { reads: 0, writes: 0, failures: [], staleReads: [] }
  let writing = true

  const call = async (url: string, init?: RequestInit) => {
    const response = await fetch(url, init)
    const body = await response.text()
    if (!response.ok) throw new Error(`${init?.method ?? 'GET'} ${url}: ${response.status} ${body}`)
    return JSON.parse(body)
  }

  const check = (seen: Version[], startedAt: number, what: string) => {
    for (const { user, version } of seen) {
      const acks = acknowledged.get(user)
      if (!acks) continue
      const newest = acks.findLastIndex((ackedAt) => ackedAt <= startedAt)
      if (version < newest) report.staleReads.push(`${what}: user ${user} v${version}, but v${newest} was acknowledged before`)
    }
  }

  const writer = async (user: number) => {
    for (let version = 1; version <= options.writesPerUser; version++) {
      const url = urls[version % urls.length]!
      try {
        await call(`${url}/users/${user}`, {
          method: 'PATCH',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ name: `v${version}` }),
        })
        acknowledged.get(user)![version] = performance.now()
        report.writes++
        await new Promise((resolve) => setTimeout(resolve, options.writePauseMs ?? 0))
      } catch (error) {
        report.failures.push((error as Error).message)
        return
      }
    }
  }

  const reader = async (index: number) => {
    for (let i = 0; writing; i++) {
      const url = urls[(index + i) % urls.length]!
      const startedAt = performance.now()
      try {
        if (i % 4 === 3) {
          const page: { id: number; name: string }[] = await call(`${url}/users?limit=1000`)
          check(page.map((user) => ({ user: user.id, version: versionOf(user.name) })), startedAt, `${url} list`)
        } else {
          const user = userIds[i % userIds.length]!
          const body: { name: string } = await call(`${url}/users/${user}`)
          check([{ user, version: versionOf(body.name) }], startedAt, `${url} user`)
        }
        report.reads++
      } catch (error) {
        report.failures.push((error as Error).message)
      }
    }
  }

  const readers = Array.from({ length: options.readers }, (_, index) => reader(index))
  const side = options.meanwhile?.()
  await Promise.all(userIds.map(writer))
  await side
  writing = false
  await Promise.all(readers)
  return report
}
