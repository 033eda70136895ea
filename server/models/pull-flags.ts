import { InvalidArgumentError, Option, type Command } from 'commander';
import { DEFAULT_TIMEOUTS, type Timeouts } from './http-client.ts';
import { DEFAULT_LIMITS, LIMIT_FLAGS, formatSize, parseSize, type PullLimits } from './limits.ts';

/** The flags of `models pull` that bound what a source can make it do: sizes and timeouts. */
export interface PullBoundFlags {
  maxFileBytes: number;
  maxPullBytes: number;
  maxExtractedBytes: number;
  /** Seconds. */
  connectTimeout: number;
  /** Seconds. */
  idleTimeout: number;
}

const size = (value: string): number => {
  try {
    return parseSize(value);
  } catch (error) {
    throw new InvalidArgumentError((error as Error).message);
  }
};

const seconds = (value: string): number => {
  const n = Number(value);
  if (!(n > 0) || !Number.isFinite(n)) throw new InvalidArgumentError(`"${value}" is not a number of seconds above zero`);
  return n;
};

const DESCRIPTIONS: Record<keyof PullLimits, string> = {
  maxFileBytes: 'largest file to download or extract (a size: bytes, or with KB MB GB / KiB MiB GiB)',
  maxPullBytes: 'most bytes one pull downloads, all files together',
  maxExtractedBytes: 'most bytes an archive (.tar.gz, a packed OCI layer) may extract to',
};

export function addPullBoundOptions(command: Command): Command {
  for (const key of Object.keys(LIMIT_FLAGS) as Array<keyof PullLimits>) {
    command.addOption(new Option(`${LIMIT_FLAGS[key]} <size>`, DESCRIPTIONS[key]).argParser(size).default(DEFAULT_LIMITS[key], formatSize(DEFAULT_LIMITS[key])));
  }
  command.addOption(new Option('--connect-timeout <seconds>', 'give up an attempt that has not connected after this long').argParser(seconds).default(DEFAULT_TIMEOUTS.connectMs / 1000));
  command.addOption(
    new Option('--idle-timeout <seconds>', 'give up an attempt that received no byte for this long (headers or body); it is retried and resumes')
      .argParser(seconds)
      .default(DEFAULT_TIMEOUTS.idleMs / 1000),
  );
  return command;
}

export function pullBounds(flags: PullBoundFlags): { limits: PullLimits; timeouts: Timeouts } {
  return {
    limits: { maxFileBytes: flags.maxFileBytes, maxPullBytes: flags.maxPullBytes, maxExtractedBytes: flags.maxExtractedBytes },
    timeouts: { connectMs: flags.connectTimeout * 1000, idleMs: flags.idleTimeout * 1000 },
  };
}
