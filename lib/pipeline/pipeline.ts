/**
 * runPipeline: every image of an images folder (or a selection) through the one per-image path
 * (lib/pipeline/image.ts), over the catalog's dependency graph, builds limited by a concurrency
 * and run by an executor. Before anything is built, the checks gate the images: an image with an
 * error (and every image built on it) stops there. A failed image never stops unrelated images.
 * Check mode runs the same graph with dryRun and predicts the real run's `changed`.
 */
import path from 'node:path';
import { ThinkubeImageError } from '../core/errors.js';
import { emit, type OperationControls } from '../core/progress.js';
import { validate } from '../options/schema.js';
import { checkImageNames, dependants, formatProblem, order, type Catalog, type CatalogImage, type LintProblem } from '../source/catalog.js';
import { lintImages } from '../source/lint.js';
import { git } from '../source/git.js';
import { isValidTag } from '../registry/reference.js';
import { clientsFor, prefetchBaseManifests } from '../build/incremental.js';
import { EnginesExecutor } from '../build/engines-executor.js';
import { ClusterExecutor } from '../build/argo/executor.js';
import type { BuildExecutor } from '../build/executor.js';
import type { EngineStats } from '../engine/pool.js';
import { harborClientFor } from '../harbor/connect.js';
import { resolveCredentials } from '../registry/connect.js';
import { runGraph, type GraphTask } from './graph.js';
import { checkClusterOptions, kubernetesSettings, renderRunWorkflow, type ClusterWorkflowResult } from './cluster.js';
import { ImageRun, type ImageJob, type PipelineImageResult, type RunContext } from './image.js';
import type { PipelineOptions } from '../options/generated/types.js';
import type { PreflightResult } from './preflight.js';
import type { Naming } from '../options/naming-types.js';

export type { PipelineOptions };
export type { PipelineImageResult, ImageStatus, PlatformResult, ImageScanResult, ImageRegistration } from './image.js';

export interface PipelineResult {
  images: PipelineImageResult[];
  order: string[];
  changed: boolean;
  failed: boolean;
  durationMs: number;
  warnings: string[];
  /** Where the builds ran: per engine, builds given and most at once. */
  engines: EngineStats[];
  /** executor kubernetes: the Workflow of the run's builds. */
  workflow?: ClusterWorkflowResult;
  /** Option preflight: the checks that ran before the run (all passed, or the run threw ERR_PREFLIGHT). */
  preflight?: PreflightResult;
}

export interface PipelineControls extends OperationControls {
  /** Ansible check mode: plan only, change nothing, predict `changed`. */
  checkMode?: boolean;
  /** How option names are spelled in hints (the preflight's). Default camel. */
  naming?: Naming;
}

export async function runPipeline(options: PipelineOptions, controls: PipelineControls = {}): Promise<PipelineResult> {
  const valid = validate<PipelineOptions>('pipeline-options.schema.json', options, { what: 'pipeline options' });
  return runValidatedPipeline(valid, controls);
}

/**
 * Run images over their dependency graph: an image is planned once the images it builds on are
 * published (their digests are then known), while those still register; it is built once they
 * are registered (a base that fails its scan gate or registration stops its dependants before
 * they build). One build node per platform, then publish, then register (with the scan gate).
 * Ready nodes start in build order. Resolves when every image is through or skipped; never throws
 * for an image (its result says failed), and releases every image's lock.
 */
export async function runJobs(runs: ImageRun[], concurrency: number, signal?: AbortSignal): Promise<void> {
  const tasks: Array<GraphTask<void>> = [];
  for (const run of runs) {
    const n = run.job.name;
    // Only builds count against the concurrency (the engines' capacity): planning, publishing and
    // registering are registry and Harbor calls, so an unchanged image never waits for another's build.
    tasks.push({ id: `plan:${n}`, dependsOn: run.result.dependsOn.map((d) => `publish:${d}`), unlimited: true, run: () => run.plan() });
    run.platforms.forEach((platform, i) => tasks.push({ id: `build:${n}:${platform ?? 'native'}`, dependsOn: [`plan:${n}`, ...run.result.dependsOn.map((d) => `register:${d}`)], run: () => run.build(i) }));
    tasks.push({ id: `publish:${n}`, dependsOn: run.platforms.map((p) => `build:${n}:${p ?? 'native'}`), unlimited: true, run: () => run.publish() });
    tasks.push({ id: `register:${n}`, dependsOn: [`publish:${n}`], unlimited: true, run: () => run.register() });
  }
  try {
    await runGraph(tasks, { concurrency, signal });
  } finally {
    await Promise.all(runs.map((r) => r.close()));
  }
}

