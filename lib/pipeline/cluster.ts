/**
 * The run's plan as one Argo Workflow: after the planning pass (the same graph as check mode),
 * every platform build the registry does not already hold becomes a task, each multi-arch image
 * an index task, and an image built on another image of the run builds FROM that image's digest
 * (known, or the output of its task). The Workflow is validated before anyone sees it.
 */
import yaml from 'js-yaml';
import { ThinkubeImageError } from '../core/errors.js';
import { emit } from '../core/progress.js';
import { validate } from '../options/schema.js';
import { globalArgs, parseDockerfile, resolveFrom, stages } from '../source/dockerfile.js';
import { INPUT_DIGEST_LABEL } from '../source/input-digest.js';
import { formatReference, parseReference, withDefaultTag } from '../registry/reference.js';
import { explicitLabels } from '../build/incremental.js';
import { layerCacheRepository } from '../build/layer-cache.js';
import { contextImageFor, pushContextImage } from '../build/argo/context-image.js';
import { renderWorkflow, buildDestination, buildTaskName, indexTaskName, type IWorkflow, type WorkflowBase, type WorkflowBuild, type WorkflowIndex, type WorkflowPlan } from '../build/argo/workflow.js';
import type { WorkflowBuildTask } from '../build/argo/executor.js';
import { errorSummary, type ImageRun, type RunContext } from './image.js';
import type { PipelineOptions } from '../options/generated/types.js';

export interface ClusterWorkflowResult {
  /** The rendered, validated Workflow; absent when the registry already holds every build. */
  manifest?: IWorkflow;
  namespace: string;
  /** Task names in the order rendered. */
  tasks: string[];
  /** Each image's context image, and whether it is (check mode: would be) uploaded: the registry lacked it. */
  contexts: Array<{ image: string; reference: string; upload: boolean }>;
  /** Each build task: the image-platform it builds and where it pushes ({{workflow.uid}} until submitted). */
  builds: WorkflowBuildTask[];
  /** Submitted to the cluster (never in check mode). */
  submitted: boolean;
  /** Once submitted: the Workflow's name and uid. */
  name?: string;
  uid?: string;
  /** Its final phase (Succeeded, Failed, Error), when the run saw the end of it. */
  phase?: string;
  /** The run was cancelled and stopped the Workflow. */
  stopped?: boolean;
}

export function kubernetesSettings(options: PipelineOptions): WorkflowPlan['settings'] {
  return validate<WorkflowPlan['settings']>('kubernetes-executor.schema.json', options.kubernetes ?? {}, { at: 'kubernetes', what: 'pipeline options' });
}

/** Cluster builds take no secrets: a Workflow is readable by whoever may list Workflows. */
export function checkClusterOptions(options: PipelineOptions): void {
  if (options.secretBuildArgs && options.secretBuildArgs.length > 0) {
    throw new ThinkubeImageError('ERR_INVALID_OPTIONS', `secretBuildArgs (${options.secretBuildArgs.join(', ')}) cannot go to a cluster build: build arguments are written into the Workflow`, {
      hint: 'Build images that need secret build arguments with executor local',
    });
  }
}

function canonical(reference: string): string | undefined {
  try {
    return formatReference(withDefaultTag(parseReference(reference)));
  } catch {
    return undefined;
  }
}

/** The reference the first FROM names, build args substituted. */
function firstFrom(dockerfile: Buffer, buildArgs: Record<string, string>): string | undefined {
  const parsed = parseDockerfile(dockerfile.toString('utf8'));
  const first = stages(parsed)[0];
  return first ? canonical(resolveFrom(first.image, globalArgs(parsed, buildArgs))) : undefined;
}

/**
 * The Workflow of planned runs (check mode's graph). upload: push the context images the registry
 * lacks (a real run, before it submits); otherwise only say which would go up.
 */
