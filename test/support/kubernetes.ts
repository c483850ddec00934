import { execFile } from 'node:child_process'
import { join } from 'node:path'
import { promisify } from 'node:util'
import ts from 'typescript'
import { parseAllDocuments } from 'yaml'
import { projectRoot } from './process.js'

export const kubernetesDir = join(projectRoot, 'deploy/kubernetes')

export interface KubernetesObject {
  apiVersion: string
  kind: string
  metadata: { name: string; namespace?: string; labels?: Record<string, string> }
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  spec?: any
  data?: Record<string, string>
}

/** `kubectl kustomize <dir>`, parsed: what `kubectl apply -k <dir>` would send. */
export async function kustomize(dir: string): Promise<KubernetesObject[]> {
  let stdout: string
  try {
    ;({ stdout } = await promisify(execFile)('kubectl', ['kustomize', dir], { maxBuffer: 16 * 1024 * 1024 }))
  } catch (error) {
    const { code, stderr } = error as { code?: string; stderr?: string }
    if (code === 'ENOENT') {
      throw new Error('kubectl is not installed: apt-get install kubectl (bash .ci/run does)', { cause: error })
    }
    throw new Error(`kubectl kustomize ${dir} failed:\n${stderr}`, { cause: error })
  }
  return parseAllDocuments(stdout).map((document) => {
    if (document.errors.length > 0) throw document.errors[0]
    return document.toJS() as KubernetesObject
  })
}

/** The module of kubernetes-models (or its CloudNativePG package) that defines this kind. */
function modelModule({ apiVersion, kind }: KubernetesObject): string {
  if (apiVersion.startsWith('postgresql.cnpg.io/')) return `@kubernetes-models/cloudnative-pg/${apiVersion}/${kind}`
  return `kubernetes-models/${apiVersion}/${kind}`
}

/** Validates against the OpenAPI schema of the kind; unknown kinds are an error. */
export async function validateSchema(object: KubernetesObject): Promise<void> {
  const module: Record<string, new (data: unknown) => { validate(): void }> = await import(modelModule(object)).catch(() => {
    throw new Error(`no schema for ${object.apiVersion} ${object.kind}`)
  })
  new module[object.kind]!(object).validate()
}

/**
 * Unknown fields and wrong types, which the schema validation lets through: each object is checked
 * as an object literal of its kind's TypeScript interface, so the compiler's excess-property and
 * assignability checks apply at every depth. Returns the compiler's messages, one per problem.
 */
export function typeCheck(objects: KubernetesObject[]): string[] {
  const fileName = join(projectRoot, 'test', '__kubernetes_objects__.ts')
  const lines = objects.map((object, i) => `import type { I${object.kind} as T${i} } from '${modelModule(object)}'`)
  let lineCount = lines.length
  const firstLines = objects.map((object, i) => {
    const declaration = `export const object${i}: T${i} = ${JSON.stringify(object, null, 1)}`
    lines.push(declaration)
    lineCount += declaration.split('\n').length
    return lineCount - declaration.split('\n').length
  })
  const source = lines.join('\n')
  const options: ts.CompilerOptions = {
    strict: true,
    noEmit: true,
    skipLibCheck: true,
    types: [],
    module: ts.ModuleKind.NodeNext,
    moduleResolution: ts.ModuleResolutionKind.NodeNext,
    target: ts.ScriptTarget.ES2022,
  }
  const host = ts.createCompilerHost(options)
  const getSourceFile = host.getSourceFile
  host.getSourceFile = (name, language, ...rest) =>
    name === fileName ? ts.createSourceFile(name, source, language) : getSourceFile(name, language, ...rest)
  const fileExists = host.fileExists
  host.fileExists = (name) => name === fileName || fileExists(name)
  const program = ts.createProgram([fileName], options, host)
  const sourceFile = program.getSourceFile(fileName)!
  return ts.getPreEmitDiagnostics(program, sourceFile).map((diagnostic) => {
    const message = ts.flattenDiagnosticMessageText(diagnostic.messageText, '\n')
    if (diagnostic.start === undefined) return message
    const { line } = sourceFile.getLineAndCharacterOfPosition(diagnostic.start)
    const object = objects[firstLines.findLastIndex((first) => first <= line)]
    const text = sourceFile.text.split('\n')[line]!.trim()
    return object ? `${object.kind} ${object.metadata.name}, at ${text}: ${message}` : message
  })
}

