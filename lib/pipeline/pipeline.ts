/**
 * runPipeline: build -> push -> register for every image of an images folder (or a selection), in
 * the order the dependency graph gives. A failed image never stops unrelated images, and every
 * image built on it is skipped with the reason. Registration only ever follows a verified push.
 */
import path from 'node:path';
import { loadCatalog, order, formatProblem, type CatalogImage } from '../source/catalog.js';
import { buildIfChanged, planBuild, type IncrementalBuildResult } from '../build/incremental.js';

import { runPush } from '../publish/push.js';
import { isValidTag } from '../registry/reference.js';
import { execFile } from 'node:child_process';
import { registerImage, type RegisterResult } from '../register/register.js';
import { connectEngine, checkEngine, type Engine } from '../engine/engine.js';
import { scanContext } from '../source/context.js';
import { lockImage } from './image-lock.js';
import { ThinkubeImageError, isThinkubeImageError } from '../core/errors.js';
import { emit, type OperationControls } from '../core/progress.js';
import { validate } from '../options/schema.js';
import type { BuildOptions, PipelineOptions, RegisterOptions } from '../options/generated/types.js';

export type { PipelineOptions };

export type ImageStatus = 'done' | 'failed' | 'skipped' | 'planned';

export interface PipelineImageResult {
  name: string;
  status: ImageStatus;
  changed: boolean;
  /** Why the image was skipped or failed. */
  reason?: string;
  tags: string[];
  dependsOn: string[];
  imageId?: string;
  /** True when nothing was built: an image with the same inputs was already in the registry. */
  buildSkipped?: boolean;
  inputDigest?: string;
  digest?: string;
  imageSize?: number;
  layersUploaded?: number;
  registration?: { target: string; outcome: string; changed: boolean; location: string };
  error?: { code: string; message: string; step?: string; logTail?: string[] };
  durationMs: number;
}

export interface PipelineResult {
  images: PipelineImageResult[];
  order: string[];
  changed: boolean;
  failed: boolean;
  durationMs: number;
  warnings: string[];
}

export interface PipelineControls extends OperationControls {
  /** Ansible check mode: plan only, change nothing. */
  checkMode?: boolean;
}

export function errorSummary(error: unknown): PipelineImageResult['error'] {
  if (isThinkubeImageError(error)) {
    const step = typeof error.details.step === 'string' ? error.details.step : undefined;
    const logTail = Array.isArray(error.details.logTail) ? (error.details.logTail as string[]).slice(-30) : undefined;
    return { code: error.code, message: error.fullMessage, step, logTail };
  }
  return { code: 'ERR_INTERNAL', message: error instanceof Error ? error.message : String(error) };
}

/**
 * Marks an image skipped, with the reason, when an image it builds on was not built or the run was
 * cancelled before it started. Shared by the sequential and the scheduled pipeline.
 */
export function skipBeforeStart(result: PipelineImageResult, results: Map<string, PipelineImageResult>, controls: OperationControls): boolean {
  const blocked = result.dependsOn.filter((d) => results.get(d)?.status === 'failed' || results.get(d)?.status === 'skipped');
  if (blocked.length > 0) {
    result.status = 'skipped';
    result.reason = `builds on ${blocked.join(', ')}, which ${blocked.length === 1 ? 'was' : 'were'} not built`;
    emit(controls, { type: 'warning', message: `${result.name} skipped: ${result.reason}` });
    return true;
  }
  if (controls.signal?.aborted) {
    result.status = 'skipped';
    result.reason = 'cancelled before it started';
    return true;
  }
  return false;
}

export async function runPipeline(options: PipelineOptions, controls: PipelineControls = {}): Promise<PipelineResult> {
  const valid = validate<PipelineOptions>('pipeline-options.schema.json', options, { what: 'pipeline options' });
  return runValidatedPipeline(valid, controls);
}

