/**
 * The targets a benchmark is held to: each measured figure is checked against its limit, printed
 * PASS or FAIL on its own line, and a miss sets the exit code to 1, so a script (or CI) can act on
 * the result instead of reading the text.
 */

export interface TargetResult {
  name: string;
  value: number;
  op: '<=' | '>=';
  limit: number;
  unit: string;
  met: boolean;
}

export class Targets {
  readonly results: TargetResult[] = [];

  /** Check one figure; returns the verdict text for the line it belongs to. NaN never meets a target. */
  check(name: string, value: number, op: '<=' | '>=', limit: number, unit = ''): string {
    const met = Number.isFinite(value) && (op === '<=' ? value <= limit : value >= limit);
    this.results.push({ name, value, op, limit, unit, met });
    return `${met ? 'PASS' : 'FAIL'} (target ${op === '<=' ? '≤' : '≥'} ${limit}${unit})`;
  }

  get failed(): TargetResult[] {
    return this.results.filter((r) => !r.met);
  }

  /** The summary lines: one per target, then the verdict. */
  summary(): string[] {
    const lines = this.results.map((r) => `${r.met ? 'PASS' : 'FAIL'}  ${r.name}: ${Number.isFinite(r.value) ? Number(r.value.toFixed(3)) : 'n/a'}${r.unit} (target ${r.op === '<=' ? '≤' : '≥'} ${r.limit}${r.unit})`);
    const failed = this.failed.length;
    lines.push(failed === 0 ? `all ${this.results.length} targets met` : `${failed} of ${this.results.length} targets missed`);
    return lines;
  }

  /** Print the summary and set the process exit code: 1 when a target was missed. */
  report(print: (line: string) => void = console.log): void {
    print('');
    for (const line of this.summary()) print(line);
    if (this.failed.length > 0) process.exitCode = 1;
  }
}
