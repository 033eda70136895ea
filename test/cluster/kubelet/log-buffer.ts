/** Output kept for logs(): the last `max` characters of a pod's processes. */
export class LogBuffer {
  #chunks: string[] = [];
  #size = 0;
  readonly #max: number;
  constructor(max: number) {
    this.#max = max;
  }
  append(text: string): void {
    this.#chunks.push(text);
    this.#size += text.length;
    while (this.#size > this.#max && this.#chunks.length > 1) this.#size -= this.#chunks.shift()?.length ?? 0;
    if (this.#size > this.#max && this.#chunks[0]) {
      this.#chunks[0] = this.#chunks[0].slice(this.#size - this.#max);
      this.#size = this.#max;
    }
  }
  text(): string {
    return this.#chunks.join('');
  }
  tail(lines: number): string {
    return this.text().trimEnd().split('\n').slice(-lines).join('\n');
  }
}
