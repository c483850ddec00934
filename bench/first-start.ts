/**
 * The first start of the embedded database (PGlite): `node dist/server.js` without DATABASE_URL on a
 * new DATA_DIR, then again on the same one, each timed until /readyz answers 200. A new directory is
 * filled from the seed the build saves (src/database/pglite-seed.ts) instead of running initdb.
 */
import { existsSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { projectRoot, startServerProcess } from '../test/support/process.js'

export async function measureFirstStart(): Promise<string[]> {
  const seeded = existsSync(join(projectRoot, 'dist/pglite-seed.tar.gz'))
  const dataDir = await mkdtemp(join(tmpdir(), 'fullstack-bench-pglite-'))
  const rows: string[] = []
  try {
    for (const start of ['first start, new DATA_DIR', 'restart, same DATA_DIR']) {
      const began = performance.now()
      const server = await startServerProcess({ DATA_DIR: dataDir, LOG_LEVEL: 'warn' })
      rows.push(`| ${start} | ${Math.round(performance.now() - began).toLocaleString('en-US')} |`)
      await server.stop()
    }
  } finally {
    await rm(dataDir, { recursive: true, force: true })
  }
  return [
    '## First start of the embedded database',
    '',
    `Time until \`/readyz\` answers 200 (process start, PGlite, migrations). Seed from the build: ${seeded ? 'present' : 'MISSING (initdb runs)'}.`,
    '',
    '| scenario | ms until ready |',
    '| --- | ---: |',
    ...rows,
    '',
  ]
}
