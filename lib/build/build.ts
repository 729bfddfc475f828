/**
 * buildImage: stream a build context to a Docker-compatible engine (classic builder, which works
 * the same on dockerd and Podman), report progress as typed events, and turn errors that the
 * engine reports inside the stream into a BuildError naming the failing step.
 */
import path from 'node:path';
import { BuildError, ThinkubeImageError } from '../core/errors.js';
import { connectEngine, engineError, engineProduct, type Engine } from '../engine/engine.js';
import { packContext, scanContext, withDockerfileText, type ContextScan } from '../source/context.js';
import { LogTail, cleanLine, emit, readJsonLines, type OperationControls } from '../core/progress.js';
import { validate } from '../options/schema.js';
import { buildArgSecrets } from '../core/secrets.js';
import type { BuildOptions } from '../options/generated/types.js';
import { schemaDefault } from '../options/defaults.js';
import { parseReference } from '../registry/reference.js';
import { registryLayerCache } from './layer-cache.js';
import { gitHead } from '../source/git.js';

export type { BuildOptions };

export interface BuildResult {
  /** Image id (sha256:...) as the engine reports it. */
  imageId: string;
  tags: string[];
  durationMs: number;
  /** Warnings from the engine and from option checks. */
  warnings: string[];
  /** Last lines of the build log. */
  logTail: string[];
  /** Number of Dockerfile steps the engine ran (0 when it did not say). */
  steps: number;
  /** Labels this call asked the engine to set (OCI labels included). */
  labels: Record<string, string>;
  context: { files: number; bytes: number };
}

/** A Dockerfile step as the classic builder (Step 1/5 : FROM x) and Buildah (STEP 1/5: FROM x) print it. */
export const STEP_LINE = /^(?:Step|STEP) (\d+)\/(\d+) ?: ?(.*)$/;
const WARNING_LINE = /^\[(?:Warning|WARNING)\]:? ?(.*)$/;
const BUILT_LINE = /^Successfully built ([0-9a-f]{12,64})$/;
/** Lines an engine prints only once a build is complete (dockerd, Podman). */
const FINISHED_LINE = /^(?:Successfully (?:built|tagged) |COMMIT )/;
const LOG_TAIL_LINES = 100;
const MAX_PARTIAL_LINE = 64 * 1024;

async function gitFacts(dir: string): Promise<{ revision?: string; source?: string }> {
  const { commit, origin } = await gitHead(dir);
  if (!commit) return {};
  return { revision: commit, source: origin ? stripUserInfo(origin) : undefined };
}

/** A remote URL may carry a token (https://user:token@host/...): never let it into a label. */
export function stripUserInfo(url: string): string {
  try {
    const parsed = new URL(url);
    parsed.username = '';
    parsed.password = '';
    return parsed.toString();
  } catch {
    return url.replace(/^[^@/]+@(?=[^/]+:)/, ''); // scp-like git@host:path keeps working without user
  }
}

function repositoryName(reference: string): string {
  const withoutDigest = reference.split('@')[0] ?? reference;
  const lastSlash = withoutDigest.lastIndexOf('/');
  const colon = withoutDigest.lastIndexOf(':');
  const name = colon > lastSlash ? withoutDigest.slice(0, colon) : withoutDigest;
  return name.slice(lastSlash + 1);
}

/** created: SOURCE_DATE_EPOCH when set (reproducible builds), else now. */
function createdTimestamp(env: NodeJS.ProcessEnv = process.env): string {
  const epoch = Number(env.SOURCE_DATE_EPOCH);
  return Number.isFinite(epoch) && env.SOURCE_DATE_EPOCH ? new Date(epoch * 1000).toISOString() : new Date().toISOString();
}

export async function ociLabels(options: BuildOptions, contextDir: string): Promise<Record<string, string>> {
  const labels: Record<string, string> = {
    'org.opencontainers.image.created': createdTimestamp(),
    'org.opencontainers.image.title': options.title ?? repositoryName(options.tags[0] ?? 'image'),
  };
  if (options.version) labels['org.opencontainers.image.version'] = options.version;
  const git = options.revision && options.source ? {} : await gitFacts(contextDir);
  const revision = options.revision ?? git.revision;
  const source = options.source ?? git.source;
  if (revision) labels['org.opencontainers.image.revision'] = revision;
  if (source) labels['org.opencontainers.image.source'] = source;
  return labels;
}

