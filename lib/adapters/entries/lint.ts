// The lint command: what bin/lint.js runs. scripts/bundle-modules.js bundles it into dist/cli/; the
// work is loaded only once the options are valid.
import { runCommand } from '../command.js';

// No top-level await: the bundles are CommonJS (see scripts/bundle-modules.js).
void runCommand({
  name: 'lint',
  schema: 'lint-options.schema.json',
  summary: 'Check an images folder (default: images/ of this package) before a long build: pins, ARG HARBOR_REGISTRY, COPY sources, metadata, one default image, dependency graph. Problems go to stderr as file:line: message; fix hint.',
  positional: 'imagesDir',
  examples: ['node bin/lint.js', 'node bin/lint.js images --registry harbor.example.com'],
  load: () => import('../commands/lint.js'),
});
