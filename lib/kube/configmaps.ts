/**
 * ConfigMaps through the Kubernetes API with optimistic concurrency: read the live object, let the
 * caller compute the new one from it, create it when absent or replace it naming the
 * resourceVersion that was read. When someone else wrote in between (409: Conflict on replace,
 * AlreadyExists on create) the object is read again and the change computed again, so another
 * writer's content is never overwritten with a stale copy.
 */
import { CoreV1Api, type V1ConfigMap } from '@kubernetes/client-node';
import { ThinkubeImageError } from '../core/errors.js';
import { KubeConnection } from './connection.js';

export type { V1ConfigMap };

export interface ConfigMapRef {
  namespace: string;
  name: string;
}

export interface ModifyResult {
  /** created / replaced: written; none: the change was nothing (or a dry run: see wouldWrite). */
  action: 'created' | 'replaced' | 'none';
  /** A dry run: what the real run would do. */
  wouldWrite?: 'create' | 'replace';
  /** The live object read last (undefined: it did not exist). */
  before: V1ConfigMap | undefined;
  /** What is stored afterwards (for a dry run or no change: what would be / is). */
  after: V1ConfigMap | undefined;
  /** Reads and writes that lost a race with another writer. */
  conflicts: number;
}

/** How often a write is tried again after losing a race, before giving up. */
const MAX_CONFLICTS = 10;

export class ConfigMapClient {
  readonly connection: KubeConnection;
  readonly #api: CoreV1Api;
  readonly #signal: AbortSignal | undefined;

  constructor(connection: KubeConnection, signal?: AbortSignal) {
    this.connection = connection;
    this.#api = connection.api(CoreV1Api);
    this.#signal = signal;
  }

  /** The live ConfigMap, or undefined when it does not exist. */
  async get(ref: ConfigMapRef): Promise<V1ConfigMap | undefined> {
    try {
      return await this.#api.readNamespacedConfigMap({ name: ref.name, namespace: ref.namespace }, this.connection.callOptions(this.#signal));
    } catch (error) {
      if (KubeConnection.statusOf(error)?.code === 404) return undefined;
      throw this.connection.error(error, { verb: 'get', resource: 'configmaps', ...ref }, this.#signal);
    }
  }

  /** Create it; 'exists' when another writer created it first. */
  async create(body: V1ConfigMap): Promise<V1ConfigMap | 'exists'> {
    const ref = refOf(body);
    try {
      return await this.#api.createNamespacedConfigMap({ namespace: ref.namespace, body }, this.connection.callOptions(this.#signal));
    } catch (error) {
      if (KubeConnection.statusOf(error)?.code === 409) return 'exists';
      throw this.connection.error(error, { verb: 'create', resource: 'configmaps', ...ref }, this.#signal);
    }
  }

  /** Replace it (body.metadata.resourceVersion names the version read); 'conflict' when it changed meanwhile, 'gone' when deleted. */
  async replace(body: V1ConfigMap): Promise<V1ConfigMap | 'conflict' | 'gone'> {
    const ref = refOf(body);
    try {
      return await this.#api.replaceNamespacedConfigMap({ name: ref.name, namespace: ref.namespace, body }, this.connection.callOptions(this.#signal));
    } catch (error) {
      const code = KubeConnection.statusOf(error)?.code;
      if (code === 409) return 'conflict';
      if (code === 404) return 'gone';
      throw this.connection.error(error, { verb: 'update', resource: 'configmaps', ...ref }, this.#signal);
    }
  }

  /**
   * Read, change, write; on a lost race read and change again. `change` gets the live object
   * (undefined: absent) and returns the wanted one, or null for "nothing to write". It may throw
   * to refuse (e.g. invalid content). A dry run reads and computes only.
   */
  async modify(ref: ConfigMapRef, change: (current: V1ConfigMap | undefined) => V1ConfigMap | null, options: { dryRun?: boolean } = {}): Promise<ModifyResult> {
    let conflicts = 0;
    for (;;) {
      const current = await this.get(ref);
      const wanted = change(current);
      if (wanted === null) return { action: 'none', before: current, after: current, conflicts };
      const body: V1ConfigMap = {
        ...wanted,
        apiVersion: 'v1',
        kind: 'ConfigMap',
        metadata: { ...wanted.metadata, name: ref.name, namespace: ref.namespace, ...(current ? { resourceVersion: current.metadata?.resourceVersion } : {}) },
      };
      if (!current) delete body.metadata?.resourceVersion;
      if (options.dryRun) return { action: 'none', wouldWrite: current ? 'replace' : 'create', before: current, after: body, conflicts };
      const written = current ? await this.replace(body) : await this.create(body);
      if (typeof written === 'object') return { action: current ? 'replaced' : 'created', before: current, after: written, conflicts };
      if (++conflicts > MAX_CONFLICTS) {
        throw new ThinkubeImageError('ERR_KUBE', `ConfigMap ${ref.namespace}/${ref.name} kept changing while being written (${conflicts} conflicts in a row at ${this.connection.server})`, {
          hint: 'Other writers are changing it continuously; run again when they are done',
          details: { namespace: ref.namespace, name: ref.name, conflicts },
        });
      }
    }
  }
}

function refOf(body: V1ConfigMap): ConfigMapRef {
  return { namespace: body.metadata?.namespace as string, name: body.metadata?.name as string };
}
