/** Cancels per turn of the event loop while tearing down: other connections are served in between. */
const CANCELS_PER_TURN = 1024;

/**
 * Cancel every item (each cancel must be O(1) on the device for teardown to stay linear),
 * yielding to the event loop every CANCELS_PER_TURN so a connection with 100k transfers in
 * flight does not stall the others while it closes.
 */
export async function cancelEach<T>(items: readonly T[], cancel: (item: T) => void): Promise<void> {
  for (let i = 0; i < items.length; i++) {
    cancel(items[i]!);
    if ((i + 1) % CANCELS_PER_TURN === 0 && i + 1 < items.length) await new Promise(setImmediate);
  }
}
