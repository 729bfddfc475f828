#!/usr/bin/env node
// @ts-check
// Check an images folder (default: this package's images/) before anything is built.
// stdout: one JSON object {ok, images, problems, msg}; stderr: the problems for people.
// Exit 0 when there is no error (warnings allowed), 1 otherwise.
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const USAGE = `Usage: node bin/lint.js [images_dir] [options]

Checks every image folder of images_dir (default: images/ of this package): pinned requirements,
ARG HARBOR_REGISTRY before the FROM lines that use it, no template syntax, COPY/ADD sources present
after .dockerignore, image.yaml against the schema, exactly one default image, dependency graph.

Options:
  --registry HOST       Harbor host used to resolve FROM lines (default: left as \${HARBOR_REGISTRY})
  --project NAME        Harbor project of the images (default: library)
  --build-arg KEY=VALUE Build arg for resolving FROM lines (repeatable)
  -h, --help            Show this help

Prints one JSON object on stdout ({ok, images, problems, msg}) and the problems on stderr.
Exit status 0 when there is no error (warnings allowed), 1 otherwise.`;

/** @param {Record<string, unknown>} result @param {number} code */
function finish(result, code) {
  process.stdout.write(`${JSON.stringify(result)}\n`);
  process.exitCode = code;
}

async function main() {
  let parsed;
  try {
    parsed = parseArgs({
      allowPositionals: true,
      options: {
        registry: { type: 'string' },
        project: { type: 'string' },
        'build-arg': { type: 'string', multiple: true },
        help: { type: 'boolean', short: 'h' },
      },
    });
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    process.stderr.write(`${message}\n\n${USAGE}\n`);
    return finish({ ok: false, images: [], problems: [], msg: message, error: { code: 'ERR_INVALID_OPTIONS', message, hint: 'Run with --help' } }, 1);
  }
  if (parsed.values.help) {
    process.stdout.write(`${USAGE}\n`);
    return;
  }
  if (parsed.positionals.length > 1) {
    const message = `Expected at most one images folder, got ${parsed.positionals.length}`;
    process.stderr.write(`${message}\n`);
    return finish({ ok: false, images: [], problems: [], msg: message, error: { code: 'ERR_INVALID_OPTIONS', message, hint: 'Run with --help' } }, 1);
  }
  const imagesDir = parsed.positionals[0] ?? path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'images');
  /** @type {Record<string, string>} */
  const buildArgs = {};
  for (const pair of parsed.values['build-arg'] ?? []) {
    const eq = pair.indexOf('=');
    if (eq <= 0) {
      const message = `--build-arg ${pair} must be KEY=VALUE`;
      process.stderr.write(`${message}\n`);
      return finish({ ok: false, images: [], problems: [], msg: message, error: { code: 'ERR_INVALID_OPTIONS', message, hint: 'Write --build-arg KEY=VALUE' } }, 1);
    }
    buildArgs[pair.slice(0, eq)] = pair.slice(eq + 1);
  }

  // Imported only now so that --help stays fast.
  const { lintImages, formatProblem } = await import('../dist/lib/lint.js');
  try {
    const result = await lintImages(imagesDir, {
      ...(parsed.values.registry !== undefined ? { registry: parsed.values.registry } : {}),
      ...(parsed.values.project !== undefined ? { project: parsed.values.project } : {}),
      buildArgs,
    });
    for (const problem of result.problems) process.stderr.write(`${problem.severity}: ${formatProblem(problem)}\n`);
    const msg = `${result.images.length} image(s) checked: ${result.errorCount} error(s), ${result.warningCount} warning(s)`;
    process.stderr.write(`${msg}\n`);
    finish({ ok: result.ok, images: result.images, problems: result.problems, msg }, result.ok ? 0 : 1);
  } catch (error) {
    const e = /** @type {{ code?: string; message?: string; hint?: string }} */ (error);
    if (typeof e?.code !== 'string' || !String(e.code).startsWith('ERR_')) throw error;
    process.stderr.write(`${e.message}${e.hint ? `. ${e.hint}` : ''}\n`);
    finish({ ok: false, images: [], problems: [], msg: e.message, error: { code: e.code, message: e.message, hint: e.hint } }, 1);
  }
}

main().catch((error) => {
  // A bug, not a user error: still one JSON object, and no stack trace for users.
  const message = error instanceof Error ? error.message : String(error);
  process.stderr.write(`Unexpected error: ${message}\n`);
  finish({ ok: false, images: [], problems: [], msg: `Unexpected error: ${message}`, error: { code: 'ERR_UNEXPECTED', message } }, 1);
});
