import { existsSync } from 'node:fs'
import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { PGlite, type PGliteOptions } from '@electric-sql/pglite'

/**
 * PGlite's initdb takes seconds on the first start. The build runs it once, in memory, and saves the
 * initialised data directory next to the compiled code (PGlite's `dumpDataDir`); a data directory
 * without a database is then filled from that copy (`loadDataDir`) instead. Without the copy (run
 * from the sources, or an older build), PGlite runs initdb as before.
 */
export const defaultSeedPath = fileURLToPath(new URL('../pglite-seed.tar.gz', import.meta.url))

export async function pgliteSeedOptions(dataDir: string, seedPath = defaultSeedPath): Promise<PGliteOptions> {
  if (existsSync(join(dataDir, 'PG_VERSION'))) return {}
  const tarball = await readFile(seedPath).catch(() => undefined)
  return tarball ? { loadDataDir: new Blob([tarball]) } : {}
}

export async function writePgliteSeed(seedPath = defaultSeedPath): Promise<void> {
  const engine = await PGlite.create()
  const dump = await engine.dumpDataDir('gzip')
  await engine.close()
  await writeFile(seedPath, Buffer.from(await dump.arrayBuffer()))
}

if (process.argv[1] === fileURLToPath(import.meta.url)) await writePgliteSeed()
