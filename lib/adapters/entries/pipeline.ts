// The pipeline command: what bin/pipeline.js runs and the Ansible module thinkube_image_pipeline
// is. scripts/bundle-modules.js bundles it into dist/cli/ and ansible/library/; the work is loaded
// only once the options are valid.
import { runCommand } from '../command.js';

// No top-level await: the bundles are CommonJS (see scripts/bundle-modules.js).
void runCommand({
  name: 'pipeline',
  module: 'thinkube_image_pipeline',
  schema: 'pipeline-options.schema.json',
  summary: 'Build, push and register every image of an images folder (or a selection) in dependency order. A failed image skips the images built on it; the others go on.',
  positional: 'imagesDir',
  examples: [
    'node bin/pipeline.js images --registry harbor.example.com --auth-username admin --auth-password-env HARBOR_PASSWORD',
    'node bin/pipeline.js images --registry harbor.example.com --image jupyter-ml-cpu --registration-target api --registration-control-url https://control.example.com/api --registration-token-env THINKUBE_CONTROL_TOKEN',
  ],
  load: () => import('../commands/pipeline.js'),
});
