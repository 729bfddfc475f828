/**
 * Run tasks that depend on each other as soon as their dependencies are done, up to a number at
 * once: independent images build in parallel, an image waits for the images it builds on (the
 * dependency edges themselves, not waves: an image never waits for an unrelated slow one).
 */
import path from 'node:path';
import type { BuildOrder, CatalogImage } from '../source/catalog.js';
import { scanContext } from '../source/context.js';
import { EnginePool, type EngineStats, type PoolEngine } from '../engine/pool.js';
import { ThinkubeImageError } from '../core/errors.js';
import { lockImage } from './image-lock.js';
import { buildIfChanged, planBuild } from '../build/incremental.js';
import { baseImageReferences } from '../source/input-digest.js';
import { buildMultiArch, planMultiArch, type MultiArchBuild } from '../build/multiarch.js';
import { buildOptions, errorSummary, gitRevisionTag, imageTags, registerOne, skipBeforeStart, type PipelineControls, type PipelineImageResult, type PipelineResult } from './pipeline.js';
import { emit } from '../core/progress.js';
import { runPush } from '../publish/push.js';
import type { PipelineOptions } from '../options/generated/types.js';

export interface GraphTask<T> {
  id: string;
  /** Ids this task waits for; ids that are not tasks of the graph are ignored. */
  dependsOn?: string[];
  run(signal: AbortSignal | undefined): Promise<T>;
}

export type TaskStatus = 'done' | 'failed' | 'skipped';

export interface TaskRecord<T> {
  id: string;
  status: TaskStatus;
  value?: T;
  error?: unknown;
  /** Why it was skipped. */
  reason?: string;
  /** Date.now() when it started and ended (undefined when it never ran). */
  startedAt?: number;
  endedAt?: number;
}

export interface GraphOptions<T> {
  /** Tasks running at the same time (default: no limit beyond the dependencies). */
  concurrency?: number;
  signal?: AbortSignal;
  onStart?(id: string): void;
  onEnd?(record: TaskRecord<T>): void;
  /**
   * Whether a finished task lets its dependants run. Default: it did not throw. A task whose
   * dependency does not allow it is skipped, naming that dependency.
   */
  allowsDependants?(record: TaskRecord<T>): boolean;
}

/** Ids in a dependency cycle, or [] (each cycle once, in the tasks' order). */
function findCycle(tasks: Array<GraphTask<unknown>>): string[] {
  const byId = new Map(tasks.map((t) => [t.id, t]));
  const state = new Map<string, 'visiting' | 'done'>();
  const stack: string[] = [];
  const visit = (id: string): string[] => {
    state.set(id, 'visiting');
    stack.push(id);
    for (const dep of byId.get(id)?.dependsOn ?? []) {
      if (!byId.has(dep)) continue;
      if (state.get(dep) === 'visiting') return [...stack.slice(stack.indexOf(dep)), dep];
      if (!state.has(dep)) {
        const cycle = visit(dep);
        if (cycle.length) return cycle;
      }
    }
    stack.pop();
    state.set(id, 'done');
    return [];
  };
  for (const task of tasks) {
    if (state.has(task.id)) continue;
    const cycle = visit(task.id);
    if (cycle.length) return cycle;
  }
  return [];
}

/**
 * Run every task once its dependencies finished, at most `concurrency` at a time, tasks that are
 * ready in the order given (give them in a topological order for a stable schedule). Never throws
 * for a failing task: its record says failed, and its dependants are skipped. Resolves when every
 * task has a record; after an abort nothing new starts and what did not start is skipped.
 */
