// Argo's workflow-controller and the kubelets of a small cluster, plugged into the Kubernetes
// stand-in (test/helpers/kube-standin.js), so that a client submits, watches, follows and stops a
// rendered Workflow as it would on Thinkube, and every build step runs for real (step-runner's
// runStep: Debian's buildah in a fresh storage root). What it follows (Argo v4, as
// @kubernetes-models/argo-workflows 2 renders; checked against argo-workflows' source):
// - resource workflows.argoproj.io/v1alpha1 (kind Workflow; no status subresource, as Argo's
//   CRD): create (generateName), get, list, watch, patch, delete through the stand-in;
// - the DAG of spec.entrypoint: a task starts when every `dependencies` entry Succeeded; a task
//   whose dependency Failed/Errored/was Omitted gets a node of type Skipped, phase Omitted,
//   message "omitted: depends condition not met"; `{{tasks.X.outputs.parameters.P}}`,
//   `{{inputs.parameters.P}}` and `{{workflow.uid}}` (metadata.uid) are substituted;
// - names (POD_NAMES=v2): node name "<workflow>.<task>", node id "<workflow>-<fnv32a(node name)>",
//   pod name "<workflow>-<template>-<fnv32a(node name)>" (prefix cut to 242 characters), the
//   workflow's own node id and name = the workflow name (type DAG, boundary of the tasks);
// - status written as the controller does, each write a new resourceVersion and a MODIFIED event:
//   phase Running -> Succeeded | Failed | Error, startedAt, finishedAt, progress "k/n", message,
//   conditions (PodRunning, Completed), nodes by id ({ id, name, displayName, type, templateName,
//   templateScope, phase, boundaryID, startedAt, finishedAt, message, hostNodeName, progress,
//   inputs, outputs: { parameters: [{ name, value, valueFrom }], exitCode }, children,
//   outboundNodes }); labels workflows.argoproj.io/phase and /completed, annotation
//   workflows.argoproj.io/pod-name-format: v2. A failed step: node Failed, message
//   "main: Error (exit code N)" (Argo >= 3.7 names the container), dependants Omitted, the
//   Workflow Failed with no message (a DAG's failure has none; the failed node carries it);
// - spec.shutdown "Stop" or "Terminate" (argo stop/terminate patch it): unfinished pod nodes Failed
//   with "workflow shutdown with strategy:  Stop" (two spaces, Argo's wording), their containers
//   get SIGTERM, nothing new starts, the Workflow Failed with "Stopped with strategy 'Stop'";
// - a Pod per task (core/v1, labels workflows.argoproj.io/workflow and /completed plus the
//   template's and podMetadata's, annotations workflows.argoproj.io/node-name and /node-id,
//   ownerReference to the Workflow, initContainer init, containers wait and main, nodeSelector,
//   spec.nodeName once bound, status.phase Pending/Running/Succeeded/Failed, containerStatuses);
// - scheduling on the `nodes` option (default node-amd64 and node-arm64, one slot each): a pod
//   whose nodeSelector no node matches, or whose nodes are full, stays Pending with condition
//   PodScheduled=False Unschedulable and the scheduler's message, and the Argo node shows
//   "Unschedulable: 0/2 nodes are available: ..."; a pod whose Secret volume (or key) is missing
//   is bound but stays ContainerCreating (node Pending, message "ContainerCreating") with a
//   FailedMount Event naming the Secret, and starts once the Secret is created (the kubelet retries);
// - GET pods/{name}/log (RBAC resource "pods/log", verb get): text/plain, chunked, the step's
//   stdout+stderr as it is produced; follow=true holds the stream until the container ends;
//   tailLines and limitBytes; 400 "container x is not valid for pod y", 400 "pod y does not have a
//   host assigned" (unscheduled), 400 'container "main" in pod "y" is waiting to start:
//   ContainerCreating'; a deleted pod is 404;
// - podGC (spec.podGC.strategy OnPodCompletion/OnPodSuccess/OnWorkflowCompletion/
//   OnWorkflowSuccess) after podGcDelayMs (Argo's default 5 s); deleting a Workflow deletes its
//   pods (owner references) and kills their containers; a pod deleted under a running step makes
//   the node Error "pod deleted"; ttlStrategy.secondsAfterCompletion deletes a finished Workflow.
// Not followed: retries, withItems/withParam, `depends` expressions, exit handlers, steps
// templates, artifacts, resource requests in scheduling, Workflow validation beyond template and
// dependency names ("invalid spec: ..." wording not checked against Argo).
import { runStep, substitute } from './step-runner.js';

