// The package's public API is named in lib/index.ts: what the README shows is there, and the
// internals of the folders are not exported wholesale.
import t from 'tap';
import * as api from '../dist/lib/index.js';

t.test('the functions the README and the module docs name are exported', async (t) => {
  for (const name of ['buildImage', 'pushImage', 'registerImage', 'runPipeline', 'buildMultiArchImage', 'runPreflight', 'lintImages', 'loadCatalog', 'order', 'scanGate', 'assembleImageIndex', 'validate']) {
    t.equal(typeof api[name], 'function', name);
  }
  for (const name of ['RegistryClient', 'HarborClient', 'ControlClient', 'KubeConnection', 'ConfigMapClient', 'EnginePool', 'EnginesExecutor', 'ThinkubeImageError', 'ValidationError', 'BuildError']) {
    t.equal(typeof api[name], 'function', `${name} (class)`);
  }
});

t.test('internals stay inside their folders', async (t) => {
  for (const name of ['registryClientFor', 'gateOnChecks', 'runJobs', 'ImageRun', 'putImageIndex', 'refreshBases', 'clientsFor', 'runGraph', 'upsertCatalogEntry', 'writeConfigMapEntry']) {
    t.notOk(name in api, `${name} is not part of the public API`);
  }
});
