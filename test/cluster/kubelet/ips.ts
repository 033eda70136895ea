import { mkdirSync, readFileSync, unlinkSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { log } from './helpers.ts';

/**
 * The pods' loopback addresses 127.0.0.N (N from 2), shared with concurrent test processes through
 * lock files under $TMPDIR/rerank-test-kubelet-ips holding the owner's pid.
 */

const IP_LOCK_DIR = path.join(os.tmpdir(), 'rerank-test-kubelet-ips');

const heldIps = new Set<string>();

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function tryLock(ip: string): boolean {
  const file = path.join(IP_LOCK_DIR, ip);
  for (let attempt = 0; attempt < 2; attempt += 1) {
    try {
      writeFileSync(file, String(process.pid), { flag: 'wx' });
      return true;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
      let owner = 0;
      try {
        owner = Number(readFileSync(file, 'utf8'));
      } catch {
        // Released meanwhile: try again.
      }
      if (owner && owner !== process.pid && alive(owner)) return false;
      try {
        unlinkSync(file);
      } catch {
        // Taken or released by another process meanwhile; the next attempt tells.
      }
    }
  }
  return false;
}

/** Gives back an address this process holds. */
export function releaseIp(ip: string): void {
  if (!heldIps.delete(ip)) return;
  try {
    unlinkSync(path.join(IP_LOCK_DIR, ip));
  } catch (error) {
    log(`releasing ${ip}`, error);
  }
}

function portFree(ip: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.once('error', () => resolve(false));
    server.listen({ host: ip, port, exclusive: true }, () => server.close(() => resolve(true)));
  });
}

/** A free address, locked for this process, on which `ports` are free too. */
export async function allocateIp(ports: number[]): Promise<string> {
  mkdirSync(IP_LOCK_DIR, { recursive: true });
  for (let n = 2; n < 255; n += 1) {
    const ip = `127.0.0.${n}`;
    if (heldIps.has(ip) || !tryLock(ip)) continue;
    heldIps.add(ip);
    let free = true;
    for (const port of ports) if (!(await portFree(ip, port))) free = false;
    if (free) return ip;
    log(`${ip}: a port of ${ports.join(', ')} is taken by a process that holds no lock; skipping that address`);
    releaseIp(ip);
  }
  throw new Error('no free loopback address in 127.0.0.2-254');
}

/** Every address this process holds, released (at exit). */
export function releaseAllIps(): void {
  for (const ip of [...heldIps]) releaseIp(ip);
}
