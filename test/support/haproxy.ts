import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { freePort, startBackground, type BackgroundProcess } from './process.js'

export const haproxyBinary = process.env.HAPROXY_BIN ?? '/usr/sbin/haproxy'

export interface LoadBalancer {
  url: string
  /** Names of the backends HAProxy's health checks currently hold up. */
  up(): Promise<string[]>
  stop(): Promise<void>
}

/**
 * HAProxy in front of `ports`, spreading requests round robin as a Service does, and taking a
 * backend out within a few hundred milliseconds once its /readyz fails, as endpoints do for a pod
 * that stops being ready. A
 * request whose connection fails, or that gets no answer at all on a reused connection, is sent
 * again to another backend (what kube-proxy cannot do, an Ingress controller does).
 */
export async function startHaproxy(ports: number[]): Promise<LoadBalancer> {
  const [port, statsPort] = [await freePort(), await freePort()]
  const dir = await mkdtemp(join(tmpdir(), 'fullstack-haproxy-'))
  const config = join(dir, 'haproxy.cfg')
  await writeFile(
    config,
    [
      'global',
      '  maxconn 2000',
      'defaults',
      '  mode http',
      '  timeout connect 1s',
      '  timeout client 30s',
      '  timeout server 30s',
      '  timeout http-keep-alive 10s',
      // A replica busy under load may answer its check late; only a 503, or two misses, take it out.
      '  timeout check 2s',
      '  retries 3',
      '  option redispatch 1',
      '  retry-on conn-failure empty-response',
      'frontend api',
      `  bind 127.0.0.1:${port}`,
      '  default_backend replicas',
      'backend replicas',
      '  balance roundrobin',
      '  option httpchk GET /readyz',
      '  http-check expect status 200',
      '  default-server check inter 200ms fastinter 100ms downinter 200ms fall 2 rise 2',
      ...ports.map((backendPort, i) => `  server api${i + 1} 127.0.0.1:${backendPort}`),
      'listen stats',
      `  bind 127.0.0.1:${statsPort}`,
      '  stats enable',
      '  stats uri /stats',
      '',
    ].join('\n'),
  )
  const url = `http://127.0.0.1:${port}`
  let proxy: BackgroundProcess
  try {
    proxy = await startBackground([haproxyBinary, '-db', '-f', config], {
      ready: () => fetch(`${url}/healthz`).then((answer) => answer.ok, () => false),
    })
  } catch (error) {
    await rm(dir, { recursive: true, force: true })
    const missing = (error as Error).message.includes('could not start')
    throw new Error(missing ? `${haproxyBinary} is missing: apt-get install haproxy (bash .ci/run does)` : (error as Error).message, {
      cause: error,
    })
  }
  return {
    url,
    async up() {
      const csv = await (await fetch(`http://127.0.0.1:${statsPort}/stats;csv`)).text()
      return csv
        .split('\n')
        .map((line) => line.split(','))
        .filter(([backend, server, ...rest]) => backend === 'replicas' && server !== 'BACKEND' && rest[15]?.startsWith('UP'))
        .map(([, server]) => server!)
    },
    async stop() {
      await proxy.stop()
      await rm(dir, { recursive: true, force: true })
    },
  }
}