export async function renderRunWorkflow(runs: ImageRun[], ctx: RunContext, settings: WorkflowPlan['settings'], mode: { upload?: boolean } = {}): Promise<ClusterWorkflowResult> {
  const { options } = ctx;
  const registry = options.registry;
  const live = runs.filter((r) => r.result.status !== 'failed' && r.result.status !== 'skipped' && r.contextScan);
  const byName = new Map(live.map((r) => [r.job.name, r]));
  const byTag = new Map<string, ImageRun>();
  for (const run of live) for (const tag of run.result.tags) byTag.set(canonical(tag) ?? tag, run);
  const rebuilds = (run: ImageRun): boolean => run.platformDetails().some((d) => !d.reused);

  const builds: WorkflowBuild[] = [];
  const indexes: WorkflowIndex[] = [];
  const contexts: ClusterWorkflowResult['contexts'] = [];
  const client = await ctx.clients.get(registry);
  // An image the Workflow cannot build fails alone; the images built on it are left out too.
  const dropped = new Set<string>();
  const drop = (run: ImageRun, status: 'failed' | 'skipped', error: unknown, reason: string): void => {
    dropped.add(run.job.name);
    run.result.status = status;
    run.result.changed = false;
    run.result.reason = reason;
    if (error) run.result.error = errorSummary(error);
    emit(ctx.controls, { type: 'warning', message: `${run.job.name} ${status}: ${reason}` });
  };
  for (const run of live) {
    const details = run.platformDetails();
    const blocked = run.job.dependsOn.filter((d) => dropped.has(d));
    if (blocked.length > 0) {
      drop(run, 'skipped', undefined, `builds on ${blocked.join(', ')}, which the Workflow cannot build`);
      continue;
    }
    if (!rebuilds(run)) continue;
    const scan = run.contextScan!;
    const repository = `${registry}/${run.job.repository}`;
    const buildArgs = run.job.build.buildArgs ?? {};

    // The image of this run the first FROM names is built FROM its digest; any other image of
    // the run it builds on must already be in the registry (buildah replaces only the first FROM).
    const fromRun = byTag.get(firstFrom(scan.dockerfile, buildArgs) ?? '');
    const from: WorkflowBase | undefined = fromRun ? { image: fromRun.job.name, repository: `${registry}/${fromRun.job.repository}`, digest: fromRun.result.digest } : undefined;
    const unreachable = run.job.dependsOn.map((d) => byName.get(d)).find((r): r is ImageRun => Boolean(r) && r !== fromRun && rebuilds(r as ImageRun));
    if (unreachable) {
      const error = new ThinkubeImageError('ERR_WORKFLOW', `${run.job.name} builds on ${unreachable.job.name} (rebuilt by this run) in a stage other than the first or through COPY --from: a cluster build takes only the first FROM from the same Workflow`, {
        hint: `Build ${unreachable.job.name} first (images: [${unreachable.job.name}]), then ${run.job.name}; or build them with executor local`,
      });
      drop(run, 'failed', error, error.fullMessage);
      continue;
    }
    const context = await contextImageFor(registry, run.job.repository, scan);
    const state = await pushContextImage(client, context, scan, { dryRun: !mode.upload });
    if (state.uploaded) emit(ctx.controls, { type: 'info', message: `${run.job.name}: context uploaded as ${context.reference} (${state.layerBytes ?? 0} bytes)` });
    contexts.push({ image: run.job.name, reference: context.reference, upload: !state.existed });
    const resources = run.job.metadata?.metadata;
    for (const d of details.filter((v) => !v.reused)) {
      const certain = !d.plan.uncertain;
      const buildOptions = { ...run.job.build, tags: run.result.tags as [string, ...string[]], ...(d.platform ? { platform: d.platform } : {}) };
      builds.push({
        image: run.job.name,
        repository,
        platform: d.platform,
        inputTag: certain ? d.plan.inputTag : undefined,
        inputDigest: certain ? d.plan.inputDigest : undefined,
        context,
        buildArgs,
        labels: { ...explicitLabels(buildOptions), ...(run.job.build.labels ?? {}), ...(certain ? { [INPUT_DIGEST_LABEL]: d.plan.inputDigest } : {}) },
        target: run.job.build.target,
        // Thinkube's CI layout: every layer in <repository>/cache, read before a step runs.
        cache: layerCacheRepository(buildOptions),
        noCache: run.job.build.noCache,
        from,
        resources: { cpu: resources?.cpu_limit, memory: resources?.mem_limit },
      });
      if (!certain && !from) ctx.warnings.push(`${run.job.name}: ${d.plan.uncertain}; its cluster build pushes under a Workflow tag`);
    }
    if (run.multiArch) {
      indexes.push({ image: run.job.name, repository, platforms: details.map((d) => ({ platform: d.platform as string, digest: d.reused ? d.plan.existing : undefined })) });
    }
  }
  const manifest = renderWorkflow({ registry, builds, indexes, settings });
  if (manifest) {
    // Loaded on use: the Argo and Kubernetes validators are large, and most runs render nothing.
    const { validateWorkflow } = await import('../build/argo/validate.js');
    validateWorkflow(manifest);
    if (settings.printWorkflow) emit(ctx.controls, { type: 'info', message: `Workflow${mode.upload ? '' : ' (not submitted)'}:\n${yaml.dump(manifest, { lineWidth: -1, noRefs: true })}` });
  }
  const tasks = [...builds.map((b) => buildTaskName(b.image, b.platform)), ...indexes.filter((i) => i.platforms.some((p) => !p.digest)).map((i) => indexTaskName(i.image))];
  const buildTasks = builds.map((b) => ({ task: buildTaskName(b.image, b.platform), image: b.image, ...(b.platform ? { platform: b.platform } : {}), pushedAs: buildDestination(b), ...(b.inputTag ? { inputTag: b.inputTag } : {}) }));
  return { manifest, namespace: settings.namespace, tasks, contexts, builds: buildTasks, submitted: false };
}
