import { readFileSync } from 'node:fs';

/**
 * The CPU's int8 dot-product instructions, read from /proc/cpuinfo: what makes an int8 model several times
 * faster than float32 in onnxruntime (VNNI multiplies and adds four int8 pairs per lane in one instruction;
 * AMX does whole tiles). Without them, int8 kernels gain little and can saturate.
 */

/** The flags that matter, strongest first. */
export const INT8_FLAGS = ['amx_int8', 'avx512_vnni', 'avx_vnni'] as const;
export type Int8Flag = (typeof INT8_FLAGS)[number];

export interface CpuFeatures {
  /** Which of INT8_FLAGS the CPU has, strongest first. */
  int8: Int8Flag[];
  /** Where they were read from, or why they could not be. */
  source: string;
}

/** The flags of the first processor in a /proc/cpuinfo text (x86 `flags`, ARM `Features`). */
export function parseCpuInfo(text: string): Set<string> {
  const line = /^(?:flags|Features)\s*:\s*(.*)$/m.exec(text);
  return new Set((line?.[1] ?? '').split(/\s+/).filter(Boolean));
}

export function cpuFeaturesFrom(text: string, source: string): CpuFeatures {
  const flags = parseCpuInfo(text);
  return { int8: INT8_FLAGS.filter((flag) => flags.has(flag)), source };
}

let probed: CpuFeatures | undefined;

/** This machine's features, read once. A machine without /proc/cpuinfo reports none, and says why. */
export function probeCpuFeatures(read: () => string = () => readFileSync('/proc/cpuinfo', 'utf8')): CpuFeatures {
  if (probed) return probed;
  try {
    probed = cpuFeaturesFrom(read(), '/proc/cpuinfo');
  } catch (error) {
    probed = { int8: [], source: `/proc/cpuinfo unreadable (${(error as Error).message})` };
  }
  return probed;
}
