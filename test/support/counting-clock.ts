import { VirtualClock } from '../../src/core/clock.js';

/** A virtual clock that counts the timers armed on it (to show that calls share one). */
export class CountingClock extends VirtualClock {
  armed = 0;

  override setTimeout(callback: () => void, ms: number) {
    this.armed++;
    return super.setTimeout(callback, ms);
  }
}
