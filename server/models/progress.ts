/** Download progress: a redrawn bar on a terminal, plain lines (every 10 % or every few seconds) in logs. */
export interface Progress {
  start(label: string, total: number | undefined, already: number): void;
  update(bytes: number): void;
  finish(bytes: number): void;
  /** A line of its own (a retry, a skipped file). */
  note(message: string): void;
}

export interface ProgressOptions {
  /** Redraw one bar in place; otherwise print lines. Default: whether the stream is a TTY. */
  tty?: boolean;
  /** Non-TTY: print at least this often while bytes arrive. */
  intervalMs?: number;
  now?: () => number;
}

export interface Writable {
  write(text: string): unknown;
  isTTY?: boolean;
  columns?: number;
}

export function formatBytes(bytes: number): string {
  const units = ['B', 'KB', 'MB', 'GB', 'TB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1000 && unit < units.length - 1) {
    value /= 1000;
    unit++;
  }
  return `${unit === 0 ? value : value.toFixed(1)} ${units[unit]}`;
}

export function createProgress(stream: Writable, options: ProgressOptions = {}): Progress {
  const tty = options.tty ?? Boolean(stream.isTTY);
  const intervalMs = options.intervalMs ?? 5000;
  const now = options.now ?? Date.now;
  let label = '';
  let total: number | undefined;
  let startedAt = 0;
  let startBytes = 0;
  let lastLineAt = 0;
  let lastDecile = -1;
  let lastDrawAt = 0;
  let drawn = false;

  const rate = (bytes: number) => {
    const seconds = (now() - startedAt) / 1000;
    return seconds > 0 ? `${formatBytes((bytes - startBytes) / seconds)}/s` : '';
  };
  const amount = (bytes: number) => (total !== undefined ? `${formatBytes(bytes)} of ${formatBytes(total)}` : formatBytes(bytes));
  const percent = (bytes: number) => (total ? Math.min(100, Math.floor((bytes / total) * 100)) : undefined);

  const draw = (bytes: number) => {
    const pct = percent(bytes);
    const width = Math.max(10, Math.min(40, (stream.columns ?? 80) - label.length - 45));
    const filled = pct === undefined ? 0 : Math.round((pct / 100) * width);
    const bar = pct === undefined ? '' : `[${'#'.repeat(filled)}${'-'.repeat(width - filled)}] ${String(pct).padStart(3)}% `;
    stream.write(`\r\x1b[2K${label} ${bar}${amount(bytes)} ${rate(bytes)}`);
    drawn = true;
  };
  const clear = () => {
    if (tty && drawn) stream.write('\r\x1b[2K');
    drawn = false;
  };

  return {
    start(name, size, already) {
      label = name;
      total = size;
      startedAt = now();
      startBytes = already;
      lastLineAt = startedAt;
      lastDecile = Math.floor((percent(already) ?? 0) / 10);
      if (tty) draw(already);
      else stream.write(`${label}: ${already > 0 ? `resuming at ${amount(already)}` : `downloading ${total !== undefined ? formatBytes(total) : '(size unknown)'}`}\n`);
    },
    update(bytes) {
      const t = now();
      if (tty) {
        if (t - lastDrawAt >= 100) {
          lastDrawAt = t;
          draw(bytes);
        }
        return;
      }
      const decile = Math.floor((percent(bytes) ?? 0) / 10);
      if ((total !== undefined && decile > lastDecile && decile < 10) || t - lastLineAt >= intervalMs) {
        lastDecile = decile;
        lastLineAt = t;
        const pct = percent(bytes);
        stream.write(`${label}: ${pct !== undefined ? `${pct}% ` : ''}(${amount(bytes)}) ${rate(bytes)}\n`);
      }
    },
    finish(bytes) {
      if (tty) {
        draw(bytes);
        stream.write('\n');
        drawn = false;
      } else {
        stream.write(`${label}: 100% (${formatBytes(bytes)}) done\n`);
      }
    },
    note(message) {
      clear();
      stream.write(`${message}\n`);
    },
  };
}

/** Progress that prints nothing. */
export const silentProgress: Progress = { start() {}, update() {}, finish() {}, note() {} };
