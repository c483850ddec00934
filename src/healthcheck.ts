// Container health check (Dockerfile HEALTHCHECK, compose.yaml): exits 0 when /readyz answers 200.
// Slim Node images have no curl, so the check runs on the image's own node.
import { loadSettings } from './config/settings.js'

const { host, port } = loadSettings()
const target = host === '0.0.0.0' || host === '::' ? '127.0.0.1' : host
const url = `http://${target.includes(':') ? `[${target}]` : target}:${port}/readyz`

try {
  const answer = await fetch(url, { signal: AbortSignal.timeout(4000) })
  process.exitCode = answer.ok ? 0 : 1
} catch {
  process.exitCode = 1
}