/** The pipeline for options already validated (the command layer validates with its own naming). */
export async function runValidatedPipeline(options: PipelineOptions, controls: PipelineControls = {}): Promise<PipelineResult> {
  const started = Date.now();
  const project = options.project ?? 'library';
  const tagNames = options.tags ?? ['latest'];
  const buildArgs = { HARBOR_REGISTRY: options.registry, ...(options.buildArgs ?? {}) };
  const catalog = await loadCatalog(path.resolve(options.imagesDir), { registry: options.registry, project, buildArgs });
  const plan = order(catalog, options.images);
  const selected = new Set(plan.names);
  const errors = catalog.problems.filter((p) => p.severity === 'error' && plan.images.some((i) => p.file.includes(i.name) || !p.file));
  if (errors.length > 0) {
    throw new ThinkubeImageError('ERR_LINT', `The images folder has ${errors.length} problem(s): ${errors.map(formatProblem).join('; ')}`, {
      hint: 'Fix them (node bin/lint.js shows every check) before building',
      details: { problems: errors },
    });
  }
  // Several engines, parallel images or several platforms: the scheduled path (lib/scheduler.ts).
  if (options.engines || (options.concurrency ?? 1) > 1 || options.platforms || plan.images.some((i) => i.metadata?.platforms)) {
    const { runScheduledPipeline } = await import('./scheduler.js');
    return runScheduledPipeline({ options, plan, project, tagNames, buildArgs, started }, controls);
  }
  const warnings: string[] = [];
  const results = new Map<string, PipelineImageResult>();
  const engine = connectEngine(options.engine);
  if (!controls.checkMode) await checkEngine(engine);

  const revision = options.tagging?.gitRevision ? await gitRevisionTag(path.resolve(options.imagesDir)) : undefined;
  for (const image of plan.images) {
    const tags = imageTags(image, options, tagNames, project, revision);
    const dependsOn = image.dependsOn.filter((d) => selected.has(d));
    const result: PipelineImageResult = { name: image.name, status: 'planned', changed: false, tags, dependsOn, durationMs: 0 };
    results.set(image.name, result);
    if (skipBeforeStart(result, results, controls)) continue;
    if (controls.checkMode) {
      result.status = 'planned';
      try {
        const scan = await scanContext(image.dir, { dockerfile: image.dockerfilePath, maxBytes: options.maxContextBytes });
        const planned = await planBuild(engine, buildOptions(image, tags, buildArgs, options), scan);
        result.inputDigest = planned.inputDigest;
        const skip = Boolean(planned.existing) && !options.force;
        result.buildSkipped = skip;
        result.digest = planned.existing;
        // A dependant of an image that would be rebuilt gets a new base: it would be rebuilt too.
        const baseRebuilt = dependsOn.some((d) => results.get(d)?.buildSkipped === false);
        result.changed = !skip || baseRebuilt;
        result.reason = skip && !baseRebuilt ? `inputs unchanged (${planned.inputTag}): would build nothing` : `would build, push ${tags.join(', ')}${options.register === false ? '' : ' and register'}`;
        if (baseRebuilt) result.buildSkipped = false;
      } catch (error) {
        result.status = 'failed';
        result.error = errorSummary(error);
        result.reason = result.error?.message;
      }
      continue;
    }
    const imageStarted = Date.now();
    emit(controls, { type: 'info', message: `==> ${image.name}: build, push${options.register === false ? '' : ', register'}` });
    // Another run building this image on this host finishes first; this one then finds it built.
    let unlock: (() => Promise<void>) | undefined;
    try {
      unlock = await lockImage(`${options.registry}/${project}/${image.name}`, controls);
      const built = await buildOne(engine, image, tags, buildArgs, options, controls);
      result.buildSkipped = built.skipped;
      result.inputDigest = built.inputDigest;
      warnings.push(...built.warnings.map((w) => `${image.name}: ${w}`));
      let pushed: { digest: string; imageSize: number };
      if (built.skipped) {
        // Nothing built: the registry already has it, and the requested tags were moved to it.
        pushed = { digest: built.digest as string, imageSize: built.imageSize ?? 0 };
        result.layersUploaded = 0;
        result.changed = built.retagged.some((r) => r.changed);
        result.reason = built.reason;
      } else {
        result.imageId = built.imageId;
        const push = await runPush(engine, { tags: built.tags as [string, ...string[]], auth: options.auth, registryTls: options.registryTls, retry: options.retry }, controls);
        pushed = push;
        result.layersUploaded = push.tags.reduce((n, t) => n + t.layersUploaded, 0);
        result.changed = true;
        warnings.push(...push.warnings.map((w) => `${image.name}: ${w}`));
      }
      result.digest = pushed.digest;
      result.imageSize = pushed.imageSize;
      if (options.register !== false) {
        const builtAt = (built.skipped ? built.createdAt : built.labels['org.opencontainers.image.created']) ?? new Date().toISOString();
        const registered = await registerOne(image, pushed, options, project, tagNames[0] as string, builtAt, controls);
        result.registration = { target: registered.target, outcome: registered.outcome, changed: registered.changed, location: registered.location };
        result.changed ||= registered.changed;
        warnings.push(...registered.warnings.map((w) => `${image.name}: ${w}`));
      }
      result.status = 'done';
    } catch (error) {
      result.status = 'failed';
      result.error = errorSummary(error);
      result.reason = result.error?.message;
      emit(controls, { type: 'warning', message: `${image.name} failed: ${result.error?.message ?? ''}` });
    } finally {
      await unlock?.();
      result.durationMs = Date.now() - imageStarted;
    }
  }
  const images = plan.names.map((n) => results.get(n) as PipelineImageResult);
  return {
    images,
    order: plan.names,
    changed: images.some((i) => i.changed),
    failed: images.some((i) => i.status === 'failed'),
    durationMs: Date.now() - started,
    warnings,
  };
}

