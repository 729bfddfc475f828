/**
 * The one path of an image through a run: plan -> build (per platform, on the executor) ->
 * publish (tags, or an index for several platforms, set registry-side) -> scan gate -> register.
 * Check mode walks the same path with dryRun: every step says what it would change and changes
 * nothing, so `changed` of a check run is the `changed` of the real run that follows.
 */
import { ThinkubeImageError, isThinkubeImageError } from '../core/errors.js';
import { emit, type OperationControls } from '../core/progress.js';
import { scanContext, type ContextScan } from '../source/context.js';
import { INPUT_DIGEST_LABEL } from '../source/input-digest.js';
import { formatPlatform, parsePlatform, platformMatches } from '../engine/pool.js';
import { formatReference, parseReference, withDefaultTag } from '../registry/reference.js';
import { describeExisting, planBuild, type Clients, type InputPlan } from '../build/incremental.js';
import type { BuildExecutor, BuiltImage } from '../build/executor.js';
import { moveTags, type TagMove } from '../publish/tags.js';
import { describeImageManifest, putImageIndex, type ImageIndexResult, type IndexEntry, type IndexMediaTypeChoice } from '../publish/index.js';
import { isHarbor, retainInputTags, type PublishedTags, type RetentionResult } from '../publish/retention.js';
import type { ManifestInfo, RegistryClient } from '../registry/client.js';
import { lastScan, scanGate, scanGateError, type ScanGateResult, type SeverityCounts } from '../harbor/scan-gate.js';
import type { HarborClient } from '../harbor/client.js';
import { registerImage, type RegisterOutcome } from '../register/register.js';
import { lockImage } from './image-lock.js';
import { schemaDefault } from '../options/defaults.js';
import type { BuildOptions, ImageMetadata, PipelineOptions, RegisterOptions } from '../options/generated/types.js';

export type ImageStatus = 'done' | 'failed' | 'skipped' | 'planned';

export interface PlatformResult {
  platform: string;
  /** Manifest digest of the platform's image (absent in check mode when it would be built). */
  digest?: string;
  /** Engine that built it (absent when not built). */
  engine?: string;
  /** Not built: the registry already held an image with these inputs. */
  skipped: boolean;
  inputDigest: string;
  inputTag: string;
}

export interface ImageScanResult {
  /** Harbor's final scan status, Timeout, or not-run (check mode, or the gate is off). */
  status: ScanGateResult['status'] | 'not-run';
  passed: boolean;
  counts?: SeverityCounts;
  summary: string;
  maxSeverity?: string;
  /** e.g. Trivy 0.50.1. */
  scanner?: string;
}

export interface ImageRegistration {
  target: string;
  outcome: RegisterOutcome | 'would-register';
  changed: boolean;
  location: string;
}

export interface PipelineImageResult {
  name: string;
  /** planned: check mode, the real run would run it. */
  status: ImageStatus;
  /** Something changed (check mode: would change): an image built, a tag moved, the registration. */
  changed: boolean;
  /** What happened (or would), or why the image was skipped or failed. */
  reason?: string;
  tags: string[];
  dependsOn: string[];
  /** No platform was (or would be) built: the registry already held images with these inputs. */
  buildSkipped?: boolean;
  inputDigest?: string;
  /** The manifest (or, for several platforms, the index) the tags name. */
  digest?: string;
  imageSize?: number;
  layersUploaded?: number;
  imageId?: string;
  /** Engine that built a single-platform image. */
  engine?: string;
  /** Several platforms: each platform's image. */
  platforms?: PlatformResult[];
  /** Tags that moved (check mode: would move) to the digest. */
  tagsMoved?: string[];
  /** Old input tags removed (check mode: that would be) by keepInputTags, and the images deleted with them. */
  retention?: RetentionResult;
  scan?: ImageScanResult;
  registration?: ImageRegistration;
  error?: { code: string; message: string; step?: string; logTail?: string[] };
  durationMs: number;
  startedAt?: string;
  finishedAt?: string;
}

