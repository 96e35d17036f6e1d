/** The kernel API bound to each implementation under test. */
import { createKernels, kernels, type Kernels } from '../../lib/kernels';
import { core, hasTorch, torch } from '../../lib/native';

export const optimized: Kernels = kernels;
export const reference: Kernels = createKernels(core, { reference: true });
/** The optimized RQ encoder with its scoring strategy forced, so both paths meet the oracle. */
export const rqExplicit: Kernels = createKernels(core, { rqStrategy: 1 });
export const rqTable: Kernels = createKernels(core, { rqStrategy: 2 });
export const torchAvailable = hasTorch();
export const torchOps: Kernels | undefined = torchAvailable ? createKernels(torch) : undefined;