export async function runGraph<T>(tasks: Array<GraphTask<T>>, options: GraphOptions<T> = {}): Promise<Map<string, TaskRecord<T>>> {
  const ids = new Set<string>();
  for (const task of tasks) {
    if (ids.has(task.id)) throw new ThinkubeImageError('ERR_INVALID_OPTIONS', `Task "${task.id}" is given twice`, { hint: 'Give every task a unique id' });
    ids.add(task.id);
  }
  const cycle = findCycle(tasks as Array<GraphTask<unknown>>);
  if (cycle.length > 0) {
    throw new ThinkubeImageError('ERR_INVALID_OPTIONS', `Tasks depend on each other in a cycle: ${cycle.join(' -> ')}`, {
      hint: 'Remove one of the dependencies named',
      details: { cycle },
    });
  }
  const limit = options.concurrency === undefined ? Infinity : Math.max(1, Math.floor(options.concurrency));
  const allows = options.allowsDependants ?? ((record: TaskRecord<T>) => record.status === 'done');
  const records = new Map<string, TaskRecord<T>>();
  const pending = [...tasks];
  let running = 0;

  return new Promise((resolve) => {
    const finish = (record: TaskRecord<T>): void => {
      records.set(record.id, record);
      try {
        options.onEnd?.(record);
      } catch {
        // an observer must not break the schedule
      }
    };
    const pump = (): void => {
      for (let i = 0; i < pending.length; ) {
        const task = pending[i] as GraphTask<T>;
        const deps = (task.dependsOn ?? []).filter((d) => ids.has(d) && d !== task.id);
        if (options.signal?.aborted) {
          pending.splice(i, 1);
          finish({ id: task.id, status: 'skipped', reason: 'cancelled before it started' });
          continue;
        }
        const blocked = deps.filter((d) => records.has(d) && !allows(records.get(d) as TaskRecord<T>));
        if (blocked.length > 0) {
          pending.splice(i, 1);
          finish({ id: task.id, status: 'skipped', reason: `depends on ${blocked.join(', ')}, which did not succeed` });
          i = 0; // its own dependants may now be decidable
          continue;
        }
        if (running >= limit || !deps.every((d) => records.has(d))) {
          i++;
          continue;
        }
        pending.splice(i, 1);
        running++;
        const startedAt = Date.now();
        try {
          options.onStart?.(task.id);
        } catch {
          // ignore observer failures
        }
        let promise: Promise<T>;
        try {
          promise = task.run(options.signal);
        } catch (error) {
          promise = Promise.reject(error);
        }
        promise.then(
          (value) => ({ id: task.id, status: 'done' as const, value, startedAt, endedAt: Date.now() }),
          (error: unknown) => ({ id: task.id, status: 'failed' as const, error, startedAt, endedAt: Date.now() }),
        ).then((record) => {
          running--;
          finish(record);
          pump();
        });
      }
      if (pending.length === 0 && running === 0) resolve(records);
    };
    pump();
  });
}

// ---------------------------------------------------------------------------- the pipeline on a pool

/**
 * What runValidatedPipeline hands over when the images go to a pool of engines or build for
 * several platforms (options engines, concurrency > 1, platforms, or an image.yaml with platforms).
 */
export interface ScheduledPipelineInput {
  options: PipelineOptions;
  plan: BuildOrder;
  project: string;
  tagNames: string[];
  buildArgs: Record<string, string>;
  /** Date.now() when the pipeline started. */
  started: number;
}

/** A pipeline image result with what the scheduled path adds. */
export interface ScheduledImageResult extends PipelineImageResult {
  /** Engine the image was built on (single-platform images that were built). */
  engine?: string;
  /** Multi-architecture images: every platform's image (digest is then the index's). */
  platforms?: Array<{ platform: string; digest: string; engine?: string; skipped: boolean; inputDigest: string; inputTag: string }>;
  /** ISO times the image's work started and finished (not set when it never started). */
  startedAt?: string;
  finishedAt?: string;
}

export interface ScheduledPipelineResult extends PipelineResult {
  images: ScheduledImageResult[];
  /** Per engine: builds given, most at once. */
  engines: EngineStats[];
}

/** The pool and image concurrency the options ask for. */
export function pipelinePool(options: PipelineOptions): { pool: EnginePool; concurrency: number } {
  if (options.engines) {
    const pool = EnginePool.fromSpecs(options.engines);
    return { pool, concurrency: options.concurrency ?? pool.engines.reduce((n, e) => n + e.concurrency, 0) };
  }
  const concurrency = options.concurrency ?? 1;
  return { pool: EnginePool.single(options.engine, concurrency), concurrency };
}

/**
 * Build, push and register the images on a pool of engines: an image starts as soon as the
 * images it builds on are done (and the pool has room), so independent images build at the same
 * time; multi-architecture images build one image per platform and push an index. Same results,
 * same failure rules as the sequential pipeline: a failed image skips the images built on it.
 */