const GROUP = 'argoproj.io';
const now = () => new Date().toISOString().replace(/\.\d+Z$/, 'Z');

/** FNV-1a, 32 bits (Go's hash/fnv New32a), as an unsigned integer. */
export function fnv32a(text) {
  let hash = 0x811c9dc5;
  for (const byte of Buffer.from(text, 'utf8')) hash = Math.imul(hash ^ byte, 0x01000193) >>> 0;
  return hash >>> 0;
}

/** Argo's Workflow.NodeID. */
export function argoNodeId(workflowName, nodeName) {
  return nodeName === workflowName ? workflowName : `${workflowName}-${fnv32a(nodeName)}`;
}

/** Argo's GeneratePodName for POD_NAMES=v2. */
export function argoPodName(workflowName, nodeName, templateName) {
  if (workflowName === nodeName) return workflowName;
  let prefix = templateName ? `${workflowName}-${templateName}` : workflowName;
  const maxPrefix = 253 - 10; // maxK8sResourceNameLength - k8sNamingHashLength
  if (prefix.length > maxPrefix - 1) prefix = prefix.slice(0, maxPrefix - 1);
  return `${prefix}-${fnv32a(nodeName)}`;
}

/** Argo's CRD: workflows.argoproj.io/v1alpha1 (also without a controller, for API-only tests). */
export function addWorkflowResource(kube) {
  kube.addResource({ group: GROUP, version: 'v1alpha1', resource: 'workflows', kind: 'Workflow' });
}

export const DEFAULT_NODES = [
  { name: 'node-amd64', arch: 'amd64', slots: 1 },
  { name: 'node-arm64', arch: 'arm64', slots: 1 },
];

const FULFILLED = new Set(['Succeeded', 'Failed', 'Error', 'Skipped', 'Omitted']);
const parseDuration = (text) => {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)$/.exec(text ?? '');
  return m ? Number(m[1]) * { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[m[2]] : undefined;
};

/**
 * Start the controller on a stand-in. options: nodes ([{ name, arch, slots, labels }]),
 * podGcDelayMs (default 5000), graceMs (SIGTERM to SIGKILL, default 2000), executorImage.
 */
