import { totalmem } from 'node:os'

/**
 * Each semi-space of the young generation, in MB. From a small memory limit V8 derives 1 MB (up to 512 MB), which
 * makes allocation-heavy requests scavenge far more often; 16 MB (what it picks from 4 GB) leaves the old generation
 * too little room under a small limit (see heapGrowingPercent).
 */
export const semiSpaceMb = 8

/**
 * How far the old generation may grow past what the last full collection kept before the next one starts, in
 * percent. Under a limit below 256 MB V8 allows 30 %: with this service's ~32 MB of live code and data and a young
 * generation as large, that is less room than one scavenge may promote, so V8 marked the old generation
 * continuously under load (a full collection for every scavenge while list pages were read, and concurrent marking
 * on the other core). With 8 MB semi-spaces, 60 % cuts those collections by 40 % at about the same RSS
 * (bench/results/2026-11-26-heap-growth.md). Node refuses this flag in NODE_OPTIONS: it goes on the command line.
 */
export const heapGrowingPercent = 60

/**
 * V8 allocation-site pretenuring: when most objects of one allocation site are still alive at a scavenge, V8 allocates
 * that site's objects in the old generation from then on. Under a load of cached list pages it made that decision a few
 * seconds in, and the old generation filled with request garbage that also held each page's 12.5 KB from Redis (old
 * objects keep what they reference alive through scavenges): a full collection every ~1,100 pages, whatever the
 * semi-space size. Without pretenuring, 0–1 full collections instead of 22–27 per 30,000 pages and a third to a half
 * less CPU per page, on Node 20 and 24 (bench/results/2026-11-26-pretenuring.md). Node refuses this flag in
 * NODE_OPTIONS too.
 */
export const pretenuringOff = '--no-allocation-site-pretenuring'

const mb = 2 ** 20

/** V8 flags that set each of the above, spelt with dashes or underscores. */
const sets = {
  oldSpace: /^--max[-_](?:old[-_]space[-_]size(?:[-_]percentage)?|heap[-_]size)=/,
  semiSpace: /^--max[-_](?:semi[-_]space[-_]size|heap[-_]size)=/,
  growing: /^--heap[-_]growing[-_]percent=/,
  pretenuring: /^--(?:no[-_])?allocation[-_]site[-_]pretenuring$/,
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
  const flags: [string, RegExp][] = [
    [`--max-semi-space-size=${semiSpaceMb}`, sets.semiSpace],
    [`--heap-growing-percent=${heapGrowingPercent}`, sets.growing],
    [pretenuringOff, sets.pretenuring],
  ]
  if (memoryLimit !== undefined) flags.unshift([`--max-old-space-size=${Math.floor(memoryLimit / workers / 2 / mb)}`, sets.oldSpace])
  return flags.filter(([, set]) => !given.some((argument) => set.test(argument))).map(([flag]) => flag)
}

/** The arguments of NODE_OPTIONS (which takes no quoted spaces in a V8 flag). */
export const nodeOptions = (value = process.env.NODE_OPTIONS ?? '') => value.split(/\s+/).filter(Boolean)
