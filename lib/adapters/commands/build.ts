/**
 * The build command / thinkube_image_build module: buildImage with check mode and a `changed` that
 * means something. With skip_unchanged the build is content-addressed: unchanged inputs build
 * nothing and report changed=false.
 */
import path from 'node:path';
import { runBuild, type BuildResult } from '../../build/build.js';
import { connectEngine, withEngineTimeout, type Engine } from '../../engine/engine.js';
import { scanContext } from '../../source/context.js';
import { buildIfChanged, planBuild } from '../../build/incremental.js';
import type { BuildOptions } from '../../options/generated/types.js';
import type { CommandContext, CommandOutcome } from '../command.js';

async function imageIdOf(engine: Engine, reference: string): Promise<string | undefined> {
  return withEngineTimeout(engine, `inspecting ${reference}`, async (abortSignal) => {
    try {
      return ((await (await engine.client()).getImage(reference).inspect({ abortSignal } as object)) as { Id: string }).Id;
    } catch (error) {
      if ((error as { statusCode?: number }).statusCode === 404) return undefined;
      throw error;
    }
  });
}

/** Return values of a build that ran (documented in thinkube_image_build.yml RETURN). */
function builtFields(result: BuildResult): Record<string, unknown> {
  return {
    imageId: result.imageId,
    tags: result.tags,
    createdAt: result.labels['org.opencontainers.image.created'],
    duration: result.durationMs / 1000,
    steps: result.steps,
    labels: result.labels,
    context: result.context,
    stdoutLines: result.logTail,
  };
}

export async function run(valid: Record<string, unknown>, context: CommandContext): Promise<CommandOutcome> {
  const options = valid as unknown as BuildOptions;
  const scan = await scanContext(path.resolve(options.context), { dockerfile: options.dockerfile, maxBytes: options.maxContextBytes });
  const engine = connectEngine(options.engine);
  const first = options.tags[0] as string;
  const summary = `${scan.fileCount} files, ${scan.totalBytes} bytes`;

  if (options.skipUnchanged) {
    if (context.checkMode) {
      const plan = await planBuild(engine, options, scan);
      const skip = Boolean(plan.existing) && !options.force;
      return {
        changed: !skip,
        skipped: skip,
        msg: skip ? `Would skip ${first}: inputs unchanged (${plan.inputTag})` : `Would build ${options.tags.join(', ')} from ${scan.root} (${summary})`,
        tags: skip ? options.tags : [...options.tags, plan.inputTag],
        inputDigest: plan.inputDigest,
        inputTag: plan.inputTag,
        ...(skip ? { digest: plan.existing, createdAt: plan.createdAt, imageSize: plan.imageSize } : {}),
        context: { files: scan.fileCount, bytes: scan.totalBytes },
      };
    }
    const result = await buildIfChanged(engine, options, scan, context.controls);
    for (const warning of result.warnings) context.warn(warning);
    if (result.skipped) {
      return {
        changed: result.retagged.some((r) => r.changed),
        skipped: true,
        msg: `Skipped ${first}: ${result.reason}`,
        reason: result.reason,
        tags: result.tags,
        digest: result.digest,
        inputDigest: result.inputDigest,
        inputTag: result.inputTag,
        retagged: result.retagged,
        createdAt: result.createdAt,
        imageSize: result.imageSize,
        context: result.context,
      };
    }
    return {
      changed: true,
      skipped: false,
      msg: `Built ${first} (${result.imageId.slice(7, 19)}) in ${(result.durationMs / 1000).toFixed(1)}s: ${result.reason}`,
      reason: result.reason,
      inputDigest: result.inputDigest,
      inputTag: result.inputTag,
      ...builtFields(result),
    };
  }

  const previous = await imageIdOf(engine, first);
  if (context.checkMode) {
    return {
      changed: true,
      msg: `Would build ${options.tags.join(', ')} from ${scan.root} (${summary})`,
      tags: options.tags,
      previousImageId: previous,
      context: { files: scan.fileCount, bytes: scan.totalBytes },
    };
  }
  const result = await runBuild(engine, options, scan, context.controls);
  for (const warning of result.warnings) context.warn(warning);
  const changed = result.imageId !== previous;
  return {
    changed,
    msg: `Built ${first} (${result.imageId.slice(7, 19)}) in ${(result.durationMs / 1000).toFixed(1)}s${changed ? '' : ', unchanged'}`,
    previousImageId: previous,
    ...builtFields(result),
  };
}