const PLAIN_LABEL_KEY = /^[A-Za-z0-9][A-Za-z0-9._/:-]*$/;

/**
 * The labels as one LABEL instruction, or undefined when they cannot be written as one safely.
 * dockerd's classic builder makes each label of a build request a LABEL step of its own, each a
 * container commit (about 200 ms): one line appended to the Dockerfile sets them all in one step.
 * Values in single quotes, as dockerd writes them itself (no variable expansion, no escapes): a
 * value with a quote or a line break, or a Dockerfile ending in a line continuation, keeps the
 * request's labels.
 */
export function labelInstruction(labels: Record<string, string>, dockerfile: string): string | undefined {
  const entries = Object.entries(labels).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  if (entries.length === 0) return undefined;
  if (entries.some(([key, value]) => !PLAIN_LABEL_KEY.test(key) || /['\r\n]/.test(value))) return undefined;
  if (/[\\`]\s*$/.test(dockerfile)) return undefined;
  return `LABEL ${entries.map(([key, value]) => `${key}='${value}'`).join(' ')}`;
}

/** Internal entry point for callers that already hold an engine and a scanned context. */
export async function runBuild(
  engine: Engine,
  options: BuildOptions,
  scan: ContextScan,
  controls: OperationControls = {},
): Promise<BuildResult> {
  const started = Date.now();
  const labels = { ...(options.ociLabels === false ? {} : await ociLabels(options, scan.root)), ...(options.labels ?? {}) };
  const tail = new LogTail(LOG_TAIL_LINES);
  const warnings: string[] = [];
  let currentStep: string | undefined;
  let steps = 0;
  let imageId: string | undefined;
  let streamError: { message: string; code?: number } | undefined;
  let finished = false;

  // Secrets (the registry password, secret build args) never reach events, the log tail or errors.
  const secrets = buildArgSecrets(options.buildArgs, options.secretBuildArgs ?? []);
  const redactor = secrets.redactor;
  if (options.auth?.password) redactor.add(options.auth.password, options.auth.username);
  for (const warning of secrets.warnings) {
    warnings.push(warning);
    emit(controls, { type: 'warning', message: warning });
  }
  // No output for stallMs: the build is cancelled on the engine (closing the connection does that).
  const stallMs = Math.round((options.stallTimeoutSeconds ?? schemaDefault('build-options.schema.json', 'properties/stallTimeoutSeconds')) * 1000);
  const stall = new AbortController();
  const signal = controls.signal ? AbortSignal.any([controls.signal, stall.signal]) : stall.signal;
  let stallTimer: NodeJS.Timeout | undefined;
  const arm = (): void => {
    clearTimeout(stallTimer);
    stallTimer = setTimeout(() => stall.abort(), stallMs);
  };

  emit(controls, { type: 'build-context', files: scan.fileCount, bytes: scan.totalBytes, context: scan.root });
  const query: Record<string, unknown> = {
    t: options.tags,
    dockerfile: scan.dockerfileName,
    buildargs: options.buildArgs ?? {},
    labels,
    rm: true,
    forcerm: true,
    pull: options.pull ? true : undefined,
    nocache: options.noCache ? true : undefined,
    target: options.target,
    platform: options.platform,
    cachefrom: options.cacheFrom,
    networkmode: options.networkMode,
    abortSignal: signal,
  };
  for (const key of Object.keys(query)) if (query[key] === undefined) delete query[key];
  // The engine pulls FROM images itself when its copy is missing or of another platform (Podman
  // does for --platform builds): it needs the registry's credentials (X-Registry-Config), as it
  // does to push the layer cache. Only the registry the image goes to gets them.
  if (options.auth?.username) {
    const ref = parseReference(options.tags[0] as string);
    query.registryconfig = { [ref.registry]: { username: options.auth.username, password: options.auth.password } };
  }
  const layerCache = await registryLayerCache(engine, options);
  if (layerCache) {
    // Replaces cacheFrom: on Podman a cache source is a repository of layers, not an image.
    Object.assign(query, layerCache.query);
    emit(controls, { type: 'info', message: `Layer cache: ${layerCache.repository} (buildah registry cache on Podman)` });
  }

  const abortError = (): ThinkubeImageError =>
    new ThinkubeImageError('ERR_ABORTED', `Build of ${options.tags[0]} was cancelled${currentStep ? ` during ${currentStep}` : ''}`, {
      details: { step: currentStep, logTail: tail.last(20) },
    });
  if (controls.signal?.aborted) throw abortError();
  const stallError = (): BuildError =>
    new BuildError(
      `Build of ${options.tags[0]} sent no output for ${Math.round(stallMs / 1000)} s${currentStep ? ` in ${currentStep}` : ''}; it was cancelled on the engine at ${engine.address}`,
      {
        code: 'ERR_TIMEOUT',
        step: currentStep,
        logTail: tail.last(),
        hint: 'Find out why the step hangs (a download without network, a prompt waiting for input); raise stallTimeoutSeconds if it legitimately works silently for longer',
      },
    );

  // On dockerd, the labels in one step of their own (labelInstruction); a target stage other than
  // the last would not get an appended line, so such builds keep the request's labels.
  let sent = scan;
  if (!options.target && Object.keys(labels).length > 0 && (await engineProduct(engine)).name === 'docker') {
    const line = labelInstruction(labels, scan.dockerfile.toString('utf8'));
    if (line) {
      sent = withDockerfileText(scan, Buffer.concat([scan.dockerfile, Buffer.from(`\n${line}\n`)]));
      query.dockerfile = sent.dockerfileName;
      delete query.labels;
    }
  }

  let stream: NodeJS.ReadableStream;
  arm();
  const context = await packContext(sent);
  try {
    stream = await (await engine.client()).buildImage(context as unknown as NodeJS.ReadableStream, query as object);
  } catch (error) {
    context.destroy();
    clearTimeout(stallTimer);
    if (controls.signal?.aborted) throw abortError();
    if (stall.signal.aborted) throw stallError();
    const wrapped = engineError(engine, error, `starting the build of ${options.tags[0]}`);
    // The engine refused the request itself (Dockerfile parse error, unknown target, bad platform).
    if (wrapped.code === 'ERR_ENGINE') {
      throw new BuildError(`Build of ${options.tags[0]} was refused by the engine: ${String((wrapped.details.message as string | undefined) ?? wrapped.message)}`, {
        logTail: [],
        cause: error,
        hint: 'Fix the Dockerfile or the named option (target, platform, build args) and run again',
      });
    }
    throw wrapped;
  }

  const onLine = (raw: string): void => {
    const line = redactor.redact(cleanLine(raw));
    if (!line) return;
    tail.push(line);
    const step = STEP_LINE.exec(line);
    if (step) {
      currentStep = line;
      steps = Number(step[2]);
      emit(controls, { type: 'build-step', step: Number(step[1]), total: steps, instruction: step[3] ?? '' });
      return;
    }
    const warning = WARNING_LINE.exec(line);
    if (warning) {
      warnings.push(warning[1] ?? line);
      emit(controls, { type: 'warning', message: warning[1] ?? line });
    }
    const built = BUILT_LINE.exec(line);
    if (built && !imageId) imageId = built[1];
    if (FINISHED_LINE.test(line)) finished = true;
    emit(controls, { type: 'build-log', line });
  };
  // The engine forwards RUN output in chunks that may end mid-line: the unfinished line waits for
  // the next chunk (bounded, so a huge line without newline cannot grow memory).
  let partial = '';
  try {
    for await (const message of readJsonLines(stream as unknown as import('node:stream').Readable)) {
      arm();
      if (typeof message.error === 'string' || message.errorDetail) {
        if (partial) onLine(partial);
        partial = '';
        const detail = message.errorDetail as { message?: string; code?: number } | undefined;
        streamError = { message: redactor.redact(String(message.error ?? detail?.message ?? 'unknown error').trim()), code: detail?.code };
        tail.push(streamError.message);
        continue;
      }
      const aux = message.aux as { ID?: string } | undefined;
      // Multi-stage builds report one ID per stage: only the last one is the image.
      if (aux?.ID) imageId = aux.ID;
      if (typeof message.status === 'string') {
        const progress = typeof message.progress === 'string' ? message.progress : undefined;
        const status = redactor.redact(message.status);
        emit(controls, { type: 'build-status', status, id: typeof message.id === 'string' ? message.id : undefined, progress });
        if (!progress) tail.push(cleanLine(`${typeof message.id === 'string' ? `${message.id}: ` : ''}${status}`));
      }
      if (typeof message.stream === 'string') {
        const lines = (partial + message.stream).split('\n');
        partial = lines.pop() ?? '';
        if (partial.length > MAX_PARTIAL_LINE) {
          lines.push(partial);
          partial = '';
        }
        for (const raw of lines) onLine(raw);
      }
    }
    if (partial) onLine(partial);
  } catch (error) {
    if (controls.signal?.aborted) throw abortError();
    if (stall.signal.aborted) throw stallError();
    throw new BuildError(`Lost the build stream of ${options.tags[0]} from the engine at ${engine.address}${currentStep ? ` during ${currentStep}` : ''}`, {
      step: currentStep,
      logTail: tail.last(),
      cause: error,
      code: 'ERR_ENGINE',
      hint: 'The engine closed the connection: check that it is still running (and its log), then run again',
    });
  } finally {
    clearTimeout(stallTimer);
  }
  if (controls.signal?.aborted) throw abortError();
  if (stall.signal.aborted) throw stallError();

  if (streamError) {
    const where = currentStep ? ` at ${currentStep}` : '';
    throw new BuildError(`Build of ${options.tags[0]} failed${where}: ${streamError.message}`, { step: currentStep, logTail: tail.last() });
  }
  if (!imageId && !finished) {
    // The stream ended without the engine saying the build is done: it stopped or dropped us. The
    // tag may still name an older image, which must not pass for this build's result.
    throw new BuildError(`The build stream of ${options.tags[0]} from the engine at ${engine.address} ended before the build finished${currentStep ? `, during ${currentStep}` : ''}`, {
      step: currentStep,
      logTail: tail.last(),
      code: 'ERR_ENGINE',
      hint: 'The engine closed the connection (was it stopped or restarted?): check that it is running and read its log, then run again',
    });
  }
  if (!imageId) {
    // Some engines do not send aux.ID; the first tag then names the result.
    try {
      imageId = ((await (await engine.client()).getImage(options.tags[0] as string).inspect()) as { Id: string }).Id;
    } catch (error) {
      throw new BuildError(`The engine at ${engine.address} finished the build of ${options.tags[0]} without producing an image`, {
        step: currentStep,
        logTail: tail.last(),
        cause: error,
      });
    }
  }
  if (!imageId.startsWith('sha256:') && /^[0-9a-f]{64}$/.test(imageId)) imageId = `sha256:${imageId}`;
  emit(controls, { type: 'build-image', imageId });
  return {
    imageId,
    tags: [...options.tags],
    durationMs: Date.now() - started,
    warnings,
    logTail: tail.last(),
    steps,
    labels,
    context: { files: scan.fileCount, bytes: scan.totalBytes },
  };
}

/**
 * Build one image. Options are validated against schemas/build-options.schema.json; the context
 * is checked and streamed (never buffered whole); the engine's stream errors become BuildError.
 */
export async function buildImage(options: BuildOptions, controls: OperationControls = {}): Promise<BuildResult> {
  const valid = validate<BuildOptions>('build-options.schema.json', options, { what: 'build options' });
  const engine = connectEngine(valid.engine);
  const scan = await scanContext(path.resolve(valid.context), { dockerfile: valid.dockerfile, maxBytes: valid.maxContextBytes });
  return runBuild(engine, valid, scan, controls);
}
