/** What was built and what this process can use. */
import { core, hasTorch, torch } from './native';
import type { CoreBuildInfo, TorchBuildInfo } from '../typings/native';

export interface BuildInfo {
  core: CoreBuildInfo;
  /** undefined when mmesid_torch.node was not built (libtorch missing at build time). */
  torch?: TorchBuildInfo;
}

/** @throws NativeUnavailableError when mmesid_core.node cannot be loaded. */
export function buildInfo(): BuildInfo {
  const info: BuildInfo = { core: core().buildInfo() };
  if (hasTorch()) info.torch = torch().buildInfo();
  return info;
}
