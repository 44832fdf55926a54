/** A data packet the host pushed (interrupt IN, iso IN), waiting for a transfer. */
export interface Received {
  status: number;
  data: Buffer;
}

/** FIFO of received packets with O(1) push/shift (the array is compacted as the head moves). */
export class PacketQueue {
  #items: Received[] = [];
  #head = 0;

  get length(): number {
    return this.#items.length - this.#head;
  }

  push(r: Received): void {
    this.#items.push(r);
  }

  shift(): Received | undefined {
    const r = this.#items[this.#head];
    if (!r) return undefined;
    this.#head++;
    if (this.#head >= 64 && this.#head * 2 >= this.#items.length) {
      this.#items = this.#items.slice(this.#head);
      this.#head = 0;
    }
    return r;
  }

  clear(): void {
    this.#items = [];
    this.#head = 0;
  }
}
