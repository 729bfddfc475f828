/**
 * The index command / thinkube_image_index module: join per-platform images that are already in
 * the registry into one multi-architecture image (OCI image index or Docker manifest list) and put
 * it under every tag. `changed` only when a tag now points at a different index.
 */
import { runAssembleImageIndex } from '../../publish/index.js';
import type { ImageIndexOptions } from '../../options/generated/types.js';
import type { CommandContext, CommandOutcome } from '../command.js';

export async function run(valid: Record<string, unknown>, context: CommandContext): Promise<CommandOutcome> {
  const options = valid as unknown as ImageIndexOptions;
  const result = await runAssembleImageIndex(options, { ...context.controls, dryRun: context.checkMode });
  const moved = result.tags.filter((t) => t.changed).map((t) => t.reference);
  const where = `${result.registry}/${result.repository}`;
  const verb = result.changed ? (context.checkMode ? 'Would put' : 'Put') : 'Unchanged:';
  return {
    changed: result.changed,
    msg: `${verb} index ${result.digest} (${result.platforms.join(', ')}) ${result.changed ? `under ${moved.join(', ')}` : `already under every tag of ${where}`}`,
    digest: result.digest,
    mediaType: result.mediaType,
    size: result.size,
    registry: result.registry,
    repository: result.repository,
    platforms: result.platforms,
    manifests: result.manifests.map((m) => ({ digest: m.digest, mediaType: m.mediaType, size: m.size, platform: m.platformName })),
    tags: result.tags,
    diff: {
      before: Object.fromEntries(result.tags.map((t) => [t.reference, t.previousDigest ?? null])),
      after: Object.fromEntries(result.tags.map((t) => [t.reference, result.digest])),
    },
  };
}
