/**
 * A tar stream of given files of a folder, read from disk as the consumer asks for more (never
 * buffered whole). tar-stream writes the archive; the files are read here with synchronous calls,
 * one entry when the archive wants the next: a context is mostly small files, and tar-fs' per-file
 * stat, open, reads and close through the thread pool cost our process twice the engine's CPU for
 * the same upload, on a machine where both share the cores. Files over 1 MiB are streamed.
 * Headers as tar-fs wrote them: the mode without the process umask, each file's own mtime unless
 * one is given, owners zeroed.
 */
import { createReadStream, lstatSync, readFileSync, readlinkSync, type Stats } from 'node:fs';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { pack as tarPack, type Header } from 'tar-stream';

/** An entry whose content is given rather than read (a generated .dockerignore or Dockerfile). */
export interface GeneratedEntry {
  name: string;
  mode: number;
  mtime: Date;
  content: Buffer;
}

export interface PackOptions {
  /** Every file's time (the same files then give the same bytes); default: each file's own. */
  mtime?: Date;
  /** Entries added after the files, as given. */
  generated?: GeneratedEntry[];
}

/** Files up to this size are read with one call; larger ones are streamed. */
const READ_WHOLE_MAX = 1024 * 1024;

/** The tar of `names` (paths relative to `root`, in this order; folders are not walked). */
export function packFiles(root: string, names: readonly string[], options: PackOptions = {}): Readable {
  const pack = tarPack();
  const umask = process.umask();
  let index = 0;
  const header = (name: string, st: Stats, type: 'file' | 'directory' | 'symlink', size: number, linkname?: string): Partial<Header> & Pick<Header, 'name'> => ({
    name,
    mode: st.mode & ~umask & 0o7777,
    uid: 0,
    gid: 0,
    uname: '',
    gname: '',
    size,
    mtime: options.mtime ?? st.mtime,
    type,
    ...(linkname === undefined ? {} : { linkname }),
  });
  // Each entry is added when the one before is taken (tar-stream calls back), from a microtask:
  // the calls never nest, however many files.
  const next = (error?: Error | null): void => {
    if (error) {
      pack.destroy(error);
      return;
    }
    queueMicrotask(addEntry);
  };
  const addEntry = (): void => {
    try {
      if (index < names.length) {
        const name = names[index++] as string;
        const abs = path.join(root, name);
        const st = lstatSync(abs);
        if (st.isDirectory()) pack.entry(header(name, st, 'directory', 0), next);
        else if (st.isSymbolicLink()) pack.entry(header(name, st, 'symlink', 0, readlinkSync(abs)), next);
        else if (!st.isFile()) throw new Error(`${name} is not a regular file, folder or symlink: it cannot be sent`);
        else if (st.size <= READ_WHOLE_MAX) {
          const content = readFileSync(abs);
          pack.entry(header(name, st, 'file', content.length), content, next);
        } else {
          const sink = pack.entry(header(name, st, 'file', st.size), next);
          pipeline(createReadStream(abs, { start: 0, end: st.size - 1 }), sink).catch((failure: Error) => pack.destroy(failure));
        }
        return;
      }
      for (const extra of options.generated ?? []) {
        pack.entry({ name: extra.name, mode: extra.mode, mtime: extra.mtime, uid: 0, gid: 0, size: extra.content.length, type: 'file' }, extra.content);
      }
      pack.finalize();
    } catch (failure) {
      pack.destroy(failure as Error);
    }
  };
  next();
  return pack as unknown as Readable;
}
