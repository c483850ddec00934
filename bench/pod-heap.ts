import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import YAML from 'yaml'
import { nodeOptions, workerHeapFlags } from '../src/config/heap.js'
import { imageEnv } from '../test/support/dockerfile.js'
import { projectRoot } from '../test/support/process.js'

export interface PodRuntime {
  /** The memory limit of the API's container in deploy/kubernetes, as written there. */
  memoryLimit: string
  /** Node and V8 flags for the API's command line, as the image's CMD gives them (Node refuses some in NODE_OPTIONS). */
  nodeArgs: string[]
  /** The image's settings of glibc's allocator, which the API's RSS depends on. */
  env: NodeJS.ProcessEnv
}

/**
 * This machine has no memory limit, so V8 would size the API's heap from its 24 GiB. Production runs it in a
 * container whose limit sizes the heap: this is how the pod's limit (one process) and the image make the API run,
 * but for the heap flags `nodeOptionsValue` (the API's NODE_OPTIONS) sets.
 */
export async function podRuntime(nodeOptionsValue?: string): Promise<PodRuntime> {
  const manifest = YAML.parse(await readFile(join(projectRoot, 'deploy/kubernetes/base/api-deployment.yaml'), 'utf8'))
  const memoryLimit = String(manifest.spec.template.spec.containers[0].resources.limits.memory)
  const mebibytes = /^(\d+)Mi$/.exec(memoryLimit)?.[1]
  if (!mebibytes) throw new Error(`the API's memory limit ${memoryLimit} is not in Mi`)
  return {
    memoryLimit,
    nodeArgs: workerHeapFlags(Number(mebibytes) * 2 ** 20, 1, nodeOptions(nodeOptionsValue ?? '')),
    env: { GLIBC_TUNABLES: imageEnv().GLIBC_TUNABLES },
  }
}
