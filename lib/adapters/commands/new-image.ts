/** The new-image command: scaffold an image folder that passes the checks. */
import path from 'node:path';
import { scaffoldImage } from '../../source/catalog.js';
import { packageImagesDir } from './lint.js';
import type { NewImageOptions } from '../../options/generated/types.js';
import type { CommandContext, CommandOutcome } from '../command.js';

export async function run(valid: Record<string, unknown>, context: CommandContext): Promise<CommandOutcome> {
  const options = valid as unknown as NewImageOptions;
  const imagesDir = options.imagesDir ?? packageImagesDir;
  if (context.checkMode) {
    return { changed: true, msg: `Would create ${path.join(imagesDir, options.name)}`, name: options.name, dir: path.join(imagesDir, options.name) };
  }
  const result = await scaffoldImage({
    name: options.name,
    imagesDir,
    from: options.from,
    displayName: options.displayName,
    description: options.description,
    category: options.category,
    gpu: options.gpu,
    python: options.python,
  });
  const shown = path.relative(process.cwd(), result.dir);
  return {
    changed: true,
    msg: `Created ${shown.startsWith('..') || path.isAbsolute(shown) ? result.dir : shown} (${result.files.join(', ')}) FROM ${result.from}${result.baseAdded ? `; added ${result.baseAdded} to bases.yaml: mirror it into Harbor before building` : ''}`,
    ...result,
  };
}
