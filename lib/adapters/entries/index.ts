// The index command: what bin/index.js runs and the Ansible module thinkube_image_index is.
// scripts/bundle-modules.js bundles it into dist/cli/ and ansible/library/; the work is loaded only
// once the options are valid.
import { runCommand } from '../command.js';

// No top-level await: the bundles are CommonJS (see scripts/bundle-modules.js).
void runCommand({
  name: 'index',
  module: 'thinkube_image_index',
  schema: 'image-index-options.schema.json',
  what: 'image index options',
  summary: 'Join per-platform images already in a repository into one multi-architecture image (OCI image index) and put it under every tag through the registry API; no layer is moved.',
  examples: [
    'node bin/index.js --tag harbor.example.com/library/jupyter-ml-cpu:latest --manifest sha256:<amd64 digest> --manifest sha256:<arm64 digest> --platform linux/amd64 --platform linux/arm64',
  ],
  load: () => import('../commands/index.js'),
});
