// Runs `npm run build` (tsc, the embedded database's seed, the web page) only when dist/ is missing or older
// than a source or build setting, so that `npm start` after `npm ci` (which builds, through
// `prepare`) starts the server at once.
// Plain JavaScript: it runs before anything is compiled. `--optional`: without the compiler
// (`npm ci --omit=dev`), say so and succeed, leaving the build to whoever installs it.
import { spawnSync } from 'node:child_process'
import { readdirSync, statSync } from 'node:fs'
import { createRequire } from 'node:module'
import { join } from 'node:path'

const root = new URL('..', import.meta.url).pathname
const inputs = ['src', 'web', 'tsconfig.json', 'tsconfig.build.json', 'package-lock.json']
const outputs = ['server.js', 'pglite-seed.tar.gz', 'web/index.html'].map((output) => join(root, 'dist', output))

function newestChange(path) {
  const stats = statSync(path, { throwIfNoEntry: false })
  if (!stats) return 0
  if (!stats.isDirectory()) return stats.mtimeMs
  const entries = readdirSync(path).filter((name) => name !== 'node_modules')
  return Math.max(stats.mtimeMs, ...entries.map((name) => newestChange(join(path, name))))
}

const built = Math.min(...outputs.map((output) => statSync(output, { throwIfNoEntry: false })?.mtimeMs ?? -1))
if (built >= Math.max(...inputs.map((input) => newestChange(join(root, input))))) process.exit(0)

try {
  createRequire(import.meta.url).resolve('typescript/bin/tsc')
} catch {
  const optional = process.argv.includes('--optional')
  console.error(
    optional
      ? 'build-if-stale: TypeScript is not installed (production dependencies only), so dist/ was not built.'
      : 'build-if-stale: dist/ needs a build but TypeScript is not installed: run `npm ci` (with dev dependencies).',
  )
  process.exit(optional ? 0 : 1)
}
console.error('build-if-stale: compiling src/ and bundling web/ into dist/')
// Under npm, npm_execpath is npm's own script; run directly, npm comes from PATH.
const npm = process.env.npm_execpath ? [process.execPath, process.env.npm_execpath] : ['npm']
const { status } = spawnSync(npm[0], [...npm.slice(1), 'run', 'build'], { cwd: root, stdio: 'inherit' })
process.exit(status ?? 1)
