// Checks what `helm template` rendered (docker/helm/check.sh): every file parses as YAML with no duplicate keys,
// and Careway's pods hold the chart's promises: one Deployment per enabled role with CAREWAY_ROLES, config and
// secrets through envFrom, the three probes on /health and /ready, non-root with a read-only root filesystem and
// an emptyDir for /tmp, a grace period above SHUTDOWN_TIMEOUT_MS, a TCP Service for MLLP, and a PDB, an HPA and a
// NetworkPolicy. Prints one line per file and exits 1 with every problem listed.
import { readFileSync } from 'node:fs';
import { basename } from 'node:path';
import { parseAllDocuments } from 'yaml';

const problems = [];
for (const file of process.argv.slice(2)) {
  const name = basename(file);
  const objects = [];
  for (const doc of parseAllDocuments(readFileSync(file, 'utf8'), { uniqueKeys: true })) {
    for (const e of doc.errors) problems.push(`${name}: ${e.message}`);
    const o = doc.toJS();
    if (o) objects.push(o);
  }
  const kinds = (kind) => objects.filter((o) => o.kind === kind);
  const config = kinds('ConfigMap').find((c) => c.metadata.name.endsWith('-config'))?.data ?? {};
  const timeout = Number(config.SHUTDOWN_TIMEOUT_MS ?? 10000);
  const careway = kinds('Deployment').filter((d) => d.spec.template.spec.containers[0].name === 'careway');
  if (careway.length === 0) problems.push(`${name}: no Careway Deployment`);
  for (const d of careway) {
    const where = `${name}: Deployment ${d.metadata.name}`;
    const pod = d.spec.template.spec;
    const c = pod.containers[0];
    const role = c.env?.find((e) => e.name === 'CAREWAY_ROLES')?.value;
    if (!['api', 'workers', 'mllp'].includes(role)) problems.push(`${where}: CAREWAY_ROLES is ${role}`);
    const from = (c.envFrom ?? []).map((e) => (e.configMapRef ? 'configMap' : e.secretRef ? 'secret' : '?'));
    if (!from.includes('configMap') || !from.includes('secret')) problems.push(`${where}: envFrom ${from}`);
    for (const [probe, path] of [
      ['startupProbe', '/health'],
      ['livenessProbe', '/health'],
      ['readinessProbe', '/ready'],
    ])
      if (c[probe]?.httpGet?.path !== path) problems.push(`${where}: ${probe} is not on ${path}`);
    if (pod.securityContext?.runAsNonRoot !== true) problems.push(`${where}: not runAsNonRoot`);
    if (c.securityContext?.readOnlyRootFilesystem !== true)
      problems.push(`${where}: root filesystem writable`);
    if (c.securityContext?.allowPrivilegeEscalation !== false)
      problems.push(`${where}: privilege escalation`);
    const tmp = c.volumeMounts?.find((m) => m.mountPath === '/tmp');
    if (!pod.volumes?.find((v) => v.name === tmp?.name)?.emptyDir)
      problems.push(`${where}: no emptyDir at /tmp`);
    if (!(pod.terminationGracePeriodSeconds * 1000 > timeout))
      problems.push(`${where}: grace ${pod.terminationGracePeriodSeconds}s is not above ${timeout} ms`);
    if (role === 'mllp') {
      const svc = kinds('Service').find((s) => s.spec.ports.some((p) => p.name === 'mllp'));
      if (svc?.spec.ports[0].protocol !== 'TCP') problems.push(`${where}: no TCP Service for MLLP`);
    }
    const component = d.spec.selector.matchLabels['app.kubernetes.io/component'];
    const covers = (o) => o.spec.selector?.matchLabels?.['app.kubernetes.io/component'] === component;
    if (!kinds('PodDisruptionBudget').some(covers)) problems.push(`${where}: no PodDisruptionBudget`);
    if (
      !d.spec.replicas &&
      !kinds('HorizontalPodAutoscaler').some((h) => h.spec.scaleTargetRef.name === d.metadata.name)
    )
      problems.push(`${where}: neither replicas nor an HPA`);
  }
  if (kinds('NetworkPolicy').length === 0) problems.push(`${name}: no NetworkPolicy`);
  console.log(`${name}: ${objects.length} objects (${careway.map((d) => d.metadata.name).join(', ')})`);
}
if (problems.length > 0) {
  console.error(problems.join('\n'));
  process.exit(1);
}
