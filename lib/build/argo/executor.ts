/**
 * The executor of a Kubernetes cluster with Argo Workflows. The run's plan is rendered as one
 * Workflow (lib/pipeline/cluster.ts, ./workflow.ts) after a planning pass; in check mode that is
 * all there is. A real run submits it here; then the image runs of the real graph call build(),
 * which waits for that image-platform's task instead of building, checks the digest the task
 * reported against the registry and names it with the input tag known by then (a registry-side
 * re-tag). A cancelled run stops the Workflow. The Kubernetes client is loaded only here, on use.
 */
import { ThinkubeImageError } from '../../core/errors.js';
import { emit, type OperationControls } from '../../core/progress.js';
import type { Engine } from '../../engine/engine.js';
import type { EngineStats } from '../../engine/pool.js';
import { formatReference, parseReference, withDefaultTag } from '../../registry/reference.js';
import { describeExisting, type Clients } from '../incremental.js';
import type { BuildExecutor, BuildRequest, BuiltImage } from '../executor.js';
import { buildTaskName, WORKFLOW_UID, type IWorkflow } from './workflow.js';
import type { WorkflowRun } from './run.js';
import type { KubeConnection, KubeConnectionOptions } from '../../kube/connection.js';

/** A build task of the submitted Workflow. */
export interface WorkflowBuildTask {
  task: string;
  image: string;
  platform?: string;
  /** Where the step pushes: the input tag, or a Workflow tag (build-{{workflow.uid}}-...) when its inputs were not known. */
  pushedAs: string;
  /** The input tag the plan knew (unset: not known before the base is built). */
  inputTag?: string;
}

export interface ClusterExecutorOptions {
  registry: string;
  clients: Clients;
  /** Which cluster (kubeconfig, context, in-cluster); default as kubectl. */
  connection?: KubeConnectionOptions;
}

function canonical(reference: string): string {
  return formatReference(withDefaultTag(parseReference(reference)));
}

export class ClusterExecutor implements BuildExecutor {
  readonly kind = 'kubernetes';
  /** Planning runs images side by side; the cluster's own capacity limits the pods. */
  readonly capacity = 16;
  readonly #options: ClusterExecutorOptions | undefined;
  readonly #tasks = new Map<string, WorkflowBuildTask>();
  readonly #warnings: string[] = [];
  #run?: WorkflowRun;
  #connection?: KubeConnection;
  #stopping?: Promise<void>;
  /** Builds per Kubernetes node, as the engine pool counts them per engine. */
  #nodes = new Map<string, { builds: number; platforms: Set<string> }>();

  /** Without options: check mode only (nothing is submitted). */
  constructor(options?: ClusterExecutorOptions) {
    this.#options = options;
  }

  async check(platforms: Array<string | undefined>, what: string): Promise<void> {
    for (const platform of platforms) {
      if (platform !== undefined && !platform.startsWith('linux/')) {
        throw new ThinkubeImageError('ERR_INVALID_OPTIONS', `${what} asks for platform ${platform}, but cluster builds run on Linux nodes`, { hint: 'Build linux/<arch> platforms on the cluster' });
      }
    }
  }

  /** No engine of this machine takes part: every base must be in a registry. */
  localEngine(): Engine | undefined {
    return undefined;
  }

  /**
   * Load the connection now, so that a bad kubeconfig fails the run before anything is planned
   * or uploaded (and before the Kubernetes client is needed otherwise).
   */
  async connect(): Promise<KubeConnection> {
    if (!this.#connection) {
      const { KubeConnection } = await import('../../kube/connection.js');
      this.#connection = KubeConnection.load(this.#options?.connection);
    }
    return this.#connection;
  }

