/** The lint command: every check of an images folder, with file:line and a fix hint. */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { lintImages } from '../../source/lint.js';
import { formatProblem } from '../../source/catalog.js';
import { emit } from '../../core/progress.js';
import type { LintCommandOptions } from '../../options/generated/types.js';
import type { CommandContext, CommandOutcome } from '../command.js';

/**
 * This package's images/ folder, beside the nearest package.json above this file: it runs from
 * dist/lib/adapters/commands/ or, bundled, from dist/cli/ (whose bundler sets import.meta.url).
 */
export const packageImagesDir = ((): string => {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  while (!existsSync(path.join(dir, 'package.json')) && path.dirname(dir) !== dir) dir = path.dirname(dir);
  return path.join(dir, 'images');
})();

export async function run(valid: Record<string, unknown>, context: CommandContext): Promise<CommandOutcome> {
  const options = valid as unknown as LintCommandOptions;
  const result = await lintImages(options.imagesDir ?? packageImagesDir, { registry: options.registry, project: options.project, buildArgs: options.buildArgs ?? {}, maxContextBytes: options.maxContextBytes });
  for (const problem of result.problems) emit(context.controls, { type: 'info', message: `${problem.severity}: ${formatProblem(problem)}` });
  return {
    changed: false,
    failed: !result.ok,
    ok: result.ok,
    msg: `${result.images.length} image(s) checked: ${result.errorCount} error(s), ${result.warningCount} warning(s)`,
    images: result.images,
    problems: result.problems,
  };
}