export async function runScheduledPipeline(input: ScheduledPipelineInput, controls: PipelineControls = {}): Promise<ScheduledPipelineResult> {
  const { options, plan, project, tagNames, buildArgs, started } = input;
  const { pool, concurrency } = pipelinePool(options);
  const selected = new Set(plan.names);
  const warnings: string[] = [];
  const results = new Map<string, ScheduledImageResult>();
  await pool.check();
  const revision = options.tagging?.gitRevision ? await gitRevisionTag(path.resolve(options.imagesDir)) : undefined;
  // Every tag is checked before anything starts, as the sequential pipeline does on its way.
  const tagsOf = new Map(plan.images.map((image) => [image.name, imageTags(image, options, tagNames, project, revision)]));
  const platformsOf = (image: CatalogImage): string[] | undefined => image.metadata?.platforms ?? options.platforms;
  for (const image of plan.images) pool.assertPlatforms(platformsOf(image) ?? [], image.name);
  const pullAuth = { registry: options.registry, auth: options.auth };

  const processImage = async (image: CatalogImage): Promise<void> => {
    const tags = tagsOf.get(image.name) as string[];
    const dependsOn = image.dependsOn.filter((d) => selected.has(d));
    const result: ScheduledImageResult = { name: image.name, status: 'planned', changed: false, tags, dependsOn, durationMs: 0 };
    results.set(image.name, result);
    if (skipBeforeStart(result, results as Map<string, PipelineImageResult>, controls)) return;
    const platforms = platformsOf(image);
    const build = buildOptions(image, tags, buildArgs, options);
    const multi: MultiArchBuild | undefined = platforms ? { ...build, platforms, retry: options.retry } : undefined;
    if (controls.checkMode) {
      try {
        const scan = await scanContext(image.dir, { dockerfile: image.dockerfilePath, maxBytes: options.maxContextBytes });
        const baseRebuilt = dependsOn.some((d) => results.get(d)?.buildSkipped === false);
        if (multi) {
          const planned = await planMultiArch(pool, multi, scan);
          result.platforms = planned.platforms.map((p) => ({ platform: p.platform, digest: p.existing?.digest ?? '', skipped: Boolean(p.existing) && !options.force, inputDigest: p.plan.inputDigest, inputTag: p.plan.inputTag }));
          result.buildSkipped = planned.toBuild.length === 0 && !baseRebuilt;
          result.digest = planned.index?.digest;
          result.changed = planned.changed || baseRebuilt;
          result.reason = result.buildSkipped
            ? `inputs of ${multi.platforms.join(', ')} unchanged: would build nothing${planned.index?.changed ? ' and only move the tags to the index' : ''}`
            : `would build ${baseRebuilt ? multi.platforms.join(', ') : planned.toBuild.join(', ')}, push the index under ${tags.join(', ')}${options.register === false ? '' : ' and register'}`;
        } else {
          const engine = (pool.candidates(undefined)[0] as PoolEngine).engine;
          const planned = await planBuild(engine, build, scan);
          result.inputDigest = planned.inputDigest;
          const skip = Boolean(planned.existing) && !options.force;
          result.digest = planned.existing;
          result.buildSkipped = skip && !baseRebuilt;
          result.changed = !skip || baseRebuilt;
          result.reason = skip && !baseRebuilt ? `inputs unchanged (${planned.inputTag}): would build nothing` : `would build, push ${tags.join(', ')}${options.register === false ? '' : ' and register'}`;
        }
      } catch (error) {
        result.status = 'failed';
        result.error = errorSummary(error);
        result.reason = result.error?.message;
      }
      return;
    }

    const imageStarted = Date.now();
    result.startedAt = new Date(imageStarted).toISOString();
    emit(controls, { type: 'info', message: `==> ${image.name}: build, push${options.register === false ? '' : ', register'}${multi ? ` (${multi.platforms.join(', ')})` : ''}` });
    let unlock: (() => Promise<void>) | undefined;
    try {
      unlock = await lockImage(`${options.registry}/${project}/${image.name}`, controls);
      const scan = await scanContext(image.dir, { dockerfile: image.dockerfilePath, maxBytes: options.maxContextBytes });
      let pushed: { digest: string; imageSize: number };
      let builtAt: string | undefined;
      if (multi) {
        const done = await buildMultiArch(pool, multi, scan, controls);
        warnings.push(...done.warnings.map((w) => `${image.name}: ${w}`));
        result.platforms = done.platforms.map((p) => ({ platform: p.platform, digest: p.digest, engine: p.engine, skipped: p.skipped, inputDigest: p.inputDigest, inputTag: p.inputTag }));
        result.buildSkipped = done.skipped;
        result.layersUploaded = done.platforms.reduce((n, p) => n + p.layersUploaded, 0);
        result.changed = done.changed;
        result.reason = done.skipped
          ? `inputs of ${multi.platforms.join(', ')} unchanged: nothing built${done.index.changed ? ', tags moved to the index' : ''}`
          : `built ${done.platforms.filter((p) => !p.skipped).map((p) => `${p.platform} on ${p.engine}`).join(', ')}`;
        pushed = { digest: done.index.digest, imageSize: done.imageSize };
        builtAt = done.builtAt;
      } else {
        const bases = baseImageReferences(scan.dockerfile, build.buildArgs ?? {}, build.target);
        const lease = await pool.acquire({ bases, what: image.name, signal: controls.signal });
        try {
          result.engine = lease.name;
          warnings.push(...(await pool.prepareBases(lease, pullAuth, controls.signal)).map((w) => `${image.name}: ${w}`));
          const built = await buildIfChanged(lease.engine, build, scan, controls);
          result.buildSkipped = built.skipped;
          result.inputDigest = built.inputDigest;
          warnings.push(...built.warnings.map((w) => `${image.name}: ${w}`));
          if (built.skipped) {
            pushed = { digest: built.digest as string, imageSize: built.imageSize ?? 0 };
            result.layersUploaded = 0;
            result.changed = built.retagged.some((r) => r.changed);
            result.reason = built.reason;
            builtAt = built.createdAt;
          } else {
            result.imageId = built.imageId;
            const push = await runPush(lease.engine, { tags: built.tags as [string, ...string[]], auth: options.auth, registryTls: options.registryTls, retry: options.retry }, controls);
            pushed = push;
            result.layersUploaded = push.tags.reduce((n, t) => n + t.layersUploaded, 0);
            result.changed = true;
            result.reason = `${built.reason} (engine ${lease.name})`;
            builtAt = built.labels['org.opencontainers.image.created'];
            warnings.push(...push.warnings.map((w) => `${image.name}: ${w}`));
          }
        } finally {
          lease.release();
        }
      }
      result.digest = pushed.digest;
      result.imageSize = pushed.imageSize;
      if (options.register !== false) {
        const registered = await registerOne(image, pushed, options, project, tagNames[0] as string, builtAt ?? new Date().toISOString(), controls, multi?.platforms);
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
      result.finishedAt = new Date().toISOString();
      emit(controls, { type: 'info', message: `<== ${image.name}: ${result.status} in ${(result.durationMs / 1000).toFixed(1)}s` });
    }
  };

  try {
    // processImage never throws: statuses decide, and a dependant sees its base's status itself.
    const records = await runGraph(
      plan.images.map((image) => ({ id: image.name, dependsOn: image.dependsOn, run: () => processImage(image) })),
      { concurrency, signal: controls.signal, allowsDependants: () => true },
    );
    for (const record of records.values()) {
      const result = results.get(record.id);
      // Only a bug of ours gets here (processImage records its own failures): still report it per image.
      if (record.status === 'failed' && result && result.status !== 'failed') {
        result.status = 'failed';
        result.error = errorSummary(record.error);
        result.reason = result.error?.message;
      }
    }
  } finally {
    if (!controls.checkMode) warnings.push(...(await pool.restoreNativeBases(pullAuth)));
  }
  const images = plan.names.map((n) => results.get(n) as ScheduledImageResult);
  return {
    images,
    order: plan.names,
    changed: images.some((i) => i.changed),
    failed: images.some((i) => i.status === 'failed'),
    durationMs: Date.now() - started,
    warnings,
    engines: pool.stats(),
  };
}