/** Images stopped by the checks: an image's own errors, the images built on it, or every image for an error of no image. */
export function gateOnChecks(catalog: Catalog, problems: LintProblem[], selected: string[]): Map<string, { problems: LintProblem[]; blockedBy?: string }> {
  const stopped = new Map<string, { problems: LintProblem[]; blockedBy?: string }>();
  const errors = problems.filter((p) => p.severity === 'error');
  const general = errors.filter((p) => !p.image);
  const wanted = new Set(selected);
  for (const name of selected) {
    const own = errors.filter((p) => p.image === name);
    if (own.length > 0 || general.length > 0) stopped.set(name, { problems: [...general, ...own] });
  }
  for (const [name, entry] of [...stopped]) {
    if (entry.problems.length === 0) continue;
    for (const dependant of dependants(catalog, name)) {
      if (wanted.has(dependant) && !stopped.has(dependant)) stopped.set(dependant, { problems: [], blockedBy: name });
    }
  }
  return stopped;
}

/**
 * Option preflight: the preflight's checks of the selected images, before anything is planned.
 * Throws ERR_PREFLIGHT with its report when a check failed. Loaded only when asked for.
 */
async function preflightOf(options: PipelineOptions, images: string[], controls: PipelineControls): Promise<PreflightResult> {
  const { PREFLIGHT_CHECKS, runValidatedPreflight, summarizePreflight } = await import('./preflight.js');
  // One engine to check: a pool's engines and a cluster are checked by the run itself.
  const oneEngine = options.executor !== 'kubernetes' && !options.engines;
  const result = await runValidatedPreflight(
    {
      registry: options.registry,
      project: options.project,
      auth: options.auth,
      registryTls: options.registryTls,
      imagesDir: options.imagesDir,
      images,
      ...(oneEngine ? { engine: options.engine } : { only: PREFLIGHT_CHECKS.filter((c) => c !== 'engine' && c !== 'disk') }),
    },
    { ...controls, checkMode: controls.checkMode === true },
  );
  if (!result.ok) {
    throw new ThinkubeImageError('ERR_PREFLIGHT', summarizePreflight(result), {
      hint: 'Fix what the failed checks name (each says what to do), then run again; nothing was built',
      details: { checks: result.checks.filter((c) => c.status === 'failed') },
    });
  }
  return result;
}

