import { messageOf } from './failures.ts';

/**
 * The failures of one reconcile, each saying what was being done ("apply Deployment ns/name: ..."),
 * collected so that one failed step does not stop the others: status and Events report them together.
 */
export class Problems {
  readonly list: string[] = [];

  /** Record a failure; without an error, `what` is the whole message. */
  add(what: string, error?: unknown): void {
    this.list.push(error === undefined ? what : `${what}: ${messageOf(error)}`);
  }

  /** Run a step; when it fails, record why and give undefined. */
  async attempt<T>(what: string, step: () => Promise<T>): Promise<T | undefined> {
    try {
      return await step();
    } catch (error) {
      this.add(what, error);
      return undefined;
    }
  }

  get any(): boolean {
    return this.list.length > 0;
  }

  toError(): Error {
    return new Error(this.list.join('; '));
  }
}
