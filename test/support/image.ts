import { cp, mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { projectRoot, run } from './process.js'

export interface RuntimeApp {
  dir: string
  dispose(): Promise<void>
}

/**
 * A directory laid out like /app in the Dockerfile's runtime stage (test/dockerfile.test.ts pins
 * that stage's COPY list): package.json, production node_modules, dist/ and migrations/. Expects
 * `npm run build` to have run.
 */
export async function assembleRuntimeApp(): Promise<RuntimeApp> {
  const dir = await mkdtemp(join(tmpdir(), 'fullstack-image-'))
  const dispose = () => rm(dir, { recursive: true, force: true })
  try {
    for (const file of ['package.json', 'package-lock.json']) await cp(join(projectRoot, file), join(dir, file))
    const install = await run(['npm', 'ci', '--omit=dev', '--ignore-scripts', '--prefer-offline', '--no-audit', '--no-fund'], { cwd: dir })
    if (install.code !== 0) throw new Error(`npm ci --omit=dev failed:\n${install.output}`)
    await rm(join(dir, 'package-lock.json'))
    for (const folder of ['dist', 'migrations']) await cp(join(projectRoot, folder), join(dir, folder), { recursive: true })
    return { dir, dispose }
  } catch (error) {
    await dispose()
    throw error
  }
}
