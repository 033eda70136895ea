import os from 'node:os';
import { cpuLoadBetween, cpuSnapshot, type CpuLoad } from './cpu-load.ts';

/**
 * A measured block run again when other processes took CPU time while it ran. On a shared machine a
 * block beside others' work measures them as much as us; it is repeated up to `repeats` times, and the
 * attempt with the least load from others is the one kept. Every attempt's load is kept for the report.
 */

export interface BlockAttempt<T> {
  result: T;
  load: CpuLoad;
}

export interface Block<T> {
  /** The attempt kept: the first quiet one, else the least loaded. */
  kept: BlockAttempt<T>;
  attempts: BlockAttempt<T>[];
}

export interface BlockPolicy {
  /** Others' CPU time allowed during a block, in CPUs (0.25: a quarter of one CPU on average). */
  maxOtherCpus: number;
  /** Further attempts at most when a block ran on a busy machine. */
  repeats: number;
}

export async function measureBlock<T>(run: () => Promise<T>, policy: BlockPolicy, cpus = os.cpus().length): Promise<Block<T>> {
  const attempts: BlockAttempt<T>[] = [];
  for (let attempt = 0; attempt <= policy.repeats; attempt += 1) {
    const before = await cpuSnapshot();
    const result = await run();
    const load = cpuLoadBetween(before, await cpuSnapshot(), cpus);
    attempts.push({ result, load });
    if (load.otherCpus <= policy.maxOtherCpus) break;
  }
  const kept = attempts.reduce((a, b) => (b.load.otherCpus < a.load.otherCpus ? b : a));
  return { kept, attempts };
}

/** `quiet`, or how many attempts it took and others' load in each: `repeated: 0.62, 0.41, 0.12 CPUs`. */
export function describeAttempts(block: Block<unknown>): string {
  const loads = block.attempts.map((a) => a.load.otherCpus.toFixed(2));
  return block.attempts.length === 1 ? `${loads[0]}` : `${loads.join(' → ')} (kept ${block.kept.load.otherCpus.toFixed(2)})`;
}