/** The pipeline for options already validated (the command layer validates with its own naming). */
export async function runValidatedPipeline(options: PipelineOptions, controls: PipelineControls = {}): Promise<PipelineResult> {
  const started = Date.now();
  const dryRun = controls.checkMode === true;
  const project = options.project as string;
  const tagNames = options.tags as string[];
  const buildArgs = { HARBOR_REGISTRY: options.registry, ...(options.buildArgs ?? {}) };
  const cluster = options.executor === 'kubernetes';
  // The engines answer their check while the images are read and checked; a bad engine option
  // is still reported after the images' problems, where the executor was always made.
  let local: EnginesExecutor | Error | undefined;
  if (!cluster) {
    try {
      local = localExecutor(options);
      local.probe();
    } catch (error) {
      local = error as Error;
    }
  }
  const lint = await lintImages(path.resolve(options.imagesDir), { registry: options.registry, project, buildArgs, maxContextBytes: options.maxContextBytes });
  const { catalog } = lint;
  const selected = options.images ?? catalog.images.map((i) => i.name);
  checkImageNames(catalog, selected, 'images');

  const preflight = options.preflight ? await preflightOf(options, selected, controls) : undefined;

  const stopped = gateOnChecks(catalog, lint.problems, selected);
  const plan = order(catalog, selected.filter((n) => !stopped.has(n)));
  const names = [...plan.names, ...selected.filter((n) => stopped.has(n))];
  const byName = new Map(catalog.images.map((i) => [i.name, i]));
  const inRun = new Set(selected);

  const settings = cluster ? kubernetesSettings(options) : undefined;
  if (cluster) checkClusterOptions(options);
  const clients = clientsFor({ tags: [`${options.registry}/${project}/x`], auth: options.auth, registryTls: options.registryTls }, controls);
  const clusterExecutor = cluster ? new ClusterExecutor(dryRun ? undefined : { registry: options.registry, clients, connection: settings?.connection }) : undefined;
  // A bad kubeconfig fails the run before anything is planned or uploaded.
  if (clusterExecutor && !dryRun) await clusterExecutor.connect();
  if (local instanceof Error) throw local;
  const executor: BuildExecutor = clusterExecutor ?? (local as EnginesExecutor);
  // Bases from outside the set are asked for while the engines answer (planning finds the answers).
  prefetchBaseManifests(clients, plan.images.flatMap((i) => i.baseImages.filter((b) => ['external', 'base', 'missing'].includes(b.kind) && !b.reference.includes('$')).map((b) => b.reference)));
  const platformsOf = (image: CatalogImage): string[] | undefined => image.metadata?.platforms ?? options.platforms;
  await executor.check(plan.images.flatMap((i) => platformsOf(i) ?? [undefined]), 'the pipeline');

  const ctx: RunContext = {
    options,
    tagNames,
    buildArgs,
    executor,
    clients,
    // The scan gate needs Harbor; input-tag retention uses Harbor's API when the registry is Harbor.
    harbor: options.scan?.enabled || options.keepInputTags !== 0
      ? harborClientFor({ registry: options.registry, credentials: await resolveCredentials(options.registry, options.auth), registryTls: options.registryTls, url: options.scan?.harborUrl, basePath: options.scan?.harborBasePath })
      : undefined,
    dryRun,
    controls,
    // Options of an executor that does not run are a mistake worth a word, not silence.
    warnings: !cluster && options.kubernetes && Object.keys(options.kubernetes).length > 0 ? ['The kubernetes options are ignored: executor is local (set executor: kubernetes to build on the cluster)'] : [],
    predicted: new Map(),
  };
  const revision = options.tagging?.gitRevision ? await gitRevisionTag(path.resolve(options.imagesDir)) : undefined;
  const runs = new Map<string, ImageRun>();
  const results = new Map<string, PipelineImageResult>();
  for (const name of names) {
    const image = byName.get(name) as CatalogImage;
    const dependsOn = image.dependsOn.filter((d) => inRun.has(d));
    const tags = imageTags(image, options, tagNames, project, revision);
    const gate = stopped.get(name);
    if (gate) {
      results.set(name, gatedResult(image, tags, dependsOn, gate));
      continue;
    }
    const run = new ImageRun({ name, repository: `${project}/${name}`, build: buildOf(image, options, buildArgs), context: lint.contexts.get(name), tags, dependsOn, platforms: platformsOf(image), metadata: image.metadata }, ctx);
    runs.set(name, run);
    results.set(name, run.result);
  }

  const concurrency = options.concurrency ?? executor.capacity;
  let workflow: ClusterWorkflowResult | undefined;
  try {
    if (settings && clusterExecutor && !dryRun) {
      workflow = await submitWorkflow(runs, results, ctx, settings, clusterExecutor, concurrency);
    }
    await runJobs([...runs.values()], concurrency, controls.signal);
    if (settings && dryRun) workflow = await renderRunWorkflow([...runs.values()], ctx, settings);
  } finally {
    ctx.warnings.push(...(await executor.close()));
  }
  if (workflow?.submitted && clusterExecutor?.run) {
    workflow.phase = clusterExecutor.run.latest.status?.phase;
    workflow.stopped = clusterExecutor.run.stopped;
  }

  for (const name of names) {
    const result = results.get(name) as PipelineImageResult;
    if (result.status !== 'planned' || (dryRun && result.reason)) continue;
    // Never started: an image it builds on did not make it, or the run was cancelled.
    const blocked = result.dependsOn.filter((d) => ['failed', 'skipped'].includes(results.get(d)?.status ?? ''));
    result.status = 'skipped';
    result.reason = blocked.length > 0 ? `builds on ${blocked.join(', ')}, which ${blocked.length === 1 ? 'was' : 'were'} not built` : 'cancelled before it started';
    if (blocked.length > 0) emit(controls, { type: 'warning', message: `${name} skipped: ${result.reason}` });
  }
  const images = names.map((n) => results.get(n) as PipelineImageResult);
  return {
    images,
    order: names,
    changed: images.some((i) => i.changed),
    failed: images.some((i) => i.status === 'failed'),
    durationMs: Date.now() - started,
    warnings: ctx.warnings,
    engines: executor.stats(),
    ...(workflow ? { workflow } : {}),
    ...(preflight ? { preflight } : {}),
  };
}

/**
 * Executor kubernetes, a real run: plan every image as check mode does (quietly, nothing written),
 * render the Workflow of what is to be built, upload the contexts the registry lacks, submit it.
 * Images the Workflow cannot build leave the run with their planning result. Then the real graph
 * runs as for any executor; its builds wait for the Workflow's tasks (docs/DEVELOPING.md).
 */
