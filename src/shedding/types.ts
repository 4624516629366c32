// The shedder's decision vocabulary, shared by the shedder and its wait queue.
import type { Priority } from '../core/context.js';

/** Why a request was not admitted. */
export type ShedReason =
  | 'deadline' // its deadline had passed (or too little of it was left) before it ran
  | 'priority' // utilisation at or above its class threshold
  | 'red' // random early drop between red.min and red.max
  | 'capacity' // no free slot and no queue (or tryAdmit, which never waits)
  | 'queue-full' // the wait queue was full (or it was evicted from it under overload)
  | 'queue-timeout' // waited maxQueueTimeMs without getting a slot
  | 'codel' // dropped from a standing queue (CoDel)
  | 'aborted'; // the caller gave up while it waited

/**
 * 'fifo': first come, first served. 'codel': FIFO, but once the queue has been standing (waits
 * above targetMs for intervalMs), requests that waited longer than targetMs are dropped at
 * dequeue until waits fall below target. 'lifo-under-overload': FIFO normally, newest first
 * while the queue is standing (the oldest are the likeliest to have been abandoned already).
 */
export type ShedQueueMode = 'codel' | 'lifo-under-overload' | 'fifo';

/** A refusal, as a value (the HTTP layer maps it to 503 + Retry-After). */
export interface ShedRejection {
  readonly admitted: false;
  readonly reason: ShedReason;
  readonly retryAfterMs: number;
  readonly priority: Priority;
  /** Utilisation when the decision was taken (NaN when not computed, e.g. deadline). */
  readonly utilisation: number;
}