  /** Submit the rendered Workflow and start following it; returns its name, uid and the build tasks with the uid in their tags. */
  async submit(manifest: IWorkflow, namespace: string, tasks: WorkflowBuildTask[], controls: OperationControls): Promise<{ name: string; uid: string; builds: WorkflowBuildTask[] }> {
    const [connection, { WorkflowClient }, { WorkflowRun }] = await Promise.all([this.connect(), import('../../kube/workflows.js'), import('./run.js')]);
    const client = new WorkflowClient(connection, namespace, controls.signal);
    const created = await client.create(manifest as Parameters<typeof client.create>[0]);
    const name = created.metadata.name as string;
    const uid = created.metadata.uid as string;
    const builds = tasks.map((task) => ({ ...task, pushedAs: task.pushedAs.split(WORKFLOW_UID).join(uid) }));
    for (const build of builds) this.#tasks.set(build.task, build);
    emit(controls, { type: 'info', message: `Submitted Workflow ${namespace}/${name} (${tasks.length} build task${tasks.length === 1 ? '' : 's'}) to ${connection.server}` });
    const run = new WorkflowRun(client, created, [...new Set([...tasks.map((t) => t.task), ...taskNamesOf(manifest)])], controls);
    this.#run = run;
    const onAbort = (): void => {
      this.#stopping ??= run.stop().catch((error: unknown) => {
        this.#warnings.push(`Workflow ${namespace}/${name} could not be stopped (${(error as Error).message}): stop it with argo stop -n ${namespace} ${name}`);
      });
    };
    if (controls.signal?.aborted) onAbort();
    else controls.signal?.addEventListener('abort', onAbort, { once: true });
    return { name, uid, builds };
  }

  /** The submitted Workflow, once there is one. */
  get run(): WorkflowRun | undefined {
    return this.#run;
  }

  /** The Workflow builds this image-platform: the image run waits for it whatever the registry holds now. */
  underWay(image: string, platform: string | undefined): boolean {
    return this.#tasks.has(buildTaskName(image, platform));
  }

  async build(request: BuildRequest, controls: OperationControls): Promise<BuiltImage> {
    const task = buildTaskName(request.image, request.options.platform);
    const planned = this.#tasks.get(task);
    if (!this.#run || !planned || !this.#options) {
      throw new ThinkubeImageError('ERR_WORKFLOW', `${request.what} has no task in the submitted Workflow (its input tag vanished from the registry after it was planned?)`, {
        hint: 'Run again: the new plan builds it',
      });
    }
    if (planned.inputTag && canonical(planned.inputTag) !== canonical(request.options.tags[0] as string)) {
      throw new ThinkubeImageError('ERR_WORKFLOW', `The inputs of ${request.what} changed while the Workflow built it (planned ${planned.inputTag}, now ${request.options.tags[0]})`, {
        hint: 'Leave the image folders alone during a run, and run again',
      });
    }
    const outcome = await this.#run.wait(task);
    if (controls.signal?.aborted) throw new ThinkubeImageError('ERR_ABORTED', `Cancelled: ${request.what}`, { hint: 'Run again' });
    const client = await this.#options.clients.get(this.#options.registry);
    const pushed = withDefaultTag(parseReference(planned.pushedAs));
    const head = await client.headManifest(pushed.repository, pushed.tag as string);
    if (head?.digest !== outcome.digest) {
      throw new ThinkubeImageError('ERR_DIGEST_MISMATCH', `Task ${task} reported ${outcome.digest} for ${planned.pushedAs}, but the registry holds ${head?.digest ?? 'nothing'} there`, {
        hint: 'Someone else pushed to that tag meanwhile, or the push did not complete: run again',
        details: { task, reported: outcome.digest, registry: head?.digest },
      });
    }
    const wanted = withDefaultTag(parseReference(request.options.tags[0] as string));
    // A build whose inputs were not known before its base was built gets its input tag now (no layer moves).
    if (wanted.tag !== pushed.tag) await client.retag(wanted.repository, outcome.digest, wanted.tag as string);
    const described = await describeExisting(client, wanted.repository, outcome.digest);
    const node = outcome.node ?? 'cluster';
    const stats = this.#nodes.get(node) ?? { builds: 0, platforms: new Set<string>() };
    stats.builds += 1;
    if (request.options.platform) stats.platforms.add(request.options.platform);
    this.#nodes.set(node, stats);
    return { digest: outcome.digest, imageSize: described.imageSize, layersUploaded: outcome.blobsPushed, createdAt: described.createdAt, engine: node, warnings: [] };
  }

  stats(): EngineStats[] {
    const server = this.#run ? `${this.#run.namespace}/${this.#run.name}` : '';
    // Concurrency and peak are the cluster's to decide: not known here.
    return [...this.#nodes].map(([name, s]) => ({ name, address: server, platforms: s.platforms.size ? [...s.platforms] : 'any', concurrency: 0, builds: s.builds, peak: 0 }));
  }

  /** Stop a Workflow nothing waits for any more (a cancelled or failed run); returns warnings. */
  async close(): Promise<string[]> {
    const run = this.#run;
    if (run && !run.stopped) {
      if (!run.finished) {
        this.#stopping ??= run.stop().then(
          () => void this.#warnings.push(`Workflow ${run.namespace}/${run.name} stopped: no image of this run waited for it any more`),
          (error: unknown) => void this.#warnings.push(`Workflow ${run.namespace}/${run.name} could not be stopped (${(error as Error).message}): stop it with argo stop -n ${run.namespace} ${run.name}`),
        );
      }
    }
    await this.#stopping;
    return this.#warnings.splice(0);
  }
}

/** Every task of the Workflow's DAG (build and index tasks). */
function taskNamesOf(manifest: IWorkflow): string[] {
  const entry = manifest.spec?.templates?.find((t) => t.name === manifest.spec?.entrypoint);
  return (entry?.dag?.tasks ?? []).map((t) => t.name);
}
