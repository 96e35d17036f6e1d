/**
 * The one door to the native addons. Nothing else in mmesid loads a `.node` file.
 *
 * - `core()`  — mmesid_core.node: the kernels, needs only a BLAS. Always built by `npm install`.
 * - `torch()` — mmesid_torch.node: libtorch autograd ops (and, later, models and training). Built only
 *   when libtorch was found at build time; loading it otherwise throws NativeUnavailableError whose
 *   message says how to get it.
 *
 * Set `MMESID_ADDON_DIR` to load the addons from another folder (e.g. a prebuilt directory).
 */
import * as path from 'node:path';
import * as fs from 'node:fs';

import bindings from 'bindings';

import { NativeUnavailableError } from './errors';
import type { CoreAddon, TorchAddon } from '../typings/native';

let coreAddon: CoreAddon | undefined;
let torchAddon: TorchAddon | undefined;

/** The package root (the folder holding mmesid's package.json), from lib/ or dist/lib/. */
export function packageRoot(): string {
  let dir = __dirname;
  for (let i = 0; i < 5; i += 1) {
    const manifest = path.join(dir, 'package.json');
    if (fs.existsSync(manifest)) {
      try {
        if ((JSON.parse(fs.readFileSync(manifest, 'utf8')) as { name?: string }).name === 'mmesid') return dir;
      } catch {
        // not ours; keep walking up
      }
    }
    dir = path.dirname(dir);
  }
  return path.resolve(__dirname, '..');
}

function candidates(file: string): string[] {
  const override = process.env.MMESID_ADDON_DIR;
  const root = packageRoot();
  const dirs = override ? [override] : [];
  dirs.push(path.join(root, 'build', 'Release'), path.join(root, 'build', 'Debug'), path.join(root, 'build'));
  return dirs.map((dir) => path.join(dir, file));
}

function load<T>(file: string, fixes: string[]): T {
  const tried = candidates(file);
  let lastError: unknown;
  if (!process.env.MMESID_ADDON_DIR) {
    try {
      // `bindings` knows every layout node-gyp and cmake-js produce (build/Release, out/, compiled/...).
      return bindings({ bindings: file, module_root: packageRoot() }) as T;
    } catch (error) {
      lastError = error;
    }
  }
  for (const candidate of tried) {
    if (!fs.existsSync(candidate)) continue;
    try {
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      return require(candidate) as T;
    } catch (error) {
      lastError = error;
    }
  }
  const reason = lastError instanceof Error ? `it failed to load: ${lastError.message}` : 'it was not found';
  throw new NativeUnavailableError(
    [`Could not load ${file}: ${reason}.`, `Looked in:`, ...tried.map((t) => `  ${t}`), 'Possible fixes:', ...fixes.map((f) => `  - ${f}`)].join('\n'),
    { cause: lastError },
  );
}

/** mmesid_core.node, loaded once. @throws NativeUnavailableError */
export function core(): CoreAddon {
  coreAddon ??= load<CoreAddon>('mmesid_core.node', [
    'build the addon: `npm run build:native` (needs cmake, a C++17 compiler and, for speed, OpenBLAS: `apt-get install libopenblas-openmp-dev`)',
    'or run `bash scripts/setup-system.sh && npm ci` from the package root',
  ]);
  return coreAddon;
}

/** mmesid_torch.node, loaded once. @throws NativeUnavailableError when libtorch was missing at build time */
export function torch(): TorchAddon {
  torchAddon ??= load<TorchAddon>('mmesid_torch.node', [
    'install libtorch (Debian/Ubuntu: `apt-get install libtorch-dev libopenblas0-openmp`), then rebuild: `npm run build:native`',
    'or point CMake at another libtorch: `npm run build:native -- --CDCMAKE_PREFIX_PATH=/path/to/libtorch`',
  ]);
  return torchAddon;
}

/** True when mmesid_torch.node can be loaded. */
export function hasTorch(): boolean {
  try {
    torch();
    return true;
  } catch {
    return false;
  }
}
