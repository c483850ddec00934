import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { createServer } from 'node:net'

export const projectRoot = new URL('../../', import.meta.url).pathname

export async function freePort(): Promise<number> {
  const server = createServer()
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const { port } = server.address() as { port: number }
  server.close()
  await once(server, 'close')
  return port
}

export interface ServerProcess {
  child: ChildProcess
  url: string
  output(): string
  stop(signal?: NodeJS.Signals): Promise<number | null>
}

export interface ServerProcessOptions {
  port?: number
  cwd?: string
  readyTimeoutMs?: number
  /** False: what the server writes once it is ready is dropped (a benchmark's access log outgrows any string). */
  keepOutput?: boolean
  /** Node and V8 flags before dist/server.js, as the image's CMD gives some (not all of them are allowed in NODE_OPTIONS). */
  nodeArgs?: string[]
}

/** Starts `node dist/server.js` as the image does (with writes open unless `env` says otherwise), and waits until /readyz answers 200. */
export async function startServerProcess(
  env: NodeJS.ProcessEnv,
  { port, cwd = projectRoot, readyTimeoutMs = 30_000, keepOutput = true, nodeArgs = [] }: ServerProcessOptions = {},
): Promise<ServerProcess> {
  const listenPort = port ?? (await freePort())
  const child = spawn(process.execPath, [...nodeArgs, 'dist/server.js'], {
    cwd,
    env: { PATH: process.env.PATH, NODE_ENV: 'production', API_WRITES_OPEN: 'true', LOG_LEVEL: 'info', ...env, PORT: String(listenPort) },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let output = ''
  let keep = true
  const append = (chunk: Buffer) => {
    if (keep) output += chunk
  }
  child.stdout!.on('data', append)
  child.stderr!.on('data', append)
  const exited = once(child, 'exit')
  const url = `http://127.0.0.1:${listenPort}`
  const deadline = Date.now() + readyTimeoutMs
  for (;;) {
    if (child.exitCode !== null) throw new Error(`server exited with ${child.exitCode}:\n${output}`)
    if (Date.now() > deadline) {
      child.kill('SIGKILL')
      throw new Error(`server did not become ready:\n${output}`)
    }
    const ready = await fetch(`${url}/readyz`).then((answer) => answer.ok, () => false)
    if (ready) break
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
  keep = keepOutput
  return {
    child,
    url,
    output: () => output,
    async stop(signal = 'SIGTERM') {
      if (child.exitCode === null) child.kill(signal)
      const [code] = await exited
      return code as number | null
    },
  }
}

/** Runs a shell command line as written, for the brief's curl commands. */
export async function shell(command: string): Promise<{ code: number | null; stdout: string }> {
  const child = spawn('bash', ['-c', command], { stdio: ['ignore', 'pipe', 'inherit'] })
  let stdout = ''
  child.stdout.on('data', (chunk) => (stdout += chunk))
  const [code] = await once(child, 'exit')
  return { code: code as number | null, stdout }
}

export interface BackgroundProcess {
  output(): string
  stop(): Promise<void>
}

/** Starts a long-running command (a service of the stack) and waits until `ready()` holds. */
export async function startBackground(
  argv: string[],
  options: { env?: NodeJS.ProcessEnv; cwd?: string; ready: () => Promise<boolean> },
): Promise<BackgroundProcess> {
  const [command, ...args] = argv
  const child = spawn(command!, args, { cwd: options.cwd, env: options.env ?? process.env, stdio: ['ignore', 'pipe', 'pipe'] })
  let output = ''
  child.stdout!.on('data', (chunk) => (output += chunk))
  child.stderr!.on('data', (chunk) => (output += chunk))
  const exited = once(child, 'close').catch(() => undefined)
  const failure = await once(child, 'spawn').then(
    () => undefined,
    (error: Error) => error,
  )
  if (failure) throw new Error(`${command} could not start: ${failure.message}`)
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM')
    await exited
  }
  const deadline = Date.now() + 30_000
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(`${argv.join(' ')} exited (${child.exitCode ?? child.signalCode}):\n${output}`)
    }
    if (await options.ready()) return { output: () => output, stop }
    if (Date.now() > deadline) {
      await stop()
      throw new Error(`${argv.join(' ')} did not become ready:\n${output}`)
    }
    await new Promise((resolve) => setTimeout(resolve, 200))
  }
}

/** Runs a command to its end, as a container healthcheck runs. */
export async function run(
  argv: string[],
  options: { env?: NodeJS.ProcessEnv; cwd?: string } = {},
): Promise<{ code: number | null; output: string }> {
  const [command, ...args] = argv
  const child = spawn(command!, args, { cwd: options.cwd, env: options.env ?? process.env, stdio: ['ignore', 'pipe', 'pipe'] })
  let output = ''
  child.stdout.on('data', (chunk) => (output += chunk))
  child.stderr.on('data', (chunk) => (output += chunk))
  const [code] = await once(child, 'close')
  return { code: code as number | null, output }
}
