import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { choosePlacement, NvidiaSmiProbe, parseNvidiaSmiMemory } from '../server/gpu/probe.ts';

describe('nvidia-smi probe', () => {
  test('parses the CSV query for the asked device', () => {
    const out = '0, 81559, 1200, 80359\n1, 81559, 80000, 1559\n';
    assert.deepEqual(parseNvidiaSmiMemory(out, 1), { deviceId: 1, totalMb: 81559, usedMb: 80000, freeMb: 1559 });
    assert.equal(parseNvidiaSmiMemory(out, 2), undefined);
    assert.equal(parseNvidiaSmiMemory('[N/A], [N/A], 1, 2', 0), undefined);
  });

  test('asks nvidia-smi for the device and reads no GPU when the command fails', async () => {
    const calls: string[][] = [];
    const probe = new NvidiaSmiProbe({
      run: async (file, args) => {
        calls.push([file, ...args]);
        return { stdout: '3, 1000, 400, 600\n' };
      },
    });
    assert.deepEqual(await probe.memory(3), { deviceId: 3, totalMb: 1000, usedMb: 400, freeMb: 600 });
    assert.ok(calls[0]?.includes('--id=3'));
    const missing = new NvidiaSmiProbe({ run: async () => Promise.reject(new Error('ENOENT')) });
    assert.equal(await missing.memory(0), undefined);
  });
});

describe('choosePlacement', () => {
  const cases: Array<[string, Parameters<typeof choosePlacement>[0], 'cuda' | 'cpu']> = [
    ['stays on GPU with room', { current: 'cuda', freeMb: 5000, thresholdMb: 1500, fallbackToCpu: true }, 'cuda'],
    ['leaves GPU under the threshold', { current: 'cuda', freeMb: 1400, thresholdMb: 1500, fallbackToCpu: true }, 'cpu'],
    ['stays on CPU inside the recovery margin', { current: 'cpu', freeMb: 1600, thresholdMb: 1500, fallbackToCpu: true }, 'cpu'],
    ['returns to GPU past the margin', { current: 'cpu', freeMb: 1800, thresholdMb: 1500, fallbackToCpu: true }, 'cuda'],
    ['no fallback: stays on GPU whatever memory says', { current: 'cuda', freeMb: 10, thresholdMb: 1500, fallbackToCpu: false }, 'cuda'],
    ['GPU unreadable with fallback: CPU', { current: 'cuda', freeMb: undefined, thresholdMb: 1500, fallbackToCpu: true }, 'cpu'],
  ];
  for (const [name, input, expected] of cases) {
    test(name, () => assert.equal(choosePlacement(input), expected));
  }
});
