/**
 * Argo Workflows through the Kubernetes API (the workflow controller does the running; this is
 * what any client of it does, as `argo submit --watch` and `argo stop` do without the Argo
 * server): create a Workflow, follow it with a watch that resumes from the last resourceVersion
 * it saw (a dropped connection or a 410 Expired is how watches end, not a failure), stop it with
 * a merge patch of spec.shutdown, and read a task pod's log as it is written.
 */
import { Writable } from 'node:stream';
import { ApiException, CustomObjectsApi, Log, Watch, setHeaderOptions } from '@kubernetes/client-node';
import { ThinkubeImageError } from '../core/errors.js';
import { KubeConnection, type KubeOperation } from './connection.js';

const GROUP = 'argoproj.io';
const VERSION = 'v1alpha1';
const PLURAL = 'workflows';
const RESOURCE = 'workflows.argoproj.io';

/** A node of status.nodes as the workflow controller writes it (the fields read here). */
export interface WorkflowNodeStatus {
  id: string;
  /** <workflow name>.<task name> for a DAG task. */
  name: string;
  displayName?: string;
  type?: string;
  templateName?: string;
  /** Pending, Running, Succeeded, Failed, Error, Skipped, Omitted. */
  phase?: string;
  message?: string;
  hostNodeName?: string;
  startedAt?: string;
  finishedAt?: string;
  outputs?: { parameters?: Array<{ name: string; value?: string }>; exitCode?: string };
}

export interface WorkflowObject {
  apiVersion?: string;
  kind?: string;
  metadata: { name?: string; generateName?: string; namespace?: string; uid?: string; resourceVersion?: string; labels?: Record<string, string> };
  spec?: Record<string, unknown>;
  status?: { phase?: string; message?: string; startedAt?: string; finishedAt?: string; nodes?: Record<string, WorkflowNodeStatus> };
}

const FINAL_PHASES = new Set(['Succeeded', 'Failed', 'Error']);

export function workflowFinished(workflow: WorkflowObject): boolean {
  return FINAL_PHASES.has(workflow.status?.phase ?? '');
}

export function nodeFinished(node: WorkflowNodeStatus): boolean {
  return ['Succeeded', 'Failed', 'Error', 'Skipped', 'Omitted'].includes(node.phase ?? '');
}

/** FNV-1a, 32 bits: Argo's hash of a node name in node ids and pod names. */
function fnv32a(text: string): number {
  let hash = 0x811c9dc5;
  for (const byte of Buffer.from(text, 'utf8')) {
    hash ^= byte;
    hash = Math.imul(hash, 0x01000193) >>> 0;
  }
  return hash >>> 0;
}

/** The pod of a task node, named as Argo v3.4+ names it (POD_NAMES=v2, its default). */
export function taskPodName(workflowName: string, node: Pick<WorkflowNodeStatus, 'name' | 'templateName'>): string {
  if (node.name === workflowName) return workflowName;
  // 253 characters at most, 10 for the hash and its dash (argo-workflows util.GeneratePodName).
  const prefix = `${workflowName}-${node.templateName ?? ''}`.slice(0, 253 - 10 - 1);
  return `${prefix}-${fnv32a(node.name)}`;
}

/** After this many watches in a row end at once without delivering anything, following gives up. */
const MAX_EMPTY_WATCHES = 6;
const QUICK_END_MS = 2000;

export interface FollowOptions {
  /** Every newer version of the Workflow, in order. */
  onChange(workflow: WorkflowObject): void;
  /** A watch ended and is resumed (for progress output). */
  onResume?(reason: string): void;
  /** Server-side end of each watch request (the client resumes after it). */
  watchSeconds?: number;
}

export class WorkflowClient {
  readonly connection: KubeConnection;
  readonly namespace: string;
  readonly #api: CustomObjectsApi;
  readonly #signal: AbortSignal | undefined;

  constructor(connection: KubeConnection, namespace: string, signal?: AbortSignal) {
    this.connection = connection;
    this.namespace = namespace;
    this.#api = connection.api(CustomObjectsApi);
    this.#signal = signal;
  }