interface LabelSelector {
  matchLabels?: Record<string, string>
  matchExpressions?: { key: string; operator: 'In' | 'NotIn' | 'Exists' | 'DoesNotExist'; values?: string[] }[]
}

export function selects(selector: LabelSelector | undefined, labels: Record<string, string>): boolean {
  if (!selector) return false
  const matchLabels = Object.entries(selector.matchLabels ?? {}).every(([key, value]) => labels[key] === value)
  return (
    matchLabels &&
    (selector.matchExpressions ?? []).every(({ key, operator, values = [] }) => {
      const value = labels[key]
      if (operator === 'Exists') return value !== undefined
      if (operator === 'DoesNotExist') return value === undefined
      const listed = value !== undefined && values.includes(value)
      return operator === 'In' ? listed : !listed
    })
  )
}

/** A pod as NetworkPolicies see it: its namespace, labels and named ports. */
export interface Pod {
  namespace: string
  labels: Record<string, string>
  ports?: Record<string, number>
}

interface PolicyPeer {
  podSelector?: LabelSelector
  namespaceSelector?: LabelSelector
  ipBlock?: unknown
}
interface PolicyRule {
  from?: PolicyPeer[]
  to?: PolicyPeer[]
  ports?: { port?: number | string; protocol?: string }[]
}

function peerMatches(peer: PolicyPeer, policyNamespace: string, pod: Pod): boolean {
  if (peer.ipBlock) return false
  const namespaceLabels = { 'kubernetes.io/metadata.name': pod.namespace }
  const inNamespace = peer.namespaceSelector ? selects(peer.namespaceSelector, namespaceLabels) : pod.namespace === policyNamespace
  return inNamespace && (peer.podSelector === undefined || selects(peer.podSelector, pod.labels))
}

function ruleAllows(rule: PolicyRule, peers: PolicyPeer[] | undefined, policyNamespace: string, peer: Pod, target: Pod, port: number) {
  const peerAllowed = peers === undefined || peers.length === 0 || peers.some((p) => peerMatches(p, policyNamespace, peer))
  const portAllowed =
    rule.ports === undefined ||
    rule.ports.some(({ port: allowed, protocol = 'TCP' }) => {
      if (protocol !== 'TCP') return false
      return allowed === undefined || allowed === port || (typeof allowed === 'string' && target.ports?.[allowed] === port)
    })
  return peerAllowed && portAllowed
}

/** Whether the NetworkPolicies among `objects` let `from` open a TCP connection to `to` on `port`. */
export function connectionAllowed(objects: KubernetesObject[], from: Pod, to: Pod, port: number): boolean {
  const policies = objects.filter((object) => object.kind === 'NetworkPolicy')
  const applying = (pod: Pod, direction: 'Ingress' | 'Egress') =>
    policies.filter(
      (policy) =>
        policy.metadata.namespace === pod.namespace &&
        (Object.keys(policy.spec.podSelector).length === 0 || selects(policy.spec.podSelector, pod.labels)) &&
        (policy.spec.policyTypes ?? ['Ingress']).includes(direction),
    )
  const egress = applying(from, 'Egress')
  const egressAllowed =
    egress.length === 0 ||
    egress.some((policy) =>
      (policy.spec.egress ?? []).some((rule: PolicyRule) => ruleAllows(rule, rule.to, policy.metadata.namespace!, to, to, port)),
    )
  const ingress = applying(to, 'Ingress')
  const ingressAllowed =
    ingress.length === 0 ||
    ingress.some((policy) =>
      (policy.spec.ingress ?? []).some((rule: PolicyRule) => ruleAllows(rule, rule.from, policy.metadata.namespace!, from, to, port)),
    )
  return egressAllowed && ingressAllowed
}
