/** A listener registration; call `dispose()` to stop listening. */
export interface Disposable {
  dispose(): void;
}

export type Listener<T> = (event: T) => void;

/** Subscribe with `policy.onSomething(listener)`; the returned Disposable unsubscribes. */
export type Event<T> = (listener: Listener<T>) => Disposable;

/**
 * A typed emitter that costs nothing when nobody listens: hot paths check `active`
 * before building an event object, and `emit` is a single branch with no listener.
 */
export class EventEmitter<T> {
  #listeners: Listener<T>[] = [];
  readonly #onListenersChange: (() => void) | undefined;

  /**
   * `onListenersChange` is told after a listener subscribes or unsubscribes: an owner that
   * caches "is anybody listening" for its hot path refreshes the cache there.
   */
  constructor(onListenersChange?: () => void) {
    this.#onListenersChange = onListenersChange;
  }

  /** The subscription function to expose as a public `onX` member. */
  readonly event: Event<T> = (listener) => {
    this.#listeners = [...this.#listeners, listener];
    this.#onListenersChange?.();
    let disposed = false;
    return {
      dispose: () => {
        if (disposed) return;
        disposed = true;
        this.#listeners = this.#listeners.filter((l) => l !== listener);
        this.#onListenersChange?.();
      },
    };
  };

  get active(): boolean {
    return this.#listeners.length > 0;
  }

  emit(value: T): void {
    const listeners = this.#listeners; // copy-on-write: safe if a listener unsubscribes
    for (let i = 0; i < listeners.length; i++) {
      try {
        listeners[i]!(value);
      } catch (error) {
        // A broken listener must never break the call it observes.
        process.emitWarning(`bulwark: event listener threw: ${error instanceof Error ? error.message : String(error)}`);
      }
    }
  }
}

/** Waits for the next event (handy in tests). */
export function once<T>(event: Event<T>): Promise<T> {
  return new Promise((resolve) => {
    const sub = event((value) => {
      sub.dispose();
      resolve(value);
    });
  });
}
