import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { DockerfileParser, type Env, type From, type Instruction } from 'dockerfile-ast'
import { projectRoot } from './process.js'

export const dockerfile = DockerfileParser.parse(readFileSync(join(projectRoot, 'Dockerfile'), 'utf8'))

export interface Stage {
  from: From
  name: string
  instructions: Instruction[]
}

export const stages: Stage[] = dockerfile.getFROMs().map((from) => ({
  from,
  name: from.getBuildStage() ?? '',
  instructions: dockerfile.getContainingImage(from.getRange().start)!.getInstructions(),
}))

/** The environment the final image gives its process (its ENV instructions). */
export function imageEnv(): Record<string, string> {
  const runtime = stages.at(-1)!.instructions.filter((instruction) => instruction.getKeyword() === 'ENV') as Env[]
  return Object.fromEntries(runtime.flatMap((env) => env.getProperties().map((property) => [property.getName(), property.getValue() ?? ''])))
}
