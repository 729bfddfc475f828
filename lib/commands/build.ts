/** The build command / thinkube_image_build module: buildImage with check mode and a meaningful `changed`. */
import path from 'node:path';
import { runBuild } from '../build.js';
import { connectEngine, withEngineTimeout } from '../engine.js';
import { scanContext } from '../context.js';
import { validate } from '../schema.js';
import type { BuildOptions } from '../generated/types.js';
import type { CommandContext, CommandOutcome } from '../command.js';

export async function run(raw: Record<string, unknown>, context: CommandContext): Promise<CommandOutcome> {
  const options = validate<BuildOptions>('build-options.schema.json', raw, { naming: context.naming, what: 'build options' });
  const scan = await scanContext(path.resolve(options.context), { dockerfile: options.dockerfile });
  const engine = connectEngine(options.engine);
  const first = options.tags[0] as string;
  const previous = await withEngineTimeout(engine, `inspecting ${first}`, async (abortSignal) => {
    try {
      return ((await engine.docker.getImage(first).inspect({ abortSignal } as object)) as { Id: string }).Id;
    } catch (error) {
      if ((error as { statusCode?: number }).statusCode === 404) return undefined;
      throw error;
    }
  });
  if (context.checkMode) {
    return {
      changed: true,
      msg: `Would build ${options.tags.join(', ')} from ${scan.root} (${scan.fileCount} files, ${scan.totalBytes} bytes)`,
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
    imageId: result.imageId,
    previousImageId: previous,
    tags: result.tags,
    duration: result.durationMs / 1000,
    steps: result.steps,
    labels: result.labels,
    context: result.context,
    stdoutLines: result.logTail,
  };
}
