/**
 * The connection to a Kubernetes API server, on @kubernetes/client-node: which credentials
 * (a kubeconfig file, the pod's service account, KUBECONFIG, ~/.kube/config), a time limit per
 * call, and the classification of failures into errors that name the server, the verb, the
 * resource and the namespace, with a hint. Credentials never reach a message: the kubeconfig's
 * content is never quoted (a YAML error gives only its line), and every message is redacted with
 * the user's token, password and keys.
 */
import { existsSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ApiException, KubeConfig, type ApiType, type ApiConstructor, Observable, type ConfigurationOptions, type ObservableMiddleware } from '@kubernetes/client-node';
import { ThinkubeImageError } from '../core/errors.js';
import { Redactor } from '../core/redact.js';
import { schemaDefault } from '../options/defaults.js';
import type { KubeConnection as KubeConnectionOptions } from '../options/generated/types.js';

export type { KubeConnectionOptions };

/** Where a pod's service account is mounted (client-node prefixes it with `root`). */
export const SERVICE_ACCOUNT_DIR = '/var/run/secrets/kubernetes.io/serviceaccount';

/** One API call, as an error names it (kubectl's words: verb, resource, namespace, name). */
export interface KubeOperation {
  verb: 'get' | 'list' | 'watch' | 'create' | 'update' | 'patch' | 'delete';
  /** Plural resource, e.g. configmaps, workflows.argoproj.io, pods/log. */
  resource: string;
  namespace?: string;
  name?: string;
}

/** The Status object the API server answers errors with (metav1.Status). */
export interface KubeStatus {
  kind?: string;
  status?: string;
  message?: string;
  reason?: string;
  code?: number;
  details?: { name?: string; kind?: string; causes?: Array<{ message?: string; field?: string }> };
}

export interface KubeLoadEnvironment {
  env?: NodeJS.ProcessEnv;
  /** Prefix of the service account folder (tests); default none. */
  serviceAccountRoot?: string;
  /** Home folder for ~/.kube/config (default os.homedir()). */
  home?: string;
}

function describe(operation: KubeOperation): string {
  const object = operation.name ? `${operation.resource}/${operation.name}` : operation.resource;
  return `${operation.verb} ${object}${operation.namespace ? ` in namespace ${operation.namespace}` : ''}`;
}

/** A kubeconfig (or service account) loaded and checked, ready to make API clients. */
export class KubeConnection {
  readonly config: KubeConfig;
  /** Where the credentials came from, e.g. "kubeconfig /home/me/.kube/config" (never their content). */
  readonly source: string;
  /** The API server URL of the current context. */
  readonly server: string;
  readonly timeoutSeconds: number;
  readonly #redactor = new Redactor();

  private constructor(config: KubeConfig, source: string, timeoutSeconds: number) {
    this.config = config;
    this.source = source;
    this.timeoutSeconds = timeoutSeconds;
    const cluster = config.getCurrentCluster();
    if (!cluster?.server) {
      throw new ThinkubeImageError('ERR_KUBE_CONFIG', `The ${source} has no cluster with a server address for context ${config.getCurrentContext() || '(none)'}`, {
        hint: 'Set current-context (or the kubernetes.context option) to a context whose cluster has a server',
        details: { source },
      });
    }
    this.server = cluster.server;
    const user = config.getCurrentUser();
    for (const value of [user?.token, user?.password, user?.keyData, user?.certData]) this.#redactor.add(value ?? undefined);
    const tokenFile = (user?.authProvider?.config as { tokenFile?: string } | undefined)?.tokenFile;
    if (tokenFile && existsSync(tokenFile)) {
      try {
        this.#redactor.add(readFileSync(tokenFile, 'utf8').trim());
      } catch {
        // Unreadable now: the call will say so.
      }
    }
  }