export function startArgoController(kube, options = {}) {
  const nodes = (options.nodes ?? DEFAULT_NODES).map((n) => ({ slots: 1, ...n, labels: { 'kubernetes.io/arch': n.arch, 'kubernetes.io/os': 'linux', 'kubernetes.io/hostname': n.name, ...n.labels }, running: new Set() }));
  const podGcDelayMs = options.podGcDelayMs ?? 5000;
  const graceMs = options.graceMs ?? 2000;
  const executorImage = options.executorImage ?? 'quay.io/argoproj/argoexec:v4.0.0';
  addWorkflowResource(kube);

  const runs = new Map(); // `${ns}/${name}` -> run
  const queue = []; // pod tasks waiting for a node, in creation order
  const logs = new Map(); // `${ns}/${pod}/${container}` -> { chunks, ended, listeners }
  const record = [];
  const waiters = new Set();
  const timers = new Set();
  const steps = new Set(); // promises of running steps
  let seq = 0;

  function note(entry) {
    record.push({ seq: ++seq, at: new Date().toISOString(), ...entry });
    check();
  }
  function later(ms, fn) {
    if (ms > 2 ** 31 - 1) return; // beyond setTimeout's range (a TTL of weeks): never within a test
    const timer = setTimeout(() => {
      timers.delete(timer);
      fn();
    }, ms);
    timer.unref();
    timers.add(timer);
  }
  function check() {
    for (const w of [...waiters]) {
      const value = w.test();
      if (value) {
        waiters.delete(w);
        w.resolve(value);
      }
    }
  }

  // ---- logs (the kubelet's) ----
  const logKey = (ns, pod, container) => `${ns}/${pod}/${container}`;
  function openLog(ns, pod, container) {
    logs.set(logKey(ns, pod, container), { chunks: [], ended: false, listeners: new Set() });
  }
  function appendLog(ns, pod, container, chunk) {
    const log = logs.get(logKey(ns, pod, container));
    if (!log || log.ended) return;
    log.chunks.push(Buffer.from(chunk));
    for (const l of log.listeners) l.data(chunk);
    check();
  }
  function endLog(ns, pod, container) {
    const log = logs.get(logKey(ns, pod, container));
    if (!log || log.ended) return;
    log.ended = true;
    for (const l of log.listeners) l.end();
    log.listeners.clear();
  }

  kube.addSubresource('pods', 'log', ({ res, url, parsed, object: pod, send, status }) => {
    if (!pod) return send(res, 404, status(404, 'NotFound', `pods "${parsed.name}" not found`, { name: parsed.name, kind: 'pods' }));
    const names = [...(pod.spec.initContainers ?? []), ...pod.spec.containers].map((c) => c.name);
    let container = url.searchParams.get('container');
    if (!container) {
      if (pod.spec.containers.length !== 1) return send(res, 400, status(400, 'BadRequest', `a container name must be specified for pod ${pod.metadata.name}, choose one of: [${pod.spec.containers.map((c) => c.name).join(' ')}] or one of the init containers: [${(pod.spec.initContainers ?? []).map((c) => c.name).join(' ')}]`));
      container = pod.spec.containers[0].name;
    }
    if (!names.includes(container)) return send(res, 400, status(400, 'BadRequest', `container ${container} is not valid for pod ${pod.metadata.name}`));
    if (!pod.spec.nodeName) return send(res, 400, status(400, 'BadRequest', `pod ${pod.metadata.name} does not have a host assigned`));
    const log = logs.get(logKey(pod.metadata.namespace, pod.metadata.name, container));
    if (!log) return send(res, 400, status(400, 'BadRequest', `container "${container}" in pod "${pod.metadata.name}" is waiting to start: ContainerCreating`));
    res.writeHead(200, { 'content-type': 'text/plain', 'cache-control': 'no-cache, private' });
    res.flushHeaders();
    let text = Buffer.concat(log.chunks);
    const tail = Number(url.searchParams.get('tailLines') ?? -1);
    if (tail >= 0) {
      const lines = text.toString('utf8').split(/(?<=\n)/);
      text = Buffer.from(lines.slice(Math.max(0, lines.length - tail)).join(''));
    }
    let budget = Number(url.searchParams.get('limitBytes') ?? Infinity) || Infinity;
    const write = (chunk) => {
      const b = Buffer.from(chunk).subarray(0, budget);
      budget -= b.length;
      if (b.length) res.write(b);
      return budget > 0;
    };
    if (!write(text) || !isFollow(url) || log.ended) {
      res.end();
      return 200;
    }
    const listener = { data: (chunk) => write(chunk) || (log.listeners.delete(listener), res.end()), end: () => res.end() };
    log.listeners.add(listener);
    res.on('close', () => log.listeners.delete(listener));
    return 200;
  });
  const isFollow = (url) => ['1', 't', 'T', 'true', 'TRUE', 'True'].includes(url.searchParams.get('follow') ?? '');

  // ---- workflow status ----
  function taskNodes(run) {
    return [...run.tasks.values()];
  }
  function nodeStatus(run, t) {
    return {
      id: t.id,
      name: t.nodeName,
      displayName: t.task.name,
      type: t.type,
      templateName: t.task.template,
      templateScope: `local/${run.name}`,
      phase: t.phase,
      boundaryID: run.name,
      ...(t.message ? { message: t.message } : {}),
      startedAt: t.startedAt,
      finishedAt: t.finishedAt ?? null,
      ...(t.type === 'Pod' ? { progress: t.phase === 'Succeeded' ? '1/1' : '0/1' } : {}),
      ...(t.host ? { hostNodeName: t.host } : {}),
      ...(Object.keys(t.parameters ?? {}).length ? { inputs: { parameters: Object.entries(t.parameters).map(([name, value]) => ({ name, value })) } } : {}),
      ...(t.outputs ? { outputs: t.outputs } : {}),
      ...(t.children.length ? { children: [...t.children] } : {}),
    };
  }
  function progress(run) {
    const pods = taskNodes(run).filter((t) => t.type === 'Pod');
    return `${pods.filter((t) => t.phase === 'Succeeded').length}/${pods.length}`;
  }
  function writeStatus(run) {
    const wf = kube.get('workflows', run.ns, run.name, GROUP);
    if (!wf) return;
    const roots = taskNodes(run).filter((t) => !(t.task.dependencies ?? []).length).map((t) => t.id);
    const leaves = run.dag.tasks.filter((x) => !run.dag.tasks.some((y) => (y.dependencies ?? []).includes(x.name))).map((x) => run.tasks.get(x.name)?.id).filter(Boolean);
    const dagNode = {
      id: run.name,
      name: run.name,
      displayName: run.name,
      type: 'DAG',
      templateName: wf.spec.entrypoint,
      templateScope: `local/${run.name}`,
      phase: run.dagPhase,
      startedAt: run.startedAt,
      finishedAt: run.finishedAt ?? null,
      progress: progress(run),
      ...(roots.length ? { children: roots } : {}),
      ...(run.finishedAt && leaves.length ? { outboundNodes: leaves } : {}),
    };
    const nodesById = { [run.name]: dagNode };
    for (const t of taskNodes(run)) nodesById[t.id] = nodeStatus(run, t);
    const running = taskNodes(run).some((t) => t.phase === 'Running');
    wf.metadata.labels = { ...wf.metadata.labels, 'workflows.argoproj.io/phase': run.phase, 'workflows.argoproj.io/completed': String(Boolean(run.finishedAt)) };
    wf.metadata.annotations = { ...wf.metadata.annotations, 'workflows.argoproj.io/pod-name-format': 'v2' };
    wf.status = {
      phase: run.phase,
      startedAt: run.startedAt,
      finishedAt: run.finishedAt ?? null,
      progress: progress(run),
      ...(run.message ? { message: run.message } : {}),
      nodes: nodesById,
      conditions: [{ type: 'PodRunning', status: running ? 'True' : 'False' }, ...(run.finishedAt ? [{ type: 'Completed', status: 'True' }] : [])],
    };
    kube.update('workflows', wf, GROUP);
    check();
  }

  // ---- pods ----
  function podObject(run, t) {
    const c = t.template.container;
    const vars = { parameters: t.parameters, workflowUid: run.uid };
    const main = { ...c, name: 'main', args: c.args?.map((a) => substitute(a, vars)), env: c.env?.map((e) => (e.value !== undefined ? { ...e, value: substitute(e.value, vars) } : e)) };
    return {
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: {
        name: t.pod,
        namespace: run.ns,
        labels: { ...run.spec.podMetadata?.labels, ...t.template.metadata?.labels, 'workflows.argoproj.io/workflow': run.name, 'workflows.argoproj.io/completed': 'false' },
        annotations: { ...run.spec.podMetadata?.annotations, ...t.template.metadata?.annotations, 'workflows.argoproj.io/node-name': t.nodeName, 'workflows.argoproj.io/node-id': t.id, 'kubectl.kubernetes.io/default-container': 'main' },
        ownerReferences: [{ apiVersion: `${GROUP}/v1alpha1`, kind: 'Workflow', name: run.name, uid: run.uid, controller: true, blockOwnerDeletion: true }],
      },
      spec: {
        restartPolicy: 'Never',
        serviceAccountName: run.spec.serviceAccountName ?? 'default',
        ...(t.template.nodeSelector ? { nodeSelector: t.template.nodeSelector } : {}),
        initContainers: [{ name: 'init', image: executorImage, command: ['argoexec', 'init'] }],
        containers: [{ name: 'wait', image: executorImage, command: ['argoexec', 'wait'] }, main],
        volumes: [...(run.spec.volumes ?? []), ...(t.template.volumes ?? [])],
      },
      status: { phase: 'Pending', conditions: [] },
    };
  }
  function setPod(t, change) {
    const pod = kube.get('pods', t.run.ns, t.pod);
    if (!pod) return;
    change(pod);
    kube.update('pods', pod);
  }
  const containerStatus = (name, state) => ({ name, ready: Boolean(state.running), restartCount: 0, image: name === 'main' ? undefined : executorImage, state });

  /** The Secret volumes a template mounts, or the reason it cannot start (the kubelet's). */
  function secretsFor(t) {
    const volumes = [...(t.run.spec.volumes ?? []), ...(t.template.volumes ?? [])];
    const secrets = {};
    for (const mount of t.template.container.volumeMounts ?? []) {
      const volume = volumes.find((v) => v.name === mount.name);
      if (!volume?.secret) continue;
      const name = volume.secret.secretName;
      const secret = kube.get('secrets', t.run.ns, name);
      if (!secret) return { missing: `MountVolume.SetUp failed for volume "${mount.name}" : secret "${name}" not found` };
      for (const item of volume.secret.items ?? []) {
        if (!(item.key in (secret.data ?? {}))) return { missing: `MountVolume.SetUp failed for volume "${mount.name}" : references non-existent secret key: ${item.key}` };
      }
      secrets[name] = Object.fromEntries(Object.entries(secret.data ?? {}).map(([k, v]) => [k, Buffer.from(v, 'base64').toString('utf8')]));
    }
    return { secrets };
  }

  function schedule() {
    for (const t of [...queue]) {
      const selector = t.template.nodeSelector ?? {};
      const fits = nodes.filter((n) => Object.entries(selector).every(([k, v]) => n.labels[k] === v));
      const free = fits.find((n) => n.running.size < n.slots);
      if (!free) {
        const reasons = [];
        if (fits.length) reasons.push(`${fits.length} Too many pods`);
        if (nodes.length - fits.length) reasons.push(`${nodes.length - fits.length} node(s) didn't match Pod's node affinity/selector`);
        const message = `0/${nodes.length} nodes are available: ${reasons.join(', ')}. preemption: 0/${nodes.length} nodes are available: ${nodes.length} Preemption is not helpful for scheduling.`;
        if (t.message !== `Unschedulable: ${message}`) {
          t.message = `Unschedulable: ${message}`;
          note({ event: 'unschedulable', workflow: t.run.name, task: t.task.name, pod: t.pod, message });
          setPod(t, (pod) => {
            pod.status.conditions = [{ type: 'PodScheduled', status: 'False', reason: 'Unschedulable', message, lastTransitionTime: now() }];
          });
          writeStatus(t.run);
        }
        continue;
      }
      queue.splice(queue.indexOf(t), 1);
      free.running.add(t);
      t.host = free.name;
      t.message = undefined;
      note({ event: 'scheduled', workflow: t.run.name, task: t.task.name, pod: t.pod, host: free.name });
      setPod(t, (pod) => {
        pod.spec.nodeName = free.name;
        pod.status.conditions = [{ type: 'PodScheduled', status: 'True', lastTransitionTime: now() }];
      });
      startContainer(t);
    }
  }

  function startContainer(t) {
    if (t.running || FULFILLED.has(t.phase) || t.run.finishedAt) return;
    const { secrets, missing } = secretsFor(t);
    if (missing) {
      if (t.waitingFor !== missing) {
        t.waitingFor = missing;
        t.message = 'ContainerCreating';
        note({ event: 'waiting', workflow: t.run.name, task: t.task.name, pod: t.pod, host: t.host, message: missing });
        setPod(t, (pod) => {
          pod.status.containerStatuses = ['wait', 'main'].map((n) => containerStatus(n, { waiting: { reason: 'ContainerCreating' } }));
        });
        kube.create('events', {
          apiVersion: 'v1',
          kind: 'Event',
          metadata: { generateName: `${t.pod}.`, namespace: t.run.ns },
          involvedObject: { kind: 'Pod', namespace: t.run.ns, name: t.pod, apiVersion: 'v1' },
          reason: 'FailedMount',
          message: missing,
          type: 'Warning',
          source: { component: 'kubelet', host: t.host },
          firstTimestamp: now(),
          lastTimestamp: now(),
          count: 1,
        });
        writeStatus(t.run);
      }
      return;
    }
    t.waitingFor = undefined;
    t.phase = 'Running';
    t.message = undefined;
    t.abort = new AbortController();
    t.running = true;
    const { ns } = t.run;
    for (const c of ['init', 'wait', 'main']) openLog(ns, t.pod, c);
    endLog(ns, t.pod, 'init');
    const started = now();
    note({ event: 'started', workflow: t.run.name, task: t.task.name, pod: t.pod, host: t.host });
    setPod(t, (pod) => {
      pod.status = { ...pod.status, phase: 'Running', startTime: started, containerStatuses: ['wait', 'main'].map((n) => containerStatus(n, { running: { startedAt: started } })) };
    });
    writeStatus(t.run);
    const step = runStep(t.run.workflow, t.task.template, { parameters: t.parameters, workflowUid: t.run.uid, secrets, signal: t.abort.signal, graceMs, onOutput: (chunk) => appendLog(ns, t.pod, 'main', chunk) })
      .catch((error) => ({ code: 1, output: String(error.message), outputs: {}, error }))
      .then((result) => containerEnded(t, result, started));
    steps.add(step);
    step.finally(() => steps.delete(step));
  }

  function containerEnded(t, result, started) {
    const { run } = t;
    t.running = false;
    nodes.find((n) => n.name === t.host)?.running.delete(t);
    if (result.error) appendLog(run.ns, t.pod, 'main', `${result.error.message}\n`);
    for (const c of ['main', 'wait']) endLog(run.ns, t.pod, c);
    t.exitCode = result.code;
    if (!FULFILLED.has(t.phase)) {
      t.finishedAt = now();
      const declared = t.template.outputs?.parameters ?? [];
      const lacking = declared.find((p) => result.outputs[p.name] === undefined);
      if (result.code !== 0) {
        t.phase = 'Failed';
        t.message = `main: Error (exit code ${result.code})`;
      } else if (lacking) {
        t.phase = 'Error';
        t.message = `wait: Error (exit code 1): open ${lacking.valueFrom?.path}: no such file or directory`;
      } else t.phase = 'Succeeded';
      t.outputs = {
        ...(result.code === 0 && !lacking && declared.length ? { parameters: declared.map((p) => ({ name: p.name, value: result.outputs[p.name], ...(p.valueFrom ? { valueFrom: p.valueFrom } : {}) })) } : {}),
        exitCode: String(result.code),
      };
    }
    note({ event: 'finished', workflow: run.name, task: t.task.name, pod: t.pod, host: t.host, phase: t.phase, exitCode: result.code });
    const ended = now();
    setPod(t, (pod) => {
      pod.metadata.labels['workflows.argoproj.io/completed'] = 'true';
      pod.status.phase = result.code === 0 ? 'Succeeded' : 'Failed';
      pod.status.containerStatuses = [
        containerStatus('wait', { terminated: { exitCode: 0, reason: 'Completed', startedAt: started, finishedAt: ended } }),
        containerStatus('main', { terminated: { exitCode: result.code, reason: result.code === 0 ? 'Completed' : 'Error', startedAt: started, finishedAt: ended } }),
      ];
    });
    const strategy = run.spec.podGC?.strategy;
    if (strategy === 'OnPodCompletion' || (strategy === 'OnPodSuccess' && t.phase === 'Succeeded')) collect(run, [t]);
    advance(run);
    schedule();
  }

  function collect(run, tasks) {
    const delay = parseDuration(run.spec.podGC?.deleteDelayDuration) ?? podGcDelayMs;
    later(delay, () => {
      for (const t of tasks) {
        if (kube.remove('pods', run.ns, t.pod)) note({ event: 'pod-deleted', workflow: run.name, task: t.task.name, pod: t.pod, by: 'podGC' });
        for (const c of ['init', 'wait', 'main']) logs.delete(logKey(run.ns, t.pod, c));
      }
    });
  }

  // ---- the DAG ----
  function start(ns, name) {
    const wf = kube.get('workflows', ns, name, GROUP);
    if (!wf || wf.status?.phase) return;
    const run = { ns, name, uid: wf.metadata.uid, workflow: wf, spec: wf.spec, tasks: new Map(), phase: 'Running', dagPhase: 'Running', startedAt: now() };
    runs.set(`${ns}/${name}`, run);
    const entry = wf.spec.templates?.find((x) => x.name === wf.spec.entrypoint);
    const names = new Set((wf.spec.templates ?? []).map((x) => x.name));
    let problem;
    if (!entry) problem = `spec.entrypoint template '${wf.spec.entrypoint}' undefined`;
    else if (!entry.dag) problem = `templates.${entry.name} is not a DAG template (only DAGs are run by this stand-in)`;
    else {
      const tasks = new Set(entry.dag.tasks.map((x) => x.name));
      for (const x of entry.dag.tasks) {
        if (!names.has(x.template)) problem ??= `templates.${entry.name}.tasks.${x.name} template name '${x.template}' undefined`;
        for (const d of x.dependencies ?? []) if (!tasks.has(d)) problem ??= `templates.${entry.name}.tasks.${x.name} dependency '${d}' not defined`;
      }
    }
    run.dag = entry?.dag ?? { tasks: [] };
    note({ event: 'workflow-started', workflow: name });
    if (problem) return finish(run, 'Failed', `invalid spec: ${problem}`);
    // Stopped before the controller saw it.
    if (wf.spec.shutdown) return finish(run, 'Failed', `Stopped with strategy '${wf.spec.shutdown}'`);
    writeStatus(run);
    advance(run);
  }

  function newTask(run, task, type) {
    const nodeName = `${run.name}.${task.name}`;
    const t = { run, task, type, nodeName, id: argoNodeId(run.name, nodeName), template: run.workflow.spec.templates.find((x) => x.name === task.template), phase: 'Pending', startedAt: now(), children: [], parameters: {} };
    t.pod = argoPodName(run.name, nodeName, task.template);
    run.tasks.set(task.name, t);
    for (const d of task.dependencies ?? []) run.tasks.get(d).children.push(t.id);
    return t;
  }

  function advance(run) {
    if (run.finishedAt) return;
    for (const task of run.dag.tasks) {
      if (run.tasks.has(task.name) || run.shutdown) continue;
      const deps = (task.dependencies ?? []).map((d) => run.tasks.get(d));
      if (deps.some((d) => !d || !FULFILLED.has(d.phase))) continue;
      if (deps.some((d) => d.phase !== 'Succeeded')) {
        const t = newTask(run, task, 'Skipped');
        Object.assign(t, { phase: 'Omitted', message: 'omitted: depends condition not met', finishedAt: t.startedAt });
        note({ event: 'omitted', workflow: run.name, task: task.name });
        continue;
      }
      const outputs = Object.fromEntries([...run.tasks.values()].map((x) => [x.task.name, Object.fromEntries((x.outputs?.parameters ?? []).map((p) => [p.name, p.value]))]));
      const t = newTask(run, task, 'Pod');
      try {
        t.parameters = Object.fromEntries((task.arguments?.parameters ?? []).map((p) => [p.name, substitute(String(p.value ?? ''), { tasks: outputs, workflowUid: run.uid })]));
        kube.create('pods', podObject(run, t));
      } catch (error) {
        Object.assign(t, { phase: 'Error', message: error.message, finishedAt: now() });
        continue;
      }
      queue.push(t);
    }
    writeStatus(run);
    schedule();
    const unfinished = [...run.tasks.values()].some((t) => !FULFILLED.has(t.phase) || t.running);
    const allCreated = run.dag.tasks.every((x) => run.tasks.has(x.name));
    if (unfinished) return;
    if (run.shutdown) return finish(run, 'Failed', `Stopped with strategy '${run.shutdown}'`);
    if (!allCreated) return;
    const failed = [...run.tasks.values()].find((t) => t.phase === 'Failed' || t.phase === 'Error');
    return finish(run, failed ? (failed.phase === 'Error' && ![...run.tasks.values()].some((t) => t.phase === 'Failed') ? 'Error' : 'Failed') : 'Succeeded');
  }

  function finish(run, phase, message) {
    run.phase = phase;
    run.dagPhase = phase;
    run.message = message;
    run.finishedAt = now();
    note({ event: 'workflow-finished', workflow: run.name, phase, message });
    writeStatus(run);
    const strategy = run.spec.podGC?.strategy;
    if (strategy === 'OnWorkflowCompletion' || (strategy === 'OnWorkflowSuccess' && phase === 'Succeeded')) collect(run, [...run.tasks.values()].filter((t) => t.type === 'Pod'));
    const ttl = run.spec.ttlStrategy;
    const seconds = (phase === 'Succeeded' ? ttl?.secondsAfterSuccess : ttl?.secondsAfterFailure) ?? ttl?.secondsAfterCompletion;
    if (seconds !== undefined) later(seconds * 1000, () => kube.remove('workflows', run.ns, run.name, GROUP) && note({ event: 'workflow-deleted', workflow: run.name, by: 'ttlStrategy' }));
  }

  function shutdown(run, strategy) {
    if (run.shutdown || run.finishedAt) return;
    run.shutdown = strategy;
    note({ event: 'shutdown', workflow: run.name, strategy });
    for (const t of run.tasks.values()) {
      if (t.type !== 'Pod' || FULFILLED.has(t.phase)) continue;
      Object.assign(t, { phase: 'Failed', message: `workflow shutdown with strategy:  ${strategy}`, finishedAt: now() });
      if (t.running) t.abort.abort();
      else stopIdle(t);
    }
    advance(run);
  }

  /** A pod that never started (queued, or waiting for its Secret) ends without running. */
  function stopIdle(t) {
    if (queue.includes(t)) queue.splice(queue.indexOf(t), 1);
    nodes.find((n) => n.name === t.host)?.running.delete(t);
    setPod(t, (pod) => {
      pod.status.phase = 'Failed';
      pod.metadata.labels['workflows.argoproj.io/completed'] = 'true';
    });
    schedule();
  }

  function removed(run) {
    runs.delete(`${run.ns}/${run.name}`);
    run.finishedAt ??= now();
    note({ event: 'workflow-removed', workflow: run.name });
    // The garbage collector deletes the pods it owns; their containers are stopped.
    for (const t of run.tasks.values()) {
      if (t.type !== 'Pod') continue;
      if (t.running) t.abort.abort();
      else if (queue.includes(t)) queue.splice(queue.indexOf(t), 1);
      if (!t.running) nodes.find((n) => n.name === t.host)?.running.delete(t);
      if (kube.remove('pods', run.ns, t.pod)) note({ event: 'pod-deleted', workflow: run.name, task: t.task.name, pod: t.pod, by: 'garbage-collector' });
    }
    schedule();
    check();
  }

  const unsubscribe = kube.subscribe((e) => {
    const o = e.object;
    if (e.group === GROUP && e.resource === 'workflows') {
      const run = runs.get(`${o.metadata.namespace}/${o.metadata.name}`);
      if (e.type === 'ADDED') setImmediate(() => start(o.metadata.namespace, o.metadata.name));
      else if (e.type === 'DELETED' && run) removed(run);
      else if (e.type === 'MODIFIED' && run) {
        run.spec = { ...run.spec, shutdown: o.spec?.shutdown };
        if (o.spec?.shutdown) setImmediate(() => shutdown(run, o.spec.shutdown));
      }
    } else if (e.group === '' && e.resource === 'secrets' && e.type !== 'DELETED') {
      // The kubelet retries the mount.
      for (const run of runs.values()) for (const t of run.tasks.values()) if (t.waitingFor && !FULFILLED.has(t.phase)) setImmediate(() => startContainer(t));
    } else if (e.group === '' && e.resource === 'pods' && e.type === 'DELETED') {
      const run = runs.get(`${o.metadata.namespace}/${o.metadata.labels?.['workflows.argoproj.io/workflow']}`);
      const t = run && [...run.tasks.values()].find((x) => x.pod === o.metadata.name);
      if (t && !FULFILLED.has(t.phase)) {
        Object.assign(t, { phase: 'Error', message: 'pod deleted', finishedAt: now() });
        if (t.running) t.abort.abort();
        else stopIdle(t);
        advance(run);
      }
    }
  });

  /** A promise of the first truthy test() after a change (checked now too). */
  function until(test) {
    return new Promise((resolve) => {
      const w = { test, resolve };
      waiters.add(w);
      check();
    });
  }

  return {
    /** Every step of the controller, in order: { seq, at, event, workflow, task?, pod?, host?, phase?, exitCode?, message? }. */
    record,
    /** The nodes: [{ name, arch, slots, labels, running: [pod names] }]. */
    get nodes() {
      return nodes.map((n) => ({ name: n.name, arch: n.arch, slots: n.slots, labels: { ...n.labels }, running: [...n.running].map((t) => t.pod) }));
    },
    /** The order in which tasks of a workflow started, with their node: [{ task, host }]. */
    started(workflow) {
      return record.filter((r) => r.event === 'started' && r.workflow === workflow).map((r) => ({ task: r.task, host: r.host }));
    },
    /** What a pod's container has written so far (string), or undefined. */
    log(namespace, pod, container = 'main') {
      const l = logs.get(logKey(namespace, pod, container));
      return l && Buffer.concat(l.chunks).toString('utf8');
    },
    /** Resolves with the Workflow once its status.phase is one of `phases` (default: a finished one). */
    whenPhase(namespace, name, phases = ['Succeeded', 'Failed', 'Error']) {
      return until(() => {
        const wf = kube.get('workflows', namespace, name, GROUP);
        return wf && phases.includes(wf.status?.phase) ? wf : undefined;
      });
    },
    /** Resolves with the record entry once a record entry matches { event, workflow, task, ... }. */
    whenRecorded(match) {
      return until(() => record.find((r) => Object.entries(match).every(([k, v]) => r[k] === v)));
    },
    /** Resolves when a pod's main container has written text matching `pattern`. */
    whenLogged(namespace, pod, pattern) {
      return until(() => pattern.test(this.log(namespace, pod) ?? ''));
    },
    /** Resolves once no step runs (every storage root cleaned). */
    async idle() {
      while (steps.size) await Promise.allSettled([...steps]);
    },
    /** Stop: kill running steps, wait for their clean-up, forget timers. */
    async stop() {
      unsubscribe();
      for (const timer of timers) clearTimeout(timer);
      for (const run of runs.values()) for (const t of run.tasks.values()) if (t.running) t.abort.abort();
      while (steps.size) await Promise.allSettled([...steps]);
    },
  };
}