async function submitWorkflow(runs: Map<string, ImageRun>, results: Map<string, PipelineImageResult>, ctx: RunContext, settings: NonNullable<ReturnType<typeof kubernetesSettings>>, executor: ClusterExecutor, concurrency: number): Promise<ClusterWorkflowResult> {
  const planning: RunContext = {
    ...ctx,
    dryRun: true,
    // The plan needs only what is built: no registration, scan or retention reads.
    options: { ...ctx.options, register: false, scan: undefined, keepInputTags: 0 },
    controls: { signal: ctx.controls.signal },
    warnings: [],
    predicted: new Map(),
  };
  const planned = [...runs.values()].map((run) => new ImageRun(run.job, planning));
  await runJobs(planned, concurrency, ctx.controls.signal);
  const workflow = await renderRunWorkflow(planned, { ...planning, controls: ctx.controls }, settings, { upload: true });
  ctx.warnings.push(...planning.warnings);
  for (const plan of planned) {
    if (plan.result.status !== 'failed' && plan.result.status !== 'skipped') continue;
    runs.delete(plan.job.name);
    results.set(plan.job.name, { ...plan.result, status: plan.result.status });
  }
  if (workflow.manifest) {
    const submitted = await executor.submit(workflow.manifest, workflow.namespace, workflow.builds, ctx.controls);
    workflow.submitted = true;
    workflow.name = submitted.name;
    workflow.uid = submitted.uid;
    workflow.builds = submitted.builds;
  }
  return workflow;
}

/** The executor of the engine or engines of the options. */
function localExecutor(options: PipelineOptions): EnginesExecutor {
  return new EnginesExecutor({
    engines: options.engines,
    engine: options.engine,
    concurrency: options.concurrency,
    registry: options.registry,
    auth: options.auth,
    registryTls: options.registryTls,
    retry: options.retry,
  });
}

/** What every build of a catalog image shares. */
function buildOf(image: CatalogImage, options: PipelineOptions, buildArgs: Record<string, string>): ImageJob['build'] {
  return {
    context: image.dir,
    dockerfile: image.dockerfilePath,
    buildArgs,
    noCache: options.noCache,
    registryLayerCache: options.registryLayerCache,
    pull: options.pull,
    title: image.metadata?.display_name,
    version: image.metadata?.version,
    source: options.registration?.sourceUrl,
    stallTimeoutSeconds: options.stallTimeoutSeconds,
    maxContextBytes: options.maxContextBytes,
    secretBuildArgs: options.secretBuildArgs,
    force: options.force,
    auth: options.auth,
    registryTls: options.registryTls,
  };
}

function gatedResult(image: CatalogImage, tags: string[], dependsOn: string[], gate: { problems: LintProblem[]; blockedBy?: string }): PipelineImageResult {
  const base = { name: image.name, changed: false, tags, dependsOn, durationMs: 0 };
  if (gate.blockedBy) return { ...base, status: 'skipped', reason: `builds on ${gate.blockedBy}, which has check errors` };
  const message = `${image.name} does not pass the checks: ${gate.problems.map(formatProblem).join('; ')}`;
  return { ...base, status: 'failed', reason: message, error: { code: 'ERR_LINT', message: `${message} (fix them; node bin/lint.js shows every check)` } };
}


/** The references an image is pushed under: the tags, plus those of the tagging strategy, each checked. */
export function imageTags(image: CatalogImage, options: PipelineOptions, tagNames: string[], project: string, revision: string | undefined): string[] {
  const names = [...tagNames];
  if (options.tagging?.version && image.metadata?.version) names.push(image.metadata.version);
  if (options.tagging?.date) names.push(new Date().toISOString().slice(0, 10).replace(/-/g, ''));
  if (revision) names.push(revision);
  for (const name of names) {
    if (!isValidTag(name)) throw new ThinkubeImageError('ERR_INVALID_OPTIONS', `Tag "${name}" for ${image.name} is not a valid OCI tag`, { hint: 'Tags are 1 to 128 characters from [A-Za-z0-9_.-], not starting with . or -' });
  }
  return [...new Set(names)].map((tag) => `${options.registry}/${project}/${image.name}:${tag}`);
}

/** git-<short commit>[-dirty] of the folder, or undefined outside a git repository. */
export async function gitRevisionTag(dir: string): Promise<string | undefined> {
  const commit = await git(dir, ['rev-parse', '--short=12', 'HEAD']);
  if (!commit) return undefined;
  const dirty = await git(dir, ['status', '--porcelain', '--', '.']);
  return `git-${commit}${dirty ? '-dirty' : ''}`;
}