  /**
   * Load the connection: options.kubeconfig (a file), else options.inCluster (the service
   * account), else KUBECONFIG, else the service account when running in a pod
   * (KUBERNETES_SERVICE_HOST set), else ~/.kube/config.
   */
  static load(options: KubeConnectionOptions = {}, where: KubeLoadEnvironment = {}): KubeConnection {
    const env = where.env ?? process.env;
    const timeoutSeconds = options.timeoutSeconds ?? schemaDefault('common.schema.json', 'definitions/kubeConnection/properties/timeoutSeconds');
    const config = new KubeConfig();
    let source: string;
    const fromFiles = (files: string[], label: string): void => {
      for (const file of files) {
        if (!existsSync(file)) {
          throw new ThinkubeImageError('ERR_KUBE_CONFIG', `The kubeconfig ${file} (${label}) does not exist`, {
            hint: 'Give the path of a kubeconfig file (kubernetes.kubeconfig, the playbook variable kubeconfig) or set KUBECONFIG',
            details: { file },
          });
        }
      }
      try {
        const [first, ...rest] = files;
        config.loadFromFile(first as string);
        for (const file of rest) {
          const extra = new KubeConfig();
          extra.loadFromFile(file);
          config.mergeConfig(extra, true);
        }
      } catch (error) {
        // js-yaml quotes the offending lines, which may hold a token: keep only the position.
        const mark = (error as { mark?: { line: number; column: number } }).mark;
        const at = mark ? ` at line ${mark.line + 1}, column ${mark.column + 1}` : '';
        throw new ThinkubeImageError('ERR_KUBE_CONFIG', `The kubeconfig ${files.join(path.delimiter)} (${label}) cannot be read${at}: ${mark ? 'not valid YAML' : (error as NodeJS.ErrnoException).code ?? 'not a kubeconfig'}`, {
          hint: 'Check the file with kubectl --kubeconfig FILE config view; its content is never printed here',
          details: { file: files.join(path.delimiter) },
        });
      }
    };
    const inClusterFiles = path.join(where.serviceAccountRoot ?? '', SERVICE_ACCOUNT_DIR, 'token');
    const loadInCluster = (): void => {
      if (!env.KUBERNETES_SERVICE_HOST || !env.KUBERNETES_SERVICE_PORT || !existsSync(inClusterFiles)) {
        throw new ThinkubeImageError('ERR_KUBE_CONFIG', `No in-cluster service account here (KUBERNETES_SERVICE_HOST/PORT unset or ${inClusterFiles} missing)`, {
          hint: 'Run inside a pod with a service account, or give a kubeconfig (kubernetes.kubeconfig)',
          details: { file: inClusterFiles },
        });
      }
      const saved = { host: process.env.KUBERNETES_SERVICE_HOST, port: process.env.KUBERNETES_SERVICE_PORT };
      // client-node reads these from process.env.
      process.env.KUBERNETES_SERVICE_HOST = env.KUBERNETES_SERVICE_HOST;
      process.env.KUBERNETES_SERVICE_PORT = env.KUBERNETES_SERVICE_PORT;
      try {
        config.loadFromCluster(where.serviceAccountRoot ?? '');
      } finally {
        for (const [key, value] of [['KUBERNETES_SERVICE_HOST', saved.host], ['KUBERNETES_SERVICE_PORT', saved.port]] as const) {
          if (value === undefined) delete process.env[key];
          else process.env[key] = value;
        }
      }
    };
    if (options.kubeconfig) {
      const file = path.resolve(options.kubeconfig);
      fromFiles([file], 'kubernetes.kubeconfig');
      source = `kubeconfig ${file}`;
    } else if (options.inCluster) {
      loadInCluster();
      source = 'in-cluster service account';
    } else if (env.KUBECONFIG) {
      const files = env.KUBECONFIG.split(path.delimiter).filter(Boolean).map((f) => path.resolve(f));
      fromFiles(files, 'KUBECONFIG');
      source = `kubeconfig ${files.join(path.delimiter)} (KUBECONFIG)`;
    } else if (env.KUBERNETES_SERVICE_HOST && existsSync(inClusterFiles)) {
      loadInCluster();
      source = 'in-cluster service account';
    } else {
      const file = path.join(where.home ?? os.homedir(), '.kube', 'config');
      if (!existsSync(file)) {
        throw new ThinkubeImageError('ERR_KUBE_CONFIG', `No Kubernetes credentials: no kubernetes.kubeconfig given, KUBECONFIG unset, not in a pod, and ${file} does not exist`, {
          hint: 'Give a kubeconfig file (kubernetes.kubeconfig; the playbook variable kubeconfig), or register with configmap.mode: file and apply the file yourself',
          details: { file },
        });
      }
      fromFiles([file], '~/.kube/config');
      source = `kubeconfig ${file}`;
    }
    if (options.context) {
      if (!config.getContextObject(options.context)) {
        throw new ThinkubeImageError('ERR_KUBE_CONFIG', `The ${source} has no context ${options.context} (it has: ${config.getContexts().map((c) => c.name).join(', ') || 'none'})`, {
          hint: 'Give one of the listed contexts in kubernetes.context, or leave it out to use current-context',
          details: { context: options.context },
        });
      }
      config.setCurrentContext(options.context);
    }
    return new KubeConnection(config, source, timeoutSeconds);
  }

  /** An API client of client-node (CoreV1Api, CustomObjectsApi, ...) for this connection. */
  api<T extends ApiType>(type: ApiConstructor<T>): T {
    return this.config.makeApiClient(type);
  }

