/**
 * Reports waiting for the host, oldest first, bounded: an action whose reports do not all fit is
 * refused whole (a half-typed text or a press without its release would be worse than nothing).
 */
export class ReportQueue {
  readonly #items: Buffer[] = [];
  #head = 0;

  constructor(readonly capacity: number) {}

  get length(): number {
    return this.#items.length - this.#head;
  }

  free(): number {
    return this.capacity - this.length;
  }

  /** Add all reports, or none (returns false) when they do not fit. */
  pushAll(reports: readonly Buffer[]): boolean {
    if (reports.length > this.free()) return false;
    this.#items.push(...reports);
    return true;
  }

  shift(): Buffer | undefined {
    if (this.#head >= this.#items.length) return undefined;
    const r = this.#items[this.#head++];
    if (this.#head > 1024 && this.#head * 2 > this.#items.length) {
      this.#items.splice(0, this.#head);
      this.#head = 0;
    }
    return r;
  }

  unshift(report: Buffer): void {
    if (this.#head > 0) this.#items[--this.#head] = report;
    else this.#items.unshift(report);
  }

  clear(): void {
    this.#items.length = 0;
    this.#head = 0;
  }
}