  #operation(verb: KubeOperation['verb'], name?: string, resource = RESOURCE): KubeOperation {
    return { verb, resource, namespace: this.namespace, ...(name ? { name } : {}) };
  }

  async create(manifest: WorkflowObject): Promise<WorkflowObject> {
    try {
      return (await this.#api.createNamespacedCustomObject({ group: GROUP, version: VERSION, namespace: this.namespace, plural: PLURAL, body: manifest }, this.connection.callOptions(this.#signal))) as WorkflowObject;
    } catch (error) {
      throw this.connection.error(error, this.#operation('create'), this.#signal);
    }
  }

  async get(name: string, signal = this.#signal): Promise<WorkflowObject> {
    try {
      return (await this.#api.getNamespacedCustomObject({ group: GROUP, version: VERSION, namespace: this.namespace, plural: PLURAL, name }, this.connection.callOptions(signal))) as WorkflowObject;
    } catch (error) {
      throw this.connection.error(error, this.#operation('get', name), signal);
    }
  }

  /**
   * Stop it as `argo stop` does: the controller kills its running pods and starts nothing more.
   * Not tied to the run's signal: it is what a cancelled run does last.
   */
  async stop(name: string): Promise<void> {
    try {
      await this.#api.patchNamespacedCustomObject(
        { group: GROUP, version: VERSION, namespace: this.namespace, plural: PLURAL, name, body: { spec: { shutdown: 'Stop' } } },
        setHeaderOptions('Content-Type', 'application/merge-patch+json', this.connection.callOptions()),
      );
    } catch (error) {
      throw this.connection.error(error, this.#operation('patch', name));
    }
  }

  /**
   * Follow the Workflow from `from` (the object as created or last read) until its phase is final;
   * resolves with that last version. Each watch resumes from the last resourceVersion seen; a 410
   * (the version is too old) reads the Workflow again and watches from there.
   */
  async follow(from: WorkflowObject, options: FollowOptions): Promise<WorkflowObject> {
    const name = from.metadata.name as string;
    let latest = from;
    let version = from.metadata.resourceVersion;
    let empty = 0;
    const watch = new Watch(this.connection.config);
    while (!workflowFinished(latest)) {
      if (this.#signal?.aborted) throw this.connection.error(new Error('aborted'), this.#operation('watch', name), this.#signal);
      let delivered = false;
      const started = Date.now();
      const ended = await new Promise<{ expired?: boolean; error?: unknown; deleted?: boolean }>((resolve) => {
        let controller: AbortController | undefined;
        const onAbort = (): void => controller?.abort();
        const finish = (outcome: { expired?: boolean; error?: unknown; deleted?: boolean }): void => {
          this.#signal?.removeEventListener('abort', onAbort);
          controller?.abort();
          resolve(outcome);
        };
        this.#signal?.addEventListener('abort', onAbort, { once: true });
        watch
          .watch(
            `/apis/${GROUP}/${VERSION}/namespaces/${encodeURIComponent(this.namespace)}/${PLURAL}`,
            { fieldSelector: `metadata.name=${name}`, resourceVersion: version, allowWatchBookmarks: true, timeoutSeconds: options.watchSeconds ?? 300 },
            (type: string, object: WorkflowObject & { code?: number }) => {
              if (type === 'ERROR') {
                finish(object.code === 410 ? { expired: true } : { error: new ApiException(object.code ?? 500, 'watch error', object, {}) });
                return;
              }
              if (object?.metadata?.resourceVersion) version = object.metadata.resourceVersion;
              if (type === 'BOOKMARK') return;
              delivered = true;
              if (type === 'DELETED') {
                finish({ deleted: true });
                return;
              }
              latest = object;
              options.onChange(object);
              if (workflowFinished(object)) finish({});
            },
            (error: unknown) => finish({ error }),
          )
          .then((c) => {
            controller = c;
            if (this.#signal?.aborted) c.abort();
          }, (error: unknown) => finish({ error }));
      });
      if (this.#signal?.aborted) throw this.connection.error(new Error('aborted'), this.#operation('watch', name), this.#signal);
      if (ended.deleted) {
        throw new ThinkubeImageError('ERR_WORKFLOW', `Workflow ${this.namespace}/${name} was deleted while it ran (by someone else, or its TTL)`, {
          hint: 'Run again; if its builds finished, the next run finds them in the registry',
          details: { workflow: name, namespace: this.namespace },
        });
      }
      if (workflowFinished(latest)) break;
      const status = (ended.error as { statusCode?: number } | undefined)?.statusCode ?? KubeConnection.statusOf(ended.error)?.code;
      if (status === 401 || status === 403 || status === 404) {
        const error = ended.error instanceof ApiException ? ended.error : new ApiException(status, 'watch refused', { code: status, message: (ended.error as Error).message }, {});
        throw this.connection.error(error, this.#operation('watch', name));
      }
      if (ended.expired) {
        options.onResume?.(`watch from version ${version} expired (410): reading the Workflow again`);
        latest = await this.get(name);
        version = latest.metadata.resourceVersion;
        options.onChange(latest);
        continue;
      }
      // A watch ends when the server says so, a proxy cuts it or the client's inactivity timer
      // fires (30 s without a byte): resume from the last version. Only watches that fail at once,
      // several in a row (the API server is gone), fail the run.
      empty = delivered || Date.now() - started > QUICK_END_MS ? 0 : empty + 1;
      if (empty >= MAX_EMPTY_WATCHES) {
        throw this.connection.error(ended.error ?? new Error('every watch ended at once'), this.#operation('watch', name));
      }
      options.onResume?.(`watch ended (${ended.error ? (ended.error as Error).message : 'closed by the server'}); resuming from version ${version}`);
      if (empty > 1) await new Promise((resolve) => setTimeout(resolve, Math.min(8000, 250 * 2 ** empty)));
    }
    return latest;
  }

  /**
   * A task pod's container log, line by line as it is written, until the container ends (follow).
   * Resolves when the log ends or `options.signal` aborts (a stream cut without an end never
   * finishes on its own: the caller aborts once the task is over); a pod that is gone
   * (garbage-collected) or not there yet rejects with a 404 ERR_KUBE.
   */
  async log(pod: string, onLine: (line: string) => void, options: { container?: string; follow?: boolean; tailLines?: number; signal?: AbortSignal } = {}): Promise<void> {
    const signal = options.signal ? (this.#signal ? AbortSignal.any([this.#signal, options.signal]) : options.signal) : this.#signal;
    const operation: KubeOperation = { verb: 'get', resource: 'pods/log', namespace: this.namespace, name: pod };
    let pending = '';
    const sink = new Writable({
      write(chunk: Buffer, _encoding, callback) {
        pending += chunk.toString('utf8');
        let index: number;
        while ((index = pending.indexOf('\n')) >= 0) {
          onLine(pending.slice(0, index));
          pending = pending.slice(index + 1);
        }
        callback();
      },
    });
    // client-node pipes its response stream into the sink without an error listener: an abort
    // (or a cut connection) would be an unhandled error that kills the process.
    sink.on('pipe', (source: NodeJS.ReadableStream) => source.on('error', () => sink.end()));
    const done = new Promise<void>((resolve, reject) => {
      sink.on('finish', () => {
        if (pending) onLine(pending);
        resolve();
      });
      sink.on('error', reject);
    });
    let controller: AbortController;
    try {
      controller = await new Log(this.connection.config).log(this.namespace, pod, options.container ?? 'main', sink, {
        follow: options.follow ?? true,
        ...(options.tailLines ? { tailLines: options.tailLines } : {}),
      });
    } catch (error) {
      throw this.connection.error(error, operation, signal);
    }
    const onAbort = (): void => {
      controller.abort();
      sink.end();
    };
    if (signal?.aborted) onAbort();
    else signal?.addEventListener('abort', onAbort, { once: true });
    try {
      await done;
    } finally {
      signal?.removeEventListener('abort', onAbort);
    }
  }
}