export function buildOptions(image: CatalogImage, tags: string[], buildArgs: Record<string, string>, options: PipelineOptions): BuildOptions {
  return {
    context: image.dir,
    dockerfile: image.dockerfilePath,
    tags: tags as [string, ...string[]],
    buildArgs,
    noCache: options.noCache,
    pull: options.pull,
    title: image.metadata?.display_name,
    version: image.metadata?.version,
    source: options.registration?.sourceUrl,
    skipUnchanged: true,
    stallTimeoutSeconds: options.stallTimeoutSeconds,
    maxContextBytes: options.maxContextBytes,
    secretBuildArgs: options.secretBuildArgs,
    force: options.force,
    auth: options.auth,
    registryTls: options.registryTls,
  };
}

async function buildOne(
  engine: Engine,
  image: CatalogImage,
  tags: string[],
  buildArgs: Record<string, string>,
  options: PipelineOptions,
  controls: OperationControls,
): Promise<IncrementalBuildResult> {
  const scan = await scanContext(image.dir, { dockerfile: image.dockerfilePath, maxBytes: options.maxContextBytes });
  return buildIfChanged(engine, buildOptions(image, tags, buildArgs, options), scan, controls);
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
  const run = (args: string[]): Promise<string | undefined> =>
    new Promise((resolve) => execFile('git', ['-C', dir, ...args], { timeout: 5000 }, (error, stdout) => resolve(error ? undefined : stdout.trim())));
  const commit = await run(['rev-parse', '--short=12', 'HEAD']);
  if (!commit) return undefined;
  const dirty = await run(['status', '--porcelain', '--', '.']);
  return `git-${commit}${dirty ? '-dirty' : ''}`;
}

export async function registerOne(
  image: CatalogImage,
  pushed: { digest: string; imageSize: number },
  options: PipelineOptions,
  project: string,
  tag: string,
  builtAt: string,
  controls: OperationControls,
  platforms?: string[],
): Promise<RegisterResult> {
  if (!image.metadata) throw new ThinkubeImageError('ERR_LINT', `${image.name} has no valid image.yaml to register`, { hint: 'Run node bin/lint.js' });
  const registerOptions: RegisterOptions = {
    ...(options.registration ?? {}),
    image: image.metadata,
    reference: {
      registry: options.registry,
      repository: `${project}/${image.name}`,
      tag,
      digest: pushed.digest,
      sizeBytes: pushed.imageSize || undefined,
      builtAt: builtAt.replace(/\.\d{3}Z$/, 'Z'),
      ...(platforms ? { platforms } : {}),
    },
  };
  // Retries of the registration are reported like the others.
  return registerImage(registerOptions, { signal: controls.signal, onEvent: (event) => (event.type === 'retry' ? emit(controls, event) : undefined) });
}
