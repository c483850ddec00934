import { totalmem } from 'node:os'

/**
 * Each semi-space of the young generation, in MB: what V8 picks on a host of 4 GB or more. From a smaller memory
 * limit it derives a smaller one (1 MB up to 512 MB), which makes allocation-heavy requests scavenge far more often.
 */
export const semiSpaceMb = 16

const mb = 2 ** 20

/** V8 flags that set each part of the heap, spelt with dashes or underscores. */
const sets = {
  oldSpace: /^--max[-_](?:old[-_]space[-_]size(?:[-_]percentage)?|heap[-_]size)=/,
  semiSpace: /^--max[-_](?:semi[-_]space[-_]size|heap[-_]size)=/,
}

/**
 * The memory limit of this process's container in bytes (cgroup v2 `memory.max`, v1 `memory.limit_in_bytes`,
 * as libuv reads them), or undefined without one: Node reports none as 0 or as a number beyond the host's memory.
 */
export function containerMemoryLimit(constrained = process.constrainedMemory(), physical = totalmem()): number | undefined {
  return constrained > 0 && constrained < physical ? constrained : undefined
}

/**
 * V8 flags for each of `workers` processes sharing a container of `memoryLimit` bytes: each gets an equal share
 * and half of it as old generation, what V8 gives a process alone in a container of that size (the rest is for
 * the young generation, code, buffers and the process itself). Without a limit the old generation is left to V8,
 * and so is whatever `given` (the command line and NODE_OPTIONS) sets already.
 */
export function workerHeapFlags(memoryLimit: number | undefined, workers: number, given: readonly string[]): string[] {
  const flags = [`--max-semi-space-size=${semiSpaceMb}`]
  if (memoryLimit !== undefined) flags.unshift(`--max-old-space-size=${Math.floor(memoryLimit / workers / 2 / mb)}`)
  const isGiven = (flag: string) => {
    const set = flag.startsWith('--max-old') ? sets.oldSpace : sets.semiSpace
    return given.some((argument) => set.test(argument))
  }
  return flags.filter((flag) => !isGiven(flag))
}

/** The arguments of NODE_OPTIONS (which takes no quoted spaces in a V8 flag). */
export const nodeOptions = (value = process.env.NODE_OPTIONS ?? '') => value.split(/\s+/).filter(Boolean)
