import { readdir, readFile } from 'node:fs/promises';

/**
 * How much CPU other processes took while a benchmark block ran: the machine's busy time from /proc/stat
 * (steal included: a hypervisor's other guests slow us as much) minus the CPU time of this process and
 * every process it started (servers, child benchmarks), from /proc/<pid>/stat. On a shared machine a
 * block that ran beside others' work is not a measurement of ours, so the caller repeats it.
 */

export interface CpuSnapshot {
  /** All CPUs' time, clock ticks (idle included). */
  totalTicks: number;
  /** All CPUs' busy time: total less idle and iowait. */
  busyTicks: number;
  /** This process tree's user + system time, its reaped children's included. */
  ownTicks: number;
}

export interface CpuLoad {
  /** CPUs' worth of time others used, averaged over the interval (0 to the number of CPUs). */
  otherCpus: number;
  /** CPUs' worth this process tree used. */
  ownCpus: number;
  cpus: number;
}

/** Busy and total ticks of /proc/stat's aggregate `cpu` line. */
export function parseProcStat(text: string): { totalTicks: number; busyTicks: number } {
  const line = /^cpu\s+(.*)$/m.exec(text)?.[1];
  if (line === undefined) throw new Error('/proc/stat has no aggregate cpu line');
  // user nice system idle iowait irq softirq steal [guest guest_nice]: guest time is already in user.
  const [user = 0, nice = 0, system = 0, idle = 0, iowait = 0, irq = 0, softirq = 0, steal = 0] = line.trim().split(/\s+/).map(Number);
  const totalTicks = user + nice + system + idle + iowait + irq + softirq + steal;
  return { totalTicks, busyTicks: totalTicks - idle - iowait };
}

/** pid, parent pid and user + system + reaped children's ticks from one /proc/<pid>/stat text. */
export function parsePidStat(text: string): { pid: number; ppid: number; ticks: number } {
  const close = text.lastIndexOf(')');
  const pid = Number(text.slice(0, text.indexOf(' ')));
  // After "pid (comm) ": state ppid … utime(14) stime(15) cutime(16) cstime(17), counting from pid as 1.
  const fields = text.slice(close + 2).split(' ');
  const at = (n: number) => Number(fields[n - 3]);
  return { pid, ppid: at(4), ticks: at(14) + at(15) + at(16) + at(17) };
}

/** Ticks of `root` and all its descendants. */
export async function treeTicks(root: number): Promise<number> {
  const stats: Array<{ pid: number; ppid: number; ticks: number }> = [];
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const text = await readFile(`/proc/${entry}/stat`, 'utf8').catch(() => undefined);
    if (text !== undefined) stats.push(parsePidStat(text));
  }
  const children = new Map<number, number[]>();
  for (const s of stats) children.set(s.ppid, [...(children.get(s.ppid) ?? []), s.pid]);
  const ticksOf = new Map(stats.map((s) => [s.pid, s.ticks]));
  let total = 0;
  const stack = [root];
  while (stack.length > 0) {
    const pid = stack.pop() as number;
    total += ticksOf.get(pid) ?? 0;
    stack.push(...(children.get(pid) ?? []));
  }
  return total;
}

export async function cpuSnapshot(root = process.pid): Promise<CpuSnapshot> {
  const ownTicks = await treeTicks(root);
  const machine = parseProcStat(await readFile('/proc/stat', 'utf8'));
  return { ...machine, ownTicks };
}

/** The load between two snapshots, in CPUs. Others' share never goes below 0 (the two reads are not atomic). */
export function cpuLoadBetween(before: CpuSnapshot, after: CpuSnapshot, cpus: number): CpuLoad {
  const total = after.totalTicks - before.totalTicks;
  if (!(total > 0)) return { otherCpus: Number.NaN, ownCpus: Number.NaN, cpus };
  const busy = after.busyTicks - before.busyTicks;
  const own = after.ownTicks - before.ownTicks;
  return { otherCpus: Math.max(0, ((busy - own) / total) * cpus), ownCpus: (own / total) * cpus, cpus };
}
