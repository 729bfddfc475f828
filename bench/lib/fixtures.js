// Image folders for the benches: small Jupyter-like images (20 files of random text, a pinned
// requirements.txt, a COPY and a RUN), each FROM a base image or another image of the set.
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import os from 'node:os';
import path from 'node:path';

/**
 * A fresh images folder (in the temp dir, named after `label`) holding `images`: [{ name, from,
 * isDefault }], `from` a repository:tag in the registry (library/busybox:..., library/<image>:latest).
 */
export function benchImages(env, label, images) {
  const dir = mkdtempSync(path.join(os.tmpdir(), `tk-bench-${label}-`));
  writeFileSync(path.join(dir, 'bases.yaml'), `bases:\n  - library/busybox:${env.busyboxTag}\n`);
  for (const { name, from, isDefault = false } of images) {
    const d = path.join(dir, name);
    mkdirSync(path.join(d, 'app'), { recursive: true });
    for (let i = 0; i < 20; i++) writeFileSync(path.join(d, 'app', `file-${i}.txt`), randomBytes(2048).toString('hex'));
    writeFileSync(path.join(d, 'requirements.txt'), '# nothing to install\n');
    writeFileSync(path.join(d, 'Dockerfile'), `ARG HARBOR_REGISTRY\nFROM \${HARBOR_REGISTRY}/${from}\nCOPY app /opt/${name}\nRUN echo ${name} > /${name}.txt\n`);
    writeFileSync(
      path.join(d, 'image.yaml'),
      `name: ${name}\ndisplay_name: Bench ${name}\ndescription: Benchmark image ${name}\ncategory: jupyter\ntags: [bench]\nmetadata:\n  gpu_required: false\n  cpu_limit: 1\n  mem_limit: 1G\n  default: ${isDefault}\n  purpose: jupyter\n`,
    );
  }
  return dir;
}
