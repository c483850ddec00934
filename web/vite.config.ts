import { readdir, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { brotliCompressSync, constants, gzipSync } from 'node:zlib'
import { defineConfig, type Plugin } from 'vitest/config'

const outDir = fileURLToPath(new URL('../dist/web/', import.meta.url))

/** Writes .br and .gz next to each text file, at maximum compression, for @fastify/static's preCompressed. */
function precompress(): Plugin {
  return {
    name: 'precompress',
    apply: 'build',
    async closeBundle() {
      const files = await readdir(outDir, { recursive: true })
      for (const file of files.filter((name) => /\.(html|js|css|svg|json)$/.test(name))) {
        const path = join(outDir, file)
        const content = await readFile(path)
        await writeFile(`${path}.br`, brotliCompressSync(content, { params: { [constants.BROTLI_PARAM_QUALITY]: 11 } }))
        await writeFile(`${path}.gz`, gzipSync(content, { level: 9 }))
      }
    },
  }
}

export default defineConfig({
  root: fileURLToPath(new URL('.', import.meta.url)),
  build: {
    outDir,
    emptyOutDir: true,
    assetsInlineLimit: 0,
    rolldownOptions: {
      // TanStack Query marks its modules "use client" for React Server Components; this page has none.
      onwarn(warning, warn) {
        if (warning.code !== 'MODULE_LEVEL_DIRECTIVE') warn(warning)
      },
    },
  },
  plugins: [precompress()],
  // `npm run dev:web`: the page with hot reload, talking to the API of `npm start` or `npm run dev`.
  server: { proxy: { '/users': `http://127.0.0.1:${process.env.PORT ?? 5000}` } },
  test: {
    environment: 'jsdom',
    include: ['test/**/*.test.tsx'],
    setupFiles: ['test/setup.ts'],
  },
})
