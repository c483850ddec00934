import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import YAML from 'yaml'
import { nodeOptions, workerHeapFlags } from '../src/config/heap.js'
import { imageEnv } from '../test/support/dockerfile.js'
import { projectRoot } from '../test/support/process.js'

/** The memory limit of the API's container in deploy/kubernetes. */
export async function podMemoryLimit(): Promise<{ text: string; bytes: number }> {
  const manifest = YAML.parse(await readFile(join(projectRoot, 'deploy/kubernetes/base/api-deployment.yaml'), 'utf8'))
  const text = String(manifest.spec.template.spec.containers[0].resources.limits.memory)
  const mebibytes = /^(\d+)Mi$/.exec(text)?.[1]
  if (!mebibytes) throw new Error(`the API's memory limit ${text} is not in Mi`)
  return { text, bytes: Number(mebibytes) * 2 ** 20 }
}

/**
 * This machine has no memory limit, so V8 would size the API's heap from its 24 GiB. Production runs it in a
 * container whose limit sizes the heap: these are the flags that the pod's limit (one process) and the image's CMD
 * make V8 use, but for those `nodeOptionsValue` (the API's NODE_OPTIONS) sets. They go on the command line, as in
 * the image: Node refuses some of them in NODE_OPTIONS.
 */
export async function podHeapFlags(nodeOptionsValue?: string): Promise<string[]> {
  return workerHeapFlags((await podMemoryLimit()).bytes, 1, nodeOptions(nodeOptionsValue ?? ''))
}

/** The image's settings of glibc's allocator, which the API's RSS depends on. */
export const imageMallocEnv = (): NodeJS.ProcessEnv => ({ GLIBC_TUNABLES: imageEnv().GLIBC_TUNABLES })
