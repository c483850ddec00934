import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { parse } from 'yaml'
import { projectRoot } from './process.js'

export const composePath = join(projectRoot, 'compose.yaml')

export interface Healthcheck {
  test: string[] | string
  interval?: string
  timeout?: string
  retries?: number
  start_period?: string
  start_interval?: string
}

export interface Service {
  image?: string
  build?: { context: string; dockerfile?: string }
  command?: string[]
  depends_on?: Record<string, { condition: string }>
  environment?: Record<string, string>
  ports?: string[]
  volumes?: string[]
  restart?: string
  healthcheck?: Healthcheck
  [key: string]: unknown
}

export interface ComposeFile {
  name?: string
  services: Record<string, Service>
  volumes?: Record<string, unknown>
  [key: string]: unknown
}

export const readCompose = (): ComposeFile => parse(readFileSync(composePath, 'utf8'))

export class MissingVariableError extends Error {
  override name = 'MissingVariableError'
}

// $$, $NAME, ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?message}, ${NAME?message}
const reference = /\$(?:(\$)|\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}|([A-Za-z_][A-Za-z0-9_]*))/g

/** Substitutes variables in one value as `docker compose` does with the project's .env. */
export function interpolate(value: string, env: Record<string, string | undefined>): string {
  return value.replace(reference, (_match, dollar, braced, operator, argument, bare) => {
    if (dollar) return '$'
    const name: string = braced ?? bare
    const current = env[name]
    const unset = operator?.startsWith(':') ? !current : current === undefined
    if (operator?.endsWith('?') && unset) throw new MissingVariableError(`required variable ${name} is missing a value: ${argument}`)
    if (operator?.endsWith('-') && unset) return argument
    return current ?? ''
  })
}

/** The whole file with every string interpolated. */
export function interpolateAll<T>(node: T, env: Record<string, string | undefined>): T {
  if (typeof node === 'string') return interpolate(node, env) as T
  if (Array.isArray(node)) return node.map((item) => interpolateAll(item, env)) as T
  if (node && typeof node === 'object') {
    return Object.fromEntries(Object.entries(node).map(([key, value]) => [key, interpolateAll(value, env)])) as T
  }
  return node
}

/** Variables referenced anywhere in the file, and whether each must be set. */
export function variableReferences(text: string): Map<string, { required: boolean; hasDefault: boolean }> {
  const found = new Map<string, { required: boolean; hasDefault: boolean }>()
  for (const [, dollar, braced, operator, , bare] of text.matchAll(reference)) {
    if (dollar) continue
    const name = braced ?? bare!
    const seen = found.get(name) ?? { required: false, hasDefault: false }
    found.set(name, {
      required: seen.required || Boolean(operator?.endsWith('?')),
      hasDefault: seen.hasDefault || Boolean(operator?.endsWith('-')),
    })
  }
  return found
}

/** The argv a healthcheck's `test` runs: CMD runs its arguments, CMD-SHELL a shell line. */
export function healthcheckArgv(test: Healthcheck['test']): string[] {
  if (typeof test === 'string') return ['/bin/sh', '-c', test]
  const [kind, ...rest] = test
  if (kind === 'CMD') return rest
  if (kind === 'CMD-SHELL') return ['/bin/sh', '-c', rest.join(' ')]
  throw new Error(`unsupported healthcheck test ${JSON.stringify(test)}`)
}

export interface PortBinding {
  hostIp: string | undefined
  published: string | undefined
  target: string
}

/** Parses the short port syntax `[[HOST_IP:]PUBLISHED:]TARGET[/PROTOCOL]`. */
export function parsePort(port: string): PortBinding {
  const withoutProtocol = port.replace(/\/(tcp|udp)$/, '')
  const match = /^(?:(?:(\[[^\]]+\]|[^:]+):)?([^:]*):)?([^:]+)$/.exec(withoutProtocol)
  if (!match) throw new Error(`cannot parse port ${port}`)
  return { hostIp: match[1], published: match[2], target: match[3]! }
}
