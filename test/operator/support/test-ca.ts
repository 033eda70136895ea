import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** A CA made for one test run and a server certificate it signed for 127.0.0.1, all PEM. */
export interface TestCa {
  caCert: string;
  serverKey: string;
  serverCert: string;
}

/** Why no CA can be made here (no openssl on the PATH), or undefined when one can. */
export function testCaUnavailable(): string | undefined {
  try {
    execFileSync('openssl', ['version'], { stdio: 'ignore' });
    return undefined;
  } catch {
    return 'openssl is not installed: the https cases need it to make a CA';
  }
}

/** Generates the CA and the server certificate with openssl (EC P-256, valid one day) in a temporary directory. */
export function makeTestCa(): TestCa {
  const dir = mkdtempSync(join(tmpdir(), 'rerank-test-ca-'));
  const openssl = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
  try {
    const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];
    openssl('req', '-x509', ...ec, '-keyout', 'ca.key', '-out', 'ca.crt', '-days', '1', '-subj', '/CN=rerank test CA');
    openssl('req', ...ec, '-keyout', 'server.key', '-out', 'server.csr', '-subj', '/CN=127.0.0.1');
    writeFileSync(join(dir, 'ext'), 'subjectAltName=IP:127.0.0.1\n');
    openssl('x509', '-req', '-in', 'server.csr', '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'server.crt', '-days', '1', '-extfile', 'ext');
    const read = (name: string) => readFileSync(join(dir, name), 'utf8');
    return { caCert: read('ca.crt'), serverKey: read('server.key'), serverCert: read('server.crt') };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
