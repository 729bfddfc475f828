/**
 * Tags, registry-side: point every requested tag of a repository at a manifest the registry
 * already holds (copying the manifest bytes, never a layer). A tag that already names it is left
 * alone, so `changed` means a tag really moved. With dryRun nothing is written.
 */
import type { ManifestInfo, RegistryClient } from '../registry/client.js';

export interface TagMove {
  /** Full reference, registry/repository:tag. */
  reference: string;
  /** What the tag named before (undefined: it did not exist). */
  previousDigest?: string;
  changed: boolean;
}

/** options.current: what each tag names, read by the caller in this run (HEADs in tags' order); else read here. */
export async function moveTags(client: RegistryClient, repository: string, digest: string, tags: string[], options: { dryRun?: boolean; current?: Array<ManifestInfo | undefined> } = {}): Promise<TagMove[]> {
  const current = options.current ?? (await Promise.all(tags.map((tag) => client.headManifest(repository, tag))));
  const moves: TagMove[] = [];
  for (const [i, tag] of tags.entries()) {
    const reference = `${client.registry}/${repository}:${tag}`;
    const previousDigest = current[i]?.digest;
    if (previousDigest === digest) {
      moves.push({ reference, previousDigest, changed: false });
      continue;
    }
    if (!options.dryRun) await client.retag(repository, digest, tag);
    moves.push({ reference, previousDigest, changed: true });
  }
  return moves;
}
