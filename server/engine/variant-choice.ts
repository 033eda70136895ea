import type { CpuFeatures } from './cpu-features.ts';
import type { Device } from './onnx-model.ts';

/**
 * Which export of a model a session loads. `auto` picks by device and CPU: int8 on CPUs with VNNI or AMX
 * (several times faster than float32 there), fp16 on CUDA, else fp32; always among the exports the
 * model directory has. Pure: the device, the CPU's features and the files found are its inputs.
 */

export const MODEL_VARIANTS = ['fp32', 'int8', 'fp16'] as const;
export type ModelVariant = (typeof MODEL_VARIANTS)[number];
export const VARIANT_SETTINGS = ['auto', ...MODEL_VARIANTS] as const;
export type VariantSetting = (typeof VARIANT_SETTINGS)[number];

export interface VariantChoice {
  variant: ModelVariant;
  /** Why, in words: `configured`, or `auto: cpu has avx512_vnni`. */
  reason: string;
}

export class VariantUnavailableError extends Error {
  override name = 'VariantUnavailableError';
  readonly variant: ModelVariant;
  constructor(variant: ModelVariant, message: string) {
    super(message);
    this.variant = variant;
  }
}

export function chooseVariant(options: {
  setting: VariantSetting;
  device: Device;
  /** The exports the model directory has. */
  available: readonly ModelVariant[];
  cpu: CpuFeatures;
}): VariantChoice {
  const { setting, device, available, cpu } = options;
  const has = (v: ModelVariant) => available.includes(v);
  if (setting !== 'auto') {
    if (!has(setting)) throw new VariantUnavailableError(setting, `variant ${setting}: the model has no ${setting} export (it has ${available.join(', ') || 'none'})`);
    return { variant: setting, reason: 'configured' };
  }
  if (available.length === 0) throw new VariantUnavailableError('fp32', 'the model has no export');
  const only = available.length === 1 ? available[0] : undefined;
  if (device === 'cuda') {
    if (has('fp16')) return { variant: 'fp16', reason: 'auto: cuda, and an fp16 export' };
    if (has('fp32')) return { variant: 'fp32', reason: 'auto: cuda, no fp16 export' };
    return { variant: only ?? 'int8', reason: 'auto: the only export' };
  }
  const flag = cpu.int8[0];
  if (has('int8') && flag !== undefined) return { variant: 'int8', reason: `auto: cpu has ${flag}` };
  if (has('fp32')) {
    return { variant: 'fp32', reason: has('int8') ? 'auto: cpu lacks VNNI/AMX (avx512_vnni, avx_vnni, amx_int8), int8 gains little' : 'auto: no int8 export' };
  }
  return { variant: has('int8') ? 'int8' : (only ?? 'fp16'), reason: 'auto: the only export' };
}

/** `int8 (auto: cpu has avx512_vnni)`: the choice in one phrase, for logs. */
export function describeVariant(choice: VariantChoice): string {
  return `${choice.variant} (${choice.reason})`;
}
