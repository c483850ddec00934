import assert from 'node:assert/strict'
import { join } from 'node:path'
import { before, describe, it } from 'node:test'
import {
  connectionAllowed,
  kubernetesDir,
  kustomize,
  selects,
  typeCheck,
  validateSchema,
  type KubernetesObject,
  type Pod,
} from './support/kubernetes.js'

// Pods of kinds nobody builds here: the CloudNativePG operator makes them from the Cluster and
// Pooler, with these labels (its documentation, "Labels and annotations").
const cnpgInstance = { 'cnpg.io/cluster': 'users-db', 'cnpg.io/podRole': 'instance', 'cnpg.io/instanceRole': 'primary' }
const cnpgPooler = { 'cnpg.io/cluster': 'users-db', 'cnpg.io/podRole': 'pooler', 'cnpg.io/poolerName': 'users-db-pooler-rw' }

const workloadKinds = new Set(['Deployment', 'StatefulSet'])
const secretName = /pass|secret|token|key|credential|auth/i

const podSpecs = (objects: KubernetesObject[]) =>
  objects.filter((object) => workloadKinds.has(object.kind)).map((object) => ({ object, pod: object.spec.template.spec }))

function images(objects: KubernetesObject[]): string[] {
  const found: string[] = []
  for (const object of objects) {
    if (object.kind === 'Cluster') found.push(object.spec.imageName)
    const pod = workloadKinds.has(object.kind) || object.kind === 'Pooler' ? object.spec.template?.spec : undefined
    for (const container of [...(pod?.containers ?? []), ...(pod?.initContainers ?? [])]) {
      if (container.image) found.push(container.image)
    }
  }
  return found
}

function only<T>(items: T[], what: string): T {
  assert.equal(items.length, 1, `expected exactly one ${what}`)
  return items[0]!
}

