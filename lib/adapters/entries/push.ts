// The push command: what bin/push.js runs and the Ansible module thinkube_image_push is.
// scripts/bundle-modules.js bundles it into dist/cli/ and ansible/library/; the work is loaded only
// once the options are valid.
import { runCommand } from '../command.js';

// No top-level await: the bundles are CommonJS (see scripts/bundle-modules.js).
void runCommand({
  name: 'push',
  module: 'thinkube_image_push',
  schema: 'push-options.schema.json',
  summary: 'Push image tags to their registry through the engine and verify the pushed digest with the registry itself.',
  examples: [
    'node bin/push.js --tag harbor.example.com/library/jupyter-ml-cpu:latest --auth-username admin --auth-password-env HARBOR_PASSWORD',
  ],
  load: () => import('../commands/push.js'),
});