  /** Per-call options: the time limit, and the caller's abort signal. */
  callOptions(signal?: AbortSignal): ConfigurationOptions<ObservableMiddleware> {
    const timeoutMs = this.timeoutSeconds * 1000;
    // The object-parameter API passes these to its observable layer as they are.
    const middleware: ObservableMiddleware = {
      pre: (context) => {
        const timeout = AbortSignal.timeout(timeoutMs);
        context.setSignal(signal ? AbortSignal.any([signal, timeout]) : timeout);
        return new Observable(Promise.resolve(context));
      },
      post: (response) => new Observable(Promise.resolve(response)),
    };
    return { middleware: [middleware], middlewareMergeStrategy: 'append' };
  }

  /** Text with every credential of this connection replaced. */
  redact(text: string): string {
    return this.#redactor.redact(text);
  }

  /** The Status object of a failed call (undefined for a connection failure or a body that is not one). */
  static statusOf(error: unknown): { code: number; status: KubeStatus } | undefined {
    if (!(error instanceof ApiException)) return undefined;
    let body: unknown = (error as ApiException<unknown>).body;
    if (typeof body === 'string') {
      try {
        body = JSON.parse(body);
      } catch {
        body = { message: body };
      }
    }
    return { code: (error as ApiException<unknown>).code, status: body && typeof body === 'object' ? (body as KubeStatus) : {} };
  }

  /** A failed call as a ThinkubeImageError naming the server, verb, resource and namespace. */
  error(error: unknown, operation: KubeOperation, signal?: AbortSignal): ThinkubeImageError {
    const what = describe(operation);
    const details = { server: this.server, verb: operation.verb, resource: operation.resource, namespace: operation.namespace, name: operation.name };
    const answer = KubeConnection.statusOf(error);
    if (!answer) {
      if (signal?.aborted) return new ThinkubeImageError('ERR_ABORTED', `Aborted during ${what} at ${this.server}`, { hint: 'Run it again', details });
      const cause = (error as { cause?: { code?: string; message?: string } })?.cause;
      const name = (error as Error)?.name;
      const code = cause?.code ?? (name === 'TimeoutError' || name === 'AbortError' ? `no answer within ${this.timeoutSeconds}s` : undefined);
      const reason = this.redact(code ?? cause?.message ?? (error as Error)?.message ?? String(error));
      const tls = /CERT|SSL|TLS|SELF_SIGNED|UNABLE_TO_VERIFY/i.test(reason);
      return new ThinkubeImageError('ERR_KUBE_UNREACHABLE', `Cannot reach the Kubernetes API at ${this.server} to ${what} (${reason})`, {
        hint: tls
          ? `The API server's certificate is not trusted: check certificate-authority(-data) of the cluster in the ${this.source}`
          : `Check that the cluster is running and that the server address of the ${this.source} is reachable from here`,
        details: { ...details, reason },
      });
    }
    const { code, status } = answer;
    const message = this.redact(status.message ?? (code === 401 ? 'Unauthorized' : `HTTP ${code}`));
    const full = { ...details, status: code, reason: status.reason, message };
    if (code === 401) {
      return new ThinkubeImageError('ERR_KUBE_AUTH', `The Kubernetes API at ${this.server} answered 401 Unauthorized to ${what}: the credentials of the ${this.source} were not accepted`, {
        hint: 'The token or certificate is expired, revoked or wrong: renew the kubeconfig (or the service account token) and run again',
        details: full,
      });
    }
    if (code === 403) {
      const scope = operation.namespace ? `in namespace ${operation.namespace}` : 'cluster-wide';
      return new ThinkubeImageError('ERR_KUBE_FORBIDDEN', `The Kubernetes API at ${this.server} answered 403 Forbidden to ${what}: ${message}`, {
        hint: `The credentials of the ${this.source} lack the right to ${operation.verb} ${operation.resource} ${scope}: grant a Role with verb ${operation.verb} on ${operation.resource} ${scope} (README: "RBAC")`,
        details: full,
      });
    }
    return new ThinkubeImageError('ERR_KUBE', `The Kubernetes API at ${this.server} answered ${code}${status.reason ? ` ${status.reason}` : ''} to ${what}: ${message}`, {
      hint:
        code === 404 && status.details?.kind === 'namespaces'
          ? `Create the namespace ${operation.namespace ?? ''} first, or give another one`
          : code === 422
            ? 'The API server rejected the object (the message names the field)'
            : code >= 500
              ? 'The API server failed: run again, or read its logs'
              : 'Read the API server message',
      details: full,
    });
  }
}
