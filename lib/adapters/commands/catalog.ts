/**
 * The catalog command / thinkube_image_catalog module: what a playbook loops over. Loads an images
 * folder, refuses it when it has errors, and lists the images in build order with everything the
 * build, push and register modules need for each.
 */
import path from 'node:path';
import { loadCatalog, order, formatProblem } from '../../source/catalog.js';
import { ThinkubeImageError } from '../../core/errors.js';
import { schemaDefault } from '../../options/defaults.js';
import type { CatalogCommandOptions } from '../../options/generated/types.js';
import type { CommandContext, CommandOutcome } from '../command.js';

export async function run(valid: Record<string, unknown>, context: CommandContext): Promise<CommandOutcome> {
  const options = valid as unknown as CatalogCommandOptions;
  const project = options.project ?? schemaDefault('catalog-options.schema.json', 'properties/project');
  const tags = options.tags ?? schemaDefault('catalog-options.schema.json', 'properties/tags');
  const catalog = await loadCatalog(path.resolve(options.imagesDir), { registry: options.registry, project });
  const errors = catalog.problems.filter((p) => p.severity === 'error');
  if (errors.length > 0) {
    throw new ThinkubeImageError('ERR_LINT', `${catalog.dir} has ${errors.length} problem(s): ${errors.map(formatProblem).join('; ')}`, {
      hint: 'Fix them before building (node bin/lint.js runs every check)',
      details: { problems: errors },
    });
  }
  for (const warning of catalog.problems.filter((p) => p.severity === 'warning')) context.warn(formatProblem(warning));
  const plan = order(catalog, options.images);
  const selected = new Set(plan.names);
  const images = plan.images.map((image) => ({
    name: image.name,
    context: image.dir,
    dockerfile: image.dockerfilePath,
    repository: `${project}/${image.name}`,
    tags: options.registry ? tags.map((tag) => `${options.registry}/${project}/${image.name}:${tag}`) : [],
    dependsOn: image.dependsOn.filter((d) => selected.has(d)),
    metadata: image.metadata,
  }));
  return {
    changed: false,
    msg: `${images.length} image(s) in build order: ${plan.names.join(', ')}`,
    images,
    order: plan.names,
    levels: plan.levels,
    fromRegistry: plan.fromRegistry,
  };
}
