/** The push command / thinkube_image_push module: pushImage; `changed` only when the registry changed. */
import { runPush } from '../../engine/push.js';
import { resolveCredentials, registryClientFor } from '../../registry/connect.js';
import { connectEngine, withEngineTimeout } from '../../engine/engine.js';
import { parseReference, withDefaultTag, formatReference } from '../../registry/reference.js';
import type { PushOptions } from '../../options/generated/types.js';
import type { CommandContext, CommandOutcome } from '../command.js';

export async function run(valid: Record<string, unknown>, context: CommandContext): Promise<CommandOutcome> {
  const options = valid as unknown as PushOptions;
  const engine = connectEngine(options.engine);
  if (context.checkMode) {
    // Compare what the registry holds with the digests the engine knows for the local image.
    const refs = options.tags.map((t) => withDefaultTag(parseReference(t)));
    const first = refs[0] as (typeof refs)[number];
    const credentials = await resolveCredentials(first.registry, options.auth);
    const client = registryClientFor(first.registry, credentials, options.registryTls);
    const wouldChange: string[] = [];
    let unchangedDigest: string | undefined;
    for (const ref of refs) {
      const reference = formatReference(ref);
      // In check mode the image may not be built yet (the build task only reported): then it would be pushed.
      const local = await withEngineTimeout(engine, `inspecting ${reference}`, async (abortSignal) => {
        try {
          return (await (await engine.client()).getImage(reference).inspect({ abortSignal } as object)) as { RepoDigests?: string[] };
        } catch (error) {
          if ((error as { statusCode?: number }).statusCode === 404) return { RepoDigests: [] };
          throw error;
        }
      });
      const remote = await client.headManifest(ref.repository, ref.tag as string);
      const repo = formatReference({ ...ref, tag: undefined, digest: undefined });
      if (!remote || !(local.RepoDigests ?? []).includes(`${repo}@${remote.digest}`)) wouldChange.push(reference);
      else unchangedDigest ??= remote.digest;
    }
    return {
      changed: wouldChange.length > 0,
      msg: wouldChange.length ? `Would push ${wouldChange.join(', ')}` : 'All tags are already in the registry',
      tags: options.tags,
      wouldPush: wouldChange,
      // Known only when nothing would change: lets a check-mode registration compare its entry.
      ...(wouldChange.length === 0 && unchangedDigest ? { digest: unchangedDigest } : {}),
    };
  }
  const result = await runPush(engine, options, context.controls);
  for (const warning of result.warnings) context.warn(warning);
  const uploaded = result.tags.reduce((n, t) => n + t.layersUploaded, 0);
  return {
    changed: result.changed,
    msg: `Pushed ${options.tags.join(', ')} as ${result.digest} (${uploaded} layer${uploaded === 1 ? '' : 's'} uploaded)`,
    digest: result.digest,
    registry: result.registry,
    repository: result.repository,
    tags: result.tags,
    uploaded: result.uploaded,
    imageSize: result.imageSize,
    manifestSize: result.manifestSize,
    verified: result.verified,
    duration: result.durationMs / 1000,
  };
}