/** One image of a run: what it is built from, where it goes, what it is registered as. */
export interface ImageJob {
  name: string;
  /** Repository in the registry, e.g. library/jupyter-ml-cpu (the first segment is Harbor's project). */
  repository: string;
  /** What every build of the image shares (context, Dockerfile, args, labels); tags and platform are set per build. */
  build: Omit<BuildOptions, 'tags' | 'platform'>;
  /** The build context as the checks scanned it (same Dockerfile and size limit), when they did: not walked again. */
  context?: ContextScan;
  /** Full references, all in the repository; the first tag names the registration. */
  tags: string[];
  /** Images of the run it builds on. */
  dependsOn: string[];
  /** Several platforms: one build each, joined in an index. Unset: one build for the engine's own platform. */
  platforms?: string[];
  /** Registered as (required when the run registers). */
  metadata?: ImageMetadata;
  /** Several platforms: the index's media type (default: OCI, or Docker's list for Docker manifests). */
  indexMediaType?: IndexMediaTypeChoice;
}

/** What every image of a run shares. */
export interface RunContext {
  /** Validated pipeline options. */
  options: PipelineOptions;
  /** Tag names of the registration (the first) and of every image. */
  tagNames: string[];
  buildArgs: Record<string, string>;
  executor: BuildExecutor;
  clients: Clients;
  harbor?: HarborClient;
  dryRun: boolean;
  controls: OperationControls;
  warnings: string[];
  /**
   * Check mode: the digest each tag of an image of this run will name once it is published, so
   * that the images built on it are planned with it; null: rebuilt, not known before the build.
   */
  predicted: Map<string, string | null>;
}

interface Variant {
  platform?: string;
  plan: InputPlan;
  /** The existing image is reused. */
  reuse: boolean;
  /** Several platforms: the existing image's index entry, or the built one's. */
  entry?: IndexEntry;
  /** Why an existing in-<digest> image cannot be reused. */
  unusable?: string;
  built?: BuiltImage;
  startedAt?: number;
  finishedAt?: number;
}

export function errorSummary(error: unknown): PipelineImageResult['error'] {
  if (isThinkubeImageError(error)) {
    const step = typeof error.details.step === 'string' ? error.details.step : undefined;
    const logTail = Array.isArray(error.details.logTail) ? (error.details.logTail as string[]).slice(-30) : undefined;
    return { code: error.code, message: error.fullMessage, step, logTail };
  }
  return { code: 'ERR_INTERNAL', message: error instanceof Error ? error.message : String(error) };
}

function canonical(reference: string): string {
  try {
    return formatReference(withDefaultTag(parseReference(reference)));
  } catch {
    return reference;
  }
}

/** linux/arm64/v8 -> latest-linux-arm64-v8: the tag of one platform's image. */
export function platformTag(tag: string, platform: string): string {
  return `${tag}-${platform.replace(/\//g, '-')}`.slice(0, 128);
}

function platformError(error: unknown, platform: string, engine: string | undefined, what: string): ThinkubeImageError {
  const where = `${platform}${engine ? ` on engine ${engine}` : ''}`;
  if (isThinkubeImageError(error)) {
    if (error.code === 'ERR_ABORTED') return error;
    return new ThinkubeImageError(error.code, `${what} for ${where}: ${error.message}`, { hint: error.hint, cause: error, details: { ...error.details, platform, engine } });
  }
  return new ThinkubeImageError('ERR_BUILD_FAILED', `${what} for ${where}: ${error instanceof Error ? error.message : String(error)}`, { cause: error, details: { platform, engine } });
}

/** One image of the plan. The graph runner calls plan(), then build(i) for each platform, then publish(), then register(). */
export class ImageRun {
  readonly result: PipelineImageResult;
  readonly job: ImageJob;
  readonly platforms: Array<string | undefined>;
  /** Several platforms, once published: the index put under the tags. */
  index?: ImageIndexResult;
  /** The error that failed the image (result.error is its summary). */
  failure?: unknown;
  readonly #ctx: RunContext;
  readonly #repository: string;
  #scan?: ContextScan;
  #variants: Variant[] = [];
  #unlock?: () => Promise<void>;
  #started = 0;
  /** An unchanged image: what its publish and retention read, asked while it is planned (#readAhead). */
  #ahead?: { heads: Promise<Array<ManifestInfo | undefined>>; tagList: Promise<string[] | undefined> };