for (const overlay of ['local', 'production']) {
  describe(`Kubernetes overlay ${overlay}`, () => {
    let objects: KubernetesObject[]
    let api: KubernetesObject
    let apiPod: Pod
    const namespace = 'fullstack-app'
    const find = (kind: string, name: string) => objects.find((object) => object.kind === kind && object.metadata.name === name)

    before(async () => {
      objects = await kustomize(join(kubernetesDir, 'overlays', overlay))
      api = only(
        objects.filter((object) => object.kind === 'Deployment' && object.metadata.labels?.['app.kubernetes.io/component'] === 'api'),
        'API Deployment',
      )
      apiPod = { namespace, labels: api.spec.template.metadata.labels, ports: { http: 5000 } }
    })

    it('builds objects that validate against their OpenAPI schemas, with no unknown field or wrong type', async () => {
      for (const object of objects) {
        await assert.doesNotReject(validateSchema(object), `${object.kind} ${object.metadata.name}`)
      }
      assert.deepEqual(typeCheck(objects), [])
    })

    it('catches an unknown field and a quoted number that kustomize passes through', async () => {
      const broken = structuredClone(api)
      const container = broken.spec.template.spec.containers[0]
      container.readinessProbe.periodSecond = 5
      container.ports[0].containerPort = '5000'
      const problems = typeCheck([broken])
      assert.ok(problems.some((problem) => problem.includes('periodSecond')), problems.join('\n'))
      assert.ok(problems.some((problem) => problem.includes('"containerPort": "5000"')), problems.join('\n'))
      await assert.rejects(validateSchema(broken), /containerPort must be integer/)
    })

    it('puts everything in one namespace, labelled as part of the app', () => {
      for (const object of objects) {
        if (object.kind !== 'Namespace') assert.equal(object.metadata.namespace, namespace, `${object.kind} ${object.metadata.name}`)
        assert.equal(object.metadata.labels?.['app.kubernetes.io/part-of'], 'fullstack-app', `${object.kind} ${object.metadata.name}`)
      }
      assert.equal(find('Namespace', namespace)?.metadata.labels?.['pod-security.kubernetes.io/enforce'], 'restricted')
    })

    it('runs every container locked down, with probes, requests and a memory limit', () => {
      for (const { object, pod } of podSpecs(objects)) {
        const where = `${object.kind} ${object.metadata.name}`
        assert.equal(pod.automountServiceAccountToken, false, where)
        for (const container of pod.containers) {
          const security = container.securityContext ?? {}
          assert.equal(security.runAsNonRoot ?? pod.securityContext?.runAsNonRoot, true, where)
          assert.equal(security.readOnlyRootFilesystem, true, where)
          assert.equal(security.allowPrivilegeEscalation, false, where)
          assert.deepEqual(security.capabilities?.drop, ['ALL'], where)
          assert.equal(security.capabilities?.add, undefined, where)
          assert.equal((security.seccompProfile ?? pod.securityContext?.seccompProfile)?.type, 'RuntimeDefault', where)
          assert.ok(container.resources?.requests?.cpu && container.resources?.requests?.memory, `${where}: requests`)
          assert.ok(container.resources?.limits?.memory, `${where}: memory limit`)
          assert.ok(container.readinessProbe && container.livenessProbe, `${where}: probes`)
        }
      }
    })

    it('probes the API on /readyz, /healthz and a startup probe, one worker per pod', () => {
      const container = only(api.spec.template.spec.containers, 'API container') as Record<string, any> // eslint-disable-line @typescript-eslint/no-explicit-any
      assert.equal(container.readinessProbe.httpGet.path, '/readyz')
      assert.equal(container.livenessProbe.httpGet.path, '/healthz')
      assert.ok(container.startupProbe?.httpGet, 'startup probe')
      const config = find('ConfigMap', container.envFrom[0].configMapRef.name)
      assert.ok(config, 'the referenced ConfigMap is built')
      assert.equal(config.data?.WEB_CONCURRENCY, '1')
      assert.equal(api.spec.replicas, undefined, 'the HorizontalPodAutoscaler owns the replica count')
    })

    it('gives the pod longer to stop than SHUTDOWN_DELAY_MS plus SHUTDOWN_GRACE_MS', () => {
      const config = find('ConfigMap', api.spec.template.spec.containers[0].envFrom[0].configMapRef.name)!
      const delay = Number(config.data!.SHUTDOWN_DELAY_MS)
      const grace = Number(config.data!.SHUTDOWN_GRACE_MS)
      assert.ok(delay > 0 && grace > 0, 'both are set')
      assert.ok(api.spec.template.spec.terminationGracePeriodSeconds * 1000 > delay + grace)
    })

    it('pins every image by version, never :latest', () => {
      const found = images(objects)
      assert.ok(found.length >= (overlay === 'production' ? 4 : 3), found.join(', '))
      for (const image of found) {
        assert.match(image, /^[^@]+:[\w][\w.-]*$|@sha256:[0-9a-f]{64}$/, `${image} has a tag or digest`)
        assert.doesNotMatch(image, /:latest$/, image)
      }
    })

    it('holds no literal secret: credentials only through Secret references', () => {
      assert.deepEqual(objects.filter((object) => object.kind === 'Secret').map((object) => object.metadata.name), [])
      for (const { object, pod } of podSpecs(objects)) {
        for (const container of pod.containers) {
          for (const variable of container.env ?? []) {
            const where = `${object.metadata.name} ${variable.name}`
            if (secretName.test(variable.name)) assert.ok(variable.valueFrom?.secretKeyRef, `${where} comes from a Secret`)
            if (variable.value !== undefined) assert.doesNotMatch(variable.value, /:\/\/[^/]*:(?!\$\()[^/@]*@/, `${where} embeds a password`)
          }
        }
      }
      for (const config of objects.filter((object) => object.kind === 'ConfigMap')) {
        for (const [key, value] of Object.entries(config.data ?? {})) {
          assert.doesNotMatch(key, secretName, `${config.metadata.name} ${key}`)
          assert.doesNotMatch(value, /:\/\/[^/]*:[^/@]*@/, `${config.metadata.name} ${key} embeds a password`)
        }
      }
    })

    it('spreads the API over nodes and selects its own pods everywhere', () => {
      const labels = api.spec.template.metadata.labels
      assert.ok(selects(api.spec.selector, labels))
      const spread = api.spec.template.spec.topologySpreadConstraints
      assert.ok(spread.some((constraint: { topologyKey: string }) => constraint.topologyKey === 'kubernetes.io/hostname'))
      for (const constraint of spread) assert.ok(selects(constraint.labelSelector, labels))
      for (const { object } of podSpecs(objects)) {
        assert.ok(selects(object.spec.selector, object.spec.template.metadata.labels), `${object.metadata.name} selects its pods`)
      }
      for (const service of objects.filter((object) => object.kind === 'Service')) {
        const targets = podSpecs(objects).filter(({ object }) => selects({ matchLabels: service.spec.selector }, object.spec.template.metadata.labels))
        assert.equal(targets.length, 1, `Service ${service.metadata.name} selects one workload's pods`)
        for (const port of service.spec.ports) {
          const named = targets[0]!.pod.containers.flatMap((container: { ports?: { name: string }[] }) => container.ports ?? [])
          assert.ok(named.some((containerPort: { name: string }) => containerPort.name === port.targetPort), `${service.metadata.name} ${port.targetPort}`)
        }
      }
      const apiService = only(objects.filter((object) => object.kind === 'Service' && selects({ matchLabels: object.spec.selector }, labels)), 'API Service')
      for (const ingress of objects.filter((object) => object.kind === 'Ingress')) {
        for (const rule of ingress.spec.rules) {
          for (const path of rule.http.paths) assert.equal(path.backend.service.name, apiService.metadata.name)
        }
      }
    })

    it('autoscales the API Deployment from at least two replicas, with a budget for disruptions', () => {
      const hpa = only(objects.filter((object) => object.kind === 'HorizontalPodAutoscaler'), 'HorizontalPodAutoscaler')
      assert.equal(hpa.apiVersion, 'autoscaling/v2')
      const target = hpa.spec.scaleTargetRef
      assert.ok(find(target.kind, target.name), 'the target exists')
      assert.equal(`${target.apiVersion} ${target.kind} ${target.name}`, `${api.apiVersion} Deployment ${api.metadata.name}`)
      assert.ok(hpa.spec.minReplicas >= 2 && hpa.spec.maxReplicas >= hpa.spec.minReplicas)
      const budgets = objects.filter((object) => object.kind === 'PodDisruptionBudget' && selects(object.spec.selector, apiPod.labels))
      const budget = only(budgets, 'PodDisruptionBudget of the API')
      assert.ok(budget.spec.maxUnavailable === 1 || budget.spec.minAvailable < hpa.spec.minReplicas, 'a drain can proceed')
    })

    it('lets only the API reach PostgreSQL and Redis', () => {
      const redis = objects.find((object) => object.kind === 'Deployment' && object.metadata.name === 'redis')!
      const redisPod: Pod = { namespace, labels: redis.spec.template.metadata.labels }
      const stranger: Pod = { namespace, labels: { 'app.kubernetes.io/name': 'something-else' } }
      const outsider: Pod = { namespace: 'elsewhere', labels: apiPod.labels }
      const databases: Pod[] =
        overlay === 'local'
          ? [{ namespace, labels: find('StatefulSet', 'users-db')!.spec.template.metadata.labels }]
          : [
              { namespace, labels: cnpgInstance },
              { namespace, labels: cnpgPooler },
            ]
      assert.ok(connectionAllowed(objects, stranger, apiPod, 5000), 'anyone reaches the API')
      assert.ok(connectionAllowed(objects, apiPod, redisPod, 6379), 'the API reaches Redis')
      for (const intruder of [stranger, outsider, ...databases]) {
        assert.ok(!connectionAllowed(objects, intruder, redisPod, 6379), `${JSON.stringify(intruder)} cannot reach Redis`)
      }
      for (const database of databases) {
        assert.ok(connectionAllowed(objects, apiPod, database, 5432), `the API reaches ${JSON.stringify(database.labels)}`)
        for (const intruder of [stranger, outsider, redisPod]) {
          assert.ok(!connectionAllowed(objects, intruder, database, 5432), `${JSON.stringify(intruder)} cannot reach ${JSON.stringify(database.labels)}`)
        }
      }
      if (overlay === 'production') {
        assert.ok(connectionAllowed(objects, { namespace, labels: cnpgPooler }, { namespace, labels: cnpgInstance }, 5432), 'pooler to PostgreSQL')
        const operator = { namespace: 'cnpg-system', labels: { 'app.kubernetes.io/name': 'cloudnative-pg' } }
        assert.ok(connectionAllowed(objects, operator, { namespace, labels: cnpgInstance }, 8000), 'operator to the instance manager')
      }
    })

    if (overlay === 'production') {
      it('runs PostgreSQL as a CloudNativePG Cluster of three behind a transaction-mode Pooler; migrations bypass it', () => {
        const cluster = only(objects.filter((object) => object.kind === 'Cluster'), 'Cluster')
        assert.equal(cluster.spec.instances, 3)
        const pooler = only(objects.filter((object) => object.kind === 'Pooler'), 'Pooler')
        assert.equal(pooler.spec.cluster.name, cluster.metadata.name)
        assert.equal(pooler.spec.pgbouncer.poolMode, 'transaction')
        const config = find('ConfigMap', api.spec.template.spec.containers[0].envFrom[0].configMapRef.name)!.data!
        assert.equal(new URL(config.DATABASE_URL!).hostname, pooler.metadata.name)
        assert.equal(new URL(config.DATABASE_MIGRATION_URL!).hostname, `${cluster.metadata.name}-rw`)
        assert.equal(config.DATABASE_PREPARED_STATEMENTS, 'true')
        assert.ok(Number(pooler.spec.pgbouncer.parameters.max_prepared_statements) > 0, 'the pooler keeps prepared statements')
      })
    }
  })
}
