#!/usr/bin/env node
// @ts-check
// Scaffold a new image folder that passes bin/lint.js. stdout: one JSON object; exit 0 or 1.
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const USAGE = `Usage: node bin/new-image.js NAME [options]

Creates <images-dir>/NAME with a Dockerfile (ARG HARBOR_REGISTRY + FROM), a pinned requirements.txt
(jupyterlab==4.2.5), image.yaml (metadata.default: false unless it is the first image) and a
.dockerignore. A Harbor base that is neither an image of the folder nor listed in bases.yaml is
added to bases.yaml. Refuses an invalid name or an existing folder.

Options:
  --from BASE           Base image: \${HARBOR_REGISTRY}/project/repo:tag, project/repo:tag, or the name
                        of an image of the folder (default: \${HARBOR_REGISTRY}/library/python:3.12-slim)
  --images-dir DIR      Folder of image folders (default: images/ of this package)
  --display-name TEXT   Name shown in thinkube-control (default: from NAME)
  --description TEXT    One-line description
  --category NAME       Category (default: jupyter)
  --gpu                 The image needs a GPU node
  --no-python           The base has no Python: copy requirements.txt into the image, do not pip install
  -h, --help            Show this help`;

/** @param {Record<string, unknown>} result @param {number} code */
function finish(result, code) {
  process.stdout.write(`${JSON.stringify(result)}\n`);
  process.exitCode = code;
}

/** @param {string} message */
function usageError(message) {
  process.stderr.write(`${message}\n`);
  finish({ ok: false, msg: message, error: { code: 'ERR_INVALID_OPTIONS', message, hint: 'Run with --help' } }, 1);
}

async function main() {
  let parsed;
  try {
    parsed = parseArgs({
      allowPositionals: true,
      options: {
        from: { type: 'string' },
        'images-dir': { type: 'string' },
        'display-name': { type: 'string' },
        description: { type: 'string' },
        category: { type: 'string' },
        gpu: { type: 'boolean' },
        'no-python': { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
    });
  } catch (error) {
    return usageError(error instanceof Error ? error.message : String(error));
  }
  if (parsed.values.help) {
    process.stdout.write(`${USAGE}\n`);
    return;
  }
  if (parsed.positionals.length !== 1) return usageError('Give exactly one NAME for the new image');
  const v = parsed.values;

  // Imported only now so that --help stays fast.
  const { scaffoldImage } = await import('../dist/lib/catalog.js');
  try {
    const result = await scaffoldImage({
      name: /** @type {string} */ (parsed.positionals[0]),
      imagesDir: v['images-dir'] ?? path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'images'),
      ...(v.from !== undefined ? { from: v.from } : {}),
      ...(v['display-name'] !== undefined ? { displayName: v['display-name'] } : {}),
      ...(v.description !== undefined ? { description: v.description } : {}),
      ...(v.category !== undefined ? { category: v.category } : {}),
      ...(v.gpu !== undefined ? { gpu: v.gpu } : {}),
      python: !v['no-python'],
    });
    const shown = path.relative(process.cwd(), result.dir);
    const msg = `Created ${shown.startsWith('..') || path.isAbsolute(shown) ? result.dir : shown} (${result.files.join(', ')}) FROM ${result.from}${result.baseAdded ? `; added ${result.baseAdded} to bases.yaml: mirror it into Harbor before building` : ''}`;
    process.stderr.write(`${msg}\n`);
    finish({ ok: true, changed: true, ...result, msg }, 0);
  } catch (error) {
    const e = /** @type {{ code?: string; message?: string; hint?: string }} */ (error);
    if (typeof e?.code !== 'string' || !String(e.code).startsWith('ERR_')) throw error;
    process.stderr.write(`${e.message}${e.hint ? `. ${e.hint}` : ''}\n`);
    finish({ ok: false, changed: false, msg: e.message, error: { code: e.code, message: e.message, hint: e.hint } }, 1);
  }
}

main().catch((error) => {
  const message = error instanceof Error ? error.message : String(error);
  process.stderr.write(`Unexpected error: ${message}\n`);
  finish({ ok: false, changed: false, msg: `Unexpected error: ${message}`, error: { code: 'ERR_UNEXPECTED', message } }, 1);
});