  constructor(job: ImageJob, ctx: RunContext) {
    this.job = job;
    this.platforms = job.platforms ?? [undefined];
    this.#ctx = ctx;
    this.#repository = job.repository;
    this.result = { name: job.name, status: 'planned', changed: false, tags: job.tags, dependsOn: job.dependsOn, durationMs: 0 };
  }

  get multiArch(): boolean {
    return this.platforms[0] !== undefined;
  }

  get #what(): string {
    return `${this.#ctx.options.registry}/${this.#repository}`;
  }

  #buildOptions(platform: string | undefined): BuildOptions {
    return { ...this.job.build, tags: this.result.tags as [string, ...string[]], ...(platform ? { platform } : {}) };
  }

  /** Record a failure of any step (the graph then skips what is left of this image and its dependants). */
  async #fail(error: unknown): Promise<never> {
    this.failure = error;
    this.result.status = 'failed';
    this.result.error = errorSummary(error);
    this.result.reason = this.result.error?.message;
    emit(this.#ctx.controls, { type: 'warning', message: `${this.job.name} failed: ${this.result.error?.message ?? ''}` });
    await this.#end();
    throw error;
  }

  /** Input digests of every platform, and whether the registry already holds each. */
  async plan(): Promise<void> {
    const { controls, dryRun, options } = this.#ctx;
    this.#started = Date.now();
    this.result.startedAt = new Date(this.#started).toISOString();
    try {
      if (!dryRun) {
        emit(controls, { type: 'info', message: `==> ${this.job.name}: build, push${options.register === false ? '' : ', register'}${this.multiArch ? ` (${this.platforms.join(', ')})` : ''}` });
        // Another run building this image on this host finishes first; this one then finds it built.
        this.#unlock = await lockImage(this.#what, controls);
      }
      this.#scan = this.job.context ?? (await scanContext(this.job.build.context, { dockerfile: this.job.build.dockerfile, maxBytes: options.maxContextBytes }));
      const override = (reference: string): string | null | undefined => this.#ctx.predicted.get(canonical(reference));
      const client = await this.#ctx.clients.get(options.registry);
      this.#variants = await Promise.all(
        this.platforms.map(async (platform): Promise<Variant> => {
          const plan = await planBuild(this.#ctx.executor.localEngine(platform), this.#buildOptions(platform), this.#scan as ContextScan, this.#ctx.clients, false, override);
          const variant: Variant = { platform, plan, reuse: false };
          if (plan.existing && !platform && !options.force) this.#readAhead(client);
          // Its created time and size (the config), while the reads ahead go on.
          if (plan.existing) Object.assign(plan, await describeExisting(client, this.#repository, plan.existing));
          if (plan.existing && platform) {
            try {
              const entry = await describeImageManifest(client, this.#repository, plan.existing);
              if (platformMatches(entry.platform, parsePlatform(platform))) variant.entry = entry;
              else variant.unusable = `${plan.inputTag} holds an image for ${formatPlatform(entry.platform)}, not ${platform}`;
            } catch (error) {
              variant.unusable = `${plan.inputTag} cannot be read (${(error as Error).message})`;
            }
          }
          variant.reuse = Boolean(plan.existing) && !variant.unusable && !options.force && !this.#ctx.executor.underWay?.(this.job.name, platform);
          return variant;
        }),
      );
      this.result.inputDigest = this.multiArch ? undefined : this.#variants[0]?.plan.inputDigest;
    } catch (error) {
      await this.#fail(error);
    }
  }

  /** Build one platform (index into platforms) unless the registry holds it; dryRun: only say so. */
  async build(index: number): Promise<void> {
    const variant = this.#variants[index] as Variant;
    const { plan, platform } = variant;
    const what = `${this.#what}${platform ? ` ${platform}` : ''}`;
    if (variant.reuse) {
      emit(this.#ctx.controls, { type: 'info', message: `${what}: inputs unchanged (${plan.inputTag}), not rebuilt` });
      return;
    }
    if (variant.unusable) this.#ctx.warnings.push(`${what}: ${variant.unusable}; rebuilding`);
    if (this.#ctx.dryRun) return;
    variant.startedAt = Date.now();
    try {
      const client = await this.#ctx.clients.get(this.#ctx.options.registry);
      const first = withDefaultTag(parseReference(this.result.tags[0] as string));
      // The image's current tag serves as layer cache for a native build, when there is one.
      const cacheFrom = !platform && !this.#ctx.options.noCache && (await client.headManifest(this.#repository, first.tag as string)) ? formatReference(first) : undefined;
      const options = { ...this.#buildOptions(platform), tags: [plan.inputTag] as [string], labels: { [INPUT_DIGEST_LABEL]: plan.inputDigest } };
      const built = await this.#ctx.executor.build({ image: this.job.name, what, options, scan: this.#scan as ContextScan, bases: plan.bases, cacheFrom }, this.#ctx.controls);
      this.#ctx.warnings.push(...built.warnings.map((w) => `${this.job.name}: ${w}`));
      variant.built = built;
      if (platform) {
        const entry = await describeImageManifest(client, this.#repository, built.digest);
        if (!platformMatches(entry.platform, parsePlatform(platform))) {
          throw new ThinkubeImageError('ERR_PLATFORM_MISMATCH', `Engine ${built.engine ?? ''} built an image for ${formatPlatform(entry.platform)} when asked for ${platform} (pushed as ${plan.inputTag})`, {
            hint: 'The engine ignored the platform: its base image copy was of another platform and could not be pulled for this one. Make the base image a multi-platform index in a registry the engine can pull from, or build this platform on an engine of that platform',
            details: { expected: platform, actual: formatPlatform(entry.platform), digest: built.digest },
          });
        }
        variant.entry = entry;
      }
      variant.finishedAt = Date.now();
    } catch (error) {
      await this.#fail(platform ? platformError(error, platform, variant.built?.engine, this.#what) : error);
    }
  }

  /** Publish: the tags (or an index) name the image, old input tags go (retention). */
  async publish(): Promise<void> {
    const { options, dryRun, clients } = this.#ctx;
    const r = this.result;
    try {
      const variants = this.#variants;
      const rebuilt = variants.filter((v) => !v.reuse);
      r.buildSkipped = rebuilt.length === 0;
      r.layersUploaded = variants.reduce((n, v) => n + (v.built?.layersUploaded ?? 0), 0);
      if (this.multiArch) {
        r.platforms = variants.map((v) => ({
          platform: v.platform as string,
          digest: v.built?.digest ?? (v.reuse ? v.plan.existing : undefined),
          engine: v.built?.engine,
          skipped: v.reuse,
          inputDigest: v.plan.inputDigest,
          inputTag: v.plan.inputTag,
        }));
      } else {
        const only = variants[0] as Variant;
        r.imageId = only.built?.imageId;
        r.engine = only.built?.engine;
      }
      // Publish: every tag names the image (or the index of the platforms' images).
      const client = await clients.get(options.registry);
      const tagNames = r.tags.map((t) => withDefaultTag(parseReference(t)).tag as string);
      let moves: TagMove[] | undefined;
      if (!dryRun || rebuilt.length === 0) {
        if (this.multiArch) {
          const index = await putImageIndex(client, this.#repository, tagNames, variants.map((v) => v.entry as IndexEntry), { dryRun, mediaType: this.job.indexMediaType });
          this.index = index;
          r.digest = index.digest;
          moves = index.tags;
          // Each platform's image under <first tag>-<os>-<arch>, as Thinkube tags them.
          for (const v of variants) {
            const entry = v.entry as IndexEntry;
            moves.push(...(await moveTags(client, this.#repository, entry.digest, [platformTag(tagNames[0] as string, v.platform as string)], { dryRun })));
          }
        } else {
          const only = variants[0] as Variant;
          r.digest = only.built?.digest ?? only.plan.existing;
          const current = only.reuse ? await this.#ahead?.heads : undefined;
          moves = await moveTags(client, this.#repository, r.digest as string, tagNames, { dryRun, current });
        }
      }
      const allTags = [...r.tags, ...(this.multiArch ? this.platforms.map((p) => `${this.#what}:${platformTag(tagNames[0] as string, p as string)}`) : [])];
      r.tagsMoved = moves ? moves.filter((m) => m.changed).map((m) => m.reference) : allTags;
      for (const tag of r.tags) this.#ctx.predicted.set(canonical(tag), r.digest ?? null);
      const sizes = variants.map((v) => v.built?.imageSize ?? v.plan.imageSize ?? 0);
      r.imageSize = Math.max(0, ...sizes);
      r.changed = rebuilt.length > 0 || r.tagsMoved.length > 0;
      r.retention = await this.#retain(client, tagNames);
      r.changed ||= (r.retention?.removedTags.length ?? 0) > 0;
    } catch (error) {
      await this.#fail(error);
    }
  }

  /** Scan gate and registration, after publish(); then the result is complete. */
  async register(): Promise<void> {
    const { options, dryRun } = this.#ctx;
    const r = this.result;
    try {
      const rebuilt = this.#variants.filter((v) => !v.reuse);
      r.scan = await this.#scanGate(r.digest);
      if (options.register !== false) {
        r.registration = await this.#register(r.digest, this.#variants);
        r.changed ||= r.registration.changed;
      }
      r.reason = this.#describe(rebuilt);
      r.status = dryRun ? 'planned' : 'done';
      await this.#end();
    } catch (error) {
      await this.#fail(error);
    }
  }

  /**
   * An image the registry already holds is usually only published: the HEADs of its tags and the
   * repository's tag list (retention) are asked now, beside the rest of its planning, instead of
   * one after the other in publish(). Used only when nothing of the image is built, so publish()
   * follows the plan without a build between (a build of this image reads them again, fresh).
   */
  #readAhead(client: RegistryClient): void {
    if (this.#ahead) return;
    const { options, harbor } = this.#ctx;
    const tagNames = this.result.tags.map((t) => withDefaultTag(parseReference(t)).tag as string);
    const heads = Promise.all(tagNames.map((tag) => client.headManifest(this.#repository, tag)));
    const keep = options.keepInputTags ?? schemaDefault('pipeline-options.schema.json', 'properties/keepInputTags');
    // On Harbor retention reads Harbor's artifact list instead (the probe is asked once per run).
    const tagList = keep === 0 ? Promise.resolve(undefined) : (harbor ? isHarbor(harbor, this.#ctx.controls) : Promise.resolve(false)).then((h) => (h ? undefined : client.listTags(this.#repository)));
    // A failure shows where the read is used (or nowhere, when it is not).
    heads.catch(() => undefined);
    tagList.catch(() => undefined);
    this.#ahead = { heads, tagList };
  }

  /** Keep the newest input tags of the repository, this run's among them (lib/publish/retention.ts). */
  async #retain(client: RegistryClient, tagNames: string[]): Promise<RetentionResult | undefined> {
    const { options, dryRun, controls, harbor } = this.#ctx;
    const keep = options.keepInputTags ?? schemaDefault('pipeline-options.schema.json', 'properties/keepInputTags');
    if (keep === 0) return undefined;
    const nameOf = (reference: string): string => withDefaultTag(parseReference(reference)).tag as string;
    // Where the publish puts this run's tags (check mode: a placeholder for what is not built yet).
    const published: PublishedTags = new Map();
    const digestOf = (v: Variant): string => v.built?.digest ?? v.entry?.digest ?? (v.reuse ? v.plan.existing : undefined) ?? `pending:${v.platform ?? 'native'}`;
    for (const v of this.#variants) {
      published.set(nameOf(v.plan.inputTag), digestOf(v));
      if (v.platform) published.set(platformTag(tagNames[0] as string, v.platform), digestOf(v));
    }
    for (const tag of tagNames) published.set(tag, this.result.digest ?? 'pending:tags');
    const current = this.#variants.map((v) => nameOf(v.plan.inputTag));
    // A list that could not be read is read again by retention, which words its failure as a warning.
    const tagList = this.#variants.every((v) => v.reuse) ? await this.#ahead?.tagList.catch(() => undefined) : undefined;
    const result = await retainInputTags({ client, repository: this.#repository, harbor }, { keep, current, published, dryRun, tagList }, controls);
    if (result.warning) this.#ctx.warnings.push(`${this.job.name}: ${result.warning}`);
    return result;
  }

  async #scanGate(digest: string | undefined): Promise<ImageScanResult | undefined> {
    const gate = this.#ctx.options.scan;
    if (!gate?.enabled) return undefined;
    if (this.#ctx.dryRun || !digest) return { status: 'not-run', passed: true, summary: 'check mode: the scan runs after the push', maxSeverity: gate.maxSeverity };
    const { controls, harbor } = this.#ctx;
    if (!harbor) throw new ThinkubeImageError('ERR_HARBOR', 'The scan gate is on but no Harbor client was set up', { hint: 'Report this: runPipeline sets one up when scan.enabled' });
    const result = await scanGate(
      harbor,
      { project: this.#repository.split('/')[0] as string, repository: this.#repository.split('/').slice(1).join('/'), digest, maxSeverity: gate.maxSeverity, timeoutSeconds: gate.timeoutSeconds },
      { signal: controls.signal, onEvent: (event) => event.type === 'scan-status' && emit(controls, { type: 'info', message: `${this.job.name}: Harbor scan ${event.status}` }) },
    );
    this.result.scan = { status: result.status, passed: result.passed, counts: result.counts, summary: result.summary, maxSeverity: result.maxSeverity, ...(result.scanner ? { scanner: result.scanner } : {}) };
    if (!result.passed) throw scanGateError(result);
    emit(controls, { type: 'info', message: `${this.job.name}: ${result.message}` });
    return this.result.scan;
  }

  async #register(digest: string | undefined, variants: Variant[]): Promise<ImageRegistration> {
    const { options, controls } = this.#ctx;
    const target = options.registration?.target ?? schemaDefault('register-options.schema.json', 'properties/target');
    if (!digest) return { target, outcome: 'would-register', changed: true, location: '' };
    if (!this.job.metadata) throw new ThinkubeImageError('ERR_LINT', `${this.job.name} has no valid image.yaml to register`, { hint: 'Run node bin/lint.js' });
    const created = variants.map((v) => v.built?.createdAt ?? v.plan.createdAt).filter((c): c is string => Boolean(c)).sort();
    // Whole seconds: the same image registers the same entry whichever path built it.
    const builtAt = (created[created.length - 1] ?? new Date().toISOString()).replace(/\.\d+Z$/, 'Z');
    const registerOptions: RegisterOptions = {
      ...(options.registration ?? {}),
      scan: await this.#registrationScan(digest),
      image: this.job.metadata,
      reference: {
        registry: options.registry,
        repository: this.#repository,
        tag: this.#ctx.tagNames[0] as string,
        digest,
        sizeBytes: this.result.imageSize || undefined,
        builtAt,
        ...(this.multiArch ? { platforms: this.platforms as string[] } : {}),
      },
      dryRun: this.#ctx.dryRun,
    };
    const registered = await registerImage(registerOptions, { signal: controls.signal, onEvent: (event) => (event.type === 'retry' ? emit(controls, event) : undefined) });
    this.#ctx.warnings.push(...registered.warnings.map((w) => `${this.job.name}: ${w}`));
    return { target: registered.target, outcome: registered.outcome, changed: registered.changed, location: registered.location };
  }

  /**
   * The scan as the registration carries it: the gate's counts; not-scanned without a gate. Check
   * mode scans nothing: it predicts with Harbor's last finished scan of the digest (a read), or
   * pending when there is none (the real run's scan then changes the entry anyway).
   */
  async #registrationScan(digest: string): Promise<NonNullable<RegisterOptions['scan']>> {
    const scan = this.result.scan;
    if (!scan) return { status: 'not-scanned' };
    const fromCounts = (counts: SeverityCounts, scanner?: string): NonNullable<RegisterOptions['scan']> => ({
      status: 'Success',
      critical: counts.critical,
      high: counts.high,
      medium: counts.medium,
      low: counts.low,
      ...(scanner ? { scanner } : {}),
    });
    if (scan.status === 'Success' && scan.counts) return fromCounts(scan.counts, scan.scanner);
    if (scan.status !== 'not-run') return { status: scan.status };
    const { harbor, controls } = this.#ctx;
    if (!harbor) return { status: 'pending' };
    try {
      const last = await lastScan(harbor, { project: this.#repository.split('/')[0] as string, repository: this.#repository.split('/').slice(1).join('/'), digest }, controls.signal);
      return last ? fromCounts(last.counts, last.scanner) : { status: 'pending' };
    } catch (error) {
      this.#ctx.warnings.push(`${this.job.name}: Harbor's last scan could not be read (${(error as Error).message}); predicted as scanned anew`);
      return { status: 'pending' };
    }
  }

  #describe(rebuilt: Variant[]): string {
    const would = this.#ctx.dryRun;
    const what = this.multiArch ? rebuilt.map((v) => `${v.platform}${v.built?.engine ? ` on ${v.built.engine}` : ''}`).join(', ') : (rebuilt[0]?.built?.engine ? `on engine ${rebuilt[0].built.engine}` : '');
    const parts: string[] = [];
    if (rebuilt.length > 0) {
      const first = rebuilt[0] as Variant;
      const why = this.#ctx.options.force && first.plan.existing ? 'forced rebuild' : first.plan.uncertain ? first.plan.uncertain : first.unusable ?? 'inputs changed (or first build)';
      parts.push(`${would ? 'would build' : 'built'}${what ? ` ${what}` : ''} (${why})`);
    } else {
      parts.push(`inputs unchanged (${(this.#variants[0] as Variant).plan.inputTag.split(':').pop()}): ${would ? 'would build' : 'built'} nothing`);
    }
    const moved = this.result.tagsMoved ?? [];
    if (moved.length > 0) parts.push(`${would ? 'would move' : 'moved'} ${moved.map((m) => m.split(':').pop()).join(', ')}`);
    const removed = this.result.retention?.removedTags.length ?? 0;
    if (removed > 0) parts.push(`${would ? 'would remove' : 'removed'} ${removed} old input tag${removed === 1 ? '' : 's'}`);
    if (this.result.registration) parts.push(`registration ${this.result.registration.outcome}`);
    return parts.join('; ');
  }

  /** The scanned context, once planned. */
  get contextScan(): ContextScan | undefined {
    return this.#scan;
  }

  /** Each platform's build as it went: the plan, the image reused or built, its manifest entry. */
  platformDetails(): Array<{ platform: string | undefined; plan: InputPlan; reused: boolean; unusable?: string; built?: BuiltImage; entry?: IndexEntry; startedAt?: number; finishedAt?: number }> {
    return this.#variants.map((v) => ({ platform: v.platform, plan: v.plan, reused: v.reuse, unusable: v.unusable, built: v.built, entry: v.entry, startedAt: v.startedAt, finishedAt: v.finishedAt }));
  }

  /** The image is through (done or failed): release its lock, close its times. */
  async #end(): Promise<void> {
    await this.close();
    if (this.#started && !this.result.finishedAt) {
      this.result.durationMs = Date.now() - this.#started;
      this.result.finishedAt = new Date().toISOString();
      if (!this.#ctx.dryRun) emit(this.#ctx.controls, { type: 'info', message: `<== ${this.job.name}: ${this.result.status} in ${(this.result.durationMs / 1000).toFixed(1)}s` });
    }
  }

  /** Release the image's lock (also when the run ends before the image got through). */
  async close(): Promise<void> {
    const unlock = this.#unlock;
    this.#unlock = undefined;
    await unlock?.();
  }
}
