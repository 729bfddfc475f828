// The preflight command: what bin/preflight.js runs and the Ansible module thinkube_image_preflight
// is. scripts/bundle-modules.js bundles it into dist/cli/ and ansible/library/; the work is loaded
// only once the options are valid.
import { runCommand } from '../command.js';

// No top-level await: the bundles are CommonJS (see scripts/bundle-modules.js).
void runCommand({
  name: 'preflight',
  module: 'thinkube_image_preflight',
  schema: 'preflight-options.schema.json',
  summary:
    'Check before building: the engine answers and has free disk, the registry takes the credentials, Harbor is healthy and the project exists (or is created), and every base image the selected images need is in the registry. Harbor-only checks are not applicable on a plain OCI registry.',
  examples: [
    'node bin/preflight.js --registry harbor.example.com --auth-username \'robot$thinkube\' --auth-password-env HARBOR_ROBOT_SECRET --images-dir images',
    'node bin/preflight.js --registry harbor.example.com --project thinkube --create-project --only registry --only harbor-project',
  ],
  load: () => import('../commands/preflight.js'),
});
