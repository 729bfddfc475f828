// The catalog command: what bin/catalog.js runs and the Ansible module thinkube_image_catalog is.
// scripts/bundle-modules.js bundles it into dist/cli/ and ansible/library/; the work is loaded only
// once the options are valid.
import { runCommand } from '../command.js';

// No top-level await: the bundles are CommonJS (see scripts/bundle-modules.js).
void runCommand({
  name: 'catalog',
  module: 'thinkube_image_catalog',
  schema: 'catalog-options.schema.json',
  summary: 'List the images of an images folder in build order (dependencies first), with the tags, context and metadata each needs; fails when the folder has errors.',
  positional: 'imagesDir',
  examples: ['node bin/catalog.js images --registry harbor.example.com'],
  load: () => import('../commands/catalog.js'),
});
