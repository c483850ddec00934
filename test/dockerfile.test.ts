import assert from 'node:assert/strict'
import { existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import type { Copy, Instruction, JSONInstruction } from 'dockerfile-ast'
import { workerHeapFlags } from '../src/config/heap.js'
import { parsePort, readCompose } from './support/compose.js'
import { dockerfile, imageEnv, stages } from './support/dockerfile.js'
import { projectRoot } from './support/process.js'
const stage = (name: string) => {
  const found = stages.find((candidate) => candidate.name === name)
  assert.ok(found, `stage ${name}`)
  return found
}
const keyword = (instruction: Instruction) => instruction.getKeyword()
const text = (instruction: Instruction) => instruction.getArgumentsContent() ?? ''
const indexOf = (instructions: Instruction[], predicate: (instruction: Instruction) => boolean) => {
  const index = instructions.findIndex(predicate)
  assert.notEqual(index, -1, 'instruction present')
  return index
}
const copySources = (copy: Copy) => copy.getArguments().slice(0, -1).map((argument) => argument.getValue())
const exec = (instruction: Instruction) => (instruction as JSONInstruction).getJSONStrings().map((argument) => argument.getJSONValue())

describe('Dockerfile', () => {
  it('builds in stages: build (tsc), prod-deps (npm ci --omit=dev), runtime last', () => {
    assert.deepEqual(stages.map((candidate) => candidate.name), ['build', 'prod-deps', 'runtime'])
  })

  it('starts every stage from one pinned Node 24 LTS slim image, never latest or untagged', () => {
    for (const { from, name } of stages) {
      assert.equal(from.getImageName(), 'node', name)
      assert.match(from.getImageTag() ?? '', /^24\.\d+\.\d+-[a-z]+-slim$/, name)
    }
    assert.equal(new Set(stages.map(({ from }) => from.getImage())).size, 1)
  })

  it('installs with npm ci from the package files copied alone first, then compiles', () => {
    const { instructions } = stage('build')
    const copyPackages = indexOf(instructions, (i) => keyword(i) === 'COPY' && text(i) === 'package.json package-lock.json ./')
    const install = indexOf(instructions, (i) => keyword(i) === 'RUN' && /\bnpm ci\b/.test(text(i)))
    const copySource = indexOf(instructions, (i) => keyword(i) === 'COPY' && text(i).startsWith('src '))
    const copyWeb = indexOf(instructions, (i) => keyword(i) === 'COPY' && text(i) === 'web ./web')
    const build = indexOf(instructions, (i) => keyword(i) === 'RUN' && text(i) === 'npm run build')
    assert.ok(copyPackages < install && install < copySource && copySource < build)
    assert.ok(install < copyWeb && copyWeb < build, 'the web page is bundled by the same npm run build')
    assert.match(JSON.parse(readFileSync(join(projectRoot, 'package.json'), 'utf8')).scripts.build, /vite build web/)
    assert.match(readFileSync(join(projectRoot, 'web/vite.config.ts'), 'utf8'), /\.\.\/dist\/web\//, 'the page lands in dist/, which the runtime copies')
    assert.doesNotMatch(text(instructions[install]!), /--omit=dev/)
  })

  it('gives the runtime production dependencies and built code only', () => {
    assert.match(stage('prod-deps').instructions.filter((i) => keyword(i) === 'RUN').map(text).join('\n'), /npm ci --omit=dev/)
    const runtime = stage('runtime').instructions
    assert.deepEqual(runtime.filter((i) => keyword(i) === 'RUN').map(text), ['mkdir data && chown node:node data'])
    const copies = runtime.filter((i) => keyword(i) === 'COPY') as Copy[]
    assert.deepEqual(
      copies.map((copy) => [copy.getFromFlag()?.getValue() ?? null, ...copySources(copy)]),
      [
        [null, 'package.json'],
        ['prod-deps', '/app/node_modules'],
        ['build', '/app/dist'],
        [null, 'migrations'],
      ],
    )
    assert.equal(new URL('../../migrations/', new URL('dist/database/', 'file:///app/')).pathname, '/app/migrations/')
  })

  it('runs production mode as the unprivileged node user, listening on 0.0.0.0:5000', () => {
    const runtime = stage('runtime').instructions
    assert.deepEqual(imageEnv(), {
      NODE_ENV: 'production',
      HOST: '0.0.0.0',
      PORT: '5000',
      WEB_CONCURRENCY: 'auto',
      GLIBC_TUNABLES: 'glibc.malloc.arena_max=1:glibc.malloc.mmap_threshold=65536',
    })
    const users = runtime.filter((i) => keyword(i) === 'USER').map(text)
    assert.deepEqual(users, ['node'])
    const user = indexOf(runtime, (i) => keyword(i) === 'USER')
    assert.ok(runtime.slice(user).every((i) => !['RUN', 'COPY', 'ADD'].includes(keyword(i))), 'nothing runs as root after USER')
    const exposed = runtime.filter((i) => keyword(i) === 'EXPOSE').map(text)
    assert.deepEqual(exposed, [parsePort(readCompose().services.web!.ports![0]!).target])
  })

  it('starts with `node dist/server.js` as `npm start` does, heap flags included, and checks health with node on /readyz, as compose.yaml does', () => {
    const runtime = stage('runtime').instructions
    const cmd = runtime.filter((i) => keyword(i) === 'CMD')
    assert.equal(cmd.length, 1)
    assert.deepEqual(exec(cmd[0]!), ['node', ...workerHeapFlags(undefined, 1, []), 'dist/server.js'])
    const { scripts } = JSON.parse(readFileSync(join(projectRoot, 'package.json'), 'utf8')) as { scripts: Record<string, string> }
    assert.equal(scripts.start, `exec ${exec(cmd[0]!).join(' ')}`)
    const [healthcheck] = dockerfile.getHEALTHCHECKs()
    assert.ok(healthcheck)
    const probe = text(healthcheck).replace(/^(--\S+\s+)*CMD\s+/, '')
    assert.deepEqual(['CMD', ...JSON.parse(probe)], readCompose().services.web!.healthcheck!.test)
    assert.match(readFileSync(join(projectRoot, 'src/healthcheck.ts'), 'utf8'), /\/readyz/)
    for (const entry of ['server', 'healthcheck']) assert.ok(existsSync(join(projectRoot, `src/${entry}.ts`)), entry)
  })
})

describe('.dockerignore', () => {
  const patterns = readFileSync(join(projectRoot, '.dockerignore'), 'utf8')
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line && !line.startsWith('#'))

  it('ignores everything but what the Dockerfile copies from the build context', () => {
    assert.equal(patterns[0], '*')
    const allowed = patterns.slice(1).map((pattern) => {
      assert.match(pattern, /^![\w.-]+$/, 'only plain re-included names')
      return pattern.slice(1)
    })
    const copied = new Set(
      (dockerfile.getCOPYs() as Copy[]).filter((copy) => !copy.getFromFlag()).flatMap((copy) => copySources(copy)),
    )
    assert.deepEqual([...copied].sort(), allowed.sort())
    for (const name of allowed) assert.ok(existsSync(join(projectRoot, name)), name)
    for (const kept of ['node_modules', 'dist', 'data', '.git', '.env', 'test-results']) assert.ok(!allowed.includes(kept), kept)
  })
})
