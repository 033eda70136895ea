import assert from 'node:assert/strict';
import { ConfigError, parseConfig } from '../../server/config/load.ts';

/** The issues the loader names for a config text it must refuse; fails the test when it accepts it. */
export function configIssues(text: string, options: { source: string; baseDir: string }): string[] {
  try {
    parseConfig(text, options);
  } catch (error) {
    assert.ok(error instanceof ConfigError, `expected ConfigError, got ${String(error)}`);
    return error.issues;
  }
  assert.fail('config was accepted');
}

/** The loader refuses the text with an issue matching `expected`. */
export function assertConfigIssue(text: string, options: { source: string; baseDir: string }, expected: RegExp): void {
  const issues = configIssues(text, options);
  assert.ok(issues.some((issue) => expected.test(issue)), `no issue matches ${expected}: ${JSON.stringify(issues)}`);
}
