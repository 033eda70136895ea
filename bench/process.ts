import { once } from 'node:events';
import { readFile } from 'node:fs/promises';
import net from 'node:net';

/** A port free on loopback right now, for a server the benchmark starts. */
export async function freePort(): Promise<number> {
  const server = net.createServer().listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as net.AddressInfo;
  server.close();
  return port;
}

/** Resident memory of a process, from /proc, in MB (0 when unreadable). */
export async function rssMb(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8').catch(() => '');
  return Number(/VmRSS:\s+(\d+) kB/.exec(status)?.[1] ?? 0) / 1024;
}

/** Runs `work` while sampling a process's resident memory every 100 ms: its result, and the highest RSS seen (MB). */
export async function withPeakRss<T>(pid: number, work: () => Promise<T>): Promise<{ result: T; peakRssMb: number }> {
  let peakRssMb = await rssMb(pid);
  const sampler = setInterval(() => void rssMb(pid).then((mb) => (peakRssMb = Math.max(peakRssMb, mb))), 100);
  try {
    const result = await work();
    peakRssMb = Math.max(peakRssMb, await rssMb(pid));
    return { result, peakRssMb };
  } finally {
    clearInterval(sampler);
  }
}
